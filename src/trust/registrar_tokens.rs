//! Registrar tokens: who may register MCPs, and in which namespaces. A token file maps a name to
//! its token and namespaces:
//!
//! ```yaml
//! ci-runner:
//!   token: "3f0c…"            # at least 16 bytes; e.g. `openssl rand -hex 32`
//!   namespaces: [mcps, team-a]
//! ```
//!
//! Tokens are kept as digests (see [`KeyRing`]); a token grants nothing but registration.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::keys::{AuthFileError, KeyRing, MIN_SECRET_BYTES};
use crate::crd::validate::is_dns_label;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    token: String,
    namespaces: Vec<String>,
}

/// What one registrar token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's name, recorded on the registrations it makes.
    pub name: String,
    /// Where it may register, in the order given (the first is the default).
    pub namespaces: Vec<String>,
}

impl Grant {
    /// The namespace a message asks for, if this token may register there.
    pub fn namespace_for(&self, asked: Option<&str>) -> Result<String, String> {
        match asked {
            None => self
                .namespaces
                .first()
                .cloned()
                .ok_or_else(|| format!("the registrar token {} allows no namespace", self.name)),
            Some(ns) if self.namespaces.iter().any(|allowed| allowed == ns) => Ok(ns.to_string()),
            Some(ns) => Err(format!(
                "the registrar token {} may register in {} only, not in {ns:?}",
                self.name,
                self.namespaces.join(", ")
            )),
        }
    }
}

#[derive(Default)]
pub struct RegistrarTokens {
    ring: KeyRing,
    namespaces: BTreeMap<String, Vec<String>>,
}

impl RegistrarTokens {
    /// Loads a token file (see the module's documentation).
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let shown = || path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: shown(),
            source,
        })?;
        let entries: BTreeMap<String, Entry> =
            serde_saphyr::from_str(&text).map_err(|e| AuthFileError::Parse {
                path: shown(),
                expected: "a map of registrar name: {token, namespaces}",
                reason: e.to_string(),
            })?;
        let mut tokens = Self::default();
        for (name, entry) in entries {
            let invalid = |problem: String| AuthFileError::Invalid {
                path: shown(),
                problem,
            };
            if entry.token.len() < MIN_SECRET_BYTES {
                return Err(invalid(format!(
                    "the token of {name} is {} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                    entry.token.len()
                )));
            }
            if entry.namespaces.is_empty() {
                return Err(invalid(format!(
                    "{name} allows no namespace; list where it may register (namespaces: [mcps])"
                )));
            }
            for ns in &entry.namespaces {
                if !is_dns_label(ns) {
                    return Err(invalid(format!(
                        "{name}: namespaces: {ns:?} is not a namespace name (lowercase letters, digits, '-', at most 63)"
                    )));
                }
            }
            tokens.add(&name, &entry.token, entry.namespaces);
        }
        Ok(tokens)
    }

    pub fn add(&mut self, name: &str, token: &str, namespaces: Vec<String>) {
        self.ring.set(name, token);
        self.namespaces.insert(name.to_string(), namespaces);
    }

    /// What `token` allows, if it is a registrar token.
    pub fn grant(&self, token: &str) -> Option<Grant> {
        let name = self.ring.mcp_for(token)?;
        let namespaces = self.namespaces.get(&name).cloned().unwrap_or_default();
        Some(Grant { name, namespaces })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` in a file of its own, in a directory removed when the returned guard is dropped.
    fn file(tag: &str, text: &str) -> (crate::test_dir::TestDir, std::path::PathBuf) {
        let dir = crate::test_dir::TestDir::new(&format!("registrars-{tag}"));
        let path = dir.join("file.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_token_allows_its_namespaces_only() {
        let (_dir, path) = file(
            "ok",
            "ci:\n  token: registrar-token-0123456789\n  namespaces: [mcps, team-a]\n",
        );
        let tokens = RegistrarTokens::from_file(&path).unwrap();
        let grant = tokens.grant("registrar-token-0123456789").unwrap();
        assert_eq!(grant.name, "ci");
        assert_eq!(grant.namespace_for(None).unwrap(), "mcps");
        assert_eq!(grant.namespace_for(Some("team-a")).unwrap(), "team-a");
        let refused = grant.namespace_for(Some("kube-system")).unwrap_err();
        assert!(refused.contains("mcps, team-a only"), "{refused}");
        assert!(tokens.grant("registrar-token-012345678X").is_none());
    }

    #[test]
    fn weak_or_unbounded_entries_are_refused_by_name() {
        for (tag, text, expected) in [
            (
                "short",
                "ci:\n  token: short\n  namespaces: [mcps]\n",
                "the token of ci is 5 bytes",
            ),
            (
                "none",
                "ci:\n  token: registrar-token-0123456789\n  namespaces: []\n",
                "ci allows no namespace",
            ),
            (
                "bad",
                "ci:\n  token: registrar-token-0123456789\n  namespaces: [\"../x\"]\n",
                "not a namespace name",
            ),
        ] {
            let (_dir, path) = file(tag, text);
            let err = RegistrarTokens::from_file(&path)
                .err()
                .map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(expected)),
                "{tag}: {err:?}"
            );
        }
    }
}
