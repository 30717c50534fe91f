//! Privacy protection applied in the ingest server before anything reaches disk.
//!
//! Users are pseudonymized: `request_data.user_id` becomes a keyed HMAC-SHA256 pseudonym, so the
//! same user maps to the same pseudonym (per-user analysis still works) while the raw id is never
//! written to the spool, the store or a log.

pub mod seal;
pub mod sensitive;

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// MCPs whose `spec.privacy.level` is `sensitive` (carried on their key Secrets): every
/// interaction they report is treated as sensitive.
#[derive(Debug, Default)]
pub struct SensitiveMcps(std::sync::RwLock<std::collections::HashSet<String>>);

impl SensitiveMcps {
    pub fn set(&self, mcp_id: &str, sensitive: bool) {
        let mut set = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if sensitive {
            set.insert(mcp_id.to_string());
        } else {
            set.remove(mcp_id);
        }
    }

    pub fn contains(&self, mcp_id: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(mcp_id)
    }
}

/// Smallest key accepted: 256 bits.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyKeyError {
    #[error("cannot read the privacy key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create the privacy key {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("the privacy key {path} holds {len} bytes; it needs at least {MIN_KEY_BYTES} (e.g. `head -c 32 /dev/urandom > {path}`)")]
    TooShort { path: String, len: usize },
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

/// Turns user ids into stable pseudonyms.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// The HMAC with the key already absorbed: each pseudonym starts from a copy of it instead of
    /// hashing the key again (this runs for every report that names a user).
    keyed: Hmac<Sha256>,
}

/// The HMAC keyed with `key` (HMAC takes keys of any length).
fn keyed(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| {
        // Unreachable: HMAC hashes keys longer than a block and pads shorter ones.
        <Hmac<Sha256> as KeyInit>::new(&Default::default())
    })
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer { key: <redacted> }")
    }
}

impl Pseudonymizer {
    pub fn new(key: Vec<u8>) -> Result<Self, PrivacyKeyError> {
        if key.len() < MIN_KEY_BYTES {
            return Err(PrivacyKeyError::TooShort {
                path: "<memory>".into(),
                len: key.len(),
            });
        }
        Ok(Self { keyed: keyed(&key) })
    }

    /// Reads the key from `path`, or, when `create` and the file is missing, makes a random one
    /// there (mode 0600). A created key is per installation: replicas that must agree on
    /// pseudonyms need the same key file (or Secret).
    pub fn from_file(path: &Path, create: bool) -> Result<Self, PrivacyKeyError> {
        let shown = path.display().to_string();
        match std::fs::read(path) {
            Ok(key) if key.len() >= MIN_KEY_BYTES => Ok(Self { keyed: keyed(&key) }),
            Ok(key) => Err(PrivacyKeyError::TooShort {
                path: shown,
                len: key.len(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = vec![0u8; MIN_KEY_BYTES];
                getrandom::fill(&mut key)
                    .map_err(|e| PrivacyKeyError::Randomness(e.to_string()))?;
                write_private(path, &key).map_err(|source| PrivacyKeyError::Create {
                    path: shown,
                    source,
                })?;
                tracing::info!(path = %path.display(), "created a privacy key for user pseudonyms; share it between ingest replicas");
                Ok(Self { keyed: keyed(&key) })
            }
            Err(source) => Err(PrivacyKeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    /// `u_` and 32 hex digits (128 bits of HMAC-SHA256): same user, same pseudonym.
    pub fn pseudonym(&self, user_id: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(user_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(34);
        out.push_str("u_");
        for b in &digest[..16] {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        out
    }
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_hide_the_id() {
        let a = Pseudonymizer::new(vec![1; 32]).unwrap();
        let b = Pseudonymizer::new(vec![2; 32]).unwrap();
        assert_eq!(a.pseudonym("user_12345"), a.pseudonym("user_12345"));
        assert_ne!(a.pseudonym("user_12345"), a.pseudonym("user_12346"));
        assert_ne!(
            a.pseudonym("user_12345"),
            b.pseudonym("user_12345"),
            "another key, another pseudonym"
        );
        let p = a.pseudonym("user_12345");
        assert!(
            p.starts_with("u_") && p.len() == 34 && !p.contains("12345"),
            "{p}"
        );
        assert!(Pseudonymizer::new(vec![0; 16]).is_err());
    }

    /// Pseudonyms already stored must keep matching: HMAC-SHA256 as any other implementation
    /// computes it (these from Python's `hmac`), keys shorter and longer than a block.
    #[test]
    fn pseudonyms_are_the_standard_hmac() {
        for (key, expected) in [
            (vec![b'k'; 32], "u_e1281d9e8bbfa6da7b93d71fadf112db"),
            (vec![b'k'; 100], "u_e19012e289ba8213e3e1248cff76973c"),
        ] {
            let pseudonymizer = Pseudonymizer::new(key).unwrap();
            assert_eq!(pseudonymizer.pseudonym("user_12345"), expected);
        }
    }

    #[test]
    fn a_missing_key_file_is_created_once_and_reused() {
        let root = crate::test_dir::TestDir::new("privacy-key");
        let dir = root.join("keys");
        let path = dir.join("privacy.key");
        let first = Pseudonymizer::from_file(&path, true).unwrap();
        let again = Pseudonymizer::from_file(&path, false).unwrap();
        assert_eq!(first.pseudonym("x"), again.pseudonym("x"));
        std::fs::write(dir.join("short.key"), b"short").unwrap();
        let err = Pseudonymizer::from_file(&dir.join("short.key"), false).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }
}
