//! What one client can hold of the ingest server: a write is refused before its body is read when
//! its key is wrong, bodies and headers have deadlines, requests at once are bounded, and a
//! stalled client cannot keep the server from shutting down.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use mcp_coordinator::ingest::state::Limits;
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "mcpk_bounds_test_key_0123456789";

async fn start(dir: &TestDir, limits: Limits) -> InProcessIngest {
    InProcessIngest::start(
        IngestConfig {
            limits,
            ..test_config(dir.path())
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::default()),
    )
    .await
}

fn tight() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// Sends the head of a report whose body is announced as `length` bytes, and `sent` of them.
async fn partial_report(
    ingest: &InProcessIngest,
    key: &str,
    length: usize,
    sent: &str,
) -> TcpStream {
    let mut tcp = TcpStream::connect(ingest.addr).await.unwrap();
    let head = format!(
        "POST /v1/interactions HTTP/1.1\r\nHost: ingest\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{sent}"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// The status line's code of what the server answers, within `within`.
async fn answer(tcp: &mut TcpStream, within: Duration) -> Option<u16> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(within, tcp.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    text.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_with_a_wrong_key_is_refused_before_its_body_arrives() {
    let dir = TestDir::new("bounds-auth");
    let ingest = start(&dir, Limits::default()).await;
    // 16 MB announced, a few bytes sent: the answer must not wait for the rest.
    let mut tcp = partial_report(&ingest, "mcpk_not_a_key_0123456789", 16_000_000, "{\"a\":").await;
    assert_eq!(answer(&mut tcp, Duration::from_secs(5)).await, Some(401));
    let mut batch = TcpStream::connect(ingest.addr).await.unwrap();
    batch
        .write_all(b"POST /v1/interactions:batch HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/x-ndjson\r\nContent-Length: 16000000\r\n\r\n{")
        .await
        .unwrap();
    assert_eq!(answer(&mut batch, Duration::from_secs(5)).await, Some(401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408() {
    let dir = TestDir::new("bounds-body");
    let ingest = start(&dir, tight()).await;
    let mut tcp = partial_report(&ingest, KEY, 100, "{\"interaction_id\":").await;
    assert_eq!(answer(&mut tcp, Duration::from_secs(5)).await, Some(408));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_that_stop_arriving_close_the_connection() {
    let dir = TestDir::new("bounds-headers");
    let ingest = start(&dir, tight()).await;
    let mut tcp = TcpStream::connect(ingest.addr).await.unwrap();
    tcp.write_all(b"POST /v1/interactions HTTP/1.1\r\nHost: ing")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept a connection with stalled headers open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_limit_are_answered_503_and_probes_still_answer() {
    let dir = TestDir::new("bounds-concurrency");
    let ingest = start(
        &dir,
        Limits {
            max_concurrent_requests: 2,
            ..Limits::default()
        },
    )
    .await;
    let _held: Vec<TcpStream> =
        futures::future::join_all((0..2).map(|_| partial_report(&ingest, KEY, 100, "{"))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = common::http_client();
    let refused = client
        .post(format!("{}/v1/interactions", ingest.base))
        .bearer_auth(KEY)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let health = client
        .get(format!("{}/healthz", ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_does_not_hold_up_shutdown() {
    let dir = TestDir::new("bounds-shutdown");
    let mut ingest = InProcessIngest::start(
        IngestConfig {
            drain_timeout: Duration::from_secs(1),
            ..test_config(dir.path())
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    let _stalled = partial_report(&ingest, KEY, 1000, "{").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), ingest.stop()).await;
    assert!(stopped.is_ok(), "shutdown waited on a stalled client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_too_many_records_is_refused_whole() {
    let dir = TestDir::new("bounds-records");
    let ingest = start(
        &dir,
        Limits {
            batch_records: 3,
            ..Limits::default()
        },
    )
    .await;
    let records: Vec<serde_json::Value> = (0..4)
        .map(|i| serde_json::json!({"interaction_id": format!("r{i}")}))
        .collect();
    let answer = common::http_client()
        .post(format!("{}/v1/interactions:batch", ingest.base))
        .bearer_auth(KEY)
        .json(&records)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 413);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("4 records; at most 3")),
        "{body}"
    );
}
