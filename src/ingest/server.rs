//! The ingest HTTP API (warp): the seed's `action` envelope, the REST API, batches, heartbeats,
//! queries, and the ops endpoints. Reports are acknowledged only once the spool has them on disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Buf;
use futures::{Stream, StreamExt};
use serde_json::{json, Value};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

use super::auth::{bearer, KeyRing, ReaderTokens, Role};
use super::metrics::IngestMetrics;
use super::model::{EventKind, InteractionEvent};
use super::parse::{check_id, new_interaction_id, parse_report, BadReport, Envelope};
use super::signing::{Verifier, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use super::spool::{Spool, SpoolError};
use crate::privacy::Pseudonymizer;
use crate::store::{HistoryQuery, InteractionStore, StoreError, TimeRange};

/// Request body limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub single_bytes: usize,
    pub batch_bytes: usize,
}

pub struct IngestState {
    pub privacy: Pseudonymizer,
    pub sealer: Arc<crate::privacy::seal::Sealer>,
    pub sensitive_mcps: Arc<crate::privacy::SensitiveMcps>,
    pub signing: Verifier,
    pub spool: Spool,
    pub store: Arc<dyn InteractionStore>,
    pub keys: Arc<KeyRing>,
    pub readers: Arc<ReaderTokens>,
    pub metrics: Arc<IngestMetrics>,
    pub limits: Limits,
    pub router: Arc<crate::routing::router::Router>,
    pub registrations: Option<Arc<crate::standalone::RegistrationsView>>,
    pub extra_metrics: Option<prometheus::Registry>,
    pub ready: AtomicBool,
    heartbeats: Mutex<HashMap<String, i64>>,
    /// When each MCP last reported anything (a heartbeat or an interaction), epoch ms.
    last_seen: Mutex<HashMap<String, i64>>,
}

impl IngestState {
    pub fn new(
        config: &super::IngestConfig,
        spool: Spool,
        store: Arc<dyn InteractionStore>,
        keys: Arc<KeyRing>,
        readers: Arc<ReaderTokens>,
        metrics: Arc<IngestMetrics>,
    ) -> Self {
        Self {
            privacy: config.privacy.clone(),
            sealer: config.sealer.clone(),
            sensitive_mcps: config.sensitive_mcps.clone(),
            signing: Verifier::new(config.signing),
            spool,
            store,
            keys,
            readers,
            metrics,
            limits: config.limits,
            router: config.router.clone(),
            registrations: config.registrations.clone(),
            extra_metrics: config.extra_metrics.clone(),
            ready: AtomicBool::new(true),
            heartbeats: Mutex::default(),
            last_seen: Mutex::default(),
        }
    }
}

type Response = warp::reply::Response;

/// An API error: status, machine-readable code, message, and the field at fault.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
    fn bad(report: BadReport) -> Self {
        Self {
            field: (!report.field.is_empty()).then(|| report.field.clone()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_report",
                report.to_string(),
            )
        }
    }
}

impl From<SpoolError> for ApiError {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Full { .. } => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "spool_full", e.to_string())
            },
            other => ApiError {
                retry_after: Some(5),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "spool_unavailable",
                    other.to_string(),
                )
            },
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError {
            retry_after: Some(5),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            )
        }
    }
}

fn json_reply(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(body.to_string().into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error_reply(e: &ApiError) -> Response {
    let mut body = json!({"error": {"code": e.code, "message": e.message}});
    if let Some(field) = &e.field {
        body["error"]["field"] = json!(field);
    }
    let mut r = json_reply(e.status, &body);
    if let Some(secs) = e.retry_after {
        r.headers_mut()
            .insert("retry-after", warp::http::HeaderValue::from(secs));
    }
    r
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
                    match handle(&state, method, &path, &query, &headers, body).await {
                        Ok(r) => r,
                        Err(e) => {
                            let reason = match e.code {
                                "body_too_large" => "too_large",
                                "unauthorized" => "unauthorized",
                                "bad_signature" => "signature",
                                "forbidden" => "forbidden",
                                "unsupported_media_type" => "media_type",
                                "spool_full" | "spool_unavailable" => "spool",
                                "not_found" | "method_not_allowed" => "route",
                                _ => "invalid",
                            };
                            if path != "/metrics" {
                                state.metrics.rejected.with_label_values(&[reason]).inc();
                            }
                            error_reply(&e)
                        }
                    }
                }
            },
        )
        .recover(|_| async {
            Ok::<Response, std::convert::Infallible>(error_reply(&ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request could not be read",
            )))
        })
        .unify()
}

