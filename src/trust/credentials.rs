//! Which MCP keys to trust: a credentials Secret counts only when the controller owns it, that is
//! when its controller owner reference names an MCPRegistration of the same namespace, that
//! registration exists with that UID, and its `status.mcpId` is the Secret's `mcp-id` label.
//! Anyone who can create a Secret can label it; nobody but the controller can make an owned one
//! for someone else's registration. Pure: the watch in `secrets` feeds it and applies its answer.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Secret;
use kube::{Resource, ResourceExt};

use crate::crd::{
    MCPRegistration, MCP_ID_LABEL, PRIVACY_LEVEL_ANNOTATION, RETENTION_ANNOTATION, SECRET_KEY,
};

/// What a trusted credentials Secret says about its MCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub key: String,
    pub retention_days: Option<u32>,
    pub sensitive: bool,
}

/// A credentials Secret as far as trust is concerned.
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    namespace: String,
    mcp_id: String,
    /// The controller owner reference: the registration's name and UID.
    owner: Option<(String, String)>,
    accepted: Accepted,
}

/// A registration: where it lives and the MCP ID the controller gave it.
#[derive(Debug, Clone, PartialEq)]
struct Registration {
    namespace: String,
    name: String,
    mcp_id: Option<String>,
}

/// Objects by key, and a relist in progress (replaced wholesale when it completes).
#[derive(Debug)]
struct Listed<T> {
    current: HashMap<String, T>,
    relisting: Option<HashMap<String, T>>,
}

impl<T> Default for Listed<T> {
    fn default() -> Self {
        Self {
            current: HashMap::new(),
            relisting: None,
        }
    }
}

impl<T> Listed<T> {
    fn begin_relist(&mut self) {
        self.relisting = Some(HashMap::new());
    }
    fn relisted(&mut self, key: String, value: T) {
        self.relisting
            .get_or_insert_with(HashMap::new)
            .insert(key, value);
    }
    fn relist_done(&mut self) {
        if let Some(fresh) = self.relisting.take() {
            self.current = fresh;
        }
    }
    fn set(&mut self, key: String, value: Option<T>) {
        match value {
            Some(v) => self.current.insert(key, v),
            None => self.current.remove(&key),
        };
    }
}

/// The credentials Secrets and the registrations seen so far.
#[derive(Debug, Default)]
pub struct Credentials {
    claims: Listed<Claim>,
    registrations: Listed<Registration>,
}

