//! What standalone mode must remember across restarts, under `--data-dir`: the ID ledger (the same
//! pure steps as the controller's ConfigMap ledger, keyed by `namespace/name`) and each
//! registration's API key. Keys are also written one per file for the MCPs to read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StandaloneError;
use crate::controller::ids;
use crate::controller::keys::generate_key;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    /// The ledger's data, as `controller::ids::allocate` reads and writes it.
    ledger: BTreeMap<String, String>,
    /// API key by `namespace/name`.
    keys: BTreeMap<String, String>,
}

pub struct Registry {
    data_dir: PathBuf,
    path: PathBuf,
    keys_dir: PathBuf,
    state: Persisted,
}

impl Registry {
    /// Opens `<data_dir>/registry.json` (created on first use; mode 0600, it holds keys).
    pub fn open(data_dir: &Path) -> Result<Self, StandaloneError> {
        let path = data_dir.join("registry.json");
        let state = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| StandaloneError::Registry {
                path: path.clone(),
                reason: format!(
                    "{e}; restore it from a backup (deleting it would re-number every MCP)"
                ),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Persisted::default(),
            Err(e) => {
                return Err(StandaloneError::Registry {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            path,
            keys_dir: data_dir.join("keys"),
            state,
        })
    }

    /// The registration's MCP ID, allocated on first sight and stable from then on.
    pub fn id_for(&mut self, key: &str, prefix: &str) -> Result<String, StandaloneError> {
        let (id, changed) = ids::allocate(
            &mut self.state.ledger,
            key,
            prefix,
            None,
            &self.path.display().to_string(),
        )
        .map_err(|e| StandaloneError::Registry {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        if changed {
            self.save()?;
        }
        Ok(id)
    }

    /// The registration's API key (generated on first sight), also kept in [`Self::key_file`].
    pub fn key_for(&mut self, namespace: &str, name: &str) -> Result<String, StandaloneError> {
        let key = format!("{namespace}/{name}");
        let value = match self.state.keys.get(&key) {
            Some(v) => v.clone(),
            None => {
                let v = generate_key().map_err(|e| StandaloneError::Registry {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
                self.state.keys.insert(key, v.clone());
                self.save()?;
                v
            }
        };
        let file = self.key_file(namespace, name);
        if std::fs::read_to_string(&file).ok().as_deref() != Some(value.as_str()) {
            write_private(&file, value.as_bytes())?;
        }
        Ok(value)
    }

    /// Replaces the registration's API key with a new one (self-registration's `rotate_key`).
    pub fn rotate_key(&mut self, namespace: &str, name: &str) -> Result<String, StandaloneError> {
        self.state.keys.remove(&format!("{namespace}/{name}"));
        self.key_for(namespace, name)
    }

    /// Where an MCP finds its key: `<data-dir>/keys/<namespace>/<name>-mcp-key`.
    pub fn key_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.keys_dir
            .join(namespace)
            .join(format!("{name}-mcp-key"))
    }

    /// The registration as last reconciled, status included: `<data-dir>/status/<namespace>/<name>.json`.
    pub fn status_file(&self, namespace: &str, name: &str) -> PathBuf {
        self.data_dir
            .join("status")
            .join(namespace)
            .join(format!("{name}.json"))
    }

    /// Forgets a removed registration: its ID is never handed out again, its key is gone.
    pub fn retire(&mut self, namespace: &str, name: &str) -> Result<(), StandaloneError> {
        let key = format!("{namespace}/{name}");
        let released = ids::release(&mut self.state.ledger, &key);
        let removed = self.state.keys.remove(&key).is_some();
        let _ = std::fs::remove_file(self.key_file(namespace, name));
        if released || removed {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), StandaloneError> {
        let text =
            serde_json::to_vec_pretty(&self.state).map_err(|e| StandaloneError::Registry {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        write_private(&self.path, &text)
    }
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it), readable only by us.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StandaloneError> {
    let fail = |e: std::io::Error| StandaloneError::Write {
        path: path.to_path_buf(),
        source: e,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp).map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_keys_survive_a_reopen_and_retired_numbers_are_not_reused() {
        let root = crate::test_dir::TestDir::new("registry");
        let dir = root.join("data");
        let mut r = Registry::open(&dir).expect("opens");
        let a = r.id_for("default/ocr", "ocr_workflow").expect("id");
        let key = r.key_for("default", "ocr").expect("key");
        assert_eq!(a, "ocr_workflow_mcp_001");
        assert_eq!(
            std::fs::read_to_string(r.key_file("default", "ocr")).expect("key file"),
            key
        );
        let mut again = Registry::open(&dir).expect("reopens");
        assert_eq!(again.id_for("default/ocr", "ocr_workflow").expect("id"), a);
        assert_eq!(again.key_for("default", "ocr").expect("key"), key);
        again.retire("default", "ocr").expect("retire");
        assert!(!again.key_file("default", "ocr").exists());
        assert_eq!(
            again.id_for("default/ocr", "ocr_workflow").expect("id"),
            "ocr_workflow_mcp_002"
        );
    }
}
