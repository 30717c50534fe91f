//! The read path: who may read what, what the store answers, sealed fields revealed as the reader
//! may see them, and an audit record of every read of interaction data (a read whose audit
//! record cannot be written is refused). Each read answers a JSON value, without HTTP.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::super::auth::Role;
use super::super::state::IngestState;
use super::guards::authorize_reader;
use super::now_ms;
use super::reply::{ApiError, ErrorCode};
use crate::interaction::{check_id, format_ms, parse_rfc3339_ms, Fields};
use crate::privacy::seal::{Sealer, Unsealed};
use crate::store::{AuditEntry, HistoryQuery, McpMetrics, TimeRange};

/// The decoded query string.
pub type Params = HashMap<String, String>;

pub fn parse_query(query: &str) -> Params {
    reqwest::Url::parse(&format!("http://q/?{query}"))
        .map(|u| {
            u.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /v1/mcps/{id}/interactions?limit=&since=&until=`: newest first.
pub async fn history(
    state: &IngestState,
    auth: Option<&str>,
    mcp_id: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, Some(mcp_id))?;
    check_id(mcp_id, "mcp_id").map_err(ApiError::bad)?;
    let limit = limit(params)?;
    let since_ms = params.get("since").map(|s| time(s, "since")).transpose()?;
    let until_ms = params.get("until").map(|s| time(s, "until")).transpose()?;
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
            reveal(&state.sealer, &role, &mut i.fields);
            i.to_json()
        })
        .collect();
    let read = Read {
        mcp_id,
        query: "history",
        since_ms,
        until_ms,
    };
    audit(state, &role, read, items.len() as u64).await?;
    Ok(json!({"mcp_id": mcp_id, "count": items.len(), "interactions": items}))
}

/// `GET /v1/mcps/{id}/metrics?range=`.
pub async fn mcp_metrics(
    state: &IngestState,
    auth: Option<&str>,
    mcp_id: &str,
    params: &Params,
) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, Some(mcp_id))?;
    check_id(mcp_id, "mcp_id").map_err(ApiError::bad)?;
    let (text, mut metrics) = metrics_over(state, &role, Some(mcp_id), params).await?;
    let one = metrics
        .pop()
        .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    Ok(json!({"range": text, "metrics": one}))
}

/// `GET /v1/metrics?range=`: every MCP with interactions in range.
pub async fn all_metrics(
    state: &IngestState,
    auth: Option<&str>,
    params: &Params,
) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, None)?;
    let (text, all) = metrics_over(state, &role, None, params).await?;
    Ok(json!({"range": text, "mcps": all}))
}

/// Metrics of one MCP (or all) over the `range` parameter, audited.
async fn metrics_over(
    state: &IngestState,
    role: &Role,
    mcp_id: Option<&str>,
    params: &Params,
) -> Result<(String, Vec<McpMetrics>), ApiError> {
    let (text, range) = range(params)?;
    let metrics = state.store.metrics(mcp_id, range).await?;
    let rows = metrics.iter().map(|m| m.count).sum();
    let read = match mcp_id {
        Some(id) => Read::over(id, "metrics", range),
        None => Read::over("*", "all_metrics", range),
    };
    audit(state, role, read, rows).await?;
    Ok((text, metrics))
}

/// `GET /v1/audit?limit=`: admins only.
pub async fn audit_log(
    state: &IngestState,
    auth: Option<&str>,
    params: &Params,
) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, None)?;
    if !matches!(role, Role::Admin(_)) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only admin tokens may read the audit log",
        ));
    }
    let entries = state.store.audit_log(limit(params)?).await?;
    audit(state, &role, Read::all("audit"), entries.len() as u64).await?;
    Ok(json!({"count": entries.len(), "entries": entries}))
}

/// `GET /v1/heartbeats`: each MCP's last heartbeat.
pub async fn heartbeats(state: &IngestState, auth: Option<&str>) -> Result<Value, ApiError> {
    let role = authorize_reader(state, auth, None)?;
    let body: serde_json::Map<String, Value> = state
        .heartbeats()
        .into_iter()
        .map(|(k, v)| (k, json!(format_ms(v))))
        .collect();
    audit(state, &role, Read::all("heartbeats"), body.len() as u64).await?;
    Ok(Value::Object(body))
}

/// `GET /v1/registrations` (standalone mode): every registration with its status, the manifests
/// that were skipped and why, and when each MCP was last seen.
pub fn registrations(state: &IngestState, auth: Option<&str>) -> Result<Value, ApiError> {
    let Some(view) = &state.registrations else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "registrations are served in standalone mode only; in a cluster use kubectl get mcpreg",
        ));
    };
    authorize_reader(state, auth, None)?;
    let mut body = view
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let seen = state.last_seen();
    if let Some(list) = body["registrations"].as_array_mut() {
        for r in list {
            let at = r["mcp_id"].as_str().and_then(|id| seen.get(id));
            r["last_seen"] = json!(at.map(|ms| format_ms(*ms)));
        }
    }
    Ok(body)
}

/// Sealed fields as `role` may see them: opened for admins and the MCP itself, redacted for
/// readers, `[erased]` once the sealing key was destroyed.
pub fn reveal(sealer: &Sealer, role: &Role, fields: &mut Fields) {
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
        *value = Some(match (may_open, sealer.unseal(text)) {
            (true, Some(Unsealed::Plain(plain))) => plain,
            (true, _) if redacted.starts_with('{') => "{\"erased\":true}".to_string(),
            (true, _) => "[erased]".to_string(),
            (false, _) => redacted.to_string(),
        });
    }
}

/// What was read, for the audit log.
struct Read<'a> {
    mcp_id: &'a str,
    query: &'a str,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl<'a> Read<'a> {
    fn all(query: &'a str) -> Self {
        Self {
            mcp_id: "*",
            query,
            since_ms: None,
            until_ms: None,
        }
    }

    fn over(mcp_id: &'a str, query: &'a str, range: TimeRange) -> Self {
        Self {
            mcp_id,
            query,
            since_ms: Some(range.since_ms),
            until_ms: Some(range.until_ms),
        }
    }
}

/// Records a read of interaction data; the answer is withheld if the record cannot be written.
async fn audit(
    state: &IngestState,
    role: &Role,
    read: Read<'_>,
    rows: u64,
) -> Result<(), ApiError> {
    let entry = AuditEntry {
        at_ms: now_ms(),
        who: role.who().to_string(),
        role: role.name().to_string(),
        mcp_id: read.mcp_id.to_string(),
        query: read.query.to_string(),
        since_ms: read.since_ms,
        until_ms: read.until_ms,
        rows,
    };
    state
        .store
        .record_access(&entry)
        .await
        .map_err(ApiError::from)
}

fn limit(params: &Params) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(100),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| ApiError::query("limit", "must be a whole number from 1 to 1000")),
    }
}

fn time(text: &str, field: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .or_else(|| parse_rfc3339_ms(text))
        .ok_or_else(|| {
            ApiError::query(field, "must be an RFC 3339 timestamp or epoch milliseconds")
        })
}

/// The `range` parameter (default 1h) as given and as the window ending now.
fn range(params: &Params) -> Result<(String, TimeRange), ApiError> {
    let text = params.get("range").cloned().unwrap_or_else(|| "1h".into());
    let range = TimeRange::parse(&text, now_ms()).map_err(|p| ApiError::query("range", &p))?;
    Ok((text, range))
}
