//! Who may report and who may read. Keys are kept only as SHA-256 digests and compared in
//! constant time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

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

/// One stored key: its digest, its owner, and when it stops working (only while being replaced).
struct Entry {
    digest: [u8; 32],
    id: String,
    expires: Option<Instant>,
}

/// MCP API keys: digest → MCP ID. A replaced key keeps working for the rotation grace period, so
/// MCPs can pick up the new key without failed reports.
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<Vec<Entry>>,
    grace: Duration,
}

impl KeyRing {
    /// A key ring in which replaced keys stay valid for `grace`.
    pub fn with_grace(grace: Duration) -> Self {
        Self {
            keys: RwLock::default(),
            grace,
        }
    }

    /// Loads `mcp_id: key` pairs from a YAML file.
    pub fn from_file(path: &Path, grace: Duration) -> Result<Self, AuthFileError> {
        let ring = Self::with_grace(grace);
        for (mcp_id, key) in read_secrets(path, "a map of mcp_id: key", "key")? {
            ring.set(&mcp_id, &key);
        }
        Ok(ring)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Entry>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or replaces the key of `mcp_id`; the previous key expires after the grace period.
    pub fn set(&self, mcp_id: &str, key: &str) {
        let now = Instant::now();
        let new = digest(key);
        let mut keys = self.write();
        keys.retain(|e| e.expires.is_none_or(|t| t > now));
        if keys
            .iter()
            .any(|e| e.id == mcp_id && e.digest == new && e.expires.is_none())
        {
            return;
        }
        let grace = self.grace;
        keys.retain(|e| !(e.id == mcp_id && (grace.is_zero() || e.digest == new)));
        for e in keys
            .iter_mut()
            .filter(|e| e.id == mcp_id && e.expires.is_none())
        {
            e.expires = Some(now + grace);
        }
        keys.push(Entry {
            digest: new,
            id: mcp_id.to_string(),
            expires: None,
        });
    }

    /// Revokes every key of `mcp_id` at once (its registration is gone).
    pub fn remove(&self, mcp_id: &str) {
        self.write().retain(|e| e.id != mcp_id);
    }

    /// The MCP a key belongs to. Every stored digest is compared, in constant time each.
    pub fn mcp_for(&self, key: &str) -> Option<String> {
        let wanted = digest(key);
        let now = Instant::now();
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = None;
        for e in keys.iter() {
            let current = e.expires.is_none_or(|t| t > now);
            if bool::from(e.digest.ct_eq(&wanted)) && current {
                found = Some(e.id.clone());
            }
        }
        found
    }

    /// Keys in force (including ones in their grace period).
    /// Whether any key (not past its grace period) belongs to `mcp_id`.
    pub fn knows(&self, mcp_id: &str) -> bool {
        let now = Instant::now();
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .any(|e| e.id == mcp_id && e.expires.is_none_or(|t| t > now))
    }

    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|e| e.expires.is_none_or(|t| t > now))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Keys and tokens shorter than this are refused: they could be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

impl Role {
    /// Who, for the audit log.
    pub fn who(&self) -> &str {
        match self {
            Role::Admin(n) | Role::Reader(n) | Role::Mcp(n) => n,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Role::Admin(_) => "admin",
            Role::Reader(_) => "reader",
            Role::Mcp(_) => "mcp",
        }
    }
}

/// What a query token may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Everything, including the audit log (the token's name).
    Admin(String),
    /// History and metrics of every MCP (the token's name).
    Reader(String),
    /// An MCP's own key: its own history and metrics only.
    Mcp(String),
}

/// Tokens that may read interaction data, by name: readers and admins, kept apart so that no
/// name can turn one into the other.
#[derive(Default)]
pub struct ReaderTokens {
    ring: KeyRing,
    admins: KeyRing,
}

impl ReaderTokens {
    /// Loads `name: token` pairs from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let tokens = Self::default();
        for (name, token) in read_secrets(path, "a map of reader name: token", "token")? {
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
        self.role(token).is_some()
    }