async fn read_body<S, B>(body: S, limit: usize) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = body;
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("could not read the request body: {e}"),
            )
        })?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body exceeds the limit of {limit} bytes"),
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
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match content_type(headers).as_str() {
        "application/json" => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-type must be application/json, not {:?}", other),
        )),
    }
}

fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid UTF-8: {e}"),
        )
    })
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_str(utf8(body)?).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

async fn handle<S, B>(
    state: &IngestState,
    method: Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match (&method, segments.as_slice()) {
        (&Method::GET, ["healthz"]) => Ok(json_reply(StatusCode::OK, &json!({"status": "ok"}))),
        (&Method::GET, ["readyz"]) => {
            if state.ready.load(Ordering::Relaxed) {
                Ok(json_reply(StatusCode::OK, &json!({"status": "ready"})))
            } else {
                Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "shutting down",
                ))
            }
        }
        (&Method::GET, ["metrics"]) => {
            let mut text = state.metrics.render(state.spool.stats(), now_ms());
            if let Some(extra) = &state.extra_metrics {
                if let Err(e) =
                    prometheus::TextEncoder::new().encode_utf8(&extra.gather(), &mut text)
                {
                    tracing::warn!(error = %e, "could not encode metrics");
                }
            }
            let mut r = Response::new(text.into());
            r.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            Ok(r)
        }
        (&Method::GET, ["v1", "route"]) => route(state, auth, query),
        (&Method::GET, ["v1", "registrations"]) => registrations(state, auth),
        (&Method::POST, ["api", "interactions"]) => {
            require_json(headers)?;
            let body = read_body(body, state.limits.single_bytes).await?;
            envelope(state, auth, &body, headers, path).await
        }
        (&Method::POST, ["v1", "interactions"]) => {
            require_json(headers)?;
            let body = read_body(body, state.limits.single_bytes).await?;
            let key_mcp = authenticate(state, bearer(auth))?;
            let required = state.signing.required_for_writes();
            check_signature(state, required, bearer(auth), &method, path, headers, &body)?;
            report(
                state,
                &key_mcp,
                EventKind::Start,
                None,
                parse_json(&body)?,
                "",
            )
            .await
        }
        (&Method::POST, ["v1", "interactions:batch"]) => {
            let kind = content_type(headers);
            if kind != "application/json" && kind != "application/x-ndjson" {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("a batch is application/json (an array) or application/x-ndjson, not {kind:?}"),
                ));
            }
            let body = read_body(body, state.limits.batch_bytes).await?;
            let key_mcp = authenticate(state, bearer(auth))?;
            let required = state.signing.required_for_batch();
            check_signature(state, required, bearer(auth), &method, path, headers, &body)?;
            batch(state, &key_mcp, &body, kind == "application/x-ndjson").await
        }
        (&Method::POST, ["v1", "interactions", id, stage]) => {
            let kind = match *stage {
                "progress" => EventKind::Progress,
                "complete" => EventKind::Complete,
                "error" => EventKind::Error,
                _ => {
                    return Err(ApiError::new(
                        StatusCode::NOT_FOUND,
                        "not_found",
                        format!("no such report {stage:?}; use progress, complete or error"),
                    ))
                }
            };
            require_json(headers)?;
            let body = read_body(body, state.limits.single_bytes).await?;
            let key_mcp = authenticate(state, bearer(auth))?;
            let required = state.signing.required_for_writes();
            check_signature(state, required, bearer(auth), &method, path, headers, &body)?;
            check_id(id, "interaction_id").map_err(ApiError::bad)?;
            report(state, &key_mcp, kind, Some(id), parse_json(&body)?, "").await
        }
        (&Method::POST, ["v1", "heartbeat"]) => {
            let key_mcp = authenticate(state, bearer(auth))?;
            let body = read_body(body, state.limits.single_bytes).await?;
            let required = state.signing.required_for_writes();
            check_signature(state, required, bearer(auth), &method, path, headers, &body)?;
            let at = now_ms();
            state
                .heartbeats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key_mcp.clone(), at);
            state
                .last_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key_mcp.clone(), at);
            Ok(json_reply(
                StatusCode::OK,
                &json!({"mcp_id": key_mcp, "last_seen": super::model::format_ms(at)}),
            ))
        }
        (&Method::GET, ["v1", "audit"]) => {
            let role = authorize_reader(state, auth, None)?;
            if !matches!(role, Role::Admin(_)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "only admin tokens may read the audit log",
                ));
            }
            let limit = parse_limit(query)?;
            let entries = state.store.audit_log(limit).await?;
            audit(state, &role, "*", "audit", None, None, entries.len() as u64).await?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({"count": entries.len(), "entries": entries}),
            ))
        }
        (&Method::GET, ["v1", "heartbeats"]) => {
            let role = authorize_reader(state, auth, None)?;
            let beats = state
                .heartbeats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let body: serde_json::Map<String, Value> = beats
                .into_iter()
                .map(|(k, v)| (k, json!(super::model::format_ms(v))))
                .collect();
            audit(
                state,
                &role,
                "*",
                "heartbeats",
                None,
                None,
                body.len() as u64,
            )
            .await?;
            Ok(json_reply(StatusCode::OK, &Value::Object(body)))
        }
        (&Method::GET, ["v1", "mcps", mcp_id, "interactions"]) => {
            let role = authorize_reader(state, auth, Some(mcp_id))?;
            check_id(mcp_id, "mcp_id").map_err(ApiError::bad)?;
            let q = parse_query(query);
            let limit = parse_limit(query)?;
            let since_ms = q.get("since").map(|s| parse_time(s, "since")).transpose()?;
            let until_ms = q.get("until").map(|s| parse_time(s, "until")).transpose()?;
            let found = state
                .store
                .history(&HistoryQuery {
                    mcp_id: mcp_id.to_string(),
                    limit,
                    since_ms,
                    until_ms,
                })
                .await?;
            let items: Vec<Value> = found
                .into_iter()
                .map(|mut i| {
                    reveal(state, &role, &mut i.fields);
                    i.to_json()
                })
                .collect();
            audit(
                state,
                &role,
                mcp_id,
                "history",
                since_ms,
                until_ms,
                items.len() as u64,
            )
            .await?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({"mcp_id": mcp_id, "count": items.len(), "interactions": items}),
            ))
        }
        (&Method::GET, ["v1", "mcps", mcp_id, "metrics"]) => {
            let role = authorize_reader(state, auth, Some(mcp_id))?;
            check_id(mcp_id, "mcp_id").map_err(ApiError::bad)?;
            let range = range_of(query)?;
            let mut metrics = state.store.metrics(Some(mcp_id), range).await?;
            let rows = metrics.iter().map(|m| m.count).sum();
            audit(
                state,
                &role,
                mcp_id,
                "metrics",
                Some(range.since_ms),
                Some(range.until_ms),
                rows,
            )
            .await?;
            let one = metrics
                .pop()
                .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
                .unwrap_or(Value::Null);
            Ok(json_reply(
                StatusCode::OK,
                &json!({"range": range_text(query), "metrics": one}),
            ))
        }
        (&Method::GET, ["v1", "metrics"]) => {
            let role = authorize_reader(state, auth, None)?;
            let range = range_of(query)?;
            let all = state.store.metrics(None, range).await?;
            let rows = all.iter().map(|m| m.count).sum();
            audit(
                state,
                &role,
                "*",
                "all_metrics",
                Some(range.since_ms),
                Some(range.until_ms),
                rows,
            )
            .await?;
            Ok(json_reply(
                StatusCode::OK,
                &json!({"range": range_text(query), "mcps": all}),
            ))
        }
        (
            _,
            ["api", "interactions"]
            | ["v1", "interactions" | "interactions:batch" | "heartbeat" | "heartbeats" | "metrics"
            | "audit"]
            | ["v1", "interactions", _, _]
            | ["v1", "mcps", _, "interactions" | "metrics"]
            | ["v1", "route" | "registrations"]
            | ["metrics" | "healthz" | "readyz"],
        ) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such endpoint {path}"),
        )),
    }
}

