//! The resource's status: what the controller (or standalone mode) writes for the MCP and its
//! callers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPRegistrationStatus {
    /// Unique, stable, never reused ID (e.g. `ocr_workflow_mcp_001`); interaction logs are keyed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_id: Option<String>,
    #[serde(default)]
    pub phase: Phase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_config: Option<CoordinatorConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingStatus>,
    /// What an `mcp` probe learned of the server: who it is and which protocol it speaks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<ServerInfo>,
    /// The server's tools as an `mcp` probe last listed them, each with a digest and the shape
    /// of its `inputSchema`: what `ToolSchemaChanged` compares a new version against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub tools: Vec<ToolSchema>,
    /// Deprecated, kept readable for one release: `serverInfo` and `tools` say the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<Discovered>,
    /// The MCP's latest heartbeat the ingest servers received (`POST /v1/heartbeat`). Refreshed
    /// whenever the status is written; a missed heartbeat shows in the `HeartbeatMissing` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Phase {
    #[default]
    Pending,
    Ready,
    Degraded,
    Unavailable,
    Incompatible,
    Invalid,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::Ready,
        Phase::Degraded,
        Phase::Unavailable,
        Phase::Incompatible,
        Phase::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
            Phase::Unavailable => "Unavailable",
            Phase::Incompatible => "Incompatible",
            Phase::Invalid => "Invalid",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_latency_ms: Option<u64>,
    #[serde(default)]
    pub consecutive_failures: u32,
    #[serde(default)]
    pub consecutive_successes: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What an MCP needs to report to the coordinator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CoordinatorConfig {
    /// The URL that takes the seed's report envelope (`{"action": "report_interaction_start",
    /// ...}`): the ingest API's `/api/interactions`.
    pub interaction_log_endpoint: String,
    /// The ingest API's base URL, for the REST API and the client libraries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    pub heartbeat_interval_seconds: u32,
    pub data_report_interval_seconds: u32,
    pub api_key_secret_ref: SecretKeyRef,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingStatus {
    pub priority: u32,
    pub weight: u32,
    /// Weight callers should use now: 0 unless the MCP is Ready (or Degraded, at half weight).
    pub effective_weight: u32,
    pub max_concurrent_requests: u32,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<Time>,
}

/// Who the server says it is, in the shape of kubernetes-sigs/mcp-lifecycle-operator's
/// `status.serverInfo`; `legacyFeatures` is this project's own.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `2026-07-28` for a server that answers `server/discover`, else the version its
    /// `initialize` settled on.
    pub protocol_version: String,
    /// The server's instructions for clients (at most 1,024 characters kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The capabilities it declares (`tools`, `resources`, `prompts`, `logging`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// What it relies on that the 2026-07-28 revision removed or deprecated: `sessions` (it
    /// speaks only the handshake generation), `logging` (it declares the logging capability).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_features: Vec<String>,
}

/// One tool's `inputSchema` in short: a digest of the whole and the top-level properties.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolSchema {
    pub name: String,
    /// SHA-256 of the schema's JSON text with sorted keys, first 16 hex digits.
    pub digest: String,
    /// Required properties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required: Vec<String>,
    /// Each top-level property's `type` (`any` when the schema gives none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// Deprecated (read `serverInfo` and `tools`): what an `mcp` health check learned.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discovered {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
}