    /// Adds the admin tokens of a YAML file (`name: token`).
    pub fn add_admins_from_file(&self, path: &Path) -> Result<(), AuthFileError> {
        for (name, token) in read_secrets(path, "a map of admin name: token", "token")? {
            self.add_admin(&name, &token);
        }
        Ok(())
    }

    pub fn add_admin(&self, name: &str, token: &str) {
        self.admins.set(name, token);
    }

    /// The role of `token`, if it is a reader or admin token.
    pub fn role(&self, token: &str) -> Option<Role> {
        if let Some(admin) = self.admins.mcp_for(token) {
            return Some(Role::Admin(admin));
        }
        self.ring.mcp_for(token).map(Role::Reader)
    }

    /// The reader tokens by name, for sources that add and remove them (Secrets).
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }
}

pub(super) fn read_yaml<T: serde::de::DeserializeOwned>(
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

/// `name: secret` pairs of a YAML file, each secret at least [`MIN_SECRET_BYTES`] long.
fn read_secrets(
    path: &Path,
    expected: &'static str,
    what: &str,
) -> Result<BTreeMap<String, String>, AuthFileError> {
    let map: BTreeMap<String, String> = read_yaml(path, expected)?;
    if let Some((name, secret)) = map.iter().find(|(_, s)| s.len() < MIN_SECRET_BYTES) {
        return Err(AuthFileError::Invalid {
            path: path.display().to_string(),
            problem: format!(
                "the {what} of {name} is {} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                secret.len()
            ),
        });
    }
    Ok(map)
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
        assert_eq!(
            ring.mcp_for("key-of-a-0123456789"),
            None,
            "no grace period: replaced at once"
        );
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn a_rotated_key_works_until_the_grace_period_ends() {
        let ring = KeyRing::with_grace(Duration::from_millis(200));
        ring.set("a", "old-key-0123456789");
        ring.set("a", "new-key-0123456789");
        assert_eq!(
            ring.mcp_for("old-key-0123456789").as_deref(),
            Some("a"),
            "old key within grace"
        );
        assert_eq!(ring.mcp_for("new-key-0123456789").as_deref(), Some("a"));
        ring.set("a", "new-key-0123456789");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            ring.mcp_for("old-key-0123456789"),
            None,
            "old key after grace"
        );
        assert_eq!(ring.mcp_for("new-key-0123456789").as_deref(), Some("a"));
        ring.remove("a");
        assert_eq!(ring.mcp_for("new-key-0123456789"), None);
    }

    /// `text` in a file of its own, in a directory removed when the returned guard is dropped.
    fn file(tag: &str, text: &str) -> (crate::test_dir::TestDir, std::path::PathBuf) {
        let dir = crate::test_dir::TestDir::new(&format!("auth-{tag}"));
        let path = dir.join("file.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_name_in_a_token_file_cannot_grant_a_role() {
        let (_dir, path) = file("names", "\"admin:mallory\": reader-token-0123456789\n");
        let tokens = ReaderTokens::from_file(&path).unwrap();
        assert_eq!(
            tokens.role("reader-token-0123456789"),
            Some(Role::Reader("admin:mallory".into()))
        );
        tokens.add_admin("ops", "admin-token-0123456789");
        assert_eq!(
            tokens.role("admin-token-0123456789"),
            Some(Role::Admin("ops".into()))
        );
    }

    #[test]
    fn short_tokens_are_refused_with_the_entry_named() {
        let (_dir, path) = file("short", "ops: hunter2\n");
        let refused = |e: AuthFileError| e.to_string();
        let err = ReaderTokens::from_file(&path).map(drop).map_err(refused);
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("the token of ops is 7 bytes")),
            "{err:?}"
        );
        let err = ReaderTokens::default().add_admins_from_file(&path);
        assert!(err.is_err());
        let err = KeyRing::from_file(&path, Duration::ZERO)
            .map(drop)
            .map_err(refused);
        assert!(
            err.as_ref().is_err_and(|e| e.contains("the key of ops")),
            "{err:?}"
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
    }
}
