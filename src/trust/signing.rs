//! Request signing for critical requests. The client sends
//! `X-MCP-Timestamp: <unix seconds>` and
//! `X-MCP-Signature: hex(HMAC-SHA256(SHA-256(api_key), METHOD "\n" PATH "\n" TIMESTAMP "\n" hex(SHA-256(body))))`.
//! Keying the MAC with the key's digest lets the server verify without ever holding the key.
//! Requests outside ±5 minutes, or seen before (the signature is the nonce), are refused.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const TIMESTAMP_HEADER: &str = "x-mcp-timestamp";
pub const SIGNATURE_HEADER: &str = "x-mcp-signature";
/// How far a request's timestamp may be from the server's clock.
pub const WINDOW_SECONDS: i64 = 300;

/// Which requests must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningPolicy {
    /// None.
    Off,
    /// Batch uploads.
    Batch,
    /// Every request that changes state: reports, batches, heartbeats.
    Writes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this request must be signed: send {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}")]
    Missing,
    #[error("{TIMESTAMP_HEADER} must be the current time in unix seconds")]
    BadTimestamp,
    #[error("the signature's timestamp is more than {WINDOW_SECONDS} s away from the server's clock; check the client's clock")]
    Expired,
    #[error("the signature does not match this request (method, path, timestamp or body differ, or another key signed it)")]
    Mismatch,
    #[error("this signed request was already received; sign each request anew")]
    Replayed,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature a client computes (also used by tests and example clients).
pub fn sign(api_key: &str, method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    let key_digest = Sha256::digest(api_key.as_bytes());
    let message = format!(
        "{method}\n{path}\n{timestamp}\n{}",
        hex(&Sha256::digest(body))
    );
    // HMAC takes keys of any length.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(&key_digest) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Checks signatures and remembers the ones seen within the window.
pub struct Verifier {
    pub policy: SigningPolicy,
    seen: Mutex<Seen>,
}

/// Signatures seen, until they expire: a set to look them up and their expiry times in order, so
/// forgetting costs only what expired.
#[derive(Default)]
struct Seen {
    signatures: HashSet<String>,
    by_expiry: BTreeMap<i64, Vec<String>>,
}

impl Seen {
    fn forget_expired(&mut self, now_seconds: i64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() > now_seconds {
                break;
            }
            for signature in entry.remove() {
                self.signatures.remove(&signature);
            }
        }
    }

    /// Remembers `signature` until `expires`; false when it was already seen.
    fn remember(&mut self, signature: String, expires: i64) -> bool {
        if !self.signatures.insert(signature.clone()) {
            return false;
        }
        self.by_expiry.entry(expires).or_default().push(signature);
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.signatures.len()
    }
}

impl Verifier {
    pub fn new(policy: SigningPolicy) -> Self {
        Self {
            policy,
            seen: Mutex::default(),
        }
    }

    pub fn required_for_batch(&self) -> bool {
        self.policy != SigningPolicy::Off
    }

    pub fn required_for_writes(&self) -> bool {
        self.policy == SigningPolicy::Writes
    }

    #[allow(clippy::too_many_arguments)]
    pub fn verify(
        &self,
        api_key: &str,
        method: &str,
        path: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now_seconds: i64,
    ) -> Result<(), SignatureError> {
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(SignatureError::Missing);
        };
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| SignatureError::BadTimestamp)?;
        // A timestamp far from now (even i64::MIN) is expired, never an overflow.
        let skew = now_seconds.checked_sub(at).map(i64::unsigned_abs);
        if skew.is_none_or(|skew| skew > WINDOW_SECONDS.unsigned_abs()) {
            return Err(SignatureError::Expired);
        }
        let expected = sign(api_key, method, path, timestamp.trim(), body);
        let given = signature.trim().to_ascii_lowercase();
        use subtle::ConstantTimeEq;
        if expected.len() != given.len() || !bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
        {
            return Err(SignatureError::Mismatch);
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.forget_expired(now_seconds);
        if !seen.remember(given, at + WINDOW_SECONDS + 1) {
            return Err(SignatureError::Replayed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "mcpk_signing_key";

    #[test]
    fn a_fresh_signature_passes_once() {
        let v = Verifier::new(SigningPolicy::Batch);
        let path = "/v1/interactions:batch";
        let sig = sign(KEY, "POST", path, "1000", b"[]");
        let at = |now| v.verify(KEY, "POST", path, Some("1000"), Some(&sig), b"[]", now);
        assert_eq!(at(1010), Ok(()));
        assert_eq!(at(1011), Err(SignatureError::Replayed));
    }

    #[test]
    fn tampering_expiry_and_absence_are_refused() {
        let v = Verifier::new(SigningPolicy::Writes);
        let sig = sign(KEY, "POST", "/p", "1000", b"body");
        assert_eq!(
            v.verify(KEY, "POST", "/p", Some("1000"), Some(&sig), b"BODY", 1000),
            Err(SignatureError::Mismatch)
        );
        let signed_at_1000 =
            |key, now| v.verify(key, "POST", "/p", Some("1000"), Some(&sig), b"body", now);
        assert_eq!(signed_at_1000("other", 1000), Err(SignatureError::Mismatch));
        assert_eq!(
            signed_at_1000(KEY, 1000 + 301),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            v.verify(KEY, "POST", "/p", None, Some(&sig), b"body", 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            v.verify(KEY, "POST", "/p", Some("soon"), Some(&sig), b"body", 1000),
            Err(SignatureError::BadTimestamp)
        );
        for extreme in [i64::MIN, i64::MAX] {
            let at = extreme.to_string();
            let sig = sign(KEY, "POST", "/p", &at, b"body");
            assert_eq!(
                v.verify(KEY, "POST", "/p", Some(&at), Some(&sig), b"body", 1000),
                Err(SignatureError::Expired),
                "{at}"
            );
        }
    }

    #[test]
    fn the_replay_cache_forgets_what_expired() {
        let v = Verifier::new(SigningPolicy::Writes);
        for i in 0..100 {
            let body = format!("{i}");
            let sig = sign(KEY, "POST", "/p", "1000", body.as_bytes());
            let seen = v.verify(
                KEY,
                "POST",
                "/p",
                Some("1000"),
                Some(&sig),
                body.as_bytes(),
                1000,
            );
            assert_eq!(seen, Ok(()));
        }
        let remembered = |v: &Verifier| v.seen.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(remembered(&v), 100);
        let later = 1000 + WINDOW_SECONDS + 1;
        let sig = sign(KEY, "POST", "/p", &later.to_string(), b"x");
        let fresh = v.verify(
            KEY,
            "POST",
            "/p",
            Some(&later.to_string()),
            Some(&sig),
            b"x",
            later,
        );
        assert_eq!(fresh, Ok(()));
        assert_eq!(remembered(&v), 1, "the expired signatures were forgotten");
    }
}
