//! The seed's `register_mcp` and `unregister_mcp` messages, and the answer: pure translation
//! between what an MCP says about itself and the MCPRegistration that declares it. The seed's own
//! values (`"1GB"`, `"2 cores"`, endpoints as paths) are translated into Kubernetes terms, not
//! refused; what cannot be translated is refused with the field named.

use kube::api::ObjectMeta;
use serde::Deserialize;
use serde_json::{json, Value};

pub use super::endpoints::SeedEndpoints;
use super::endpoints::{endpoint_and_paths, WithoutUrl};
use super::preferences::{self, SeedHealthCheck, SeedPrivacy, SeedRouting};
pub use super::quantities::{cpu_quantity, memory_quantity};
pub use super::refused::Refused;
use crate::crd::validate::validate_spec;
use crate::crd::{
    MCPRegistration, MCPRegistrationSpec, MCPRegistrationStatus, ResourceRequirements,
    REGISTERED_BY_ANNOTATION, REGISTRAR_LABEL, ROTATE_KEY_ANNOTATION,
};

/// `{"action": "register_mcp", "mcp_info": {...}}`, with additions of ours: `rotate_key` asks for
/// a new API key; `mcp_info.namespace` / `mcp_info.url` say where the registration goes and where
/// the coordinator reaches the MCP; `routing_config`, `privacy` and `health_check` state its
/// preferences.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterMessage {
    pub action: String,
    pub mcp_info: McpInfo,
    #[serde(default)]
    pub rotate_key: bool,
}

/// What an MCP says about itself: the seed's fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpInfo {
    pub name: String,
    pub version: String,
    #[serde(rename = "type")]
    pub mcp_type: String,
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub supported_formats: Vec<String>,
    #[serde(default)]
    pub resource_requirements: Option<SeedResources>,
    #[serde(default)]
    pub endpoints: Option<SeedEndpoints>,
    /// The MCP's base URL (where `endpoints` paths are relative to).
    #[serde(default, alias = "base_url")]
    pub url: Option<String>,
    /// The namespace of the registration; the token's first allowed namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Routing preferences, in the names of the answer's `routing_config`.
    #[serde(default, alias = "routing")]
    pub routing_config: Option<SeedRouting>,
    #[serde(default)]
    pub privacy: Option<SeedPrivacy>,
    #[serde(default)]
    pub health_check: Option<SeedHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedResources {
    #[serde(default)]
    pub min_memory: Option<Value>,
    #[serde(default)]
    pub min_cpu: Option<Value>,
    #[serde(default)]
    pub gpu_required: bool,
}

/// `{"action": "unregister_mcp", "name": ..., "namespace": ...}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnregisterMessage {
    pub action: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A registration as a message declares it: where it goes and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct Declared {
    pub namespace: String,
    pub name: String,
    pub spec: MCPRegistrationSpec,
    pub rotate_key: bool,
    /// What was assumed for the MCP (told in the answer).
    pub notes: Vec<String>,
}

impl Declared {
    /// The MCPRegistration object, marked as made by self-registration for `registrar` (the
    /// token's name); `rotation` is the `rotate-key` value to ask for, if any.
    pub fn object(&self, registrar: &str, rotation: Option<&str>) -> MCPRegistration {
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(REGISTERED_BY_ANNOTATION.to_string(), registrar.to_string());
        if let Some(value) = rotation {
            annotations.insert(ROTATE_KEY_ANNOTATION.to_string(), value.to_string());
        }
        let labels = std::collections::BTreeMap::from([(
            REGISTRAR_LABEL.to_string(),
            registrar_label(registrar),
        )]);
        MCPRegistration {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                annotations: Some(annotations),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: self.spec.clone(),
            status: None,
        }
    }
}

