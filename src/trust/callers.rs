//! Gateway callers: a bearer token that may call the MCPs of listed namespaces (and, if it says
//! so, only those of listed capabilities). Held as digests like every other token; from a YAML
//! file (`--caller-tokens-file`, standalone's `caller.token`) or from labelled Secrets of the
//! coordinator's own namespace (`watch_caller_tokens`), like reader tokens.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use serde::Deserialize;

use super::keys::{read_yaml, AuthFileError, KeyRing, MIN_SECRET_BYTES};
use crate::crd::CALLER_TOKEN_LABEL;

/// Where a caller may go. An entry `*` means every namespace (or capability).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub namespaces: Vec<String>,
    /// Empty: every capability of those namespaces.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Groups the caller is in, for the gateway's policy rules (`caller.groups`).
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Grant {
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespaces.iter().any(|n| n == "*" || n == namespace)
    }

    /// Whether a caller may use `capability` (`None`: the whole namespace, which needs an
    /// unrestricted grant).
    pub fn allows_capability(&self, capability: Option<&str>) -> bool {
        if self.capabilities.is_empty() || self.capabilities.iter().any(|c| c == "*") {
            return true;
        }
        capability.is_some_and(|c| self.capabilities.iter().any(|g| g == c))
    }

    /// Whether an MCP offering `capabilities` may serve this caller.
    pub fn allows_any(&self, capabilities: &[String]) -> bool {
        self.allows_capability(None) || capabilities.iter().any(|c| self.allows_capability(Some(c)))
    }
}

/// A caller, once its token matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub grant: Grant,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    token: String,
    namespaces: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// Caller tokens by name.
#[derive(Default)]
pub struct CallerTokens {
    ring: KeyRing,
    grants: RwLock<HashMap<String, Grant>>,
}

impl std::fmt::Debug for CallerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerTokens")
            .field("callers", &self.ring.len())
            .finish()
    }
}

impl CallerTokens {
    /// Loads `name: {token, namespaces, capabilities, groups}` entries from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, AuthFileError> {
        let callers = Self::default();
        let entries: BTreeMap<String, FileEntry> = read_yaml(
            path,
            "a map of caller name: {token, namespaces: [...], capabilities: [...]}",
        )?;
        for (name, entry) in entries {
            if entry.token.len() < MIN_SECRET_BYTES {
                return Err(AuthFileError::Invalid {
                    path: path.display().to_string(),
                    problem: format!(
                        "the token of {name} is {} bytes; use at least {MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                        entry.token.len()
                    ),
                });
            }
            if entry.namespaces.is_empty() {
                return Err(AuthFileError::Invalid {
                    path: path.display().to_string(),
                    problem: format!("{name} lists no namespaces; name at least one (or \"*\")"),
                });
            }
            callers.set(
                &name,
                &entry.token,
                Grant {
                    namespaces: entry.namespaces,
                    capabilities: entry.capabilities,
                    groups: entry.groups,
                },
            );
        }
        Ok(callers)
    }

    pub fn set(&self, name: &str, token: &str, grant: Grant) {
        self.grants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), grant);
        self.ring.set(name, token);
    }

    pub fn remove(&self, name: &str) {
        self.ring.remove(name);
        self.grants
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The caller whose token this is.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        let name = self.ring.mcp_for(token)?;
        let grant = self
            .grants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)?
            .clone();
        Some(Caller { name, grant })
    }
}

