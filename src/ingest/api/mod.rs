//! The ingest HTTP API (warp): the seed's `action` envelope, the REST API, batches, heartbeats,
//! queries, route answers and the ops endpoints. This module dispatches; the guards, the write
//! path, the read path, route answers and replies each have their own.

pub mod gateway;
pub mod guards;
pub mod openapi;
mod params;
pub mod read;
pub mod register;
pub mod reply;
pub mod route;
pub mod series;
pub mod store_check;
mod traces;
pub mod write;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Buf;
use futures::Stream;
use serde_json::{json, Value};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use super::state::IngestState;
use crate::interaction::{check_id, EventKind};
use crate::telemetry::spans::{self, TraceContextExt, Tracer, WithContext};
use crate::trust::keys::bearer;
use guards::{authenticate, check_signature, content_type, read_body, require_json, Signed};
use read::{parse_query, Reading};
use reply::{json_reply, ApiError, ErrorCode, Response};

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// All routes, as one filter that never rejects: every failure is a JSON error.
pub fn routes(
    state: Arc<IngestState>,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static
{
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
                let state = state.clone();
                async move {
                    let path = path.as_str().to_string();
                    // Probes and scrapes are answered even when the server is full.
                    let ops = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
                    let _permit = match state.in_flight.clone().try_acquire_owned() {
                        Ok(permit) => Some(permit),
                        Err(_) if ops => None,
                        Err(_) => {
                            state
                                .metrics
                                .rejected
                                .with_label_values(&["overloaded"])
                                .inc();
                            return ApiError::new(
                                ErrorCode::Overloaded,
                                "too many requests in flight; retry shortly",
                            )
                            .reply();
                        }
                    };
                    let request = Request {
                        method: &method,
                        path: &path,
                        query: &query,
                        headers: &headers,
                    };
                    let span = server_span(&method, &path, &headers);
                    let answer = handle(&state, &request, body);
                    let answer = match &span {
                        Some(cx) => answer.with_context(cx.clone()).await,
                        None => answer.await,
                    };
                    let response = match answer {
                        Ok(r) => r,
                        Err(e) => {
                            if path != "/metrics" {
                                state
                                    .metrics
                                    .rejected
                                    .with_label_values(&[e.code.metric_reason()])
                                    .inc();
                            }
                            e.reply()
                        }
                    };
                    if let Some(cx) = span {
                        end_server_span(&cx, response.status().as_u16());
                    }
                    response
                }
            },
        )
        .recover(|_| async {
            Ok::<Response, std::convert::Infallible>(
                ApiError::new(ErrorCode::BadRequest, "the request could not be read").reply(),
            )
        })
        .unify()
}

/// The request's SERVER span (named by its endpoint's template, the caller's `traceparent` its
/// parent), when spans are exported; none for OTLP itself (a coordinator exporting to itself
/// would trace its own exports), probes and scrapes.
fn server_span(method: &Method, path: &str, headers: &HeaderMap) -> Option<spans::SpanContext> {
    if !spans::enabled() || matches!(path, "/v1/traces" | "/healthz" | "/readyz" | "/metrics") {
        return None;
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let route = openapi::template(&segments).unwrap_or("unknown");
    let parent = spans::extract(|k| headers.get(k)?.to_str().ok().map(str::to_string));
    let span = spans::tracer()
        .span_builder(format!("{method} {route}"))
        .with_kind(spans::SpanKind::Server)
        .with_attributes([
            spans::Attribute::new("http.request.method", method.to_string()),
            spans::Attribute::new("http.route", route),
            spans::Attribute::new("url.path", path.to_string()),
        ])
        .start_with_context(&spans::tracer(), &parent);
    Some(parent.with_span(span))
}

fn end_server_span(cx: &spans::SpanContext, status: u16) {
    let span = cx.span();
    span.set_attribute(spans::Attribute::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if status >= 500 {
        span.set_attribute(spans::Attribute::new("error.type", status.to_string()));
        span.set_status(spans::Status::error(""));
    }
    span.end();
}

/// A request, apart from its body.
struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
}

impl Request<'_> {
    fn auth(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
    }

    fn signed<'b>(&'b self, body: &'b [u8]) -> Signed<'b> {
        Signed {
            method: self.method,
            path: self.path,
            headers: self.headers,
            body,
        }
    }
}

