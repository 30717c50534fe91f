//! MCP IDs: `<name>_<type>_mcp_<NNN>`, in the seed's style (`ocr_workflow_mcp_001`).
//!
//! The ledger keeps a counter per prefix that only ever grows, so an ID is never issued twice,
//! even after its registration is deleted (logs of a deleted MCP must never mix with a new one),
//! and the ID of every live registration keyed by the registration's UID, so IDs survive
//! controller restarts.
//!
//! It is split into [`SHARDS`] ConfigMaps (`<ledger>-<shard>`, created when first needed); a
//! prefix's counter and the UIDs holding its IDs always live in the shard its name hashes to, so
//! every decision about a prefix is made on one object. A write costs the size of one shard, not
//! of the fleet, and unrelated prefixes never wait for each other. Writes carry the
//! resourceVersion they read, so two controller replicas racing for the same counter cannot both
//! win; each process keeps the last copy of each shard it saw and reads it again only after
//! losing such a race. A ledger from before sharding (one ConfigMap named `<ledger>`) is read once
//! and its entries carried into each shard when that shard is first created.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex as SyncMutex, PoisonError};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;
use tokio::sync::{Mutex, OnceCell};

use super::error::{Error, Result};

const MAX_ATTEMPTS: u32 = 20;

/// Number of ledger shards. Fixed for good: a prefix's shard must never move.
pub const SHARDS: usize = 256;

/// A shard refuses entries past this size, well below Kubernetes' 1 MiB object limit, with an
/// error that says so instead of the API server's.
pub const MAX_SHARD_BYTES: usize = 900 * 1024;

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

/// The shard holding `prefix`'s counter and IDs. FNV-1a, so it is the same in every version and
/// on every platform.
pub fn shard_of(prefix: &str) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prefix.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % SHARDS as u64) as usize
}

/// The ConfigMap of one shard of the ledger `ledger`.
pub fn shard_name(ledger: &str, shard: usize) -> String {
    format!("{ledger}-{shard:02x}")
}

/// The prefix an ID was issued under (the text before its last `_mcp_<digits>`).
pub fn prefix_of_id(id: &str) -> Option<&str> {
    let (prefix, number) = id.rsplit_once("_mcp_")?;
    let valid =
        !prefix.is_empty() && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
    valid.then_some(prefix)
}

