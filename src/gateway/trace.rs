//! The gateway's spans, in the OpenTelemetry MCP semantic conventions: a SERVER span for each
//! routed call (its parent the client's `params._meta.traceparent`, as the 2026-07-28 revision
//! carries trace context), and a CLIENT span for each attempt on an MCP, whose context goes on to
//! the MCP in the forwarded request's `params._meta`. Nothing is built when spans are not
//! exported.

use serde_json::{Map, Value};

use super::directory::Backend;
use super::protocol::Message;
use crate::telemetry::spans::{self, Attribute, SpanContext, SpanKind, TraceContextExt, Tracer};

/// The span of one routed call; ended once, by whoever learns how the call ended.
#[derive(Default)]
pub(super) struct CallSpan(Option<SpanContext>);

/// The span of one attempt on one MCP.
pub(super) struct AttemptSpan(Option<SpanContext>);

/// The attributes the conventions give a call of `message` on `name`.
fn call_attributes(message: &Message, name: &str) -> Vec<Attribute> {
    let mut attributes = vec![Attribute::new("mcp.method.name", message.method.clone())];
    match message.method.as_str() {
        "tools/call" => {
            attributes.push(Attribute::new("gen_ai.tool.name", name.to_string()));
            attributes.push(Attribute::new("gen_ai.operation.name", "execute_tool"));
        }
        "prompts/get" => attributes.push(Attribute::new("gen_ai.prompt.name", name.to_string())),
        _ => attributes.push(Attribute::new("mcp.resource.uri", name.to_string())),
    }
    if let Some(id) = &message.id {
        let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
        attributes.push(Attribute::new("jsonrpc.request.id", id));
    }
    if let Some(version) = message.envelope_version() {
        attributes.push(Attribute::new("mcp.protocol.version", version.to_string()));
    }
    attributes
}

fn meta(message: &Message) -> Option<&Map<String, Value>> {
    message.params.get("_meta")?.as_object()
}

impl CallSpan {
    /// Starts the SERVER span of a call of `message` on `name` (a tool, prompt or resource).
    pub(super) fn start(message: &Message, name: &str, interaction_id: &str) -> Self {
        if !spans::enabled() {
            return Self(None);
        }
        let parent = spans::extract(|k| meta(message)?.get(k)?.as_str().map(str::to_string));
        let mut attributes = call_attributes(message, name);
        attributes.push(Attribute::new(
            "mcp_coordinator.interaction_id",
            interaction_id.to_string(),
        ));
        let tracer = spans::tracer();
        let span = tracer
            .span_builder(format!("{} {name}", message.method))
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&tracer, &parent);
        Self(Some(parent.with_span(span)))
    }

    /// Starts the CLIENT span of an attempt on `backend`, and puts its trace context in
    /// `forwarded`'s `params._meta` (made from `message` only when spans are exported).
    pub(super) fn attempt(
        &self,
        backend: &Backend,
        message: &Message,
        name: &str,
        forwarded: &mut Option<Message>,
    ) -> AttemptSpan {
        let Some(cx) = &self.0 else {
            return AttemptSpan(None);
        };
        let mut attributes = call_attributes(message, name);
        attributes.push(Attribute::new(
            "mcp_coordinator.mcp_id",
            backend.mcp_id.clone(),
        ));
        if let Some(host) = backend.url.host_str() {
            attributes.push(Attribute::new("server.address", host.to_string()));
        }
        if let Some(port) = backend.url.port_or_known_default() {
            attributes.push(Attribute::new("server.port", i64::from(port)));
        }
        let tracer = spans::tracer();
        let span = tracer
            .span_builder(format!("{} {name}", message.method))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, cx);
        let attempt = cx.with_span(span);
        let forwarded = forwarded.get_or_insert_with(|| message.clone());
        if let Value::Object(params) = &mut forwarded.params {
            let meta = params
                .entry("_meta")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(meta) = meta {
                for (k, v) in spans::inject(&attempt) {
                    meta.insert(k, Value::String(v));
                }
            }
        }
        AttemptSpan(Some(attempt))
    }

    /// Ends the call's span; `error_type` as the conventions name it when it failed.
    pub(super) fn end(&self, error_type: Option<&str>) {
        if let Some(cx) = &self.0 {
            finish(cx, error_type);
        }
    }
}

impl AttemptSpan {
    pub(super) fn end(self, error_type: Option<&str>) {
        if let Some(cx) = &self.0 {
            finish(cx, error_type);
        }
    }
}

fn finish(cx: &SpanContext, error_type: Option<&str>) {
    let span = cx.span();
    if let Some(error_type) = error_type {
        span.set_attribute(Attribute::new("error.type", error_type.to_string()));
        span.set_status(spans::Status::error(""));
    }
    span.end();
}
