//! Sealing sensitive fields with AES-256-GCM under a named key, so that destroying a key erases
//! every value sealed with it (crypto-shredding). A sealed value is the text
//! `sealed:v2:<key id>:<base64(nonce ‖ ciphertext)>`, stored where the plain value would be, and
//! bound to its owner (MCP, interaction, field) as associated data: copied anywhere else, it does
//! not open. Values of the earlier `sealed:v1:` form (unbound) still open.

use std::collections::BTreeMap;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;

/// What every sealed value starts with; clients may not send values that do.
pub const SEALED: &str = "sealed:";
const PREFIX: &str = "sealed:v2:";
const UNBOUND_PREFIX: &str = "sealed:v1:";

/// Whose value is sealed: it opens only for the same MCP, interaction and field.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub mcp_id: &'a str,
    pub interaction_id: &'a str,
    pub field: &'a str,
}

impl Owner<'_> {
    fn associated_data(&self) -> Vec<u8> {
        [self.mcp_id, self.interaction_id, self.field]
            .join("\0")
            .into_bytes()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("cannot read the encryption keys {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot create the encryption keys {path}: {reason}")]
    Create { path: String, reason: String },
    #[error("encryption key {id:?} in {path} must be 64 hex digits (256 bits)")]
    BadKey { path: String, id: String },
    #[error("the active encryption key {active:?} is not among the keys in {path}")]
    NoActive { path: String, active: String },
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

/// What a reader sees of a sealed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsealed {
    Plain(String),
    /// The key that sealed it was destroyed.
    Erased,
}

/// `keys: {id: hex}` plus the `active` id new values are sealed with.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct KeysFile {
    active: String,
    keys: BTreeMap<String, String>,
}

