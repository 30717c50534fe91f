//! `GET /v1/route?capability=…&request_type=…`: any known token may ask (gateways use a reader
//! token); the answer comes from the router's memory, so it is not audited.

use warp::http::StatusCode;

use super::super::state::IngestState;
use super::guards::any_token;
use super::read::parse_query;
use super::reply::{bytes_reply, ApiError, ErrorCode, Response};
use crate::routing::router::RouteError;

pub fn route(state: &IngestState, auth: Option<&str>, query: &str) -> Result<Response, ApiError> {
    any_token(state, auth, "route decisions")?;
    let params = parse_query(query);
    let capability = params
        .get("capability")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            ApiError::query(
                "capability",
                "required: the capability to route, e.g. ?capability=ocr",
            )
        })?;
    let request_type = params
        .get("request_type")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let decisions = &state.metrics.route_decisions;
    match state
        .router
        .route(capability, request_type, state.router.now())
    {
        Ok(route) => {
            let result = if route.failed_over {
                "failed_over"
            } else {
                "routed"
            };
            decisions.with_label_values(&[result]).inc();
            // Serialized straight to bytes: this is the hot path of gateways.
            let body = serde_json::to_vec(&route)
                .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
            Ok(bytes_reply(StatusCode::OK, body, "application/json"))
        }
        Err(e) => {
            let code = match e {
                RouteError::UnknownCapability(_) => ErrorCode::UnknownCapability,
                RouteError::NoneRoutable { .. } => ErrorCode::NoneReady,
                RouteError::Saturated { .. } => ErrorCode::Saturated,
            };
            decisions.with_label_values(&[code.as_str()]).inc();
            Err(ApiError::new(code, e.to_string()))
        }
    }
}
