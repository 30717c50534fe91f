//! The gateway's HTTP edge: `POST`, `GET` and `DELETE` on `/mcp/{namespace}[/{capability}]`.
//! A request is authenticated (a caller token or an OAuth bearer JWT, `auth.rs`) and its scope
//! checked before its body is read;
//! the body is bounded in bytes and time; then the message is answered by the gateway itself
//! (`initialize`, `server/discover`, `ping`, lists) or routed (`call`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply as _};

use super::call::{Ctx, Reply};
use super::catalog::Kind;
use super::edge::{refuse, scope_of};
use super::protocol::{
    self, code, Message, METHOD_HEADER, MODERN_VERSION, NAME_HEADER, PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
};
use super::{owner_of_caller, owner_of_session, Gateway};
use crate::trust::callers::Caller;

/// The gateway's routes: every method and path, answered by [`handle`].
pub fn routes(
    gateway: Arc<Gateway>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(move |method: Method, path: warp::path::FullPath, headers: HeaderMap, body| {
            let gateway = gateway.clone();
            async move { handle(gateway, method, path.as_str().to_string(), headers, body).await }
        })
        .recover(|_| async {
            let body = protocol::error(Value::Null, code::INVALID_REQUEST, "the request could not be read");
            Ok::<Response, Infallible>(json_reply(&body, StatusCode::BAD_REQUEST))
        })
        .unify()
}

