//! What every answer of the gateway's HTTP edge shares: the scope a path names, and a refusal
//! before any MCP is involved.

use serde_json::Value;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Reply as _;

use super::protocol::{self, code};
use super::Gateway;

/// An HTTP-level refusal: status, JSON-RPC error code and message.
pub(super) fn refuse(
    gateway: &Gateway,
    status: StatusCode,
    reason: &str,
    message: &str,
) -> Response {
    gateway.metrics.refused.with_label_values(&[reason]).inc();
    let body = protocol::error(Value::Null, code::INVALID_REQUEST, message);
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer realm=\"mcp-coordinator gateway\""),
        );
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// `/mcp/{namespace}` or `/mcp/{namespace}/{capability}`.
pub(super) fn scope_of(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/mcp/")?.trim_end_matches('/');
    let mut parts = rest.split('/');
    let namespace = parts.next().filter(|s| !s.is_empty())?;
    let capability = parts.next().map(str::to_string);
    if parts.next().is_some()
        || namespace.len() > 63
        || capability
            .as_ref()
            .is_some_and(|c| c.is_empty() || c.len() > 128)
    {
        return None;
    }
    Some((namespace.to_string(), capability))
}