/// The value of [`REGISTRAR_LABEL`] for a registrar token's name: 32 hex digits of its SHA-256.
pub fn registrar_label(registrar: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(registrar.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the registry assigned: the answer's content.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub namespace: String,
    pub name: String,
    pub mcp_id: String,
    pub api_key: String,
    pub status: MCPRegistrationStatus,
}

/// The registration's name: the seed's MCP name made a Kubernetes name (`ocr_workflow_mcp` →
/// `ocr-workflow-mcp`).
pub fn registration_name(seed_name: &str) -> Result<String, Refused> {
    let mut name = String::with_capacity(seed_name.len());
    for c in seed_name.trim().chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            name.push(c);
        } else if matches!(c, '-' | '_' | '.' | ' ') && !name.ends_with('-') {
            name.push('-');
        } else if !matches!(c, '-' | '_' | '.' | ' ') {
            return Err(Refused::new(
                "mcp_info.name",
                format!("{seed_name:?} holds {c:?}; use letters, digits, '-', '_' or '.'"),
            ));
        }
    }
    let name = name.trim_matches('-').to_string();
    if name.is_empty() || name.len() > 63 {
        return Err(Refused::new(
            "mcp_info.name",
            format!("{seed_name:?} must become a name of 1 to 63 letters, digits and '-'"),
        ));
    }
    Ok(name)
}

/// A namespace as a message names it: an RFC 1123 label.
pub fn check_namespace(namespace: &str, field: &str) -> Result<(), Refused> {
    if crate::crd::validate::is_dns_label(namespace) {
        Ok(())
    } else {
        Err(Refused::new(
            field,
            format!("{namespace:?} is not a namespace name (lowercase letters, digits, '-', at most 63)"),
        ))
    }
}

/// A `register_mcp` message as a registration in `namespace`; `services` says whether an MCP
/// without a URL is reached through the Service of its name (Kubernetes) or refused.
pub fn declare(
    message: RegisterMessage,
    namespace: String,
    services: bool,
) -> Result<Declared, Refused> {
    if message.action != "register_mcp" {
        return Err(Refused::new("action", "expected register_mcp"));
    }
    let mut info = message.mcp_info;
    let name = registration_name(&info.name)?;
    check_namespace(&namespace, "mcp_info.namespace")?;
    let unprobed =
        info.health_check.as_ref().and_then(|h| h.probe_type) == Some(crate::crd::ProbeType::None);
    let without_url = if unprobed {
        WithoutUrl::Nowhere
    } else if services {
        WithoutUrl::Service(&name)
    } else {
        WithoutUrl::Refuse
    };
    let (endpoint, paths, note) =
        endpoint_and_paths(info.url.as_deref(), info.endpoints.as_ref(), without_url)?;
    let resource_requirements = match &info.resource_requirements {
        None => None,
        Some(r) => {
            let at = "mcp_info.resource_requirements";
            Some(ResourceRequirements {
                min_memory: r
                    .min_memory
                    .as_ref()
                    .map(|v| memory_quantity(v, &format!("{at}.min_memory")))
                    .transpose()?,
                min_cpu: r
                    .min_cpu
                    .as_ref()
                    .map(|v| cpu_quantity(v, &format!("{at}.min_cpu")))
                    .transpose()?,
                gpu_required: r.gpu_required,
            })
        }
    };
    let spec = MCPRegistrationSpec {
        version: info.version,
        mcp_type: info.mcp_type,
        capabilities: info.capabilities,
        supported_formats: info.supported_formats,
        resource_requirements,
        health_check: preferences::health_check(info.health_check.take(), &paths.process),
        endpoint,
        paths,
        routing: preferences::routing(info.routing_config.take()),
        privacy: preferences::privacy(info.privacy.take()),
        compatibility: None,
        gateway_policy: None,
    };
    check_against_schema(&spec)?;
    if let Some(problem) = validate_spec(&spec).into_iter().next() {
        return Err(Refused::new(seed_field(problem.field), problem.message));
    }
    Ok(Declared {
        namespace,
        name,
        spec,
        rotate_key: message.rotate_key,
        notes: note.into_iter().collect(),
    })
}

/// The checks the API server applies (the CRD's schema, CEL rules included), made here so that
/// both modes refuse the same messages with the same words, before anything is written.
fn check_against_schema(spec: &MCPRegistrationSpec) -> Result<(), Refused> {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let schema = SCHEMA.get_or_init(crate::crd::openapi_schema);
    let spec_schema = &schema["properties"]["spec"];
    let value = serde_json::to_value(spec).map_err(|e| Refused::new("mcp_info", e.to_string()))?;
    let mut causes = Vec::new();
    structural_schema::validate(spec_schema, &value, "spec", &mut causes);
    match causes.into_iter().next() {
        Some(cause) => Err(Refused::new(seed_field(&cause.field), cause.message)),
        None => Ok(()),
    }
}

