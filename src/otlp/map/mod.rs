//! What an MCP server's spans become, by the OpenTelemetry MCP semantic conventions, pure.
//!
//! A server span whose `mcp.method.name` is `tools/call` is one interaction: the tool
//! (`gen_ai.tool.name`) is its request type, the span's times are its times, `error.type` and
//! `rpc.response.status_code` its error. Server spans of other MCP methods are counted per
//! method. Anything else is refused with the reason, never guessed at. The interaction's ID is
//! made of the trace and span IDs, so an exporter that sends a batch again stores nothing twice.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};

use crate::interaction::kinds::{MAX_NAME_BYTES, MAX_TEXT_BYTES};
use crate::interaction::{EventKind, Fields, ParsedReport, UNKNOWN_ERROR};
use crate::routing::weights::jsonrpc_error_name;

/// The methods counted by name; any other method is counted as `other`.
pub const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
];

/// Why a span was refused; each names a shape of span the conventions do not make an
/// interaction of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refused {
    /// No `mcp.method.name`: not an MCP span.
    NotMcp,
    /// An MCP span of another kind than SERVER: the MCP's own work is its server spans.
    NotServer,
    /// `tools/call` without `gen_ai.tool.name`.
    NoTool,
    /// A trace ID of other than 16 bytes, a span ID of other than 8, or either all zero.
    BadIds,
    /// No start or end time, or an end before the start.
    BadTimes,
    /// A name longer than the log keeps.
    TooLong,
}

impl Refused {
    /// The reason as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::NotMcp => "not_mcp",
            Refused::NotServer => "not_server",
            Refused::NoTool => "no_tool",
            Refused::BadIds => "bad_ids",
            Refused::BadTimes => "bad_times",
            Refused::TooLong => "too_long",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::NotMcp => "no mcp.method.name (not an MCP span)",
            Refused::NotServer => "an MCP span of another kind than SERVER",
            Refused::NoTool => "tools/call without gen_ai.tool.name",
            Refused::BadIds => "an invalid trace or span ID",
            Refused::BadTimes => "no start or end time, or an end before the start",
            Refused::TooLong => "an attribute longer than 256 bytes",
        }
    }
}

/// What one export request became.
#[derive(Debug, Default)]
pub struct Mapped {
    /// One record per `tools/call` server span, with its interaction ID.
    pub records: Vec<ParsedReport>,
    /// Server spans of every method, `tools/call` included, by method (see [`METHODS`]).
    pub methods: BTreeMap<&'static str, u64>,
    /// Refused spans by reason, with the first such span's name.
    pub refused: BTreeMap<Refused, (u64, String)>,
}

impl Mapped {
    pub fn refused_spans(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }

    /// The `partial_success` message: each reason with its count and an example.
    pub fn refusal_message(&self) -> String {
        let parts: Vec<String> = self
            .refused
            .iter()
            .map(|(reason, (n, example))| {
                format!("{n} with {} (e.g. {example:?})", reason.as_str())
            })
            .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("spans refused: {}", parts.join("; "))
        }
    }

    fn refuse(&mut self, reason: Refused, span: &Span) {
        let entry = self
            .refused
            .entry(reason)
            .or_insert_with(|| (0, span.name.chars().take(80).collect()));
        entry.0 += 1;
    }
}

/// How many spans `request` holds.
pub fn span_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Maps every span of `request`.
pub fn map(request: &ExportTraceServiceRequest) -> Mapped {
    let mut mapped = Mapped::default();
    for resource_spans in &request.resource_spans {
        let resource: &[KeyValue] = resource_spans
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let context = ResourceContext::of(resource);
        for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
            match interaction(span, &context, &mut mapped.methods) {
                Ok(Some(report)) => mapped.records.push(report),
                Ok(None) => {}
                Err(reason) => mapped.refuse(reason, span),
            }
        }
    }
    mapped
}

/// What the resource says of every span under it.
struct ResourceContext<'a> {
    version: Option<&'a str>,
    environment: Option<&'a str>,
    region: Option<&'a str>,
}

impl<'a> ResourceContext<'a> {
    fn of(attributes: &'a [KeyValue]) -> Self {
        Self {
            version: text(attributes, "service.version"),
            environment: text(attributes, "deployment.environment.name")
                .or_else(|| text(attributes, "deployment.environment")),
            region: text(attributes, "cloud.region"),
        }
    }
}

