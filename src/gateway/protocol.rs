//! The answers the gateway gives itself (`initialize`, `server/discover`) and what a 2026-07-28
//! client expects of a result. The wire both generations share is [`crate::mcp::wire`],
//! re-exported here.

use serde_json::{json, Value};

pub use crate::mcp::wire::*;

/// What the gateway can do, the same for both generations.
fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}, "resources": {}, "prompts": {}})
}

fn server_info(scope: &str) -> Value {
    json!({"name": format!("mcp-coordinator gateway ({scope})"), "version": env!("CARGO_PKG_VERSION")})
}

/// The version a handshake settles on: the client's when the gateway knows it, else the latest.
pub fn negotiate(requested: Option<&str>) -> &'static str {
    HANDSHAKE_VERSIONS
        .iter()
        .find(|v| Some(**v) == requested)
        .copied()
        .unwrap_or(LATEST_HANDSHAKE)
}

/// The answer to `initialize`.
pub fn initialize_result(version: &str, scope: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(),
        "serverInfo": server_info(scope),
        "instructions": format!("Tools of the Ready MCPs of {scope}, routed by measured performance."),
    })
}

/// The answer to `server/discover`.
pub fn discover_result(scope: &str) -> Value {
    let mut supported: Vec<&str> = HANDSHAKE_VERSIONS.to_vec();
    supported.push(MODERN_VERSION);
    json!({
        "supportedVersions": supported,
        "capabilities": capabilities(),
        "instructions": format!("Tools of the Ready MCPs of {scope}, routed by measured performance."),
        "resultType": "complete",
        "cacheScope": "private",
        "ttlMs": 0,
        "_meta": {META_SERVER_INFO: server_info(scope)},
    })
}

/// Adds what a 2026-07-28 client expects of a result (`resultType`, and the cache hints of
/// cacheable results) when the gateway composed it or a handshake-era MCP left them out.
pub fn modern_result(mut result: Value, modern: bool, method: &str) -> Value {
    if modern {
        if let Value::Object(r) = &mut result {
            r.entry("resultType").or_insert_with(|| json!("complete"));
            if method.ends_with("/list") || method == "resources/read" || method == "prompts/get" {
                r.entry("cacheScope").or_insert_with(|| json!("private"));
                r.entry("ttlMs").or_insert_with(|| json!(0));
            }
        }
    }
    result
}

/// [`modern_result`] applied to a whole JSON-RPC response.
pub fn modern_response(mut response: Value, modern: bool, method: &str) -> Value {
    if modern {
        if let Some(result) = response.get_mut("result") {
            *result = modern_result(result.take(), true, method);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_settle_on_a_known_version() {
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("1999-01-01")), LATEST_HANDSHAKE);
        let d = discover_result("default");
        assert!(d["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!(MODERN_VERSION)));
    }
}
