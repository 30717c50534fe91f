//! `POST /v1/traces`: OTLP/HTTP traces from an MCP server, protobuf or JSON, gzip or not. The
//! key is checked before the body is read (and no signature is asked for unless every write must
//! be signed); the spans are mapped (`otlp`), the interactions go
//! through the same write step as a batch (spooled, fsynced, then taught to the router), and the
//! answer is the standard one, with `partial_success` counting what was refused. Failures are
//! `google.rpc.Status` in the request's encoding, with the status and `Retry-After` of the
//! API's own errors, which OTLP exporters know how to retry.

use bytes::Buf;
use futures::Stream;
use warp::http::{HeaderValue, StatusCode};

use super::super::accept;
use super::super::state::IngestState;
use super::guards::{authenticate, check_signature, content_type, read_body};
use super::now_ms;
use super::reply::{bytes_reply, ApiError, ErrorCode, Response};
use super::Request;
use crate::otlp::{self, DecodeError, Encoding};
use crate::trust::keys::bearer;

/// Answers an export request; every failure is an OTLP failure.
pub(super) async fn export<S, B>(state: &IngestState, req: &Request<'_>, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let media_type = content_type(req.headers);
    let encoding = match Encoding::of_media_type(&media_type) {
        Ok(e) => e,
        Err(e) => return failure(state, &decode_error(e), Encoding::Json),
    };
    match answer(state, req, body, encoding).await {
        Ok(response) => response,
        Err(e) => failure(state, &e, encoding),
    }
}

async fn answer<S, B>(
    state: &IngestState,
    req: &Request<'_>,
    body: S,
    encoding: Encoding,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let key = bearer(req.auth());
    let key_mcp = authenticate(state, key)?;
    let limit = state.limits.batch_bytes;
    let body = read_body(body, req.headers, limit, state.limits.body_timeout).await?;
    // Signed only when every write must be (`--require-signatures writes`): an OTLP exporter
    // cannot sign, and a replayed export stores nothing new, its interactions being named by
    // their trace and span IDs.
    check_signature(
        state,
        state.signing.required_for_writes(),
        key,
        &req.signed(&body),
    )
    .map_err(|e| ApiError {
        message: format!(
            "{} (--require-signatures writes asks this of OTLP too, which exporters cannot do; `batch`, the default, takes OTLP unsigned)",
            e.message
        ),
        ..e
    })?;
    let compression = req
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or("?"));
    let body = otlp::inflate(body, compression, limit).map_err(decode_error)?;
    let request = otlp::decode(&body, encoding).map_err(decode_error)?;
    drop(body);
    let spans = otlp::span_count(&request);
    let most = state.limits.batch_records;
    if spans > most {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request has {spans} spans; at most {most} (lower the exporter's or the collector's batch size)"),
        ));
    }
    let mapped = otlp::map(&request);
    drop(request);
    for (method, n) in &mapped.methods {
        (state.metrics.otlp_spans)
            .with_label_values(&[key_mcp.as_str(), method])
            .inc_by(*n);
    }
    for (reason, (n, _)) in &mapped.refused {
        (state.metrics.otlp_refused)
            .with_label_values(&[reason.label()])
            .inc_by(*n);
    }
    let mut rejected = mapped.refused_spans();
    let mut message = mapped.refusal_message();
    let records = mapped.records.into_iter().map(Ok).collect();
    let results =
        accept::accept_batch(state, &state.protection, &key_mcp, records, now_ms()).await?;
    let mut invalid = results.iter().filter(|r| !r.accepted).peekable();
    if let Some(first) = invalid.peek() {
        let first = first.error.clone().unwrap_or_default();
        let n = invalid.count() as u64;
        rejected += n;
        (state.metrics.otlp_refused)
            .with_label_values(&["invalid"])
            .inc_by(n);
        if !message.is_empty() {
            message.push_str("; ");
        }
        message.push_str(&format!("{n} tools/call spans not stored (e.g. {first})"));
    }
    let bytes = otlp::encode_response(rejected as i64, message, encoding);
    Ok(bytes_reply(StatusCode::OK, bytes, encoding.media_type()))
}

fn decode_error(e: DecodeError) -> ApiError {
    let code = match e {
        DecodeError::MediaType(_) | DecodeError::Compression(_) => ErrorCode::UnsupportedMediaType,
        DecodeError::TooLarge { .. } => ErrorCode::BodyTooLarge,
        DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => {
            ErrorCode::BadRequest
        }
    };
    ApiError::new(code, e.to_string())
}

/// An API error as OTLP has it: the same status and `Retry-After`, the body a `google.rpc.Status`
/// in the request's encoding.
fn failure(state: &IngestState, e: &ApiError, encoding: Encoding) -> Response {
    state
        .metrics
        .rejected
        .with_label_values(&[e.code.metric_reason()])
        .inc();
    let status = e.code.status();
    let mut response = bytes_reply(
        status,
        otlp::encode_status(status.as_u16(), &e.message, encoding),
        encoding.media_type(),
    );
    if let Some(secs) = e.code.retry_after() {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}