/// The entries of a ledger from before sharding that belong in `shard`.
pub fn legacy_entries(legacy: &BTreeMap<String, String>, shard: usize) -> BTreeMap<String, String> {
    legacy
        .iter()
        .filter(|(key, value)| {
            if let Some(prefix) = key.strip_prefix("next.") {
                shard_of(prefix) == shard
            } else if key.starts_with("uid.") {
                prefix_of_id(value).is_some_and(|p| shard_of(p) == shard)
            } else {
                false
            }
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn data_bytes(data: &BTreeMap<String, String>) -> usize {
    data.iter().map(|(k, v)| k.len() + v.len()).sum()
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

/// Allocates and retires IDs in the ledger's shards.
pub struct IdLedger {
    api: Api<ConfigMap>,
    name: String,
    /// The last copy of each shard this process read or wrote (`None`: read it first). Holding a
    /// shard's lock serializes this process's changes to it.
    shards: Vec<Mutex<Option<ConfigMap>>>,
    /// The entries of a ledger from before sharding, read once.
    legacy: OnceCell<BTreeMap<String, String>>,
    /// uid → ID pairs already confirmed by the ledger. A live registration's ID never changes,
    /// so these stay true and spare a ledger read on every reconcile.
    confirmed: SyncMutex<HashMap<String, String>>,
}

impl IdLedger {
    pub fn new(api: Api<ConfigMap>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
            shards: (0..SHARDS).map(|_| Mutex::new(None)).collect(),
            legacy: OnceCell::new(),
            confirmed: Default::default(),
        }
    }

    /// The ID of the registration with `uid`, allocating one on first sight.
    pub async fn id_for(&self, uid: &str, prefix: &str, known: Option<&str>) -> Result<String> {
        if let Some(id) = self.confirmed_id(uid) {
            return Ok(id);
        }
        // A registration whose name or type no longer gives the prefix of the ID it holds (its
        // type was edited) keeps that ID: it is recorded in the old prefix's shard.
        if let Some(old) = known.and_then(prefix_of_id).filter(|old| *old != prefix) {
            let held = self
                .update(shard_of(old), |data| {
                    Ok((data.get(&uid_key(uid)).cloned(), false))
                })
                .await?;
            if let Some(id) = held {
                self.confirm(uid, &id);
                return Ok(id);
            }
        }
        let shard = shard_of(prefix);
        let shard_cm = shard_name(&self.name, shard);
        let id = self
            .update(shard, |data| allocate(data, uid, prefix, known, &shard_cm))
            .await?;
        self.confirm(uid, &id);
        Ok(id)
    }

    /// Forgets the registration's ID (its counter stays, so the number is never issued again),
    /// looking in the shards of `prefixes` and of the ID this process confirmed.
    pub async fn retire<'p>(
        &self,
        uid: &str,
        prefixes: impl IntoIterator<Item = &'p str>,
    ) -> Result<()> {
        let confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(uid);
        let mut shards: Vec<usize> = prefixes.into_iter().map(shard_of).collect();
        shards.extend(confirmed.as_deref().and_then(prefix_of_id).map(shard_of));
        shards.sort_unstable();
        shards.dedup();
        for shard in shards {
            self.update(shard, |data| Ok(((), release(data, uid))))
                .await?;
        }
        Ok(())
    }

    /// Read-modify-write of one shard's data, retried on conflicting writes. `change` returns its
    /// result and whether it changed the data (no write otherwise).
    async fn update<T>(
        &self,
        shard: usize,
        change: impl Fn(&mut BTreeMap<String, String>) -> Result<(T, bool)>,
    ) -> Result<T> {
        let name = shard_name(&self.name, shard);
        let mut cached = self.shards[shard].lock().await;
        for _ in 0..MAX_ATTEMPTS {
            // A failed or lost write leaves nothing cached, so the next attempt reads afresh.
            let mut ledger = match cached.take() {
                Some(ledger) => ledger,
                None => self.load(&name, shard).await?,
            };
            let data = ledger.data.get_or_insert_with(BTreeMap::new);
            let (result, changed) = change(data)?;
            if !changed {
                *cached = Some(ledger);
                return Ok(result);
            }
            let bytes = data_bytes(data);
            if bytes > MAX_SHARD_BYTES {
                return Err(Error::IdLedgerFull {
                    ledger: name,
                    bytes,
                });
            }
            match self.store(&name, &ledger).await {
                Ok(stored) => {
                    *cached = Some(stored);
                    return Ok(result);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::IdLedgerContention {
            ledger: name,
            attempts: MAX_ATTEMPTS,
        })
    }

    fn confirmed_id(&self, uid: &str) -> Option<String> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    fn confirm(&self, uid: &str, id: &str) {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(uid.to_string(), id.to_string());
    }

    /// A shard as stored, or a new one seeded from the ledger of before sharding.
    async fn load(&self, name: &str, shard: usize) -> Result<ConfigMap> {
        if let Some(existing) = self.api.get_opt(name).await? {
            return Ok(existing);
        }
        let legacy = self
            .legacy
            .get_or_try_init(|| async {
                let old = self.api.get_opt(&self.name).await?;
                Ok::<_, Error>(old.and_then(|cm| cm.data).unwrap_or_default())
            })
            .await?;
        Ok(ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "mcp-coordinator".to_string(),
                )])),
                annotations: Some(BTreeMap::from([(
                    crate::crd::PURPOSE_ANNOTATION.to_string(),
                    "MCP ID ledger shard: do not edit or delete, IDs could be issued twice"
                        .to_string(),
                )])),
                ..Default::default()
            },
            data: Some(legacy_entries(legacy, shard)),
            ..Default::default()
        })
    }

    async fn store(&self, name: &str, ledger: &ConfigMap) -> Result<ConfigMap, kube::Error> {
        let params = PostParams::default();
        if ledger.metadata.resource_version.is_some() {
            self.api.replace(name, &params, ledger).await
        } else {
            // A concurrent creator makes this 409 AlreadyExists, which retries like a stale write.
            self.api.create(&params, ledger).await
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
    fn shards_are_stable_and_spread() {
        // Fixed forever: a prefix moving to another shard would restart its counter.
        assert_eq!(shard_of("ocr_workflow"), shard_of("ocr_workflow"));
        assert_eq!(
            shard_name("mcp-coordinator-ids", 5),
            "mcp-coordinator-ids-05"
        );
        let used: std::collections::HashSet<usize> = (0..10_000)
            .map(|i| shard_of(&format!("mcp_{i}_tool")))
            .collect();
        assert_eq!(used.len(), SHARDS, "10,000 prefixes reach every shard");
        let mut per_shard = vec![0usize; SHARDS];
        for i in 0..10_000 {
            per_shard[shard_of(&format!("mcp_{i}_tool"))] += 1;
        }
        let fullest = per_shard.iter().max().copied().unwrap_or(0);
        assert!(
            fullest < 80,
            "no shard takes far more than its share: {fullest}"
        );
    }

    #[test]
    fn an_id_names_its_prefix() {
        assert_eq!(prefix_of_id("ocr_workflow_mcp_001"), Some("ocr_workflow"));
        assert_eq!(prefix_of_id("a_mcp_b_tool_mcp_12"), Some("a_mcp_b_tool"));
        assert_eq!(prefix_of_id("ocr_workflow_mcp_"), None);
        assert_eq!(prefix_of_id("ocr_workflow_mcp_x1"), None);
        assert_eq!(prefix_of_id("_mcp_1"), None);
    }

    #[test]
    fn a_ledger_from_before_sharding_splits_without_losing_an_entry() {
        let mut legacy = BTreeMap::new();
        for i in 0..500 {
            let prefix = format!("p{i}_tool");
            allocate(&mut legacy, &format!("u{i}"), &prefix, None, "old").unwrap();
            allocate(&mut legacy, &format!("v{i}"), &prefix, None, "old").unwrap();
        }
        legacy.insert("uid.broken".into(), "not-an-id".into());
        let mut carried = BTreeMap::new();
        for shard in 0..SHARDS {
            let part = legacy_entries(&legacy, shard);
            for key in part.keys() {
                if let Some(prefix) = key.strip_prefix("next.") {
                    assert_eq!(shard_of(prefix), shard);
                }
            }
            carried.extend(part);
        }
        legacy.remove("uid.broken");
        assert_eq!(carried, legacy);
        // Counting goes on where the old ledger stopped.
        let mut shard = legacy_entries(&legacy, shard_of("p7_tool"));
        let (id, _) = allocate(&mut shard, "new", "p7_tool", None, "s").unwrap();
        assert_eq!(id, "p7_tool_mcp_003");
    }

    #[test]
    fn a_corrupt_counter_is_reported_not_reset() {
        let mut data = BTreeMap::from([(counter_key("p_tool"), "seven".to_string())]);
        let err = allocate(&mut data, "u", "p_tool", None, "ledger-cm").unwrap_err();
        assert!(err.to_string().contains("next.p_tool"), "{err}");
    }
}