fn authenticate(state: &IngestState, key: Option<&str>) -> Result<String, ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key: send Authorization: Bearer <key> (or the api_key field)",
        )
    })?;
    state
        .keys
        .mcp_for(key)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))
}

/// Verifies the request's signature when `required` (after authentication, so `key` is valid).
fn check_signature(
    state: &IngestState,
    required: bool,
    key: Option<&str>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    if !required {
        return Ok(());
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    state
        .signing
        .verify(
            key.unwrap_or_default(),
            method.as_str(),
            path,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            body,
            now_ms() / 1000,
        )
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", e.to_string()))
}

/// Who may read: admins and readers everything, an MCP's own key only that MCP's data (`mcp`).
fn authorize_reader(
    state: &IngestState,
    auth: Option<&str>,
    mcp: Option<&str>,
) -> Result<Role, ApiError> {
    let Some(token) = bearer(auth) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "queries need a token: Authorization: Bearer <reader token, admin token or the MCP's own key>",
        ));
    };
    if let Some(role) = state.readers.role(token) {
        return Ok(role);
    }
    match state.keys.mcp_for(token) {
        Some(own) if mcp == Some(own.as_str()) => Ok(Role::Mcp(own)),
        Some(own) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the key of {own} may read only {own}'s own history and metrics"),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token",
        )),
    }
}

