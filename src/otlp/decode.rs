//! An OTLP/HTTP traces request as it arrives: its encoding (protobuf or JSON), its compression
//! (none or gzip, inflated within a bound), the export request decoded, and the answers written
//! back in the request's own encoding.

use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

/// How the request's body is written (`Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a media type names (lower case, without parameters).
    pub fn of_media_type(media_type: &str) -> Result<Self, DecodeError> {
        match media_type {
            "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            other => Err(DecodeError::MediaType(other.to_string())),
        }
    }

    /// The media type answers are written in.
    pub fn media_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error(
        "content-type {0:?} is not OTLP/HTTP; send application/x-protobuf or application/json"
    )]
    MediaType(String),
    #[error("content-encoding {0:?} is not supported; send gzip or no compression")]
    Compression(String),
    #[error("the gzip body is damaged: {0}")]
    Gzip(String),
    #[error("the body inflates past the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body is not an OTLP ExportTraceServiceRequest in protobuf: {0}")]
    Protobuf(String),
    #[error("the body is not an OTLP ExportTraceServiceRequest in JSON: {0}")]
    Json(String),
}

/// The body as sent, inflated when `content_encoding` says gzip; at most `limit` bytes once
/// inflated (a small gzip body may inflate to anything).
pub fn inflate(
    body: Vec<u8>,
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Vec<u8>, DecodeError> {
    match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => Ok(body),
        Some(e) if e.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let decoder = flate2::read::GzDecoder::new(body.as_slice());
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| DecodeError::Gzip(e.to_string()))?;
            if out.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(out)
        }
        Some(other) => Err(DecodeError::Compression(other.to_string())),
    }
}

/// The export request in `body`.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body)
            .map_err(|e| DecodeError::Protobuf(e.to_string())),
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
        }
    }
}

/// The success answer: `partial_success` when anything was refused, as the specification has it
/// (an empty message when nothing was).
pub fn encode_response(rejected_spans: i64, message: String, encoding: Encoding) -> Vec<u8> {
    let response = ExportTraceServiceResponse {
        partial_success: (rejected_spans > 0 || !message.is_empty()).then_some(
            ExportTracePartialSuccess {
                rejected_spans,
                error_message: message,
            },
        ),
    };
    match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        // `{}` rather than the serializer's `{"partialSuccess": null}`.
        Encoding::Json if response.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&response).unwrap_or_default(),
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP failure (only the fields written here).
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct RpcStatus {
    /// A gRPC status code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC's codes for the HTTP statuses an OTLP failure has.
pub fn grpc_code(http_status: u16) -> i32 {
    match http_status {
        400 | 413 | 415 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 | 405 => 12,      // UNIMPLEMENTED
        408 => 4,             // DEADLINE_EXCEEDED
        429 => 8,             // RESOURCE_EXHAUSTED
        503 => 14,            // UNAVAILABLE
        _ => 13,              // INTERNAL
    }
}

/// A failure's body in the request's encoding.
pub fn encode_status(http_status: u16, message: &str, encoding: Encoding) -> Vec<u8> {
    let status = RpcStatus {
        code: grpc_code(http_status),
        message: message.to_string(),
    };
    match encoding {
        Encoding::Protobuf => status.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&status).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_inflates_within_its_bound_and_other_codings_are_named() {
        let body = vec![b'a'; 10_000];
        assert_eq!(inflate(gzip(&body), Some("gzip"), 10_000).unwrap(), body);
        // A bomb stops one byte past the limit, whatever it would inflate to.
        assert_eq!(
            inflate(gzip(&vec![0; 5_000_000]), Some("GZIP"), 1_000),
            Err(DecodeError::TooLarge { limit: 1_000 })
        );
        assert!(matches!(
            inflate(b"not gzip".to_vec(), Some("gzip"), 1_000),
            Err(DecodeError::Gzip(_))
        ));
        assert_eq!(
            inflate(b"x".to_vec(), Some("br"), 10),
            Err(DecodeError::Compression("br".into()))
        );
        assert_eq!(inflate(b"x".to_vec(), None, 10).unwrap(), b"x");
    }

    #[test]
    fn malformed_bodies_are_refused_with_what_is_wrong() {
        let e = decode(&[0x0a, 0xff, 0xff], Encoding::Protobuf).unwrap_err();
        assert!(matches!(e, DecodeError::Protobuf(_)), "{e}");
        assert!(e.to_string().contains("protobuf"), "{e}");
        let e = decode(b"{\"resourceSpans\": 3}", Encoding::Json).unwrap_err();
        assert!(e.to_string().contains("JSON"), "{e}");
        assert_eq!(
            Encoding::of_media_type("text/plain"),
            Err(DecodeError::MediaType("text/plain".into()))
        );
    }

    #[test]
    fn answers_follow_the_request_encoding() {
        let bytes = encode_response(2, "two spans refused".into(), Encoding::Protobuf);
        let back = ExportTraceServiceResponse::decode(bytes.as_slice()).unwrap();
        let partial = back.partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 2);
        assert_eq!(partial.error_message, "two spans refused");
        let json: serde_json::Value =
            serde_json::from_slice(&encode_response(0, String::new(), Encoding::Json)).unwrap();
        assert_eq!(json, serde_json::json!({}));
        let status =
            RpcStatus::decode(encode_status(429, "slow down", Encoding::Protobuf).as_slice())
                .unwrap();
        assert_eq!((status.code, status.message.as_str()), (8, "slow down"));
    }
}
