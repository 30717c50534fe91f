use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

use super::*;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn span(name: &str, kind: SpanKind, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0x01, 2, 3, 4, 5, 6, 7, 8],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        attributes,
        ..Default::default()
    }
}

fn call(tool: &str) -> Span {
    span(
        &format!("tools/call {tool}"),
        SpanKind::Server,
        vec![
            s("mcp.method.name", "tools/call"),
            s("gen_ai.tool.name", tool),
            s("gen_ai.operation.name", "execute_tool"),
            s("mcp.session.id", "sess-1"),
        ],
    )
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "ocr"),
                    s("service.version", "2.1.0"),
                    s("deployment.environment.name", "prod"),
                    s("cloud.region", "eu-west-1"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn a_tools_call_server_span_is_an_interaction_with_its_times_and_context() {
    let mapped = map(&request(vec![call("extract_text")]));
    assert_eq!(mapped.refused_spans(), 0);
    assert_eq!(mapped.records.len(), 1);
    let r = &mapped.records[0];
    assert_eq!(
        r.interaction_id.as_deref(),
        Some("otel:abababababababababababababababab:0102030405060708")
    );
    let f = &r.fields;
    assert_eq!(f.request_type.as_deref(), Some("extract_text"));
    assert_eq!(f.start_time_ms, Some(1_700_000_000_000));
    assert_eq!(f.end_time_ms, Some(1_700_000_000_250));
    assert_eq!(f.processing_time, Some(0.25));
    assert_eq!(f.success, Some(true));
    assert_eq!(f.error_code, None);
    assert_eq!(f.session_id.as_deref(), Some("sess-1"));
    assert_eq!(f.mcp_version.as_deref(), Some("2.1.0"));
    assert_eq!(f.environment.as_deref(), Some("prod"));
    assert_eq!(f.region.as_deref(), Some("eu-west-1"));
    assert_eq!(mapped.methods.get("tools/call"), Some(&1));
}

#[test]
fn errors_are_named_as_the_gateway_names_them() {
    let with = |extra: Vec<KeyValue>, status: Option<Status>| {
        let mut span = call("t");
        span.attributes.extend(extra);
        span.status = status;
        let mapped = map(&request(vec![span]));
        let f = mapped.records[0].fields.clone();
        (f.success, f.error_code, f.error_message)
    };
    let failed = |message: &str| {
        Some(Status {
            code: StatusCode::Error as i32,
            message: message.into(),
        })
    };
    assert_eq!(
        with(vec![s("error.type", "tool_error")], failed("")),
        (Some(false), Some("TOOL_ERROR".into()), None)
    );
    // Invalid parameters are the caller's, as in the gateway's log.
    assert_eq!(
        with(
            vec![
                s("error.type", "-32602"),
                s("rpc.response.status_code", "-32602")
            ],
            failed("Invalid request parameters")
        ),
        (
            Some(false),
            Some("CALLER_INVALID_PARAMS".into()),
            Some("Invalid request parameters".into())
        )
    );
    assert_eq!(
        with(vec![s("error.type", "ValueError")], failed("boom")).1,
        Some("ValueError".into())
    );
    assert_eq!(
        with(vec![], failed("no type")).1,
        Some(UNKNOWN_ERROR.into())
    );
    assert_eq!(with(vec![], None).0, Some(true));
}

#[test]
fn other_methods_are_counted_and_unconventional_spans_refused_with_their_reason() {
    let mut no_ids = call("t");
    no_ids.span_id = vec![0; 8];
    let mut backwards = call("t");
    backwards.end_time_unix_nano = backwards.start_time_unix_nano - 1;
    let mut client = call("t");
    client.kind = SpanKind::Client as i32;
    let long = call(&"x".repeat(300));
    let mapped = map(&request(vec![
        span(
            "tools/list",
            SpanKind::Server,
            vec![s("mcp.method.name", "tools/list")],
        ),
        span(
            "x",
            SpanKind::Server,
            vec![s("mcp.method.name", "vendor/thing")],
        ),
        span("GET /mcp", SpanKind::Server, vec![s("http.route", "/mcp")]),
        span(
            "tools/call",
            SpanKind::Server,
            vec![s("mcp.method.name", "tools/call")],
        ),
        client,
        no_ids,
        backwards,
        long,
    ]));
    assert!(mapped.records.is_empty());
    assert_eq!(mapped.methods.get("tools/list"), Some(&1));
    assert_eq!(mapped.methods.get("other"), Some(&1));
    assert_eq!(mapped.refused_spans(), 6);
    for reason in [
        Refused::NotMcp,
        Refused::NotServer,
        Refused::NoTool,
        Refused::BadIds,
        Refused::BadTimes,
        Refused::TooLong,
    ] {
        assert_eq!(
            mapped.refused.get(&reason).map(|r| r.0),
            Some(1),
            "{reason:?}"
        );
    }
    let message = mapped.refusal_message();
    assert!(
        message.contains("1 with no mcp.method.name (not an MCP span) (e.g. \"GET /mcp\")"),
        "{message}"
    );
}

#[test]
fn the_same_span_maps_to_the_same_interaction() {
    let a = map(&request(vec![call("t")]));
    let b = map(&request(vec![call("t")]));
    assert_eq!(a.records[0], b.records[0]);
}
