//! Typed builders for what tests feed the system, instead of YAML text whose indentation matters.

use mcp_coordinator::crd::MCPRegistration;
use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use serde_json::{json, Value};

/// An MCPRegistration in `default`, probed every second, built up field by field:
/// `registration("ocr").url(&mcp.url()).compat(">=9").build()`.
#[derive(Debug, Clone)]
pub struct Registration {
    name: String,
    namespace: String,
    spec: Value,
}

/// A registration named `name` (type `workflow`, capability `text_extraction`, version 1.0.0).
pub fn registration(name: &str) -> Registration {
    Registration {
        name: name.to_string(),
        namespace: "default".to_string(),
        spec: json!({
            "version": "1.0.0",
            "type": "workflow",
            "capabilities": ["text_extraction"],
            "endpoint": {"url": "http://127.0.0.1:9"},
            "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 2},
        }),
    }
}

impl Registration {
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    /// Where the MCP answers.
    pub fn url(mut self, url: &str) -> Self {
        self.spec["endpoint"] = json!({"url": url});
        self
    }

    /// `spec.compatibility.coordinatorVersion`.
    pub fn compat(mut self, range: &str) -> Self {
        self.spec["compatibility"] = json!({"coordinatorVersion": range});
        self
    }

    pub fn version(mut self, version: &str) -> Self {
        self.spec["version"] = json!(version);
        self
    }

    pub fn weight(mut self, weight: u32) -> Self {
        self.spec["routing"]["weight"] = json!(weight);
        self
    }

    /// Any other spec field, as JSON (`.with("privacy", json!({"level": "sensitive"}))`).
    pub fn with(mut self, field: &str, value: Value) -> Self {
        self.spec[field] = value;
        self
    }

    pub fn build(self) -> MCPRegistration {
        serde_json::from_value(json!({
            "apiVersion": "mcp.coordinator.dev/v1alpha1",
            "kind": "MCPRegistration",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self.spec,
        }))
        .expect("a registration the builder made parses")
    }
}

/// The `i`th event of a test's stream: a start of interaction `i-<i>` of `mcp`, received at
/// `received_ms`.
pub fn event(i: usize, mcp: &str, received_ms: i64) -> InteractionEvent {
    InteractionEvent::new(
        format!("i-{i}"),
        mcp.to_string(),
        EventKind::Start,
        received_ms,
        Fields::default(),
    )
}

/// An event of `kind` with `fields`.
pub fn event_of(
    interaction_id: &str,
    mcp: &str,
    kind: EventKind,
    received_ms: i64,
    fields: Fields,
) -> InteractionEvent {
    InteractionEvent::new(
        interaction_id.to_string(),
        mcp.to_string(),
        kind,
        received_ms,
        fields,
    )
}

/// The seed's own `register_mcp` message, for an MCP at `url` (its endpoints are paths under it).
pub fn seed_register_message(url: &str) -> Value {
    json!({
        "action": "register_mcp",
        "mcp_info": {
            "name": "ocr_workflow_mcp",
            "version": "1.0.0",
            "type": "workflow",
            "capabilities": ["ocr_processing", "document_analysis"],
            "supported_formats": ["image/jpeg", "image/png", "application/pdf"],
            "resource_requirements": {"min_memory": "1GB", "min_cpu": "2 cores", "gpu_required": false},
            "endpoints": {"health_check": "/health", "process": "/process", "status": "/status"},
            "url": url
        }
    })
}
