//! The `MCPRegistration` custom resource: the only place its shape is defined.
//!
//! Validation that a schema can express (ranges, enums, required fields, patterns) lives here as
//! schema attributes, so `kubectl apply` rejects bad objects before the controller sees them.
//! What a schema cannot express (semver ranges that parse, absolute URLs) is checked in [`validate`].

mod conventions;
mod names;
mod policy;
mod status;
pub mod validate;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use names::*;
pub use policy::{GatewayPolicy, PolicyRule, RateLimit, RateLimitKey};
pub use status::*;

/// Declares an MCP server to the coordinator, following the seed's `register_mcp` message.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mcp.coordinator.dev",
    version = "v1alpha1",
    kind = "MCPRegistration",
    plural = "mcpregistrations",
    shortname = "mcpcreg",
    category = "mcp-coordinator",
    namespaced,
    status = "MCPRegistrationStatus",
    printcolumn = r#"{"name":"ID","type":"string","jsonPath":".status.mcpId"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".status.routing.effectiveWeight"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    doc = "An MCP (Model Context Protocol) server registered with mcp-coordinator."
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.endpoint) && (has(self.endpoint.service) || has(self.endpoint.url))) || (has(self.healthCheck) && self.healthCheck.type == 'none')",
    "message": "set endpoint.service or endpoint.url (an MCP without an address of its own, such as a stdio server, sets healthCheck.type: none)"
}]))]
pub struct MCPRegistrationSpec {
    /// Version of the MCP server itself (semver, e.g. `1.2.0`).
    #[schemars(
        regex(
            pattern = r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
        ),
        length(max = 128)
    )]
    pub version: String,
    /// Kind of MCP: workflow, tool, adapter, model, or another lower-case word. Part of the MCP ID.
    #[serde(rename = "type")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,30}$"), length(max = 31))]
    pub mcp_type: String,
    /// What the MCP can do (e.g. `text_extraction`); routing looks MCPs up by capability.
    #[schemars(
        length(min = 1, max = 64),
        inner(
            regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$"),
            length(max = 128)
        )
    )]
    pub capabilities: Vec<String>,
    /// Input/output formats the MCP accepts (e.g. `image/png`, `pdf`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub supported_formats: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_requirements: Option<ResourceRequirements>,
    /// Where the MCP listens (absent only with `healthCheck.type: none`).
    #[serde(default)]
    pub endpoint: Endpoint,
    #[serde(default)]
    pub paths: Paths,
    #[serde(default)]
    pub health_check: HealthCheck,
    #[serde(default)]
    pub routing: RoutingSpec,
    #[serde(default)]
    pub privacy: PrivacySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_policy: Option<GatewayPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility: Option<Compatibility>,
}

/// What the MCP needs to run; informational for schedulers and routing.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Memory the MCP needs, as a Kubernetes quantity (e.g. `512Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(description = "Memory the MCP needs, as a Kubernetes quantity (e.g. `512Mi`).")]
    pub min_memory: Option<Quantity>,
    /// CPU the MCP needs, as a Kubernetes quantity (e.g. `500m` or `1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(description = "CPU the MCP needs, as a Kubernetes quantity (e.g. `500m` or `1`).")]
    pub min_cpu: Option<Quantity>,
    #[serde(default)]
    pub gpu_required: bool,
}

/// Where the MCP listens: one of `service` or `url`; neither only for an MCP without an address
/// of its own (`healthCheck.type: none`, such as a stdio server its client starts).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend(
    "x-kubernetes-validations" = [{
        "rule": "!(has(self.service) && has(self.url))",
        "message": "set one of service (a Kubernetes Service) or url, not both"
    }]
))]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// Absolute `http://` or `https://` base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#]+([/?#]\S*)?$"),
        length(max = 2048)
    )]
    pub url: Option<String>,
}

impl Endpoint {
    /// The base URL without a trailing slash; a Service resolves to its cluster DNS name, in
    /// `namespace` unless it names its own. Empty when neither is set (validation reports that).
    pub fn base_url(&self, namespace: &str) -> String {
        match (&self.url, &self.service) {
            (Some(url), _) => url.trim_end_matches('/').to_string(),
            (None, Some(svc)) => {
                let scheme = match svc.scheme {
                    Scheme::Http => "http",
                    Scheme::Https => "https",
                };
                let ns = svc.namespace.as_deref().unwrap_or(namespace);
                format!("{scheme}://{}.{ns}.svc:{}", svc.name, svc.port)
            }
            (None, None) => String::new(),
        }
    }
}

/// A Kubernetes Service in front of the MCP.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Defaults to the MCPRegistration's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    #[serde(default)]
    pub scheme: Scheme,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

/// Paths on the endpoint, each starting with `/`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Paths {
    #[serde(default = "default_health_path")]
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 1024))]
    pub health_check: String,
    #[serde(default = "default_process_path")]
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 1024))]
    pub process: String,
    #[serde(default = "default_status_path")]
    #[schemars(regex(pattern = r"^/\S*$"), length(max = 1024))]
    pub status: String,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            health_check: default_health_path(),
            process: default_process_path(),
            status: default_status_path(),
        }
    }
}

fn default_health_path() -> String {
    "/health".into()
}
fn default_process_path() -> String {
    "/process".into()
}
fn default_status_path() -> String {
    "/status".into()
}

