//! What a request must pass before its handler runs: content type, body size, JSON, an API key or
//! a reader token, and a signature where the policy asks for one.

use std::time::Duration;

use bytes::Buf;
use futures::{Stream, StreamExt};
use serde_json::Value;
use warp::http::{HeaderMap, Method};

use super::super::state::IngestState;
use super::now_ms;
use super::reply::{ApiError, ErrorCode};
use crate::trust::gate;
use crate::trust::keys::Role;
use crate::trust::signing::{SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// The body, refused with 413 past `limit` bytes without reading further, and with 408 when it
/// does not arrive within `timeout`. `headers` say how long it will be (`Content-Length`).
pub async fn read_body<S, B>(
    body: S,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    // One allocation of the announced size instead of a dozen as the body grows (each a fresh
    // region the kernel zeroes: in the profile of batched ingest). Only up to a bound: the
    // announcement is the client's word, and a request that never sends its bytes must not
    // hold a large buffer.
    let announced = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    // A body announced past the limit is refused before a byte of it is read.
    if announced > limit {
        return Err(ApiError::new(
            ErrorCode::BodyTooLarge,
            format!("the request body ({announced} bytes) exceeds the limit of {limit} bytes"),
        ));
    }
    let capacity = announced.min(PREALLOCATED_BODY_BYTES);
    tokio::time::timeout(timeout, read_body_within(body, limit, capacity))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                ErrorCode::BodyTimeout,
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs()
                ),
            ))
        })
}

/// The most a body's buffer is sized for in advance (a batch of 500 standard records is ~450 KB).
const PREALLOCATED_BODY_BYTES: usize = 1 << 20;

async fn read_body_within<S, B>(body: S, limit: usize, capacity: usize) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut body = body;
    let mut out = Vec::with_capacity(capacity);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("could not read the request body: {e}"),
            )
        })?;
        if out.len() + chunk.remaining() > limit {
            return Err(ApiError::new(
                ErrorCode::BodyTooLarge,
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

/// The media type of the body, lower case, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    match content_type(headers).as_str() {
        "application/json" => Ok(()),
        other => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("content-type must be application/json, not {:?}", other),
        )),
    }
}

pub fn utf8(body: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid UTF-8: {e}"),
        )
    })
}

pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_str(utf8(body)?).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The MCP whose API key this is.
pub fn authenticate(state: &IngestState, key: Option<&str>) -> Result<String, ApiError> {
    match gate::authenticate(&state.keys, key) {
        Err(denied) if key.is_some_and(|k| state.readers.role(k).is_some()) => {
            drop(denied);
            Err(ApiError::new(
                ErrorCode::Forbidden,
                "this is a reader or admin token: it reads; reports and heartbeats need the MCP's own API key (its `<name>-mcp-key` Secret, key api-key)",
            ))
        }
        other => Ok(other?),
    }
}

/// A request as the signature covers it.
pub struct Signed<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Verifies the request's signature when `required` (after authentication, so `key` is valid).
pub fn check_signature(
    state: &IngestState,
    required: bool,
    key: Option<&str>,
    request: &Signed<'_>,
) -> Result<(), ApiError> {
    if !required {
        return Ok(());
    }
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    state
        .signing
        .verify(
            key.unwrap_or_default(),
            request.method.as_str(),
            request.path,
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            request.body,
            now_ms() / 1000,
        )
        .map_err(|e| ApiError::new(ErrorCode::BadSignature, e.to_string()))
}

/// Who may read: admins and readers everything, an MCP's own key only that MCP's data (`mcp`).
pub fn authorize_reader(
    state: &IngestState,
    auth: Option<&str>,
    mcp: Option<&str>,
) -> Result<Role, ApiError> {
    Ok(gate::authorize_reader(
        &state.keys,
        &state.readers,
        auth,
        mcp,
    )?)
}

/// Any known token: a reader, an admin or an MCP's key.
pub fn any_token(state: &IngestState, auth: Option<&str>, purpose: &str) -> Result<(), ApiError> {
    Ok(gate::any_token(&state.keys, &state.readers, auth, purpose)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<bytes::Bytes, warp::Error>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(bytes::Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn announcing(length: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", length.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn an_announced_length_sizes_the_buffer_only_up_to_a_bound() {
        let timeout = Duration::from_secs(5);
        let body = read_body(chunks(&[b"{\"a\":", b"1}"]), &announcing("7"), 100, timeout)
            .await
            .unwrap();
        assert_eq!(body, b"{\"a\":1}");
        // A client that announces far more than it sends gets no buffer of that size.
        let body = read_body(chunks(&[b"{}"]), &announcing("999999999"), 1 << 30, timeout)
            .await
            .unwrap();
        assert!(
            body.capacity() <= PREALLOCATED_BODY_BYTES,
            "{}",
            body.capacity()
        );
        // A body announced past the limit is refused unread.
        let refused = read_body(chunks(&[b"{}"]), &announcing("16"), 15, timeout)
            .await
            .unwrap_err();
        assert_eq!(refused.code, ErrorCode::BodyTooLarge);
        assert!(
            refused.message.contains("(16 bytes)"),
            "{}",
            refused.message
        );
        // The limit counts what arrives, whatever was announced.
        let refused = read_body(
            chunks(&[b"0123456789", b"0123456789"]),
            &announcing("5"),
            15,
            timeout,
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::BodyTooLarge);
    }
}
