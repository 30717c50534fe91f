//! Who may report and who may read. Keys are kept only as SHA-256 digests and compared in
//! constant time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML of the expected shape ({expected}): {reason}")]
    Parse {
        path: String,
        expected: &'static str,
        reason: String,
    },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// MCP API keys: digest → MCP ID.
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<Vec<([u8; 32], String)>>,
}

impl KeyRing {
    /// Loads `mcp_id: key` pairs from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let map: BTreeMap<String, String> = read_yaml(path, "a map of mcp_id: key")?;
        let ring = Self::default();
        for (mcp_id, key) in map {
            if key.len() < 16 {
                return Err(AuthFileError::Invalid {
                    path: path.display().to_string(),
                    problem: format!(
                        "the key of {mcp_id} is shorter than 16 characters; use a long random key"
                    ),
                });
            }
            ring.set(&mcp_id, &key);
        }
        Ok(ring)
    }

    /// Adds or replaces the key of `mcp_id`.
    pub fn set(&self, mcp_id: &str, key: &str) {
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.retain(|(_, id)| id != mcp_id);
        keys.push((digest(key), mcp_id.to_string()));
    }

    pub fn remove(&self, mcp_id: &str) {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(_, id)| id != mcp_id);
    }

    /// The MCP a key belongs to. Every stored digest is compared, in constant time each.
    pub fn mcp_for(&self, key: &str) -> Option<String> {
        let wanted = digest(key);
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = None;
        for (d, id) in keys.iter() {
            if bool::from(d.ct_eq(&wanted)) {
                found = Some(id.clone());
            }
        }
        found
    }

    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tokens that may read interaction history and metrics, by reader name.
#[derive(Default)]
pub struct ReaderTokens {
    ring: KeyRing,
}

impl ReaderTokens {
    /// Loads `name: token` pairs from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let map: BTreeMap<String, String> = read_yaml(path, "a map of reader name: token")?;
        let tokens = Self::default();
        for (name, token) in map {
            tokens.ring.set(&name, &token);
        }
        Ok(tokens)
    }

    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        let readers = Self::default();
        for (i, token) in tokens.into_iter().enumerate() {
            readers.ring.set(&format!("reader-{i}"), token);
        }
        readers
    }

    pub fn allows(&self, token: &str) -> bool {
        self.ring.mcp_for(token).is_some()
    }

    /// The tokens by reader name, for sources that add and remove them (Secrets).
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }
}

fn read_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    expected: &'static str,
) -> Result<T, AuthFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| AuthFileError::Parse {
        path: path.display().to_string(),
        expected,
        reason: e.to_string(),
    })
}

/// The credential of a request: the bearer token, or the seed's `api_key` field.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    header?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_mcp_only() {
        let ring = KeyRing::default();
        ring.set("a", "key-of-a-0123456789");
        ring.set("b", "key-of-b-0123456789");
        assert_eq!(ring.mcp_for("key-of-a-0123456789").as_deref(), Some("a"));
        assert_eq!(ring.mcp_for("nope"), None);
        ring.set("a", "rotated-key-0123456789");
        assert_eq!(ring.mcp_for("key-of-a-0123456789"), None);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
    }
}
