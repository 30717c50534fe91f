//! The ingest binary as a process: SIGKILL in the middle of a load loses nothing it acknowledged,
//! and nothing is counted twice after the restart.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-coordinator");
const KEY: &str = "mcpk_process_test_key_0123456789";
const READER: &str = "process-test-reader-token";

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn spawn(dir: &std::path::Path, port: u16) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["ingest", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .arg("--keys-file")
        .arg(dir.join("keys.yaml"))
        .arg("--reader-tokens-file")
        .arg(dir.join("readers.yaml"))
        .env("MCP_COORDINATOR_FLUSH_INTERVAL_MS", "50")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ingest binary starts")
}

async fn wait_healthy(base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_loses_no_acknowledged_report() {
    let dir = std::env::temp_dir().join(format!("mcp-ingest-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("keys.yaml"),
        format!("ocr_workflow_mcp_001: {KEY}\n"),
    )
    .unwrap();
    std::fs::write(dir.join("readers.yaml"), format!("tests: {READER}\n")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn(&dir, port);
    wait_healthy(&base).await;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let acked = acked.clone();
            let base = base.clone();
            tokio::spawn(async move {
                let client = http();
                for i in 0..150 {
                    let id = format!("k{c}_{i}");
                    let sent = client
                        .post(format!("{base}/v1/interactions"))
                        .bearer_auth(KEY)
                        .json(&json!({"interaction_id": id, "processing_data": {"processing_time": 0.5}}))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().as_u16() == 202 => {
                            acked.lock().unwrap().insert(id);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Kill it once some load has been acknowledged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 100 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no load got through"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().unwrap();
    let _ = child.wait().await;
    for c in clients {
        let _ = c.await;
    }
    let acked: HashSet<String> = acked.lock().unwrap().clone();

    let mut restarted = spawn(&dir, port);
    wait_healthy(&base).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stored: Vec<String> = loop {
        let body: Value = http()
            .get(format!(
                "{base}/v1/mcps/ocr_workflow_mcp_001/interactions?limit=1000"
            ))
            .bearer_auth(READER)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<String> = body["interactions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["interaction_id"].as_str().unwrap().to_string())
            .collect();
        if acked.iter().all(|a| ids.contains(a)) {
            break ids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} acknowledged reports missing",
            acked.iter().filter(|a| !ids.contains(a)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an interaction appears twice");
    let metrics: Value = http()
        .get(format!(
            "{base}/v1/mcps/ocr_workflow_mcp_001/metrics?range=1h"
        ))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metrics["metrics"]["count"].as_u64(),
        Some(stored.len() as u64),
        "metrics count each interaction once"
    );
    let _ = restarted.start_kill();
    let _ = restarted.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
}
