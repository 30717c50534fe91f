//! `spec.gatewayPolicy`: who may call this MCP's tools through the gateway, and how often. The
//! policy travels with the MCP it protects (its owner writes it where the MCP is declared, under
//! the same RBAC), and the gateway already watches registrations, so a change applies without a
//! restart and no other resource needs installing or watching.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Rules and rate limits the gateway applies to calls bound for this MCP, before they leave it.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPolicy {
    /// CEL rules; a call reaches this MCP only when every one is true. Variables: `caller.name`,
    /// `caller.groups` (a list), `tool.name` and `tool.arguments` (the call's arguments, a map).
    /// `tools/list` hides a tool when a rule is false for it whatever its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub rules: Vec<PolicyRule>,
    /// Token buckets: calls a caller, a tool, or a caller on one tool may make to this MCP, per
    /// gateway replica.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub rate_limits: Vec<RateLimit>,
}

/// One rule: a name (given in refusals) and a CEL expression that must be true.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// A CEL expression of type bool, e.g. `"ocr-admins" in caller.groups || tool.name != "delete_index"`.
    #[schemars(length(min = 1, max = 2048))]
    pub expression: String,
}

/// What a rate limit counts separately.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RateLimitKey {
    /// Each caller.
    #[default]
    Caller,
    /// Each tool, whoever calls it.
    Tool,
    /// Each caller on each tool.
    CallerAndTool,
}

/// `requests` calls per `periodSeconds`, refilled steadily (a token bucket of `requests`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    #[serde(default)]
    pub per: RateLimitKey,
    #[schemars(range(min = 1, max = 1000000))]
    pub requests: u32,
    #[schemars(range(min = 1, max = 86400))]
    pub period_seconds: u32,
}