/// A caller token Secret's name, token and grant; `None` (with a warning) when it is unusable.
pub fn caller_of(secret: &Secret) -> Option<(String, String, Grant)> {
    let name = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .unwrap_or_default()
    };
    let list = |key: &str| -> Vec<String> {
        text(key)
            .split([',', '\n', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let token = text("token");
    let namespaces = list("namespaces");
    if token.len() < MIN_SECRET_BYTES || namespaces.is_empty() {
        tracing::warn!(
            secret = %name,
            "ignoring a caller token Secret: it needs `token` (at least {MIN_SECRET_BYTES} bytes) and `namespaces` (comma-separated, or *)"
        );
        return None;
    }
    let grant = Grant {
        namespaces,
        capabilities: list("capabilities"),
        groups: list("groups"),
    };
    Some((name, token, grant))
}

/// Keeps `callers` in step with the Secrets labelled `mcp.coordinator.dev/caller-token=true` in
/// `namespace` (the coordinator's own: a caller token grants calls into other namespaces).
pub async fn watch_caller_tokens(client: Client, namespace: String, callers: Arc<CallerTokens>) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{CALLER_TOKEN_LABEL}=true"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut known: Vec<String> = Vec::new();
    let mut relisted: Vec<String> = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => relisted.clear(),
            Ok(Event::InitApply(secret)) | Ok(Event::Apply(secret)) => {
                let id = format!("{}/{}", namespace, secret.name_any());
                match caller_of(&secret) {
                    Some((name, token, grant)) => {
                        callers.set(&name, &token, grant);
                        relisted.push(name.clone());
                        known.push(name);
                    }
                    None => callers.remove(&id),
                }
            }
            Ok(Event::InitDone) => {
                for gone in known.iter().filter(|k| !relisted.contains(k)) {
                    callers.remove(gone);
                }
                known.retain(|k| relisted.contains(k));
                known.dedup();
                tracing::info!(
                    count = known.len(),
                    "gateway caller tokens loaded from Secrets"
                );
            }
            Ok(Event::Delete(secret)) => {
                callers.remove(&format!("{}/{}", namespace, secret.name_any()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching caller token Secrets failed; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(namespaces: &[&str], capabilities: &[&str]) -> Grant {
        Grant {
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn a_grant_names_its_namespaces_and_capabilities() {
        let g = grant(&["ocr"], &["text-extraction"]);
        assert!(g.allows_namespace("ocr"));
        assert!(!g.allows_namespace("default"));
        assert!(g.allows_capability(Some("text-extraction")));
        assert!(!g.allows_capability(Some("translation")));
        assert!(
            !g.allows_capability(None),
            "a capability grant is not the whole namespace"
        );
        assert!(g.allows_any(&["translation".into(), "text-extraction".into()]));
        let all = grant(&["*"], &[]);
        assert!(all.allows_namespace("anything") && all.allows_capability(None));
    }

    #[test]
    fn tokens_resolve_to_their_caller_and_can_be_removed() {
        let callers = CallerTokens::default();
        callers.set("app", "0123456789abcdef0123", grant(&["default"], &[]));
        let caller = callers.caller("0123456789abcdef0123").expect("known token");
        assert_eq!(caller.name, "app");
        assert!(callers.caller("0123456789abcdef0124").is_none());
        callers.remove("app");
        assert!(callers.caller("0123456789abcdef0123").is_none());
    }

    #[test]
    fn a_file_with_a_short_token_or_no_namespaces_is_refused_with_the_reason() {
        let dir = crate::test_dir::TestDir::new("callers");
        let path = dir.path().join("callers.yaml");
        std::fs::write(&path, "app: {token: short, namespaces: [default]}\n").unwrap();
        let e = CallerTokens::from_file(&path)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("at least 16"), "{e}");
        std::fs::write(
            &path,
            "app: {token: 0123456789abcdef0123, namespaces: []}\n",
        )
        .unwrap();
        let e = CallerTokens::from_file(&path)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("no namespaces"), "{e}");
        std::fs::write(
            &path,
            "app: {token: 0123456789abcdef0123, namespaces: [a, b], capabilities: [ocr]}\n",
        )
        .unwrap();
        let c = CallerTokens::from_file(&path).expect("loads");
        assert_eq!(
            c.caller("0123456789abcdef0123").unwrap().grant,
            grant(&["a", "b"], &["ocr"])
        );
    }
}
