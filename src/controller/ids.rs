//! MCP IDs: `<name>_<type>_mcp_<NNN>`, in the seed's style (`ocr_workflow_mcp_001`).
//!
//! The ledger is one ConfigMap. It keeps a counter per prefix that only ever grows, so an ID is never
//! issued twice, even after its registration is deleted (logs of a deleted MCP must never mix with a
//! new one), and the ID of every live registration keyed by the registration's UID, so IDs survive
//! controller restarts. Writes carry the resourceVersion they read, so two controller replicas racing
//! for the same counter cannot both win; inside one process a mutex keeps the replicas of this
//! process from conflicting with themselves.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::Mutex;

use super::error::{Error, Result};

const MAX_ATTEMPTS: u32 = 20;

/// The prefix an ID is counted under: the registration's name and type, lower-case, `_`-separated.
/// A name that already ends in its type (`ocr-workflow` of type `workflow`) is not repeated.
pub fn id_prefix(name: &str, mcp_type: &str) -> String {
    let mut clean = String::with_capacity(name.len());
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            clean.push(c);
        } else if !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let mut clean = clean.trim_matches('_').to_string();
    for suffix in ["_mcp", "mcp"] {
        if clean.ends_with(suffix) {
            clean.truncate(clean.len() - suffix.len());
        }
    }
    let type_suffix = format!("_{mcp_type}");
    if clean.ends_with(&type_suffix) {
        clean.truncate(clean.len() - type_suffix.len());
    }
    if clean == mcp_type {
        clean.clear();
    }
    let mut clean: String = clean.trim_matches('_').chars().take(40).collect();
    clean = clean.trim_end_matches('_').to_string();
    if clean.is_empty() {
        mcp_type.to_string()
    } else {
        format!("{clean}_{mcp_type}")
    }
}

/// The `n`th ID of `prefix`. The number is the text after the last `_mcp_` and only digits, so
/// distinct (prefix, n) pairs can never yield the same ID.
pub fn format_id(prefix: &str, n: u64) -> String {
    format!("{prefix}_mcp_{n:03}")
}

fn counter_key(prefix: &str) -> String {
    format!("next.{prefix}")
}

fn uid_key(uid: &str) -> String {
    format!("uid.{uid}")
}

/// Pure ledger step: the ID for `uid`, and whether the ledger changed. `known` is an ID the
/// registration already shows in its status: it is adopted (and the counter moved past it) when
/// the ledger lost track of it, so a recreated ledger never hands that number out again.
pub fn allocate(
    data: &mut BTreeMap<String, String>,
    uid: &str,
    prefix: &str,
    known: Option<&str>,
    ledger: &str,
) -> Result<(String, bool)> {
    if let Some(id) = data.get(&uid_key(uid)) {
        return Ok((id.clone(), false));
    }
    let key = counter_key(prefix);
    let next = match data.get(&key) {
        Some(value) => value.parse::<u64>().map_err(|_| Error::IdLedgerCorrupt {
            ledger: ledger.to_string(),
            key: key.clone(),
            value: value.clone(),
        })?,
        None => 1,
    };
    // An ID in status is adopted only when no other registration holds it: status can be written
    // by others than the controller, and two registrations must never share an MCP ID (and so a key).
    let held_by_another = |id: &str| {
        data.iter()
            .any(|(k, v)| k.starts_with("uid.") && k != &uid_key(uid) && v == id)
    };
    let adoptable = known.filter(|id| !held_by_another(id));
    let (id, next) = match adoptable.and_then(|id| parse_number(id, prefix).map(|n| (id, n))) {
        Some((id, n)) => (id.to_string(), next.max(n + 1)),
        None => (format_id(prefix, next), next + 1),
    };
    data.insert(key, next.to_string());
    data.insert(uid_key(uid), id.clone());
    Ok((id, true))
}

/// Pure ledger step: forgets `uid`'s ID (its number is never handed out again). Whether it was there.
pub fn release(data: &mut BTreeMap<String, String>, uid: &str) -> bool {
    data.remove(&uid_key(uid)).is_some()
}

fn parse_number(id: &str, prefix: &str) -> Option<u64> {
    id.strip_prefix(prefix)?.strip_prefix("_mcp_")?.parse().ok()
}

/// Allocates and retires IDs in the ledger ConfigMap.
pub struct IdLedger {
    api: Api<ConfigMap>,
    name: String,
    lock: Mutex<()>,
    /// uid → ID pairs already confirmed by the ledger. A live registration's ID never changes,
    /// so these stay true and spare a ledger read on every reconcile.
    confirmed: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl IdLedger {
    pub fn new(api: Api<ConfigMap>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
            lock: Mutex::new(()),
            confirmed: Default::default(),
        }
    }

    /// The ID of the registration with `uid`, allocating one on first sight.
    pub async fn id_for(&self, uid: &str, prefix: &str, known: Option<&str>) -> Result<String> {
        if let Some(id) = self.confirmed_id(uid) {
            return Ok(id);
        }
        let id = self
            .update(|data| allocate(data, uid, prefix, known, &self.name))
            .await?;
        self.confirm(uid, &id);
        Ok(id)
    }