/// One change from either watch.
pub enum Seen<'a> {
    /// A relist of Secrets (or of registrations) starts; what follows replaces what was known.
    SecretsRelist,
    RegistrationsRelist,
    /// An object from a relist.
    RelistedSecret(&'a Secret),
    RelistedRegistration(&'a MCPRegistration),
    /// The relist is complete.
    SecretsRelistDone,
    RegistrationsRelistDone,
    /// An object added or changed, or deleted.
    Secret(&'a Secret),
    Registration(&'a MCPRegistration),
    SecretDeleted(&'a Secret),
    RegistrationDeleted(&'a MCPRegistration),
}

impl Credentials {
    pub fn see(&mut self, seen: Seen<'_>) {
        match seen {
            Seen::SecretsRelist => self.claims.begin_relist(),
            Seen::RegistrationsRelist => self.registrations.begin_relist(),
            Seen::RelistedSecret(s) => {
                if let Some(claim) = claim(s) {
                    self.claims.relisted(object_key(s), claim);
                }
            }
            Seen::RelistedRegistration(r) => {
                if let Some(uid) = r.uid() {
                    self.registrations.relisted(uid, registration(r));
                }
            }
            Seen::SecretsRelistDone => self.claims.relist_done(),
            Seen::RegistrationsRelistDone => self.registrations.relist_done(),
            Seen::Secret(s) => self.claims.set(object_key(s), claim(s)),
            Seen::SecretDeleted(s) => self.claims.set(object_key(s), None),
            Seen::Registration(r) => {
                if let Some(uid) = r.uid() {
                    self.registrations.set(uid, Some(registration(r)));
                }
            }
            Seen::RegistrationDeleted(r) => {
                if let Some(uid) = r.uid() {
                    self.registrations.set(uid, None);
                }
            }
        }
    }

    /// The keys to trust, by MCP ID. Where two owned Secrets claim one MCP ID (which the controller
    /// never writes), the one of the first namespace and name wins, so the answer is stable.
    pub fn accepted(&self) -> BTreeMap<String, Accepted> {
        let mut claims: Vec<(&String, &Claim)> = self.claims.current.iter().collect();
        claims.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = BTreeMap::new();
        for (_, claim) in claims {
            let Some((owner_name, owner_uid)) = &claim.owner else {
                continue;
            };
            let owned = self.registrations.current.get(owner_uid).is_some_and(|r| {
                r.namespace == claim.namespace
                    && &r.name == owner_name
                    && r.mcp_id.as_deref() == Some(claim.mcp_id.as_str())
            });
            if owned {
                out.entry(claim.mcp_id.clone())
                    .or_insert_with(|| claim.accepted.clone());
            }
        }
        out
    }
}

fn object_key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default()
    )
}

/// What a credentials Secret claims, if it is well formed.
fn claim(secret: &Secret) -> Option<Claim> {
    let mcp_id = secret.labels().get(MCP_ID_LABEL)?.clone();
    let key = secret.data.as_ref()?.get(SECRET_KEY)?;
    let key = String::from_utf8(key.0.clone())
        .ok()
        .filter(|k| !k.is_empty())?;
    let owner = secret
        .owner_references()
        .iter()
        .find(|o| {
            o.controller == Some(true)
                && o.kind == MCPRegistration::kind(&())
                && o.api_version == MCPRegistration::api_version(&())
        })
        .map(|o| (o.name.clone(), o.uid.clone()));
    let annotations = secret.annotations();
    Some(Claim {
        namespace: secret.namespace().unwrap_or_default(),
        mcp_id,
        owner,
        accepted: Accepted {
            key,
            retention_days: annotations
                .get(RETENTION_ANNOTATION)
                .and_then(|d| d.parse().ok()),
            sensitive: annotations
                .get(PRIVACY_LEVEL_ANNOTATION)
                .map(String::as_str)
                == Some("sensitive"),
        },
    })
}

fn registration(reg: &MCPRegistration) -> Registration {
    Registration {
        namespace: reg.namespace().unwrap_or_default(),
        name: reg.name_any(),
        mcp_id: reg.status.as_ref().and_then(|s| s.mcp_id.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn registration(
        namespace: &str,
        name: &str,
        uid: &str,
        mcp_id: Option<&str>,
    ) -> MCPRegistration {
        serde_json::from_value(json!({
            "apiVersion": "mcp.coordinator.dev/v1alpha1", "kind": "MCPRegistration",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"version": "1.0.0", "type": "workflow", "capabilities": ["ocr"],
                     "endpoint": {"url": "http://x"}},
            "status": {"phase": "Ready", "mcpId": mcp_id, "conditions": []},
        }))
        .unwrap()
    }

    /// A credentials Secret for `mcp_id` holding `key`, owned by `owner` (name, uid) if given.
    fn secret(
        namespace: &str,
        name: &str,
        mcp_id: &str,
        key: &str,
        owner: Option<(&str, &str)>,
    ) -> Secret {
        let owners: Vec<serde_json::Value> = owner
            .into_iter()
            .map(|(n, uid)| {
                json!({"apiVersion": "mcp.coordinator.dev/v1alpha1", "kind": "MCPRegistration",
                                    "name": n, "uid": uid, "controller": true})
            })
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "ownerReferences": owners,
                         "labels": {"mcp.coordinator.dev/credentials": "true", "mcp.coordinator.dev/mcp-id": mcp_id},
                         "annotations": {"mcp.coordinator.dev/retention-days": "7"}},
            "data": {"api-key": base64(key)},
        }))
        .unwrap()
    }

    fn base64(text: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    const ID: &str = "ocr_workflow_mcp_001";

    /// The key Secret the controller wrote for `ocr` in `team`.
    fn real_secret() -> Secret {
        secret(
            "team",
            "ocr-mcp-key",
            ID,
            "real-key",
            Some(("ocr", "uid-1")),
        )
    }

    fn with_real_registration() -> Credentials {
        let mut c = Credentials::default();
        c.see(Seen::Registration(&registration(
            "team",
            "ocr",
            "uid-1",
            Some(ID),
        )));
        c.see(Seen::Secret(&real_secret()));
        c
    }

    #[test]
    fn an_owned_secret_of_the_registration_with_that_id_is_trusted() {
        let c = with_real_registration();
        let accepted = c.accepted();
        assert_eq!(accepted[ID].key, "real-key");
        assert_eq!(accepted[ID].retention_days, Some(7));
    }

    #[test]
    fn forged_secrets_are_not_trusted_and_deleting_them_changes_nothing() {
        let mut c = with_real_registration();
        let forgeries = [
            // Labelled, not owned.
            secret("evil", "a", ID, "forged-1", None),
            // Owned by a registration of another namespace (the real one's UID, even).
            secret("evil", "b", ID, "forged-2", Some(("ocr", "uid-1"))),
            // Owned by the attacker's own registration, which has another MCP ID.
            secret("evil", "c", ID, "forged-3", Some(("mine", "uid-2"))),
        ];
        c.see(Seen::Registration(&registration(
            "evil",
            "mine",
            "uid-2",
            Some("mine_workflow_mcp_001"),
        )));
        for f in &forgeries {
            c.see(Seen::Secret(f));
        }
        assert_eq!(c.accepted()[ID].key, "real-key");
        assert_eq!(c.accepted().len(), 1);
        for f in &forgeries {
            c.see(Seen::SecretDeleted(f));
        }
        assert_eq!(c.accepted()[ID].key, "real-key", "the real key still works");
    }

    #[test]
    fn a_secret_is_trusted_once_its_registration_has_the_id_and_not_after_it_is_gone() {
        let mut c = Credentials::default();
        let reg = registration("team", "ocr", "uid-1", None);
        c.see(Seen::Registration(&reg));
        c.see(Seen::Secret(&real_secret()));
        assert!(c.accepted().is_empty(), "no MCP ID in status yet");
        c.see(Seen::Registration(&registration(
            "team",
            "ocr",
            "uid-1",
            Some(ID),
        )));
        assert_eq!(c.accepted().len(), 1);
        c.see(Seen::RegistrationDeleted(&reg));
        assert!(c.accepted().is_empty());
    }

    #[test]
    fn a_relist_replaces_what_was_known() {
        let mut c = with_real_registration();
        c.see(Seen::SecretsRelist);
        c.see(Seen::SecretsRelistDone);
        assert!(
            c.accepted().is_empty(),
            "the Secret is gone after the relist"
        );
    }
}
