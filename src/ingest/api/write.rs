//! The write path: reports (the seed's `action` envelope, the REST API, batches) and heartbeats.
//! A report is pseudonymized and sealed before it exists anywhere but in this request's memory,
//! acknowledged only once the spool has it on disk, and then taught to the router.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::http::StatusCode;

use super::super::state::IngestState;
use super::guards::{parse_json, utf8};
use super::now_ms;
use super::reply::{bytes_reply, json_reply, ApiError, ErrorCode, Response};
use crate::interaction::{
    format_ms, new_interaction_id, parse_record, parse_records, parse_report, BadReport, EventKind,
    Fields, InteractionEvent, ParsedReport, Record,
};
use crate::pipeline::SpoolError;
use crate::privacy::seal::{Owner, Sealer, SEALED};
use crate::routing::router::{Outcome, Router};

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

/// Seals, spools and acknowledges one parsed report.
async fn accept(
    state: &IngestState,
    key_mcp: &str,
    kind: EventKind,
    path_id: Option<&str>,
    parsed: ParsedReport,
    at: &str,
) -> Result<Response, ApiError> {
    refuse_sealed_lookalikes(&parsed.fields, at).map_err(ApiError::bad)?;
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
                ErrorCode::Forbidden,
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
    let mut fields = parsed.fields;
    protect(state, key_mcp, &interaction_id, &mut fields)?;
    let event = InteractionEvent::new(
        interaction_id.clone(),
        key_mcp.to_string(),
        kind,
        now_ms(),
        fields,
    );
    state.spool.append(std::slice::from_ref(&event)).await?;
    observe(state, &event);
    Ok(json_reply(
        StatusCode::ACCEPTED,
        &json!({"accepted": true, "interaction_id": interaction_id, "mcp_id": key_mcp}),
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
    let received = now_ms();
    // Sized up front: an event is large enough that growing the list by doubling (and then
    // splitting it in two) showed in the ingest profile.
    let mut events = Vec::with_capacity(items.len());
    let mut indices = Vec::with_capacity(items.len());
    let mut results = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let outcome = item.and_then(|parsed| record(state, key_mcp, parsed, received));
        match outcome {
            Ok(event) => {
                results.push(RecordOutcome::accepted(index, &event.interaction_id));
                indices.push(index);
                events.push(event);
            }
            Err(bad) => results.push(RecordOutcome::refused(index, bad.to_string(), bad.field)),
        }
    }
    let events = spool_batch(state, indices, events, &mut results).await?;
    let accepted = events.len();
    for e in &events {
        observe(state, e);
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

#[derive(Serialize)]
struct RecordOutcome {
    index: usize,
    accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl RecordOutcome {
    fn accepted(index: usize, interaction_id: &str) -> Self {
        Self {
            index,
            accepted: true,
            interaction_id: Some(interaction_id.to_string()),
            error: None,
            field: None,
        }
    }

    fn refused(index: usize, error: String, field: String) -> Self {
        Self {
            index,
            accepted: false,
            interaction_id: None,
            error: Some(error),
            field: (!field.is_empty()).then_some(field),
        }
    }
}

/// Spools the accepted records of a batch (`events`, each at its place in the batch in
/// `indices`); one too large to store is turned into a rejection of that record (in `results`)
/// and the rest are spooled without it.
async fn spool_batch(
    state: &IngestState,
    mut indices: Vec<usize>,
    mut events: Vec<InteractionEvent>,
    results: &mut [RecordOutcome],
) -> Result<Vec<InteractionEvent>, ApiError> {
    while !events.is_empty() {
        match state.spool.append(&events).await {
            Ok(()) => break,
            Err(SpoolError::TooLarge { index, size, limit }) => {
                let at = indices.remove(index);
                events.remove(index);
                results[at] = RecordOutcome::refused(at, format!(
                    "the record is {size} bytes once stored (free-form parameters are kept as JSON text, escapes included); at most {limit}"
                ), String::new());
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(events)
}

/// One record of a batch.
fn record(
    state: &IngestState,
    key_mcp: &str,
    mut parsed: ParsedReport,
    received: i64,
) -> Result<InteractionEvent, BadReport> {
    refuse_sealed_lookalikes(&parsed.fields, "")?;
    let id = parsed
        .interaction_id
        .ok_or_else(|| BadReport::new("interaction_id", "required in a batch record"))?;
    protect(state, key_mcp, &id, &mut parsed.fields).map_err(|e| BadReport::new("", e.message))?;
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

/// A client value that looks sealed would be taken for one (and opened as someone else's).
fn refuse_sealed_lookalikes(fields: &Fields, at: &str) -> Result<(), BadReport> {
    let looks_sealed = |v: &Option<String>| v.as_deref().is_some_and(Sealer::is_sealed);
    if looks_sealed(&fields.error_message) {
        let field = if at.is_empty() {
            "result_data.error_message".to_string()
        } else {
            format!("{at}.result_data.error_message")
        };
        return Err(BadReport::new(
            field,
            format!("must not start with {SEALED:?}, which marks values the coordinator sealed"),
        ));
    }
    Ok(())
}

/// Privacy rules: user IDs become pseudonyms, and the free-form fields of sensitive interactions
/// are sealed, bound to their MCP, interaction and field.
fn protect(
    state: &IngestState,
    mcp_id: &str,
    interaction_id: &str,
    fields: &mut Fields,
) -> Result<(), ApiError> {
    if let Some(user) = fields.user_id.take() {
        fields.user_id = Some(state.privacy.pseudonym(&user));
    }
    let marked = fields.privacy_level.as_deref() == Some("sensitive");
    if marked {
        state
            .sensitive_interactions
            .mark(mcp_id, interaction_id, now_ms());
    }
    let sensitive = marked
        || state.sensitive_mcps.contains(mcp_id)
        || state
            .sensitive_interactions
            .contains(mcp_id, interaction_id);
    if sensitive {
        for (field, value) in [
            ("parameters", &mut fields.parameters),
            ("error_message", &mut fields.error_message),
        ] {
            let Some(plain) = value.as_deref() else {
                continue;
            };
            let owner = Owner {
                mcp_id,
                interaction_id,
                field,
            };
            let sealed = state
                .sealer
                .seal(plain, owner)
                .map_err(|e| ApiError::new(ErrorCode::EncryptionUnavailable, e.to_string()))?;
            *value = Some(sealed);
        }
    }
    Ok(())
}

fn observe(state: &IngestState, event: &InteractionEvent) {
    learn(&state.router, event);
    state.saw(&event.mcp_id, event.received_ms);
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
fn learn(router: &Router, event: &InteractionEvent) {
    let fields = &event.fields;
    let now = router.now();
    let request_type = fields.request_type.as_deref();
    let success = match event.kind {
        EventKind::Start => {
            return router.started(&event.mcp_id, &event.interaction_id, request_type, now)
        }
        EventKind::Progress => return,
        EventKind::Complete => fields.success.unwrap_or(true),
        EventKind::Error => false,
        EventKind::Record => fields.success.unwrap_or(fields.error_code.is_none()),
    };
    let outcome = Outcome {
        success,
        processing_time: fields.processing_time,
    };
    router.finished(
        &event.mcp_id,
        &event.interaction_id,
        request_type,
        outcome,
        now,
    );
}