fn parse_limit(query: &str) -> Result<usize, ApiError> {
    match parse_query(query).get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| query_error("limit", "must be a whole number from 1 to 1000")),
    }
}

/// Records a read of interaction data; the answer is withheld if the record cannot be written.
#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &IngestState,
    role: &Role,
    mcp_id: &str,
    query: &str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    rows: u64,
) -> Result<(), ApiError> {
    let entry = crate::store::AuditEntry {
        at_ms: now_ms(),
        who: role.who().to_string(),
        role: role.name().to_string(),
        mcp_id: mcp_id.to_string(),
        query: query.to_string(),
        since_ms,
        until_ms,
        rows,
    };
    state
        .store
        .record_access(&entry)
        .await
        .map_err(ApiError::from)
}

fn query_error(field: &str, problem: &str) -> ApiError {
    ApiError {
        field: Some(field.to_string()),
        ..ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("{field}: {problem}"),
        )
    }
}

fn parse_query(query: &str) -> HashMap<String, String> {
    url_decode_pairs(query)
}

fn url_decode_pairs(query: &str) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_time(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .or_else(|| super::model::parse_rfc3339_ms(text))
        .ok_or_else(|| query_error(field, "must be an RFC 3339 timestamp or epoch milliseconds"))
}

fn range_text(query: &str) -> String {
    parse_query(query)
        .get("range")
        .cloned()
        .unwrap_or_else(|| "1h".into())
}

fn range_of(query: &str) -> Result<TimeRange, ApiError> {
    TimeRange::parse(&range_text(query), now_ms()).map_err(|p| query_error("range", &p))
}

async fn envelope(
    state: &IngestState,
    auth: Option<&str>,
    body: &[u8],
    headers: &HeaderMap,
    path: &str,
) -> Result<Response, ApiError> {
    let value = parse_json(body)?;
    let envelope: Envelope = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad(BadReport::new(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        ))
    })?;
    let key = envelope.api_key.as_deref().or(bearer(auth));
    let key_mcp = authenticate(state, key)?;
    let required = state.signing.required_for_writes();
    check_signature(state, required, key, &Method::POST, path, headers, body)?;
    let kind = match envelope.action.as_str() {
        "report_interaction_start" => EventKind::Start,
        "report_interaction_progress" => EventKind::Progress,
        "report_interaction_complete" => EventKind::Complete,
        "report_interaction_error" => EventKind::Error,
        other => {
            return Err(ApiError {
                field: Some("action".into()),
                ..ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_report",
                    format!("action: unknown action {other:?}; use report_interaction_start, _progress, _complete or _error"),
                )
            })
        }
    };
    report(state, &key_mcp, kind, None, envelope.data, "data").await
}

/// One report from the envelope or the REST API.
async fn report(
    state: &IngestState,
    key_mcp: &str,
    kind: EventKind,
    path_id: Option<&str>,
    data: Value,
    at: &str,
) -> Result<Response, ApiError> {
    let mut parsed = parse_report(data, kind, at).map_err(ApiError::bad)?;
    protect(state, key_mcp, &mut parsed.fields)?;
    let field = |f: &str| {
        if at.is_empty() {
            f.to_string()
        } else {
            format!("{at}.{f}")
        }
    };
    if let Some(mcp) = &parsed.mcp_id {
        if mcp != key_mcp {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this API key belongs to {key_mcp} and cannot report for {mcp}"),
            ));
        }
    }
    let interaction_id = match (path_id, parsed.interaction_id) {
        (Some(p), Some(b)) if p != b => {
            return Err(ApiError::bad(BadReport::new(
                field("interaction_id"),
                format!("{b:?} differs from the id in the URL ({p:?})"),
            )))
        }
        (Some(p), _) => p.to_string(),
        (None, Some(b)) => b,
        (None, None) if kind == EventKind::Start => new_interaction_id(now_ms()),
        (None, None) => {
            return Err(ApiError::bad(BadReport::new(
                field("interaction_id"),
                "required for this report",
            )))
        }
    };
    let event = InteractionEvent::new(
        interaction_id.clone(),
        key_mcp.to_string(),
        kind,
        now_ms(),
        parsed.fields,
    );
    state.spool.append(vec![event.clone()]).await?;
    observe(state, &event);
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &json!({"accepted": true, "interaction_id": interaction_id, "mcp_id": key_mcp}),
    ))
}

