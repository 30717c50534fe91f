//! `POST /v1/traces` over HTTP: the exporter's side of OTLP. A retried batch stores once, a wrong
//! key is 401, a body announced past the limit is refused unread, malformed protobuf is a 400
//! that names the problem, and the answers are in the request's encoding.

use test_support as common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use common::{eventually, http_client, interactions};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MCP: &str = "ocr_workflow_mcp_001";
const KEY: &str = "mcpk_otlp_test_key_0123456789";
const READER: &str = "otlp-reader-token-0123456789";

async fn start(dir: &TestDir) -> InProcessIngest {
    InProcessIngest::start(
        test_config(dir.path()),
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[(MCP, KEY)]),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A `tools/call` server span of `tool`, numbered `n` within its trace.
fn call(tool: &str, n: u8, millis: u64) -> Span {
    let start = 1_780_000_000_000_000_000 + u64::from(n) * 1_000_000_000;
    Span {
        trace_id: vec![7; 16],
        span_id: vec![n + 1; 8],
        name: format!("tools/call {tool}"),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + millis * 1_000_000,
        attributes: vec![
            kv("mcp.method.name", "tools/call"),
            kv("gen_ai.tool.name", tool),
        ],
        ..Default::default()
    }
}

fn export(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.version", "3.0.1")],
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

async fn post(
    base: &str,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
    gzip: bool,
) -> reqwest::Response {
    let mut request = http_client()
        .post(format!("{base}/v1/traces"))
        .bearer_auth(key)
        .header("content-type", content_type);
    let body = if gzip {
        request = request.header("content-encoding", "gzip");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&body).unwrap();
        e.finish().unwrap()
    } else {
        body
    };
    request.body(body).send().await.expect("the server answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_export_stores_its_interactions_once() {
    let dir = TestDir::new("otlp-retry");
    let mut ingest = start(&dir).await;
    let base = ingest.base.clone();
    let mut not_mcp = call("x", 9, 5);
    not_mcp.attributes.clear();
    not_mcp.name = "GET /health".into();
    let body = export(vec![
        call("extract_text", 0, 120),
        call("extract_text", 1, 80),
        not_mcp,
    ])
    .encode_to_vec();
    for gzip in [false, true] {
        let answer = post(&base, KEY, "application/x-protobuf", body.clone(), gzip).await;
        assert_eq!(answer.status().as_u16(), 200);
        assert_eq!(answer.headers()["content-type"], "application/x-protobuf");
        let answer =
            ExportTraceServiceResponse::decode(answer.bytes().await.unwrap().as_ref()).unwrap();
        let partial = answer.partial_success.expect("one span was refused");
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("no mcp.method.name")
                && partial.error_message.contains("GET /health"),
            "{}",
            partial.error_message
        );
    }
    // The same spans in OTLP/JSON, as the JavaScript exporter sends them, name the same
    // interactions.
    let json = serde_json::to_vec(&export(vec![call("extract_text", 0, 120)])).unwrap();
    let answer = post(&base, KEY, "application/json", json, false).await;
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "{}");

    let stored = eventually(Duration::from_secs(10), || async {
        let items = interactions(&base, MCP, READER, "?limit=100").await;
        (items.len() == 2)
            .then_some(items.clone())
            .ok_or(format!("{items:?}"))
    })
    .await;
    // Still two a moment later: the three exports named the same two interactions.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        interactions(&base, MCP, READER, "?limit=100").await.len(),
        2
    );
    let first = stored
        .iter()
        .find(|i| i["interaction_id"] == "otel:07070707070707070707070707070707:0101010101010101")
        .expect("the interaction of the first span");
    assert_eq!(first["request_data"]["request_type"], "extract_text");
    assert_eq!(first["processing_data"]["processing_time"], 0.12);
    assert_eq!(first["metadata"]["mcp_version"], "3.0.1");
    assert_eq!(first["status"], "completed");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exports_are_refused_with_what_an_exporter_needs() {
    let dir = TestDir::new("otlp-refusals");
    let mut ingest = start(&dir).await;
    let base = ingest.base.clone();
    let body = export(vec![call("t", 0, 1)]).encode_to_vec();

    // A wrong key: 401, as a google.rpc.Status in protobuf.
    let answer = post(
        &base,
        "mcpk_wrong",
        "application/x-protobuf",
        body.clone(),
        false,
    )
    .await;
    assert_eq!(answer.status().as_u16(), 401);
    let status = answer.bytes().await.unwrap();
    // google.rpc.Status: field 1 (code) = 16 UNAUTHENTICATED, then the message.
    assert_eq!(&status[..2], &[0x08, 16]);

    // Malformed protobuf: a 400 that says what it is not.
    let answer = post(
        &base,
        KEY,
        "application/x-protobuf",
        vec![0x0a, 0xff, 0xff, 0x01],
        false,
    )
    .await;
    assert_eq!(answer.status().as_u16(), 400);
    let text = String::from_utf8_lossy(&answer.bytes().await.unwrap()).to_string();
    assert!(
        text.contains("not an OTLP ExportTraceServiceRequest in protobuf"),
        "{text}"
    );

    // JSON that is not OTLP: the JSON Status names the problem.
    let answer = post(
        &base,
        KEY,
        "application/json",
        b"{\"resourceSpans\": 7}".to_vec(),
        false,
    )
    .await;
    assert_eq!(answer.status().as_u16(), 400);
    let status: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"].as_str().unwrap().contains("in JSON"),
        "{status}"
    );

    // Another encoding or compression: 415 naming what is accepted.
    let answer = post(&base, KEY, "text/plain", body.clone(), false).await;
    assert_eq!(answer.status().as_u16(), 415);
    let answer = http_client()
        .post(format!("{base}/v1/traces"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "zstd")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 415);

    // A gzip bomb stops at the limit once inflated (16 MiB by default).
    let zeros = vec![0u8; 17 << 20];
    let answer = post(&base, KEY, "application/x-protobuf", zeros, true).await;
    assert_eq!(answer.status().as_u16(), 413);

    // 20 MiB announced: refused before any of it is read. Only the headers are sent; the answer
    // comes without the body ever arriving.
    let mut stream = tokio::net::TcpStream::connect(ingest.addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
        20 << 20
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // None of it stored anything.
    assert!(interactions(&base, MCP, READER, "").await.is_empty());
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exporter_under_pressure_is_told_when_to_retry() {
    let dir = TestDir::new("otlp-pressure");
    // One request at a time, and a client holding it with a body it never finishes.
    let mut ingest = InProcessIngest::start(
        mcp_coordinator::ingest::IngestConfig {
            limits: mcp_coordinator::ingest::state::Limits {
                max_concurrent_requests: 1,
                ..Default::default()
            },
            ..test_config(dir.path())
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[(MCP, KEY)]),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await;
    let mut holder = tokio::net::TcpStream::connect(ingest.addr).await.unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100\r\n\r\n0123456789"
    );
    holder.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = export(vec![call("t", 0, 1)]).encode_to_vec();
    let answer = post(&ingest.base, KEY, "application/x-protobuf", body, false).await;
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    drop(holder);
    ingest.stop().await;
}