/// How the controller decides whether the MCP is healthy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.timeoutSeconds <= self.intervalSeconds",
    "message": "timeoutSeconds must not exceed intervalSeconds: a probe cannot outlast the interval between probes"
}, {
    "rule": "!has(self.call) || self.type == 'mcp'",
    "message": "a functional probe (call) calls a tool over MCP: set healthCheck.type: mcp"
}]))]
pub struct HealthCheck {
    /// `http`: GET the health path, expect 2xx. `mcp`: speak MCP over Streamable HTTP at the
    /// process path, either generation (`server/discover`, else `initialize` and `ping`; then
    /// `tools/list`). `none`: nothing to probe (an MCP without an address, such as a stdio
    /// server): healthy once registered, judged by its reports.
    #[serde(rename = "type", default)]
    pub probe_type: ProbeType,
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: u32,
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 60))]
    pub timeout_seconds: u32,
    /// Consecutive failed probes before the MCP counts as down.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
    /// Consecutive good probes before the MCP counts as healthy again.
    #[serde(default = "default_success_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: u32,
    /// Secret (same namespace) whose every key/value is sent as an HTTP header with each probe,
    /// for MCPs behind authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from_secret: Option<SecretName>,
    /// A functional probe (`type: mcp` only): a `tools/call` made with every probe, whose
    /// answer must contain what `expect` says; a wrong answer makes the MCP Degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<ProbeCall>,
}

/// A `tools/call` a probe makes, and what its answer must contain.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeCall {
    #[schemars(length(min = 1, max = 128))]
    pub tool: String,
    /// The call's arguments (a JSON object, at most 8 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::crd::conventions::free_form_object")]
    pub arguments: Option<serde_json::Value>,
    #[serde(default)]
    pub expect: ProbeExpectation,
}

/// What a functional probe's answer must be.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeExpectation {
    /// Texts the answer's content (text blocks and structured content) must each contain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 256)))]
    pub contains: Vec<String>,
    /// Whether the tool is expected to answer with `isError: true` (default false).
    #[serde(default)]
    pub is_error: bool,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            probe_type: ProbeType::default(),
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            failure_threshold: default_failure_threshold(),
            success_threshold: default_success_threshold(),
            headers_from_secret: None,
            call: None,
        }
    }
}

fn default_interval() -> u32 {
    10
}
fn default_timeout() -> u32 {
    2
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    1
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretName {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeType {
    #[default]
    Http,
    Mcp,
    /// Nothing to probe: an MCP without an address of its own (a stdio server its client
    /// starts). It counts as healthy once registered, is judged by what it reports, and its
    /// heartbeats, which stop with each session, never make it Degraded. Not routable.
    None,
}

/// Routing preferences; the controller turns them into `status.routing`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Tier: 0 is served first; higher tiers take traffic when lower ones have no healthy capacity.
    /// 1 unless given, as in the seed's registration message (registrations stored before keep
    /// the 0 the API server wrote into them).
    #[serde(default = "default_priority")]
    #[schemars(range(min = 0, max = 100))]
    pub priority: u32,
    /// Share of traffic within a tier before performance scaling.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: u32,
    /// Requests the gateway sends this MCP at once; beyond it, the next candidate takes the call.
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_concurrent_requests: u32,
    /// Tools of this MCP that may be called twice with the same arguments without harm: the
    /// gateway retries them on another MCP even when the first may have received the call.
    /// `*` means every tool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 128)))]
    pub idempotent_tools: Vec<String>,
    /// How long the gateway waits for this MCP's answer to begin (its response headers) before
    /// it counts the call as failed; the gateway's `--gateway-call-timeout-seconds` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub call_timeout_seconds: Option<u32>,
}

impl Default for RoutingSpec {
    fn default() -> Self {
        Self {
            priority: default_priority(),
            weight: default_weight(),
            max_concurrent_requests: default_max_concurrent(),
            idempotent_tools: Vec::new(),
            call_timeout_seconds: None,
        }
    }
}

fn default_priority() -> u32 {
    1
}
fn default_weight() -> u32 {
    100
}
fn default_max_concurrent() -> u32 {
    10
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrivacySpec {
    #[serde(default)]
    pub level: PrivacyLevel,
    /// How long interaction logs of this MCP are kept.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 3650))]
    pub retention_days: u32,
}

impl Default for PrivacySpec {
    fn default() -> Self {
        Self {
            level: PrivacyLevel::default(),
            retention_days: default_retention_days(),
        }
    }
}

fn default_retention_days() -> u32 {
    30
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyLevel {
    Public,
    #[default]
    Internal,
    Sensitive,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Compatibility {
    /// Semver range of coordinator versions this MCP works with, e.g. `>=0.1, <2`.
    #[schemars(length(min = 1, max = 256))]
    pub coordinator_version: String,
}

impl MCPRegistration {
    /// Name of the Secret holding this registration's API key.
    pub fn key_secret_name(&self) -> String {
        format!("{}-mcp-key", self.name_any())
    }

    /// Reference used for Events about this registration.
    pub fn event_reference(&self) -> ObjectReference {
        self.object_ref(&())
    }
}

/// The CRD as the API server should receive it.
pub fn crd(
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    conventions::apply(MCPRegistration::crd())
}

/// The CRD's OpenAPI schema (of its one version), as the API server checks objects against it.
pub fn openapi_schema() -> serde_json::Value {
    crd()
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The CRD as YAML, exactly as `crds/mcpregistration.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(&crd())
}