/// The interaction a span is, `None` for a server span of another method (counted), or why it
/// was refused.
fn interaction(
    span: &Span,
    resource: &ResourceContext<'_>,
    methods: &mut BTreeMap<&'static str, u64>,
) -> Result<Option<ParsedReport>, Refused> {
    let attributes = span.attributes.as_slice();
    let method = text(attributes, "mcp.method.name").ok_or(Refused::NotMcp)?;
    if span.kind != SpanKind::Server as i32 {
        return Err(Refused::NotServer);
    }
    let counted = METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("other");
    *methods.entry(counted).or_default() += 1;
    if method != "tools/call" {
        return Ok(None);
    }
    let tool = text(attributes, "gen_ai.tool.name")
        .filter(|t| !t.is_empty())
        .ok_or(Refused::NoTool)?;
    if span.trace_id.len() != 16
        || span.span_id.len() != 8
        || span.trace_id.iter().all(|b| *b == 0)
        || span.span_id.iter().all(|b| *b == 0)
    {
        return Err(Refused::BadIds);
    }
    let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
    if start == 0 || end == 0 || end < start || start / 1_000_000 > i64::MAX as u64 {
        return Err(Refused::BadTimes);
    }
    let error = error_of(span, attributes);
    let name = |v: Option<&str>| -> Result<Option<String>, Refused> {
        match v {
            Some(v) if v.len() > MAX_NAME_BYTES => Err(Refused::TooLong),
            other => Ok(other.map(str::to_string)),
        }
    };
    let start_ms = (start / 1_000_000) as i64;
    let fields = Fields {
        session_id: name(text(attributes, "mcp.session.id"))?,
        timestamp_ms: Some(start_ms),
        request_type: name(Some(tool))?,
        parameters: Some(ids_text(
            &["{\"trace_id\":\"", "\",\"span_id\":\"", "\"}"],
            span,
        )),
        start_time_ms: Some(start_ms),
        end_time_ms: Some((end / 1_000_000) as i64),
        processing_time: Some((end - start) as f64 / 1e9),
        success: Some(error.is_none()),
        error_message: error.as_ref().and_then(|(_, m)| m.clone()),
        error_code: name(error.map(|(c, _)| c).as_deref())?,
        mcp_version: name(resource.version)?,
        environment: name(resource.environment)?,
        region: name(resource.region)?,
        ..Fields::default()
    };
    Ok(Some(ParsedReport {
        interaction_id: Some(ids_text(&["otel:", ":", ""], span)),
        mcp_id: None,
        kind: Some(EventKind::Record),
        fields,
    }))
}

/// The error a span reports: its code for the log and the status message. A JSON-RPC code
/// (in `rpc.response.status_code` or `error.type`) is named as the gateway names it, so invalid
/// parameters stay the caller's fault; `tool_error` (a result with `isError`) is `TOOL_ERROR`.
fn error_of(span: &Span, attributes: &[KeyValue]) -> Option<(String, Option<String>)> {
    let error_type = text(attributes, "error.type");
    let rpc_code = text(attributes, "rpc.response.status_code")
        .and_then(|c| c.parse::<i64>().ok())
        .or_else(|| int(attributes, "rpc.response.status_code"));
    let failed_status = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    if error_type.is_none() && rpc_code.is_none() && !failed_status {
        return None;
    }
    let code = match (rpc_code, error_type) {
        (Some(code), _) => jsonrpc_error_name(code),
        (None, Some(t)) if t.eq_ignore_ascii_case("tool_error") => "TOOL_ERROR".to_string(),
        (None, Some(t)) => match t.parse::<i64>() {
            Ok(code) => jsonrpc_error_name(code),
            Err(_) => t.to_string(),
        },
        (None, None) => UNKNOWN_ERROR.to_string(),
    };
    let message = span
        .status
        .as_ref()
        .map(|s| s.message.as_str())
        .filter(|m| !m.is_empty())
        .map(|m| truncate(m, MAX_TEXT_BYTES.min(1000)));
    Some((code, message))
}

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match value(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match value(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// `parts[0]`, the trace ID in hex, `parts[1]`, the span ID in hex, `parts[2]`: written with a
/// table, as formatting each byte was a tenth of mapping a span.
fn ids_text(parts: &[&str; 3], span: &Span) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hex = |out: &mut String, bytes: &[u8]| {
        for b in bytes {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    };
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum::<usize>() + 48);
    out.push_str(parts[0]);
    hex(&mut out, &span.trace_id);
    out.push_str(parts[1]);
    hex(&mut out, &span.span_id);
    out.push_str(parts[2]);
    out
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests;
