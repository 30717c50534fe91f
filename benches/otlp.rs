//! OTLP in beside the JSON batch API, side by side in one run: the same interactions (100,000
//! `tools/call` server spans as the MCP Python SDK emits them, 1 in 10 a tool error) sent as
//! OTLP/HTTP protobuf (plain, and gzip as the Collector sends by default) and as JSON batches of
//! the records those spans become, 500 per request from 4 clients, every acknowledgement fsynced,
//! each path into a fresh ingest server and SQLite database. Rounds alternate the paths (the
//! machine's speed drifts); the table gives each round's events/s acknowledged and stored, and
//! OTLP ÷ JSON. `MCP_BENCH_OTLP_SPANS` changes the count, `MCP_BENCH_ROUNDS` the rounds. Run
//! with `make bench`; `MCP_BENCH_ONLY=reading` stops after the one-thread table (what a profile
//! of the decoding and mapping runs).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mcp_coordinator::interaction::format_ms;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;
use serde_json::json;

const KEY: &str = "mcpk_bench_otlp_key_0123456789abcdef";
const BATCH: usize = 500;
const CLIENTS: usize = 4;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    mcp_coordinator::allocator::prefer_small_pages();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("mcp-otlp-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spans: usize = env_or("MCP_BENCH_OTLP_SPANS", 100_000);
    let rounds: usize = env_or("MCP_BENCH_ROUNDS", 3).max(1);
    let base_ns = (jiff::Timestamp::now().as_millisecond() as u64 - 3_600_000) * 1_000_000;

    let protobuf: Vec<bytes::Bytes> = (0..spans)
        .step_by(BATCH)
        .map(|first| {
            export(first, (first + BATCH).min(spans), base_ns)
                .encode_to_vec()
                .into()
        })
        .collect();
    let gzip: Vec<bytes::Bytes> = protobuf.iter().map(|b| gzipped(b).into()).collect();
    let json: Vec<bytes::Bytes> = (0..spans)
        .step_by(BATCH)
        .map(|first| {
            let records: Vec<serde_json::Value> = (first..(first + BATCH).min(spans))
                .map(|i| record(i, base_ns))
                .collect();
            serde_json::to_vec(&records).expect("JSON").into()
        })
        .collect();
    let per = |bodies: &[bytes::Bytes]| bodies.iter().map(|b| b.len()).sum::<usize>() / spans;

    println!();
    println!(
        "OTLP in beside the JSON batch API: {spans} tools/call interactions, {BATCH} per request, {CLIENTS} clients, every acknowledgement fsynced, SQLite store; bytes per interaction: OTLP protobuf {}, gzip {}, JSON {}",
        per(&protobuf),
        per(&gzip),
        per(&json)
    );
    reading(&protobuf, &gzip, &json, spans);
    if std::env::var("MCP_BENCH_ONLY").is_ok_and(|only| only == "reading") {
        return;
    }
    println!();
    println!("end to end (events/s acknowledged / stored; CPU of this process, clients included, in ms per 1,000 events until stored)");
    println!("| round | JSON batch | OTLP protobuf | OTLP gzip | OTLP ÷ JSON, stored: protobuf / gzip | CPU ms/1k: JSON / protobuf / gzip |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let j = through(&dir, &format!("json-{round}"), &json, Path::Json, spans).await;
        let p = through(
            &dir,
            &format!("otlp-{round}"),
            &protobuf,
            Path::Otlp(false),
            spans,
        )
        .await;
        let g = through(
            &dir,
            &format!("gzip-{round}"),
            &gzip,
            Path::Otlp(true),
            spans,
        )
        .await;
        ratios.push((p.stored / j.stored, g.stored / j.stored));
        println!(
            "| {round} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} / {:.2} | {:.0} / {:.0} / {:.0} |",
            j.acked,
            j.stored,
            p.acked,
            p.stored,
            g.acked,
            g.stored,
            p.stored / j.stored,
            g.stored / j.stored,
            j.cpu,
            p.cpu,
            g.cpu
        );
    }
    println!(
        "median OTLP ÷ JSON, stored: protobuf {:.2}, gzip {:.2}",
        median(ratios.iter().map(|r| r.0).collect()),
        median(ratios.iter().map(|r| r.1).collect())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the request path does with a body before the write step, on one thread (CPU only, best
/// of 5): OTLP decoded and mapped, gzip inflated first; the JSON batch read into records.
fn reading(protobuf: &[bytes::Bytes], gzip: &[bytes::Bytes], json: &[bytes::Bytes], spans: usize) {
    use mcp_coordinator::interaction::{parse_records, EventKind};
    use mcp_coordinator::otlp;
    let best = |read: &dyn Fn() -> usize| {
        (0..5)
            .map(|_| {
                let started = Instant::now();
                assert_eq!(read(), spans);
                spans as f64 / started.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max)
    };
    let otlp_of = |bodies: &[bytes::Bytes], gzip: bool| {
        bodies
            .iter()
            .map(|b| {
                let body =
                    otlp::inflate(b.to_vec(), gzip.then_some("gzip"), 16 << 20).expect("inflate");
                let request = otlp::decode(&body, otlp::Encoding::Protobuf).expect("decode");
                otlp::map(&request).records.len()
            })
            .sum::<usize>()
    };
    let json_rate = best(&|| {
        json.iter()
            .map(|b| {
                let text = std::str::from_utf8(b).expect("UTF-8");
                let records = parse_records(text, EventKind::Record).expect("records");
                records.iter().filter(|r| r.is_ok()).count()
            })
            .sum()
    });
    let protobuf_rate = best(&|| otlp_of(protobuf, false));
    let gzip_rate = best(&|| otlp_of(gzip, true));
    println!();
    println!(
        "reading {spans} interactions on one thread, before the write step (CPU only; best of 5)"
    );
    println!("| path | interactions/s | ÷ JSON batch |");
    println!("| --- | ---: | ---: |");
    println!("| JSON batch (records read from the text) | {json_rate:.0} | 1.00 |");
    println!(
        "| OTLP protobuf (decoded, mapped) | {protobuf_rate:.0} | {:.2} |",
        protobuf_rate / json_rate
    );
    println!(
        "| OTLP gzip (inflated, decoded, mapped) | {gzip_rate:.0} | {:.2} |",
        gzip_rate / json_rate
    );
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn gzipped(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

fn text(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// Span `i`: a `tools/call` SERVER span with the attributes the MCP Python SDK sets.
fn span(i: usize, base_ns: u64) -> Span {
    let start = base_ns + i as u64 * 1_000_000;
    let failed = i.is_multiple_of(10);
    let mut attributes = vec![
        text("mcp.method.name", "tools/call"),
        text("mcp.protocol.version", "2026-07-28"),
        text("jsonrpc.request.id", &i.to_string()),
        text("gen_ai.operation.name", "execute_tool"),
        text(
            "gen_ai.tool.name",
            if i.is_multiple_of(3) {
                "extract_text"
            } else {
                "classify"
            },
        ),
    ];
    if failed {
        attributes.push(text("error.type", "tool_error"));
    }
    // Random-looking IDs, as real ones are (they are most of what gzip cannot shrink).
    let mut trace_id = splitmix(i as u64 * 2).to_be_bytes().to_vec();
    trace_id.extend(splitmix(i as u64 * 2 + 1).to_be_bytes());
    Span {
        trace_id,
        span_id: splitmix(u64::MAX - i as u64).to_be_bytes().to_vec(),
        name: "tools/call extract_text".into(),
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 40_000_000 + (i % 7) as u64 * 1_000_000,
        attributes,
        status: failed.then(|| Status {
            code: status::StatusCode::Error as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn export(first: usize, end: usize, base_ns: u64) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "ocr-tools"),
                    text("service.version", "1.4.0"),
                    text("deployment.environment.name", "prod"),
                    text("telemetry.sdk.language", "python"),
                    text("telemetry.sdk.name", "opentelemetry"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (first..end).map(|i| span(i, base_ns)).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The record span `i` becomes, as a JSON batch carries it.
fn record(i: usize, base_ns: u64) -> serde_json::Value {
    let s = span(i, base_ns);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let (start, end) = (s.start_time_unix_nano, s.end_time_unix_nano);
    let failed = i.is_multiple_of(10);
    json!({
        "interaction_id": format!("otel:{}:{}", hex(&s.trace_id), hex(&s.span_id)),
        "timestamp": format_ms((start / 1_000_000) as i64),
        "request_data": {
            "request_type": if i.is_multiple_of(3) { "extract_text" } else { "classify" },
            "parameters": {"trace_id": hex(&s.trace_id), "span_id": hex(&s.span_id)},
        },
        "processing_data": {
            "start_time": format_ms((start / 1_000_000) as i64),
            "end_time": format_ms((end / 1_000_000) as i64),
            "processing_time": (end - start) as f64 / 1e9,
        },
        "result_data": {"success": !failed, "error_code": if failed { Some("TOOL_ERROR") } else { None }},
        "metadata": {"mcp_version": "1.4.0", "environment": "prod"},
    })
}

#[derive(Clone, Copy)]
enum Path {
    Json,
    /// OTLP protobuf, gzip-compressed or not.
    Otlp(bool),
}

/// What one path through the ingest server measured.
struct Through {
    acked: f64,
    stored: f64,
    /// CPU of this process per 1,000 events, from the first request until all were stored.
    cpu: f64,
}

/// CPU seconds (user and system) this process has used, from `/proc/self/stat` (1/100 s ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

/// Events per second acknowledged and stored through a fresh ingest server and database.
async fn through(
    dir: &std::path::Path,
    name: &str,
    bodies: &[bytes::Bytes],
    path: Path,
    events: usize,
) -> Through {
    let db = dir.join(format!("{name}.db"));
    let store = mcp_coordinator::store::sqlite::SqliteStore::open(&db).expect("SQLite");
    let keys = mcp_coordinator::trust::keys::KeyRing::default();
    keys.set("bench_otlp_mcp_001", KEY);
    let running = mcp_coordinator::ingest::start(
        mcp_coordinator::ingest::IngestConfig {
            flush_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            signing: mcp_coordinator::trust::signing::SigningPolicy::Off,
            ..mcp_coordinator::ingest::IngestConfig::new(
                "127.0.0.1:0".parse().expect("addr"),
                dir.join(format!("spool-{name}")),
            )
            .expect("ingest config")
        },
        Arc::new(store) as Arc<dyn mcp_coordinator::store::InteractionStore>,
        Arc::new(keys),
        Arc::new(mcp_coordinator::trust::keys::ReaderTokens::default()),
        futures::future::pending(),
    )
    .await
    .expect("ingest starts");
    let (url, content_type) = match path {
        Path::Json => ("interactions:batch", "application/json"),
        Path::Otlp(_) => ("traces", "application/x-protobuf"),
    };
    let url = format!("http://{}/v1/{url}", running.addr);
    let http = reqwest::Client::builder().build().expect("client");
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    futures::stream::iter(bodies)
        .map(|body| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let mut request = http
                    .post(&url)
                    .bearer_auth(KEY)
                    .header("content-type", content_type);
                if let Path::Otlp(true) = path {
                    request = request.header("content-encoding", "gzip");
                }
                let r = request.body(body.clone()).send().await.expect("send");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                assert_eq!(status, 200, "{name}: {}", &text[..text.len().min(600)]);
                // Every span and record of the body was taken.
                let all_taken = match path {
                    Path::Json => text.contains("\"rejected\":0"),
                    // No partial_success: an empty response message.
                    Path::Otlp(_) => text.is_empty(),
                };
                assert!(all_taken, "{name}: {}", &text[..text.len().min(600)]);
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await;
    let acked = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored = rusqlite::Connection::open(&db)
            .and_then(|c| {
                c.query_row("SELECT count(*) FROM interactions", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map_or(0, |n| n as usize);
        if stored >= events {
            break;
        }
        assert!(Instant::now() < deadline, "{name}: not all stored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done = started.elapsed().as_secs_f64();
    Through {
        acked: events as f64 / acked,
        stored: events as f64 / done,
        cpu: (cpu_seconds() - cpu_before) * 1e6 / events as f64,
    }
}
