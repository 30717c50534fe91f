//! The Rust client library as an instrumented MCP uses it: tool calls (a start and a completion
//! each) reported to an in-process ingest server (SQLite store, every acknowledgement fsynced,
//! batches signed as the server asks by default), with each report on its own request
//! (`batch_reports(1)`, as before) beside what is queued together going as one batch (the
//! default). Tool calls per second from the first call until the client's queue is empty, from
//! 16 tasks calling at once; the two modes alternate, `MCP_BENCH_ROUNDS` times (default 3), so
//! both see the same machine. `MCP_BENCH_CALLS` sets the calls per run (default 20,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_coordinator_client::{Client, Key};
use serde_json::json;

const KEY: &str = "mcpk_bench_client_key_0123456789";
const TASKS: usize = 16;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    mcp_coordinator::allocator::prefer_small_pages();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let calls: usize = std::env::var("MCP_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("MCP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("mcp-client-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");

    println!();
    println!("tool calls reported by the Rust client ({calls} calls from {TASKS} tasks, start + completion each)");
    println!(
        "| round | one request per report: calls/s | queued reports batched: calls/s | ratio |"
    );
    println!(
        "|------:|--------------------------------:|--------------------------------:|------:|"
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let single = run(&dir, &format!("single-{round}"), 1, calls).await;
        let batched = run(&dir, &format!("batched-{round}"), 100, calls).await;
        ratios.push(batched / single);
        println!(
            "| {round} | {single:.0} | {batched:.0} | {:.2}× |",
            batched / single
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio: {:.2}×", ratios[ratios.len() / 2]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Tool calls per second with `batch` reports at most per request.
async fn run(dir: &std::path::Path, name: &str, batch: usize, calls: usize) -> f64 {
    let store = Arc::new(
        mcp_coordinator::store::sqlite::SqliteStore::open(&dir.join(format!("{name}.db")))
            .expect("store"),
    );
    let keys = mcp_coordinator::trust::keys::KeyRing::default();
    keys.set("bench_tool_mcp_001", KEY);
    let ingest = mcp_coordinator::ingest::start(
        mcp_coordinator::ingest::IngestConfig {
            drain_timeout: Duration::from_secs(10),
            ..mcp_coordinator::ingest::IngestConfig::new(
                "127.0.0.1:0".parse().expect("addr"),
                dir.join(format!("spool-{name}")),
            )
            .expect("ingest config")
        },
        store,
        Arc::new(keys),
        Arc::new(mcp_coordinator::trust::keys::ReaderTokens::default()),
        futures::future::pending(),
    )
    .await
    .expect("ingest starts");
    let client = Client::builder(format!("http://{}", ingest.addr), Key::Fixed(KEY.into()))
        .queue(calls * 2 + 16)
        .batch_reports(batch)
        .build()
        .expect("client");
    let started = Instant::now();
    let per_task = calls / TASKS;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..per_task {
                    let id = client.start("extract_text", json!({"input_size": 2048}));
                    client.complete(&id, json!({"processing_time": 0.04, "quality_score": 0.9}));
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    assert!(
        client.flush(Duration::from_secs(600)).await,
        "the queue drained"
    );
    let elapsed = started.elapsed().as_secs_f64();
    let stats = client.stats();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    (per_task * TASKS) as f64 / elapsed
}