/// The message's name for a spec field, so errors point at what the MCP sent.
fn seed_field(spec_field: &str) -> String {
    let field = spec_field.trim_start_matches("spec.");
    if let Some(seed) = preferences::seed_field(field) {
        return seed;
    }
    let seed = if field.starts_with("endpoint") {
        "url".to_string()
    } else if let Some(rest) = field.strip_prefix("supportedFormats") {
        format!("supported_formats{rest}")
    } else if let Some(rest) = field.strip_prefix("resourceRequirements") {
        format!("resource_requirements{rest}")
    } else {
        field.to_string()
    };
    format!("mcp_info.{seed}")
}

/// The seed's answer: the ID, the key, where and how often to report, and the routing config;
/// `notes` say what was assumed.
pub fn answer(assigned: &Assigned, notes: &[String]) -> Value {
    let status = &assigned.status;
    let config = status.coordinator_config.as_ref();
    let routing = status.routing.as_ref();
    json!({
        "success": true,
        "mcp_id": assigned.mcp_id,
        "api_key": assigned.api_key,
        "registration": {"namespace": assigned.namespace, "name": assigned.name},
        "phase": status.phase.as_str(),
        "notes": notes,
        "coordinator_config": {
            "interaction_log_endpoint": config.map(|c| c.interaction_log_endpoint.as_str()),
            "api_url": config.and_then(|c| c.api_url.as_deref()),
            "heartbeat_interval": config.map(|c| c.heartbeat_interval_seconds),
            "data_report_interval": config.map(|c| c.data_report_interval_seconds),
            "api_key": assigned.api_key,
        },
        "routing_config": {
            "priority": routing.map(|r| r.priority),
            "weight": routing.map(|r| r.weight),
            "effective_weight": routing.map(|r| r.effective_weight),
            "max_concurrent_requests": routing.map(|r| r.max_concurrent_requests),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_message() -> RegisterMessage {
        serde_json::from_value(json!({
            "action": "register_mcp",
            "mcp_info": {
                "name": "ocr_workflow_mcp",
                "version": "1.0.0",
                "type": "workflow",
                "capabilities": ["ocr_processing", "document_analysis"],
                "supported_formats": ["image/jpeg", "image/png", "application/pdf"],
                "resource_requirements": {"min_memory": "1GB", "min_cpu": "2 cores", "gpu_required": false},
                "endpoints": {"health_check": "/health", "process": "/process", "status": "/status"},
                "url": "http://ocr.example:8080/"
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_seeds_own_message_becomes_a_registration() {
        let declared = declare(seed_message(), "mcps".into(), true).unwrap();
        assert_eq!(declared.name, "ocr-workflow-mcp");
        assert_eq!(declared.namespace, "mcps");
        let spec = &declared.spec;
        assert_eq!(
            spec.endpoint.url.as_deref(),
            Some("http://ocr.example:8080")
        );
        assert_eq!(spec.paths.health_check, "/health");
        let resources = spec.resource_requirements.as_ref().unwrap();
        assert_eq!(
            resources.min_memory,
            Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "1G".into()
            ))
        );
        assert_eq!(
            resources.min_cpu,
            Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "2".into()
            ))
        );
        let object = declared.object("ci", Some("r1"));
        let annotations = object.metadata.annotations.unwrap();
        assert_eq!(annotations[REGISTERED_BY_ANNOTATION], "ci");
        assert_eq!(annotations[ROTATE_KEY_ANNOTATION], "r1");
    }

    #[test]
    fn endpoints_may_be_full_urls_of_one_origin() {
        let mut message = seed_message();
        message.mcp_info.url = None;
        message.mcp_info.endpoints = Some(SeedEndpoints {
            health_check: Some("https://ocr.example/healthz".into()),
            process: Some("https://ocr.example/run".into()),
            status: None,
        });
        let declared = declare(message, "mcps".into(), true).unwrap();
        assert_eq!(
            declared.spec.endpoint.url.as_deref(),
            Some("https://ocr.example")
        );
        assert_eq!(declared.spec.paths.health_check, "/healthz");
        assert_eq!(declared.spec.paths.status, "/status");

        let mut message = seed_message();
        message.mcp_info.endpoints = Some(SeedEndpoints {
            health_check: Some("https://elsewhere.example/health".into()),
            process: None,
            status: None,
        });
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.endpoints.health_check");

        // No URL: the Service of the registration's name in Kubernetes, refused in standalone.
        let mut message = seed_message();
        message.mcp_info.url = None;
        let declared = declare(message, "mcps".into(), true).unwrap();
        let service = declared.spec.endpoint.service.as_ref().unwrap();
        assert_eq!(
            (service.name.as_str(), service.port),
            ("ocr-workflow-mcp", 80)
        );
        assert!(declared.notes[0].contains("Service ocr-workflow-mcp"));
        let mut message = seed_message();
        message.mcp_info.url = None;
        let refused = declare(message, "mcps".into(), false).unwrap_err();
        assert_eq!(refused.field, "mcp_info.url");
        assert!(refused.problem.contains("Standalone mode has no Services"));
        // An MCP without an address (a stdio server) says so, and needs none.
        let mut message = seed_message();
        message.mcp_info.url = None;
        message.mcp_info.health_check =
            Some(serde_json::from_value(json!({"type": "none"})).unwrap());
        let declared = declare(message, "mcps".into(), false).unwrap();
        assert_eq!(declared.spec.endpoint, crate::crd::Endpoint::default());
    }

    #[test]
    fn a_registration_cannot_be_made_enormous() {
        // Issue 34, attack 7: 900 KB of supported_formats, or a 900 KB URL, were accepted.
        let mut message = seed_message();
        message.mcp_info.supported_formats = vec!["image/png".into(); 10_000];
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.supported_formats", "{refused:?}");
        let mut message = seed_message();
        message.mcp_info.url = Some(format!("http://ocr.example/{}", "a".repeat(900_000)));
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.url", "{refused:?}");
        let mut message = seed_message();
        message.mcp_info.version = format!("1.0.0-{}", "a".repeat(1000));
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.version", "{refused:?}");
    }

    #[test]
    fn names_and_bad_values_are_refused_with_the_field() {
        assert_eq!(
            registration_name("OCR Workflow_MCP").unwrap(),
            "ocr-workflow-mcp"
        );
        assert_eq!(registration_name("__x__").unwrap(), "x");
        assert_eq!(registration_name("a/b").unwrap_err().field, "mcp_info.name");
        assert!(registration_name("___").is_err());
        assert!(registration_name(&"a".repeat(64)).is_err());
        assert!(check_namespace("Team", "ns").is_err());
        assert!(check_namespace("../x", "ns").is_err());
        let mut message = seed_message();
        message.mcp_info.version = "one".into();
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.version", "{refused:?}");
        let mut message = seed_message();
        message.mcp_info.mcp_type = "Work Flow".into();
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(
            refused.field, "mcp_info.type",
            "the CRD's own pattern: {refused:?}"
        );
        let mut message = seed_message();
        message.mcp_info.capabilities.clear();
        let refused = declare(message, "mcps".into(), true).unwrap_err();
        assert_eq!(refused.field, "mcp_info.capabilities", "{refused:?}");
        let mut message = seed_message();
        message.mcp_info.url = Some("ftp://x".into());
        assert_eq!(
            declare(message, "mcps".into(), true).unwrap_err().field,
            "mcp_info.url"
        );
    }

    #[test]
    fn the_answer_has_the_seeds_shape() {
        let status: MCPRegistrationStatus = serde_json::from_value(json!({
            "mcpId": "ocr_workflow_mcp_001",
            "phase": "Ready",
            "coordinatorConfig": {
                "interactionLogEndpoint": "http://coordinator:8081",
                "heartbeatIntervalSeconds": 30,
                "dataReportIntervalSeconds": 10,
                "apiKeySecretRef": {"name": "ocr-workflow-mcp-mcp-key", "key": "api-key"}
            },
            "routing": {"priority": 1, "weight": 100, "effectiveWeight": 100, "maxConcurrentRequests": 10, "reason": "healthy"}
        }))
        .unwrap();
        let answer = answer(
            &Assigned {
                namespace: "mcps".into(),
                name: "ocr-workflow-mcp".into(),
                mcp_id: "ocr_workflow_mcp_001".into(),
                api_key: "mcpk_x".into(),
                status,
            },
            &[],
        );
        assert_eq!(answer["success"], true);
        assert_eq!(answer["mcp_id"], "ocr_workflow_mcp_001");
        assert_eq!(answer["coordinator_config"]["heartbeat_interval"], 30);
        assert_eq!(answer["coordinator_config"]["api_key"], "mcpk_x");
        assert_eq!(answer["routing_config"]["max_concurrent_requests"], 10);
    }
}
