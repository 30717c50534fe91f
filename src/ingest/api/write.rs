//! The write path: reports (the seed's `action` envelope, the REST API, batches) and heartbeats.
//! Parsing and answering; the step itself (protect, spool, then teach the router) is `accept`.

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::super::accept::{self, learn, AcceptPorts, RecordOutcome, Report};
use super::super::state::IngestState;
use super::guards::{parse_json, utf8};
use super::now_ms;
use super::reply::{bytes_reply, json_reply, ApiError, ErrorCode, Response};
use crate::interaction::{
    format_ms, gather_progress_details, parse_record, parse_records, parse_report, BadReport,
    EventKind, InteractionEvent, ParsedReport, Record,
};
use crate::pipeline::SpoolError;

/// The seed's `action` envelope.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub action: String,
    #[serde(default)]
    pub api_key: Option<String>,
    pub data: Value,
}

impl Envelope {
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value = parse_json(body)?;
        if let Some(action @ ("register_mcp" | "unregister_mcp")) =
            value.get("action").and_then(Value::as_str)
        {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                format!("{action} needs a registrar token (Authorization: Bearer <token>), not an MCP key"),
            ));
        }
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            ApiError::bad(BadReport::new(
                if path == "." { String::new() } else { path },
                e.into_inner().to_string(),
            ))
        })
    }

    /// The report the action names.
    pub fn kind(&self) -> Result<EventKind, ApiError> {
        match self.action.as_str() {
            "report_interaction_start" => Ok(EventKind::Start),
            "report_interaction_progress" => Ok(EventKind::Progress),
            "report_interaction_complete" => Ok(EventKind::Complete),
            "report_interaction_error" => Ok(EventKind::Error),
            other => Err(ApiError::new(
                ErrorCode::InvalidReport,
                format!("action: unknown action {other:?}; use report_interaction_start, _progress, _complete or _error"),
            )
            .with_field("action")),
        }
    }
}

/// One report from the envelope; `at` prefixes field names in errors.
pub async fn report(
    state: &IngestState,
    key_mcp: &str,
    kind: EventKind,
    data: Value,
    at: &str,
) -> Result<Response, ApiError> {
    let mut data = data;
    if let (EventKind::Progress, Value::Object(report)) = (kind, &mut data) {
        gather_progress_details(report, at).map_err(ApiError::bad)?;
    }
    let parsed = parse_report(data, kind, at).map_err(ApiError::bad)?;
    accept(state, key_mcp, kind, None, parsed, at).await
}

/// One report of the REST API, read straight from the body's text (building a JSON value of it
/// first was a tenth of the server's work per report).
pub async fn report_text(
    state: &IngestState,
    key_mcp: &str,
    kind: EventKind,
    path_id: Option<&str>,
    body: &[u8],
) -> Result<Response, ApiError> {
    let parsed = parse_record(utf8(body)?, kind)
        .map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            )
        })?
        .map_err(ApiError::bad)?;
    accept(state, key_mcp, kind, path_id, parsed, "").await
}

/// Runs the write step on one parsed report and acknowledges it.
async fn accept(
    state: &IngestState,
    key_mcp: &str,
    kind: EventKind,
    path_id: Option<&str>,
    parsed: ParsedReport,
    at: &str,
) -> Result<Response, ApiError> {
    let report = Report {
        key_mcp,
        kind,
        path_id,
        parsed,
        at,
    };
    let event = accept::accept(state, &state.protection, report, now_ms()).await?;
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &json!({"success": true, "accepted": true, "interaction_id": event.interaction_id, "mcp_id": key_mcp}),
    ))
}

/// Whole records, answered per record; the accepted ones are spooled together.
pub async fn batch(
    state: &IngestState,
    key_mcp: &str,
    body: &[u8],
    ndjson: bool,
) -> Result<Response, ApiError> {
    // Read straight from the text into records (no JSON value of the whole batch is built).
    let text = utf8(body)?;
    let items: Vec<Record> = if ndjson {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                parse_record(l, EventKind::Record)
                    .unwrap_or_else(|e| Err(BadReport::new("", format!("not valid JSON: {e}"))))
            })
            .collect()
    } else {
        parse_records(text, EventKind::Record).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => ApiError::bad(BadReport::new(
                "",
                "a JSON batch must be an array of interaction records",
            )),
            _ => ApiError::new(
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            ),
        })?
    };
    if items.is_empty() {
        return Err(ApiError::bad(BadReport::new("", "the batch is empty")));
    }
    let most = state.limits.batch_records;
    if items.len() > most {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "the batch has {} records; at most {most} (send several batches)",
                items.len()
            ),
        ));
    }
    let results = accept::accept_batch(state, &state.protection, key_mcp, items, now_ms()).await?;
    let accepted = results.iter().filter(|r| r.accepted).count();
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
    let body = BatchReply {
        accepted,
        rejected,
        results,
    };
    Ok(bytes_reply(
        status,
        serde_json::to_vec(&body).map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
        "application/json",
    ))
}

/// The answer to a batch: one outcome per record, in order. Written as a type rather than built
/// as JSON values, because building 500 small maps per batch showed in the ingest profile.
#[derive(Serialize)]
struct BatchReply {
    accepted: usize,
    rejected: usize,
    results: Vec<RecordOutcome>,
}

/// `POST /v1/heartbeat`.
pub fn heartbeat(state: &IngestState, key_mcp: &str) -> Response {
    let at = now_ms();
    state.heartbeat(key_mcp, at);
    json_reply(
        StatusCode::OK,
        &json!({"mcp_id": key_mcp, "last_seen": format_ms(at)}),
    )
}

impl AcceptPorts for IngestState {
    fn append<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), SpoolError>> {
        Box::pin(self.spool.append(events))
    }

    fn accepted(&self, event: &InteractionEvent) {
        learn(&self.router, event);
        self.saw(&event.mcp_id, event.received_ms);
        self.metrics
            .received
            .with_label_values(&[event.mcp_id.as_str(), event.kind.as_str()])
            .inc();
        if let Some(t) = event.fields.processing_time {
            self.metrics
                .processing_time
                .with_label_values(&[event.mcp_id.as_str()])
                .observe(t);
        }
    }
}
