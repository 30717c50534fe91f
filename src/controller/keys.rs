//! Per-MCP API keys. A key lives only in its Secret: never in status, Events or logs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};

use super::error::{Error, Result};
use crate::crd::{
    MCPRegistration, CREDENTIALS_LABEL, ISSUED_FOR_ANNOTATION, MCP_ID_LABEL,
    PRIVACY_LEVEL_ANNOTATION, RETENTION_ANNOTATION, ROTATE_KEY_ANNOTATION, SECRET_KEY,
};

const KEY_BYTES: usize = 32;

/// A new key: 256 bits from the operating system, hex-encoded behind a recognisable prefix
/// (so secret scanners can find leaked keys).
pub fn generate_key() -> Result<String> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| Error::Randomness(e.to_string()))?;
    let mut key = String::with_capacity(5 + KEY_BYTES * 2);
    key.push_str("mcpk_");
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    Ok(key)
}

/// The rotation value the registration asks for (empty when it never asked).
pub fn requested_rotation(reg: &MCPRegistration) -> String {
    reg.annotations()
        .get(ROTATE_KEY_ANNOTATION)
        .cloned()
        .unwrap_or_default()
}

fn privacy_level(reg: &MCPRegistration) -> &'static str {
    match reg.spec.privacy.level {
        crate::crd::PrivacyLevel::Public => "public",
        crate::crd::PrivacyLevel::Internal => "internal",
        crate::crd::PrivacyLevel::Sensitive => "sensitive",
    }
}

/// What the controller should do with the key Secret it found.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyAction {
    Create,
    Rotate,
    /// The key is fine but labels point at another ID (e.g. the ledger was rebuilt).
    Relabel,
    Keep,
}

pub fn key_action(existing: Option<&Secret>, reg: &MCPRegistration, mcp_id: &str) -> KeyAction {
    let Some(secret) = existing else {
        return KeyAction::Create;
    };
    let has_key = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_KEY))
        .is_some_and(|k| !k.0.is_empty());
    if !has_key {
        return KeyAction::Rotate;
    }
    let issued_for = secret
        .annotations()
        .get(ISSUED_FOR_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    if issued_for != requested_rotation(reg) {
        return KeyAction::Rotate;
    }
    let retention = reg.spec.privacy.retention_days.to_string();
    if secret.labels().get(MCP_ID_LABEL).map(String::as_str) != Some(mcp_id)
        || secret.labels().get(CREDENTIALS_LABEL).map(String::as_str) != Some("true")
        || secret.annotations().get(RETENTION_ANNOTATION) != Some(&retention)
        || secret
            .annotations()
            .get(PRIVACY_LEVEL_ANNOTATION)
            .map(String::as_str)
            != Some(privacy_level(reg))
    {
        return KeyAction::Relabel;
    }
    KeyAction::Keep
}

/// The key Secret for `reg`, owned by it so the API server's garbage collector removes it too.
pub fn key_secret(reg: &MCPRegistration, mcp_id: &str, key: Option<String>) -> Secret {
    let owner = reg.controller_owner_ref(&());
    Secret {
        metadata: ObjectMeta {
            name: Some(reg.key_secret_name()),
            namespace: reg.namespace(),
            labels: Some(BTreeMap::from([
                (CREDENTIALS_LABEL.to_string(), "true".to_string()),
                (MCP_ID_LABEL.to_string(), mcp_id.to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "mcp-coordinator".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (ISSUED_FOR_ANNOTATION.to_string(), requested_rotation(reg)),
                (
                    RETENTION_ANNOTATION.to_string(),
                    reg.spec.privacy.retention_days.to_string(),
                ),
                (
                    PRIVACY_LEVEL_ANNOTATION.to_string(),
                    privacy_level(reg).to_string(),
                ),
            ])),
            owner_references: owner.map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: key.map(|k| BTreeMap::from([(SECRET_KEY.to_string(), ByteString(k.into_bytes()))])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(rotation: Option<&str>) -> MCPRegistration {
        let mut annotations = String::new();
        if let Some(r) = rotation {
            annotations = format!(", annotations: {{'{ROTATE_KEY_ANNOTATION}': '{r}'}}");
        }
        let yaml = format!(
            "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata: {{name: ocr, namespace: ns, uid: u1{annotations}}}\nspec: {{version: 1.0.0, type: workflow, capabilities: [ocr], endpoint: {{url: 'http://x'}}}}\n"
        );
        serde_saphyr::from_str(&yaml).unwrap()
    }

    #[test]
    fn keys_are_long_random_and_distinct() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 64);
        assert!(a.starts_with("mcpk_"));
    }

    #[test]
    fn the_secret_is_owned_labelled_and_holds_the_key() {
        let r = reg(None);
        let s = key_secret(&r, "ocr_workflow_mcp_001", Some("k".into()));
        assert_eq!(s.metadata.name.as_deref(), Some("ocr-mcp-key"));
        assert_eq!(s.labels()[MCP_ID_LABEL], "ocr_workflow_mcp_001");
        assert_eq!(s.labels()[CREDENTIALS_LABEL], "true");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u1", Some(true)));
        assert_eq!(
            key_action(Some(&s), &r, "ocr_workflow_mcp_001"),
            KeyAction::Keep
        );
    }

    #[test]
    fn a_new_rotation_value_rotates_and_a_missing_secret_is_created() {
        let s = key_secret(&reg(None), "id", Some("k".into()));
        assert_eq!(
            key_action(Some(&s), &reg(Some("2026-11-24")), "id"),
            KeyAction::Rotate
        );
        assert_eq!(key_action(None, &reg(None), "id"), KeyAction::Create);
        assert_eq!(
            key_action(Some(&s), &reg(None), "other"),
            KeyAction::Relabel
        );
    }
}
