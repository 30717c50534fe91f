//! The ingest binary as a process: SIGKILL in the middle of a load loses nothing it acknowledged,
//! and nothing is counted twice after the restart.

use test_support as common;

use common::http_client as http;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ingest::IngestProcess;
use serde_json::{json, Value};

const KEY: &str = "mcpk_process_test_key_0123456789";
const READER: &str = "process-test-reader-token";

fn spawn(ingest: &IngestProcess) -> tokio::process::Child {
    ingest
        .command()
        .env("MCP_COORDINATOR_FLUSH_INTERVAL_MS", "50")
        .spawn()
        .expect("ingest binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_loses_no_acknowledged_report() {
    let ingest = IngestProcess::prepare(
        "ingest-kill",
        &[("ocr_workflow_mcp_001", KEY)],
        &[("tests", READER)],
    );
    let base = ingest.base.clone();
    let mut child = spawn(&ingest);
    ingest.wait_healthy().await;

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

    let mut restarted = spawn(&ingest);
    ingest.wait_healthy().await;
    let stored: Vec<String> = common::eventually(Duration::from_secs(30), || async {
        let ids: Vec<String> =
            common::interactions(&base, "ocr_workflow_mcp_001", READER, "?limit=1000")
                .await
                .iter()
                .map(|i| i["interaction_id"].as_str().unwrap().to_string())
                .collect();
        let missing = acked.iter().filter(|a| !ids.contains(a)).count();
        if missing == 0 {
            Ok(ids)
        } else {
            Err(format!("{missing} acknowledged reports missing"))
        }
    })
    .await;
    let distinct: HashSet<&String> = stored.iter().collect();
    assert_eq!(distinct.len(), stored.len(), "an interaction appears twice");
    let metrics: Value = common::get_json_as(
        &format!("{base}/v1/mcps/ocr_workflow_mcp_001/metrics?range=1h"),
        READER,
    )
    .await;
    assert_eq!(
        metrics["metrics"]["count"].as_u64(),
        Some(stored.len() as u64),
        "metrics count each interaction once"
    );
    let _ = restarted.start_kill();
    let _ = restarted.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_written_to_a_file_have_no_terminal_colours() {
    let ingest = IngestProcess::prepare("ingest-log-file", &[("ocr_workflow_mcp_001", KEY)], &[]);
    let log = ingest.dir.path().join("ingest.log");
    let file = std::fs::File::create(&log).expect("log file");
    let mut child = ingest
        .command()
        .stderr(std::process::Stdio::from(file))
        .spawn()
        .expect("ingest binary starts");
    ingest.wait_healthy().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("ingest server listening"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in a log file: {text:?}"
    );
}