/// Privacy rules, applied before an event exists anywhere but in this request's memory.
fn protect(
    state: &IngestState,
    mcp_id: &str,
    fields: &mut super::model::Fields,
) -> Result<(), ApiError> {
    if let Some(user) = fields.user_id.take() {
        fields.user_id = Some(state.privacy.pseudonym(&user));
    }
    let sensitive = fields.privacy_level.as_deref() == Some("sensitive")
        || state.sensitive_mcps.contains(mcp_id);
    if sensitive {
        for value in [&mut fields.parameters, &mut fields.error_message]
            .into_iter()
            .flatten()
        {
            *value = state.sealer.seal(value).map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "encryption_unavailable",
                    e.to_string(),
                )
            })?;
        }
    }
    Ok(())
}

/// Sealed fields as `role` may see them: opened for admins and the MCP itself, redacted for
/// readers, `[erased]` once the sealing key was destroyed.
fn reveal(state: &IngestState, role: &Role, fields: &mut super::model::Fields) {
    use crate::privacy::seal::{Sealer, Unsealed};
    let may_open = matches!(role, Role::Admin(_) | Role::Mcp(_));
    for (value, redacted) in [
        (&mut fields.parameters, "{\"redacted\":true}"),
        (&mut fields.error_message, "[redacted]"),
    ] {
        let Some(text) = value.as_deref() else {
            continue;
        };
        if !Sealer::is_sealed(text) {
            continue;
        }
        *value = Some(match (may_open, state.sealer.unseal(text)) {
            (true, Some(Unsealed::Plain(plain))) => plain,
            (true, _) if redacted.starts_with('{') => "{\"erased\":true}".to_string(),
            (true, _) => "[erased]".to_string(),
            (false, _) => redacted.to_string(),
        });
    }
}

/// `GET /v1/route?capability=…&request_type=…`: any known token may ask (gateways use a reader
/// token); the answer comes from memory, so it is not audited.
fn route(state: &IngestState, auth: Option<&str>, query: &str) -> Result<Response, ApiError> {
    use crate::routing::router::RouteError;
    let token = bearer(auth).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "route decisions need a token: Authorization: Bearer <reader token, admin token or an MCP key>",
        )
    })?;
    if state.readers.role(token).is_none() && state.keys.mcp_for(token).is_none() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unknown token",
        ));
    }
    let params = parse_query(query);
    let capability = params
        .get("capability")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            query_error(
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
            let body = serde_json::to_vec(&route).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
            let mut r = Response::new(body.into());
            r.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/json"),
            );
            Ok(r)
        }
        Err(e) => {
            let (status, code, retry_after) = match e {
                RouteError::UnknownCapability(_) => {
                    (StatusCode::NOT_FOUND, "unknown_capability", None)
                }
                RouteError::NoneRoutable { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "none_ready", Some(5))
                }
                RouteError::Saturated { .. } => {
                    (StatusCode::SERVICE_UNAVAILABLE, "saturated", Some(1))
                }
            };
            decisions.with_label_values(&[code]).inc();
            Err(ApiError {
                retry_after,
                ..ApiError::new(status, code, e.to_string())
            })
        }
    }
}

/// `GET /v1/registrations` (standalone mode): every registration with its status, the manifests
/// that were skipped and why, and when each MCP was last seen.
fn registrations(state: &IngestState, auth: Option<&str>) -> Result<Response, ApiError> {
    let Some(view) = &state.registrations else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "registrations are served in standalone mode only; in a cluster use kubectl get mcpreg",
        ));
    };
    authorize_reader(state, auth, None)?;
    let mut body = view.read().unwrap_or_else(PoisonError::into_inner).clone();
    let seen = state
        .last_seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if let Some(list) = body["registrations"].as_array_mut() {
        for r in list {
            let at = r["mcp_id"].as_str().and_then(|id| seen.get(id));
            r["last_seen"] = json!(at.map(|ms| super::model::format_ms(*ms)));
        }
    }
    Ok(json_reply(StatusCode::OK, &body))
}