pub struct Sealer {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sealer {{ active: {:?}, keys: {:?} }}",
            self.active,
            self.keys.keys().collect::<Vec<_>>()
        )
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Sealer {
    /// Keys from raw 32-byte values (tests, and callers with their own key management).
    pub fn from_keys(active: &str, keys: BTreeMap<String, [u8; 32]>) -> Self {
        Self {
            active: active.to_string(),
            keys: keys
                .into_iter()
                .map(|(id, k)| (id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&k))))
                .collect(),
        }
    }

    /// Reads `path` (YAML `active: id`, `keys: {id: 64 hex digits}`), or creates it with one
    /// random key when `create` and it is missing.
    pub fn from_file(path: &Path, create: bool) -> Result<Self, SealError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| SealError::Randomness(e.to_string()))?;
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                let file = KeysFile {
                    active: "k1".into(),
                    keys: BTreeMap::from([("k1".to_string(), hex)]),
                };
                let yaml = serde_saphyr::to_string(&file).map_err(|e| SealError::Create {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                super::write_private(path, yaml.as_bytes()).map_err(|e| SealError::Create {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
                yaml
            }
            Err(e) => {
                return Err(SealError::Read {
                    path: shown,
                    reason: e.to_string(),
                })
            }
        };
        let file: KeysFile = serde_saphyr::from_str(&text).map_err(|e| SealError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut keys = BTreeMap::new();
        for (id, hex) in file.keys {
            let bytes = hex_decode(hex.trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| SealError::BadKey {
                    path: shown.clone(),
                    id: id.clone(),
                })?;
            keys.insert(id, Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)));
        }
        if !keys.contains_key(&file.active) {
            return Err(SealError::NoActive {
                path: shown,
                active: file.active,
            });
        }
        Ok(Self {
            active: file.active,
            keys,
        })
    }

    /// Seals `plain` with the active key, bound to `owner`.
    pub fn seal(&self, plain: &str, owner: Owner<'_>) -> Result<String, SealError> {
        let Some(cipher) = self.keys.get(&self.active) else {
            return Err(SealError::NoActive {
                path: "<memory>".into(),
                active: self.active.clone(),
            });
        };
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| SealError::Randomness(e.to_string()))?;
        let aad = owner.associated_data();
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: &aad,
        };
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|e| SealError::Randomness(format!("AES-GCM failed: {e}")))?;
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.active,
            base64::engine::general_purpose::STANDARD.encode(blob)
        ))
    }

    /// The plain text of a sealed value of `owner`; `None` when `value` is not sealed at all, and
    /// `Erased` when its key is gone or it belongs to someone else.
    pub fn unseal(&self, value: &str, owner: Owner<'_>) -> Option<Unsealed> {
        let (rest, aad) = match value.strip_prefix(PREFIX) {
            Some(rest) => (rest, owner.associated_data()),
            None => (value.strip_prefix(UNBOUND_PREFIX)?, Vec::new()),
        };
        let (id, data) = rest.split_once(':')?;
        let Some(cipher) = self.keys.get(id) else {
            return Some(Unsealed::Erased);
        };
        let blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        if blob.len() < 12 {
            return Some(Unsealed::Erased);
        }
        let (nonce, ciphertext) = blob.split_at(12);
        let payload = Payload {
            msg: ciphertext,
            aad: &aad,
        };
        match cipher.decrypt(Nonce::from_slice(nonce), payload) {
            Ok(plain) => Some(
                String::from_utf8(plain)
                    .map(Unsealed::Plain)
                    .unwrap_or(Unsealed::Erased),
            ),
            Err(_) => Some(Unsealed::Erased),
        }
    }

    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner<'static> = Owner {
        mcp_id: "ocr_mcp_001",
        interaction_id: "int_1",
        field: "parameters",
    };

    fn sealer() -> Sealer {
        Sealer::from_keys(
            "k2",
            BTreeMap::from([("k1".to_string(), [1; 32]), ("k2".to_string(), [2; 32])]),
        )
    }

    #[test]
    fn sealed_values_open_only_with_their_key() {
        let sealer = sealer();
        let sealed = sealer
            .seal("{\"document\":\"passport.png\"}", OWNER)
            .unwrap();
        assert!(sealed.starts_with("sealed:v2:k2:") && !sealed.contains("passport"));
        assert_eq!(
            sealer.unseal(&sealed, OWNER),
            Some(Unsealed::Plain("{\"document\":\"passport.png\"}".into()))
        );
        assert_eq!(sealer.unseal("plain text", OWNER), None);
        // Destroying k2 erases what it sealed.
        let shredded = Sealer::from_keys("k1", BTreeMap::from([("k1".to_string(), [1; 32])]));
        assert_eq!(shredded.unseal(&sealed, OWNER), Some(Unsealed::Erased));
        let (head, data) = sealed.rsplit_once(':').unwrap();
        let mut blob = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        let tampered = format!(
            "{head}:{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        assert_eq!(
            sealer.unseal(&tampered, OWNER),
            Some(Unsealed::Erased),
            "GCM refuses tampered data"
        );
    }

    #[test]
    fn a_sealed_value_copied_to_another_owner_does_not_open() {
        let sealer = sealer();
        let sealed = sealer.seal("card 4111 declined", OWNER).unwrap();
        let others = [
            ("evil_mcp_001", "int_1", "parameters"),
            ("ocr_mcp_001", "int_2", "parameters"),
            ("ocr_mcp_001", "int_1", "error_message"),
        ];
        for (mcp_id, interaction_id, field) in others {
            let other = Owner {
                mcp_id,
                interaction_id,
                field,
            };
            let opened = sealer.unseal(&sealed, other);
            assert_eq!(opened, Some(Unsealed::Erased), "{other:?}");
        }
    }

    #[test]
    fn values_sealed_before_owners_were_bound_still_open() {
        let sealer = sealer();
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&[2; 32]));
        let nonce = [7u8; 12];
        let mut blob = nonce.to_vec();
        blob.extend(
            cipher
                .encrypt(Nonce::from_slice(&nonce), b"old secret".as_slice())
                .unwrap(),
        );
        let v1 = format!(
            "sealed:v1:k2:{}",
            base64::engine::general_purpose::STANDARD.encode(blob)
        );
        assert!(Sealer::is_sealed(&v1));
        assert_eq!(
            sealer.unseal(&v1, OWNER),
            Some(Unsealed::Plain("old secret".into()))
        );
    }
}