async fn handle<S, B>(state: &IngestState, req: &Request<'_>, body: S) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let auth = req.auth();
    let ok = |value: Value| json_reply(StatusCode::OK, &value);
    let reading = || Reading {
        state,
        auth,
        params: parse_query(req.query),
    };
    match (req.method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(ok(json!({"status": "ok"}))),
        (&Method::GET, ["readyz"]) => {
            if state.ready.load(Ordering::Relaxed) {
                Ok(ok(json!({"status": "ready"})))
            } else {
                Err(ApiError::new(ErrorCode::NotReady, "shutting down"))
            }
        }
        (&Method::GET, ["metrics"]) => Ok(metrics(state)),
        (&Method::GET, ["openapi.json"]) => Ok(ok(openapi::document())),
        (&Method::GET, ["v1", "route"]) => route::route(state, auth, req.query),
        (&Method::GET, ["v1", "registrations"]) => reading().registrations().map(ok),
        (&Method::GET, ["v1", "protocols"]) => reading().protocols().map(ok),
        (&Method::POST, ["api", "register"]) => {
            require_json(req.headers)?;
            let (registrar, grant) = register::grant(state, bearer(auth))?;
            register::handle(registrar, &grant, &single_body(state, req, body).await?).await
        }
        (&Method::POST, ["api", "interactions"]) => {
            require_json(req.headers)?;
            // The seed sends every action to one endpoint: a registrar token means registration.
            if let Ok((registrar, grant)) = register::grant(state, bearer(auth)) {
                let body = single_body(state, req, body).await?;
                return register::handle(registrar, &grant, &body).await;
            }
            // The seed's envelope may carry its key in the body; a key in the header is checked
            // before the body is read.
            if let Some(key) = bearer(auth) {
                authenticate(state, Some(key))?;
            }
            let body = single_body(state, req, body).await?;
            let envelope = write::Envelope::parse(&body)?;
            let key = envelope.api_key.as_deref().or(bearer(auth));
            let key_mcp = authenticate(state, key)?;
            let required = state.signing.required_for_writes();
            check_signature(state, required, key, &req.signed(&body))?;
            let kind = envelope.kind()?;
            write::report(state, &key_mcp, kind, envelope.data, "data").await
        }
        (&Method::POST, ["v1", "interactions"]) => {
            require_json(req.headers)?;
            let (key_mcp, body) = authenticated_body(state, req, body, Write::Report).await?;
            write::report_text(state, &key_mcp, EventKind::Start, None, &body).await
        }
        (&Method::POST, ["v1", "interactions:batch"]) => {
            let kind = content_type(req.headers);
            if kind != "application/json" && kind != "application/x-ndjson" {
                return Err(ApiError::new(
                    ErrorCode::UnsupportedMediaType,
                    format!("a batch is application/json (an array) or application/x-ndjson, not {kind:?}"),
                ));
            }
            let (key_mcp, body) = authenticated_body(state, req, body, Write::Batch).await?;
            write::batch(state, &key_mcp, &body, kind == "application/x-ndjson").await
        }
        (&Method::POST, ["v1", "interactions", id, stage]) => {
            let kind = match *stage {
                "progress" => EventKind::Progress,
                "complete" => EventKind::Complete,
                "error" => EventKind::Error,
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::NotFound,
                        format!("no such report {stage:?}; use progress, complete or error"),
                    ))
                }
            };
            require_json(req.headers)?;
            let (key_mcp, body) = authenticated_body(state, req, body, Write::Report).await?;
            check_id(id, "interaction_id").map_err(ApiError::bad)?;
            write::report_text(state, &key_mcp, kind, Some(id), &body).await
        }
        (&Method::POST, ["v1", "traces"]) => Ok(traces::export(state, req, body).await),
        (&Method::POST, ["v1", "heartbeat"]) => {
            let (key_mcp, _) = authenticated_body(state, req, body, Write::Report).await?;
            Ok(write::heartbeat(state, &key_mcp))
        }
        (&Method::GET, ["v1", "audit"]) => reading().audit_log().await.map(ok),
        (&Method::GET, ["v1", "store"]) => store_check::check(state, auth).await.map(ok),
        (&Method::GET, ["v1", "heartbeats"]) => reading().heartbeats().await.map(ok),
        (&Method::GET, ["v1", "versions"]) => reading().versions().await.map(ok),
        (&Method::GET, ["v1", "gateway", "ejections"]) => reading().ejections().await.map(ok),
        (&Method::GET, ["v1", "mcps", mcp_id, "interactions"]) => {
            reading().history(mcp_id).await.map(ok)
        }
        (&Method::GET, ["v1", "mcps", mcp_id, "metrics"]) => {
            reading().mcp_metrics(mcp_id).await.map(ok)
        }
        (&Method::GET, ["v1", "mcps", mcp_id, "metrics", "series"]) => {
            (reading().series(mcp_id).await)
                .map(|bytes| reply::bytes_reply(StatusCode::OK, bytes, "application/json"))
        }
        (&Method::GET, ["v1", "metrics"]) => reading().all_metrics().await.map(ok),
        (_, path) if openapi::allowed_methods(path).is_some() => {
            let allow = openapi::allowed_methods(path).unwrap_or_default();
            Err(ApiError {
                allow: Some(allow.clone()),
                ..ApiError::new(
                    ErrorCode::MethodNotAllowed,
                    format!("{} is not allowed on {}; use {allow}", req.method, req.path),
                )
            })
        }
        _ => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no such endpoint {}", req.path),
        )),
    }
}

/// The body of a request with one report or message in it, within that size and time.
async fn single_body<S, B>(
    state: &IngestState,
    req: &Request<'_>,
    body: S,
) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    read_body(
        body,
        req.headers,
        state.limits.single_bytes,
        state.limits.body_timeout,
    )
    .await
}

/// Which kind of write a request is: its body limit and signature policy follow.
#[derive(Clone, Copy)]
enum Write {
    Report,
    Batch,
}

/// A write's key, checked from the headers before any of the body is read; then the body
/// (within its size and time limits) and its signature where the policy asks for one. Answers
/// the MCP the key speaks for, and the body.
async fn authenticated_body<S, B>(
    state: &IngestState,
    req: &Request<'_>,
    body: S,
    write: Write,
) -> Result<(String, Vec<u8>), ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let key = bearer(req.auth());
    let key_mcp = authenticate(state, key)?;
    let (limit, required) = match write {
        Write::Report => (
            state.limits.single_bytes,
            state.signing.required_for_writes(),
        ),
        Write::Batch => (state.limits.batch_bytes, state.signing.required_for_batch()),
    };
    let body = read_body(body, req.headers, limit, state.limits.body_timeout).await?;
    check_signature(state, required, key, &req.signed(&body))?;
    Ok((key_mcp, body))
}

fn metrics(state: &IngestState) -> Response {
    let text =
        state
            .metrics
            .render_with(state.spool.stats(), now_ms(), state.extra_metrics.as_ref());
    reply::bytes_reply(
        StatusCode::OK,
        text.into_bytes(),
        "text/plain; version=0.0.4",
    )
}