fn observe(state: &IngestState, event: &InteractionEvent) {
    learn(&state.router, event);
    state
        .last_seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(event.mcp_id.clone(), event.received_ms);
    state
        .metrics
        .received
        .with_label_values(&[event.mcp_id.as_str(), event.kind.as_str()])
        .inc();
    if let Some(t) = event.fields.processing_time {
        state
            .metrics
            .processing_time
            .with_label_values(&[event.mcp_id.as_str()])
            .observe(t);
    }
}

/// Feeds the router what a report says about its MCP: starts count as in flight, ends as outcomes.
fn learn(router: &crate::routing::router::Router, event: &InteractionEvent) {
    use crate::routing::router::Outcome;
    let fields = &event.fields;
    let now = router.now();
    let outcome = |success| Outcome {
        success,
        processing_time: fields.processing_time,
    };
    let request_type = fields.request_type.as_deref();
    match event.kind {
        EventKind::Start => router.started(&event.mcp_id, &event.interaction_id, request_type, now),
        EventKind::Progress => {}
        EventKind::Complete => router.finished(
            &event.mcp_id,
            &event.interaction_id,
            request_type,
            outcome(fields.success.unwrap_or(true)),
            now,
        ),
        EventKind::Error => router.finished(
            &event.mcp_id,
            &event.interaction_id,
            request_type,
            outcome(false),
            now,
        ),
        EventKind::Record => router.finished(
            &event.mcp_id,
            &event.interaction_id,
            request_type,
            outcome(fields.success.unwrap_or(fields.error_code.is_none())),
            now,
        ),
    }
}

/// Whole records, answered per record; the accepted ones are spooled together.
async fn batch(
    state: &IngestState,
    key_mcp: &str,
    body: &[u8],
    ndjson: bool,
) -> Result<Response, ApiError> {
    let items: Vec<Result<Value, String>> = if ndjson {
        utf8(body)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not valid JSON: {e}")))
            .collect()
    } else {
        match parse_json(body)? {
            Value::Array(values) => values.into_iter().map(Ok).collect(),
            _ => {
                return Err(ApiError::bad(BadReport::new(
                    "",
                    "a JSON batch must be an array of interaction records",
                )))
            }
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad(BadReport::new("", "the batch is empty")));
    }
    let received = now_ms();
    let mut events = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let outcome = item
            .map_err(|problem| BadReport::new("", problem))
            .and_then(|value| {
                let mut parsed = parse_report(value, EventKind::Record, "")?;
                protect(state, key_mcp, &mut parsed.fields)
                    .map_err(|e| BadReport::new("", e.message))?;
                let id = parsed.interaction_id.ok_or_else(|| {
                    BadReport::new("interaction_id", "required in a batch record")
                })?;
                match &parsed.mcp_id {
                    Some(m) if m != key_mcp => Err(BadReport::new(
                        "mcp_id",
                        format!("this API key belongs to {key_mcp} and cannot report for {m}"),
                    )),
                    _ => Ok(InteractionEvent::new(
                        id,
                        key_mcp.to_string(),
                        EventKind::Record,
                        received,
                        parsed.fields,
                    )),
                }
            });
        match outcome {
            Ok(event) => {
                results.push(json!({"index": index, "accepted": true, "interaction_id": event.interaction_id}));
                events.push(event);
            }
            Err(bad) => {
                let mut r = json!({"index": index, "accepted": false, "error": bad.to_string()});
                if !bad.field.is_empty() {
                    r["field"] = json!(bad.field);
                }
                results.push(r);
            }
        }
    }
    let accepted = events.len();
    if !events.is_empty() {
        state.spool.append(events.clone()).await?;
        for e in &events {
            observe(state, e);
        }
    }
    let rejected = results.len() - accepted;
    if rejected > 0 {
        state
            .metrics
            .rejected
            .with_label_values(&["invalid_record"])
            .inc_by(rejected as u64);
    }
    let status = if accepted == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(json_reply(
        status,
        &json!({"accepted": accepted, "rejected": rejected, "results": results}),
    ))
}
