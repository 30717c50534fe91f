//! Ingest throughput: acknowledged reports per second over HTTP at several client concurrencies,
//! with every acknowledgement fsynced. Group commit should make throughput grow with concurrency
//! (one fsync covers every waiting request) instead of staying at the disk's fsync rate.
//! Run with `make bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mcp_coordinator::ingest::spool::{Spool, SpoolConfig};
use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};

const KEY: &str = "mcpk_bench_key_0123456789abcdef";

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("mcp-ingest-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let _ = rustls::crypto::ring::default_provider().install_default();

    println!();
    println!("spool appends (in process, fsync per acknowledgement)");
    println!("| concurrency | reports | reports/s | reports per fsync |");
    println!("|------------:|--------:|----------:|------------------:|");
    for concurrency in [1usize, 8, 64] {
        let spool_dir = dir.join(format!("spool-{concurrency}"));
        let (spool, _reader) = Spool::open(SpoolConfig {
            dir: spool_dir,
            segment_bytes: 16 << 20,
            max_bytes: 1 << 30,
        })
        .expect("spool");
        let total = 400 * concurrency.min(8);
        let started = Instant::now();
        futures::stream::iter(0..total)
            .map(|i| {
                let spool = spool.clone();
                async move {
                    let e = InteractionEvent::new(
                        format!("b{i}"),
                        "m".into(),
                        EventKind::Start,
                        0,
                        Fields::default(),
                    );
                    spool.append(vec![e]).await.expect("append");
                }
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "| {concurrency:>11} | {total:>7} | {:>9.0} | {:>17.1} |",
            total as f64 / secs,
            total as f64 / spool.commits().max(1) as f64
        );
    }

    // Over HTTP, through the whole ingest server with the embedded store.
    let keys = mcp_coordinator::ingest::auth::KeyRing::default();
    keys.set("bench_tool_mcp_001", KEY);
    let store = mcp_coordinator::store::sqlite::SqliteStore::open(&dir.join("interactions.db"))
        .expect("store");
    let running = mcp_coordinator::ingest::start(
        mcp_coordinator::ingest::IngestConfig {
            batch_max: 5000,
            flush_interval: Duration::from_millis(200),
            drain_timeout: Duration::from_secs(10),
            signing: mcp_coordinator::ingest::signing::SigningPolicy::Off,
            ..mcp_coordinator::ingest::IngestConfig::new(
                "127.0.0.1:0".parse().expect("addr"),
                dir.join("spool-http"),
            )
            .unwrap()
        },
        Arc::new(store),
        Arc::new(keys),
        Arc::new(mcp_coordinator::ingest::auth::ReaderTokens::default()),
        futures::future::pending(),
    )
    .await
    .expect("ingest starts");
    let url = format!("http://{}/v1/interactions", running.addr);
    let http = reqwest::Client::builder().build().expect("client");
    println!();
    println!("HTTP POST /v1/interactions (ingest server, SQLite store, 2-core machine)");
    println!("| concurrency | reports | reports/s | p50 ack ms | p99 ack ms |");
    println!("|------------:|--------:|----------:|-----------:|-----------:|");
    for concurrency in [1usize, 16, 64] {
        let total = 500 * concurrency.min(8);
        let started = Instant::now();
        let mut latencies: Vec<f64> = futures::stream::iter(0..total)
            .map(|i| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let t = Instant::now();
                    let r = http
                        .post(&url)
                        .bearer_auth(KEY)
                        .json(&serde_json::json!({"interaction_id": format!("c{concurrency}_{i}"), "request_data": {"request_type": "bench"}}))
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(r.status().as_u16(), 202);
                    t.elapsed().as_secs_f64() * 1000.0
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let secs = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            latencies[((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        println!(
            "| {concurrency:>11} | {total:>7} | {:>9.0} | {:>10.2} | {:>10.2} |",
            total as f64 / secs,
            pct(0.5),
            pct(0.99)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
