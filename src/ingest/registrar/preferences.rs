//! The preferences a self-registering MCP may state about itself, in the seed's words: routing
//! (the answer's `routing_config`), privacy, and its health check. Each becomes the spec field
//! it names; the schema's bounds apply as to any registration. Probe credentials
//! (`headersFromSecret`) are not among them: a registrar token must not point a probe at a
//! Secret of the namespace.

use serde::Deserialize;

use crate::crd::{
    HealthCheck, PrivacyLevel, PrivacySpec, ProbeCall, ProbeExpectation, ProbeType, RoutingSpec,
};

/// `mcp_info.routing_config`: the seed's names for `spec.routing`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRouting {
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub max_concurrent_requests: Option<u32>,
    /// Tools that may be retried on another MCP (the gateway's `idempotentTools`).
    #[serde(default)]
    pub idempotent_tools: Option<Vec<String>>,
}

/// `mcp_info.privacy`: the seed's `privacy_level` and the retention it implies.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPrivacy {
    #[serde(default, alias = "privacy_level")]
    pub level: Option<PrivacyLevel>,
    #[serde(default)]
    pub retention_days: Option<u32>,
}

/// `mcp_info.health_check`: how the MCP wants to be probed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedHealthCheck {
    #[serde(default, rename = "type")]
    pub probe_type: Option<ProbeType>,
    #[serde(default, alias = "interval_seconds")]
    pub interval: Option<u32>,
    #[serde(default, alias = "timeout_seconds")]
    pub timeout: Option<u32>,
    #[serde(default)]
    pub failure_threshold: Option<u32>,
    #[serde(default)]
    pub success_threshold: Option<u32>,
    /// A functional probe: `{"tool": ..., "arguments": {...}, "expect": {"contains": [...]}}`.
    #[serde(default)]
    pub call: Option<SeedCall>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedCall {
    pub tool: String,
    #[serde(default)]
    pub arguments: Option<serde_json::Value>,
    #[serde(default)]
    pub expect: Option<SeedExpectation>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedExpectation {
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub is_error: bool,
}

/// The routing a message asks for, over the defaults (the seed's: priority 1, weight 100, 10
/// requests at once).
pub fn routing(seed: Option<SeedRouting>) -> RoutingSpec {
    let seed = seed.unwrap_or_default();
    let defaults = RoutingSpec::default();
    RoutingSpec {
        priority: seed.priority.unwrap_or(defaults.priority),
        weight: seed.weight.unwrap_or(defaults.weight),
        max_concurrent_requests: seed
            .max_concurrent_requests
            .unwrap_or(defaults.max_concurrent_requests),
        idempotent_tools: seed.idempotent_tools.unwrap_or_default(),
        call_timeout_seconds: None,
    }
}

pub fn privacy(seed: Option<SeedPrivacy>) -> PrivacySpec {
    let seed = seed.unwrap_or_default();
    let defaults = PrivacySpec::default();
    PrivacySpec {
        level: seed.level.unwrap_or(defaults.level),
        retention_days: seed.retention_days.unwrap_or(defaults.retention_days),
    }
}

/// The health check a message asks for. Without a type, an MCP whose process endpoint is `/mcp`
/// (an MCP SDK server's) is probed over MCP: it has no `/health` to GET.
pub fn health_check(seed: Option<SeedHealthCheck>, process_path: &str) -> HealthCheck {
    let seed = seed.unwrap_or_default();
    let defaults = HealthCheck::default();
    let guessed = if process_path == "/mcp" {
        ProbeType::Mcp
    } else {
        defaults.probe_type
    };
    HealthCheck {
        probe_type: seed.probe_type.unwrap_or(guessed),
        interval_seconds: seed.interval.unwrap_or(defaults.interval_seconds),
        timeout_seconds: seed.timeout.unwrap_or(defaults.timeout_seconds),
        failure_threshold: seed.failure_threshold.unwrap_or(defaults.failure_threshold),
        success_threshold: seed.success_threshold.unwrap_or(defaults.success_threshold),
        headers_from_secret: None,
        call: seed.call.map(|c| ProbeCall {
            tool: c.tool,
            arguments: c.arguments,
            expect: c
                .expect
                .map(|e| ProbeExpectation {
                    contains: e.contains,
                    is_error: e.is_error,
                })
                .unwrap_or_default(),
        }),
    }
}

/// The message's name for a spec field of the preferences, if it is one.
pub fn seed_field(field: &str) -> Option<String> {
    let snake = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    };
    let (section, rest) = [
        ("routing", "routing_config"),
        ("privacy", "privacy"),
        ("healthCheck", "health_check"),
    ]
    .into_iter()
    .find_map(|(spec, seed)| Some((seed, field.strip_prefix(spec)?)))?;
    let rest = snake(rest)
        .replace(".interval_seconds", ".interval")
        .replace(".timeout_seconds", ".timeout");
    Some(format!("mcp_info.{section}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_seed_and_an_sdk_server_is_probed_over_mcp() {
        let r = routing(None);
        assert_eq!(
            (r.priority, r.weight, r.max_concurrent_requests),
            (1, 100, 10)
        );
        assert_eq!(health_check(None, "/mcp").probe_type, ProbeType::Mcp);
        assert_eq!(health_check(None, "/process").probe_type, ProbeType::Http);
        let asked: SeedHealthCheck =
            serde_json::from_value(serde_json::json!({"type": "http", "interval": 30})).unwrap();
        let h = health_check(Some(asked), "/mcp");
        assert_eq!((h.probe_type, h.interval_seconds), (ProbeType::Http, 30));
    }

    #[test]
    fn spec_fields_are_named_as_the_message_names_them() {
        assert_eq!(
            seed_field("routing.maxConcurrentRequests").as_deref(),
            Some("mcp_info.routing_config.max_concurrent_requests")
        );
        assert_eq!(
            seed_field("healthCheck.timeoutSeconds").as_deref(),
            Some("mcp_info.health_check.timeout")
        );
        assert_eq!(seed_field("version"), None);
    }
}
