//! OTLP traces in: what an MCP server's OpenTelemetry spans become in the interaction log. Pure:
//! the request read (`decode.rs`: its encoding, gzip within a bound, the answers in the request's
//! own encoding) and the spans mapped by the MCP semantic conventions (`map/`). The ingest API
//! serves it at `POST /v1/traces`; nothing here knows HTTP or the spool.

pub mod decode;
pub mod map;

pub use decode::{decode, encode_response, encode_status, inflate, DecodeError, Encoding};
pub use map::{map, span_count, Mapped, Refused};