fn json_reply(value: &Value, status: StatusCode) -> Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn handle<S, B>(
    gateway: Arc<Gateway>,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    if let Some(response) = super::auth::metadata(&gateway, &method, &path) {
        return response;
    }
    let Some((namespace, capability)) = scope_of(&path) else {
        return refuse(
            &gateway,
            StatusCode::NOT_FOUND,
            "path",
            "the gateway serves /mcp/{namespace} and /mcp/{namespace}/{capability}",
        );
    };
    let caller = match super::auth::authenticate(
        &gateway,
        &headers,
        &namespace,
        capability.as_deref(),
    )
    .await
    {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    if !caller.grant.allows_namespace(&namespace)
        || !caller.grant.allows_capability(capability.as_deref())
    {
        let what = match &capability {
            Some(c) => format!("capability {c:?} of namespace {namespace:?}"),
            None => format!("namespace {namespace:?} (as a whole)"),
        };
        return refuse(
            &gateway,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!("caller {} may not use {what}", caller.name),
        );
    }
    let scope = match &capability {
        Some(c) => format!("{namespace}/{c}"),
        None => namespace.clone(),
    };
    match method {
        Method::POST => {}
        Method::DELETE => {
            return match header(&headers, SESSION_HEADER) {
                Some(id) if gateway.sessions.close(id, &caller.name) => {
                    gateway.end_session(id).await;
                    StatusCode::NO_CONTENT.into_response()
                }
                _ => refuse(
                    &gateway,
                    StatusCode::NOT_FOUND,
                    "session",
                    "no such session",
                ),
            };
        }
        _ => {
            let mut r = refuse(&gateway, StatusCode::METHOD_NOT_ALLOWED, "method", "the gateway takes POST (and DELETE to end a session); it opens no server-initiated stream");
            r.headers_mut()
                .insert("allow", HeaderValue::from_static("POST, DELETE"));
            return r;
        }
    }
    let Some(_slot) = gateway.caller_slot(&caller.name) else {
        return refuse(
            &gateway,
            StatusCode::TOO_MANY_REQUESTS,
            "caller_concurrency",
            &format!(
                "caller {} has {} calls in flight, its limit",
                caller.name, gateway.config.caller_concurrency
            ),
        );
    };
    let body = match read_body(body, gateway.config.max_body_bytes, Duration::from_secs(30)).await {
        Ok(body) => body,
        Err((status, message)) => return refuse(&gateway, status, "body", &message),
    };
    let message = match protocol::parse(&body) {
        Ok(m) => m,
        Err(error) => return json_reply(&error, StatusCode::BAD_REQUEST),
    };
    let modern = header(&headers, PROTOCOL_VERSION_HEADER) == Some(MODERN_VERSION)
        || message.envelope_version() == Some(MODERN_VERSION);
    let id = message.id.clone().unwrap_or(Value::Null);
    if modern {
        if let Err(mismatch) = protocol::check_headers(
            &message,
            header(&headers, METHOD_HEADER),
            header(&headers, NAME_HEADER),
        ) {
            return json_reply(
                &protocol::error(id, code::HEADER_MISMATCH, &mismatch),
                StatusCode::BAD_REQUEST,
            );
        }
    }
    if message.method == "initialize" {
        return initialize(&gateway, &caller, &scope, &message);
    }
    let owner = if modern {
        owner_of_caller(&caller.name)
    } else {
        match header(&headers, SESSION_HEADER) {
            Some(session) if gateway.sessions.touch(session, &caller.name, &scope) => {
                owner_of_session(session)
            }
            Some(_) => {
                return refuse(
                    &gateway,
                    StatusCode::NOT_FOUND,
                    "session",
                    "the session has ended or is unknown; send initialize again",
                )
            }
            None if message.method == "server/discover" => owner_of_caller(&caller.name),
            None => {
                return json_reply(&protocol::error(id, code::INVALID_REQUEST, "no Mcp-Session-Id: send initialize first, or speak MCP 2026-07-28 (server/discover, MCP-Protocol-Version on every request)"), StatusCode::BAD_REQUEST);
            }
        }
    };
    if message.id.is_none() {
        if message.method == "notifications/cancelled" {
            cancel(&gateway, &owner, &message).await;
        }
        return StatusCode::ACCEPTED.into_response();
    }
    let method_name = message.method.clone();
    let answer = |result: Value| {
        json_reply(
            &protocol::result(
                id.clone(),
                protocol::modern_result(result, modern, &method_name),
            ),
            StatusCode::OK,
        )
    };
    match message.method.as_str() {
        "server/discover" => answer(protocol::discover_result(&scope)),
        "ping" | "logging/setLevel" => answer(json!({})),
        method => {
            let backends: Vec<_> = gateway.directory.scope(&namespace, capability.as_deref());
            if let Some(kind) = Kind::of_list(method) {
                let catalog = gateway.catalog(&scope, kind, &backends).await;
                let items = gateway.visible(&caller, kind, &catalog);
                return answer(json!({ kind.result_key(): items }));
            }
            let Some(kind) = Kind::of_call(method) else {
                return json_reply(
                    &protocol::error(
                        id,
                        code::METHOD_NOT_FOUND,
                        &format!("the gateway does not relay {method:?}"),
                    ),
                    StatusCode::OK,
                );
            };
            let accepts_stream =
                header(&headers, "accept").is_some_and(|a| a.contains("text/event-stream"));
            let ctx = Ctx {
                caller: caller.clone(),
                owner,
                scope,
                backends,
                accepts_stream,
                modern,
                request_bytes: body.len(),
            };
            match gateway.routed(ctx, kind, message).await {
                Reply::Json(value) => json_reply(
                    &protocol::modern_response(value, modern, &method_name),
                    StatusCode::OK,
                ),
                Reply::Limited(value, retry_after) => {
                    let mut response = json_reply(
                        &protocol::modern_response(value, modern, &method_name),
                        StatusCode::TOO_MANY_REQUESTS,
                    );
                    response.headers_mut().insert(
                        "retry-after",
                        HeaderValue::from(retry_after.as_secs().max(1)),
                    );
                    response
                }
                Reply::Stream(rx) => {
                    let events = tokio_stream::wrappers::ReceiverStream::new(rx).map(|data| {
                        Ok::<_, Infallible>(warp::sse::Event::default().event("message").data(data))
                    });
                    warp::sse::reply(events).into_response()
                }
            }
        }
    }
}

fn initialize(gateway: &Gateway, caller: &Caller, scope: &str, message: &Message) -> Response {
    let id = message.id.clone().unwrap_or(Value::Null);
    let requested = message
        .params
        .get("protocolVersion")
        .and_then(Value::as_str);
    let version = protocol::negotiate(requested);
    match gateway.sessions.open(&caller.name, scope) {
        Ok(session) => {
            let mut response = json_reply(
                &protocol::result(id, protocol::initialize_result(version, scope)),
                StatusCode::OK,
            );
            if let Ok(v) = HeaderValue::from_str(&session) {
                response.headers_mut().insert(SESSION_HEADER, v);
            }
            response
        }
        Err(full) => refuse(
            gateway,
            StatusCode::SERVICE_UNAVAILABLE,
            "sessions",
            &full.to_string(),
        ),
    }
}

/// Forwards a cancellation to the MCP the request went to.
async fn cancel(gateway: &Gateway, owner: &str, message: &Message) {
    let Some(request_id) = message.params.get("requestId") else {
        return;
    };
    let Some(mcp_id) = gateway.in_flight_on(owner, request_id) else {
        return;
    };
    let Some(backend) = gateway.directory.get(&mcp_id) else {
        return;
    };
    if let Err(e) = gateway
        .upstream
        .send(&backend, owner, message, Duration::from_secs(5))
        .await
    {
        tracing::debug!(%mcp_id, error = %e, "forwarding a cancellation failed");
    }
}

async fn read_body<S, B>(
    body: S,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, (StatusCode, String)>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let read = async {
        let mut body = body;
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            let mut chunk = chunk.map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("could not read the request body: {e}"),
                )
            })?;
            if out.len() + chunk.remaining() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body exceeds the gateway's limit of {limit} bytes"),
                ));
            }
            while chunk.has_remaining() {
                let part = chunk.chunk();
                out.extend_from_slice(part);
                let n = part.len();
                chunk.advance(n);
            }
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err((
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_a_namespace_and_an_optional_capability() {
        assert_eq!(scope_of("/mcp/default"), Some(("default".into(), None)));
        assert_eq!(scope_of("/mcp/default/"), Some(("default".into(), None)));
        assert_eq!(
            scope_of("/mcp/ocr/text-extraction"),
            Some(("ocr".into(), Some("text-extraction".into())))
        );
        assert_eq!(scope_of("/mcp/"), None);
        assert_eq!(scope_of("/mcp/a/b/c"), None);
        assert_eq!(scope_of("/v1/route"), None);
    }
}
