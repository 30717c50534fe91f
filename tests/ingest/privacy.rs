//! No raw user id from the reports survives anywhere: not in the spool files, the SQLite database,
//! ClickHouse, or the logs. The same user keeps one pseudonym.

use test_support as common;

use common::http_client as http;
use test_support::clickhouse as clickhouse_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, IngestProcess};
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::trust::keys::ReaderTokens;
use serde_json::{json, Value};

const KEY: &str = "mcpk_privacy_test_key_0123456789";
const READER: &str = "privacy-reader-token";
const RAW_USERS: [&str; 3] = ["user_secret_4242", "alice@example.com", "user_secret_7777"];

async fn report_everything(base: &str) {
    let client = http();
    let posts = [
        (
            "/api/interactions",
            None,
            json!({"action": "report_interaction_start", "api_key": KEY, "data": {"interaction_id": "p1", "request_info": {"user_id": RAW_USERS[0], "request_type": "ocr"}}}),
        ),
        (
            "/v1/interactions",
            Some(KEY),
            json!({"interaction_id": "p2", "request_data": {"user_id": RAW_USERS[1]}}),
        ),
        (
            "/v1/interactions:batch",
            Some(KEY),
            json!([{"interaction_id": "p3", "request_data": {"user_id": RAW_USERS[2]}}, {"interaction_id": "p4", "request_data": {"user_id": RAW_USERS[0]}}]),
        ),
    ];
    for (path, key, body) in posts {
        let mut req = client.post(format!("{base}{path}")).json(&body);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert!(status == 200 || status == 202, "{path}: {status}");
    }
}

async fn history(base: &str, n: usize) -> Vec<Value> {
    common::eventually(Duration::from_secs(30), || async {
        let items = common::interactions(base, "ocr_workflow_mcp_001", READER, "").await;
        if items.len() >= n {
            Ok(items)
        } else {
            Err(format!("only {} interactions arrived", items.len()))
        }
    })
    .await
}

fn assert_pseudonymized(items: &[Value]) {
    let user = |id: &str| {
        items.iter().find(|i| i["interaction_id"] == id).unwrap()["request_data"]["user_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(user("p1").starts_with("u_"), "{}", user("p1"));
    assert_eq!(user("p1"), user("p4"), "the same user keeps one pseudonym");
    assert_ne!(user("p1"), user("p2"));
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_user_ids_never_reach_the_spool_sqlite_or_logs() {
    let ingest = IngestProcess::prepare(
        "privacy",
        &[("ocr_workflow_mcp_001", KEY)],
        &[("tests", READER)],
    );
    let dir = ingest.dir.path().to_path_buf();
    let log = std::fs::File::create(dir.join("ingest.log")).unwrap();
    let mut child = ingest
        .command()
        .env("RUST_LOG", "trace")
        .env("MCP_COORDINATOR_REQUIRE_SIGNATURES", "off")
        .env("MCP_COORDINATOR_FLUSH_INTERVAL_MS", "50")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = ingest.base.clone();
    ingest.wait_healthy().await;
    report_everything(&base).await;
    let items = history(&base, 4).await;
    assert_pseudonymized(&items);
    // SIGTERM: the spool and the database are flushed and closed.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    assert!(
        std::fs::metadata(dir.join("ingest.log")).unwrap().len() > 0,
        "trace logging was captured"
    );
    for raw in RAW_USERS {
        let hits = files_containing(&dir, raw.as_bytes());
        assert!(hits.is_empty(), "{raw:?} found in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_user_ids_never_reach_clickhouse() {
    let clickhouse =
        tokio::task::spawn_blocking(|| clickhouse_support::ClickHouseServer::start("privacy"))
            .await
            .unwrap();
    let config = clickhouse.config();
    let database = config.database.clone();
    let ingest = InProcessIngest::start(
        IngestConfig {
            drain_timeout: Duration::from_secs(2),
            ..test_config(&clickhouse.dir)
        },
        Arc::new(mcp_coordinator::store::clickhouse::LazyClickHouseStore::new(config)),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await;
    let base = ingest.base.clone();
    report_everything(&base).await;
    assert_pseudonymized(&history(&base, 4).await);
    let dump = http()
        .post(clickhouse.url())
        .body(format!(
            "SELECT * FROM {database}.interaction_events FORMAT TabSeparated"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dump.contains("u_"), "the dump holds the rows: {dump}");
    for raw in RAW_USERS {
        assert!(!dump.contains(raw), "{raw:?} is in ClickHouse");
    }
    let spool_hits: Vec<String> = RAW_USERS
        .iter()
        .flat_map(|raw| files_containing(&clickhouse.dir.join("spool"), raw.as_bytes()))
        .collect();
    assert!(spool_hits.is_empty(), "{spool_hits:?}");
}
