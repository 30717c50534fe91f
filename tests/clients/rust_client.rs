//! The Rust client crate (crates/mcp-coordinator-client) against the real ingest server: signed
//! reports and heartbeats arrive, a rotated key is picked up from its file, and a coordinator
//! that does not answer never blocks the caller.

use test_support as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use common::*;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use mcp_coordinator::trust::signing::SigningPolicy;
use mcp_coordinator_client::{Client, Key};
use serde_json::json;

const MCP: &str = "rusty_tool_mcp_001";
const KEY: &str = "mcpk_rust_client_key_0123456789abcdef";
const READER: &str = "rust-client-reader-token";

/// The MCP's history once it holds `count` interactions, none still in progress.
async fn finished_interactions(base: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = get_json_as(
            &format!("{base}/v1/mcps/{MCP}/interactions?limit=10"),
            READER,
        )
        .await;
        let items = body["interactions"].as_array().cloned().unwrap_or_default();
        if items.len() == count && items.iter().all(|i| i["status"] != "in_progress") {
            return items;
        }
        assert!(tokio::time::Instant::now() < deadline, "not stored: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reports_and_heartbeats_arrive_and_a_rotated_key_is_read_again() {
    let dir = TestDir::new("rust-client");
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
    let items = finished_interactions(&base, 2).await;
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
    // The seed's reads, with the MCP's own key.
    let history = client
        .interaction_history(MCP, 10)
        .await
        .expect("history with the MCP's key");
    assert_eq!(history.len(), 2, "{history:?}");
    let metrics = client
        .performance_metrics(MCP, "last_1h")
        .await
        .expect("metrics with the MCP's key");
    assert_eq!(metrics["count"], 2, "{metrics}");
    assert!(matches!(
        client.interaction_history("../v1/audit", 1).await,
        Err(mcp_coordinator_client::ClientError::BadValue(_))
    ));

    let beats = get_json_as(&format!("{base}/v1/heartbeats"), READER).await;
    assert!(beats[MCP].is_string(), "{beats}");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_does_not_answer_never_blocks_the_caller() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}", silent.local_addr().expect("addr"));
    // One report per request: the queue of two is all that waits.
    let client = Client::builder(url.clone(), Key::Fixed(KEY.into()))
        .queue(2)
        .batch_reports(1)
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

    // Batched (the default): the sender takes what is queued into one request, and still nothing
    // blocks and every report is accounted for.
    let batched = Client::builder(url, Key::Fixed(KEY.into()))
        .queue(2)
        .timeout(Duration::from_secs(2))
        .max_attempts(1)
        .build()
        .expect("client");
    let began = Instant::now();
    for _ in 0..50 {
        batched.start("ocr", json!({}));
    }
    assert!(began.elapsed() < Duration::from_millis(200));
    assert!(batched.flush(Duration::from_secs(15)).await);
    assert_eq!(
        batched.stats(),
        mcp_coordinator_client::Stats {
            sent: 0,
            dropped: 50
        }
    );
    drop(silent);
}

/// A small rmcp server: `ocr` works, `jammed` answers a tool error, and anything else is a
/// protocol error.
struct Scanner;

impl rmcp::ServerHandler for Scanner {
    fn get_info(&self) -> rmcp::model::ServerConfig {
        let mut info = rmcp::model::ServerConfig::default();
        info.capabilities = rmcp::model::ServerCapabilities::builder()
            .enable_tools()
            .build();
        info
    }

    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        _: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        use rmcp::model::{CallToolResult, ContentBlock};
        match request.name.as_ref() {
            "ocr" => {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(CallToolResult::success(vec![ContentBlock::text("42 words")]).into())
            }
            "jammed" => Ok(CallToolResult::error(vec![ContentBlock::text("paper jam")]).into()),
            other => Err(rmcp::ErrorData::invalid_params(
                format!("no tool {other}"),
                None,
            )),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rmcp_server_wrapped_in_reporting_reports_every_tool_call() {
    use mcp_coordinator_client::rmcp_server::Reporting;
    use rmcp::ServiceExt;
    let dir = TestDir::new("rmcp-reporting");
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).expect("store"));
    let mut ingest = InProcessIngest::start(
        test_config(dir.path()),
        store,
        key_ring(&[(MCP, KEY)]),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await;
    let reporter = Client::builder(ingest.base.clone(), Key::Fixed(KEY.into()))
        .build()
        .expect("client");

    // The server and the official client over an in-memory pipe.
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(Reporting::new(Scanner, reporter.clone()).serve(server_io));
    let client = ().serve(client_io).await.expect("the client connects");
    let server = server.await.expect("task").expect("the server starts");
    let call = |name: &'static str| rmcp::model::CallToolRequestParams::new(name);
    let ocr = client.call_tool(call("ocr")).await.expect("ocr answers");
    assert_ne!(ocr.is_error, Some(true));
    let jammed = client
        .call_tool(call("jammed"))
        .await
        .expect("jammed answers");
    assert_eq!(jammed.is_error, Some(true));
    assert!(client.call_tool(call("missing")).await.is_err());
    assert!(reporter.flush(Duration::from_secs(20)).await);

    let base = ingest.base.clone();
    let items = finished_interactions(&base, 3).await;
    let of = |tool: &str| {
        items
            .iter()
            .find(|i| i["request_data"]["request_type"] == tool)
            .cloned()
            .unwrap_or_else(|| panic!("no {tool} call in {items:?}"))
    };
    let ocr = of("ocr");
    assert_eq!(ocr["status"], "completed");
    let seconds = ocr["processing_data"]["processing_time"].as_f64().unwrap();
    assert!(seconds >= 0.03, "the call's own time: {seconds}");
    let jammed = of("jammed");
    assert_eq!(jammed["status"], "failed");
    assert_eq!(jammed["result_data"]["error_code"], "TOOL_ERROR");
    assert_eq!(jammed["result_data"]["error_message"], "paper jam");
    let missing = of("missing");
    assert_eq!(missing["result_data"]["error_code"], "MCP_ERROR_32602");

    let _ = client.cancel().await;
    let _ = server.cancel().await;
    ingest.stop().await;
}
