//! The Rust client crate (crates/mcp-coordinator-client) against the real ingest server: signed
//! reports and heartbeats arrive, a rotated key is picked up from its file, and a coordinator
//! that does not answer never blocks the caller.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ingest::{key_ring, test_config, InProcessIngest, ScratchDir};
use common::*;
use mcp_coordinator::ingest::auth::ReaderTokens;
use mcp_coordinator::ingest::signing::SigningPolicy;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator_client::{Client, Key};
use serde_json::json;

const MCP: &str = "rusty_tool_mcp_001";
const KEY: &str = "mcpk_rust_client_key_0123456789abcdef";
const READER: &str = "rust-client-reader-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reports_and_heartbeats_arrive_and_a_rotated_key_is_read_again() {
    let dir = ScratchDir::new("rust-client");
    let mut config = test_config(dir.path());
    config.signing = SigningPolicy::Writes;
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).expect("store"));
    let mut ingest = InProcessIngest::start(
        config,
        store,
        key_ring(&[(MCP, KEY)]),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await;

    // The key file still holds the key from before a rotation.
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "mcpk_the_old_key_0123456789abcdef").expect("key file");
    let client = Client::builder(ingest.base.clone(), Key::File(key_file.clone()))
        .sign_requests(true)
        .heartbeat_every(Duration::from_millis(200))
        .build()
        .expect("client");
    let good = client.start("ocr", json!({"input_size": 2048}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&key_file, format!("{KEY}\n")).expect("rotated key");
    client.progress(&good, Some(0.5), Some("half the pages"));
    client.complete(
        &good,
        json!({"processing_time": 0.42, "quality_score": 0.93}),
    );
    let bad = client.start("ocr", json!({}));
    client.fail(
        &bad,
        "OCR_TIMEOUT",
        "the scanner did not answer",
        json!({"processing_time": 5.0}),
    );
    assert!(
        client.flush(Duration::from_secs(20)).await,
        "{:?}",
        client.stats()
    );
    assert_eq!(client.stats().dropped, 0, "{:?}", client.stats());

    let base = ingest.base.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let items = loop {
        let body = get_json_as(
            &format!("{base}/v1/mcps/{MCP}/interactions?limit=10"),
            READER,
        )
        .await;
        let items = body["interactions"].as_array().cloned().unwrap_or_default();
        if items.len() == 2 && items.iter().all(|i| i["status"] != "in_progress") {
            break items;
        }
        assert!(tokio::time::Instant::now() < deadline, "not stored: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |id: &str| items.iter().find(|i| i["interaction_id"] == id).cloned();
    let good = of(&good).expect("the good interaction");
    assert_eq!(good["status"], "completed");
    assert_eq!(good["processing_data"]["processing_time"], 0.42);
    assert_eq!(good["request_data"]["input_size"], 2048);
    // The progress report is kept: the interaction's timeline in history.
    assert_eq!(good["timeline"].as_array().map(Vec::len), Some(1), "{good}");
    assert_eq!(good["timeline"][0]["progress"], 0.5);
    assert_eq!(good["timeline"][0]["message"], "half the pages");
    assert!(good["timeline"][0]["time"].is_string(), "{good}");
    let bad = of(&bad).expect("the failed interaction");
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["result_data"]["error_code"], "OCR_TIMEOUT");

    let beats = get_json_as(&format!("{base}/v1/heartbeats"), READER).await;
    assert!(beats[MCP].is_string(), "{beats}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_does_not_answer_never_blocks_the_caller() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    let client = Client::builder(url, Key::Fixed(KEY.into()))
        .queue(2)
        .timeout(Duration::from_secs(2))
        .max_attempts(1)
        .build()
        .expect("client");
    let began = Instant::now();
    for _ in 0..50 {
        client.start("ocr", json!({}));
    }
    assert!(
        began.elapsed() < Duration::from_millis(200),
        "reporting blocked for {:?}",
        began.elapsed()
    );
    assert!(client.stats().dropped >= 47, "{:?}", client.stats());
    assert!(client.flush(Duration::from_secs(15)).await);
    assert_eq!(client.stats().dropped, 50, "{:?}", client.stats());
    drop(silent);
}