    /// Forgets the registration's ID; its counter stays, so the number is never issued again.
    pub async fn retire(&self, uid: &str) -> Result<()> {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uid);
        self.update(|data| Ok(((), release(data, uid)))).await
    }

    /// Read-modify-write of the ledger's data, retried on conflicting writes. `change` returns its
    /// result and whether it changed the data (no write otherwise).
    async fn update<T>(
        &self,
        change: impl Fn(&mut BTreeMap<String, String>) -> Result<(T, bool)>,
    ) -> Result<T> {
        let _serialized = self.lock.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let mut ledger = self.load().await?;
            let (result, changed) = change(ledger.data.get_or_insert_with(BTreeMap::new))?;
            if !changed {
                return Ok(result);
            }
            match self.store(&ledger).await {
                Ok(()) => return Ok(result),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::IdLedgerContention {
            ledger: self.name.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn confirmed_id(&self, uid: &str) -> Option<String> {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    fn confirm(&self, uid: &str, id: &str) {
        self.confirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(uid.to_string(), id.to_string());
    }

    async fn load(&self) -> Result<ConfigMap> {
        match self.api.get_opt(&self.name).await? {
            Some(cm) => Ok(cm),
            None => Ok(ConfigMap {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".to_string(),
                        "mcp-coordinator".to_string(),
                    )])),
                    annotations: Some(BTreeMap::from([(
                        crate::crd::PURPOSE_ANNOTATION.to_string(),
                        "MCP ID ledger: do not edit or delete, IDs could be issued twice"
                            .to_string(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            }),
        }
    }

    async fn store(&self, ledger: &ConfigMap) -> Result<(), kube::Error> {
        let params = PostParams::default();
        if ledger.metadata.resource_version.is_some() {
            self.api
                .replace(&self.name, &params, ledger)
                .await
                .map(drop)
        } else {
            // A concurrent creator makes this 409 AlreadyExists, which retries like a stale write.
            self.api.create(&params, ledger).await.map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_the_seed_style() {
        assert_eq!(id_prefix("ocr", "workflow"), "ocr_workflow");
        assert_eq!(id_prefix("ocr-workflow", "workflow"), "ocr_workflow");
        assert_eq!(id_prefix("OCR.Workflow-MCP", "workflow"), "ocr_workflow");
        assert_eq!(id_prefix("workflow", "workflow"), "workflow");
        assert_eq!(id_prefix("gpt-adapter", "adapter"), "gpt_adapter");
        assert_eq!(format_id("ocr_workflow", 1), "ocr_workflow_mcp_001");
        assert_eq!(format_id("ocr_workflow", 1234), "ocr_workflow_mcp_1234");
    }

    #[test]
    fn long_names_are_truncated_without_trailing_separator() {
        let prefix = id_prefix(&"a-".repeat(40), "tool");
        assert!(prefix.len() <= 46, "{prefix}");
        assert!(!prefix.contains("__"), "{prefix}");
        assert!(prefix.ends_with("_tool"));
    }

    #[test]
    fn counters_never_go_back_after_retirement() {
        let mut data = BTreeMap::new();
        let (a, _) = allocate(&mut data, "uid-a", "ocr_workflow", None, "l").unwrap();
        assert_eq!(a, "ocr_workflow_mcp_001");
        data.remove(&uid_key("uid-a"));
        let (b, _) = allocate(&mut data, "uid-b", "ocr_workflow", None, "l").unwrap();
        assert_eq!(b, "ocr_workflow_mcp_002");
    }

    #[test]
    fn the_same_uid_gets_the_same_id_without_a_write() {
        let mut data = BTreeMap::new();
        let (a, changed) = allocate(&mut data, "u", "p_tool", None, "l").unwrap();
        assert!(changed);
        let (again, changed) = allocate(&mut data, "u", "p_tool", None, "l").unwrap();
        assert_eq!((a, changed), (again, false));
    }

    #[test]
    fn a_lost_ledger_adopts_known_ids_and_skips_past_them_unless_another_holds_them() {
        let mut data = BTreeMap::new();
        let (a, _) = allocate(&mut data, "u1", "x_tool", Some("x_tool_mcp_007"), "l").unwrap();
        assert_eq!(a, "x_tool_mcp_007");
        let (b, _) = allocate(&mut data, "u2", "x_tool", None, "l").unwrap();
        assert_eq!(b, "x_tool_mcp_008");
        // A status copied from another registration does not make two share an ID.
        let (c, _) = allocate(&mut data, "u3", "x_tool", Some(&a), "l").unwrap();
        assert_eq!(c, "x_tool_mcp_009");
    }

    #[test]
    fn a_corrupt_counter_is_reported_not_reset() {
        let mut data = BTreeMap::from([(counter_key("p_tool"), "seven".to_string())]);
        let err = allocate(&mut data, "u", "p_tool", None, "ledger-cm").unwrap_err();
        assert!(err.to_string().contains("next.p_tool"), "{err}");
    }
}
