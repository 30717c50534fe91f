//! The Python client (clients/python) end to end: a server built with the official MCP Python SDK,
//! instrumented with one line, called by the official MCP client, reports every tool call, signed,
//! to the real ingest binary; history, metrics and heartbeats show them.

use test_support as common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::free_port;
use common::ingest::IngestProcess;
use common::*;
use serde_json::Value;

const MCP: &str = "ocr_tools_mcp_001";
const KEY: &str = "mcpk_python_client_key_0123456789abcdef";
const READER: &str = "python-client-reader-token";

fn python(script: &str) -> tokio::process::Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(root.join("tests/python").join(script))
        .env("PYTHONPATH", root.join("clients/python/src"))
        .kill_on_drop(true);
    command
}

async fn get(url: &str) -> Value {
    get_json_as(url, READER).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_sdk_server_with_one_line_reports_every_tool_call() {
    let ingest = IngestProcess::prepare("python-client", &[(MCP, KEY)], &[("tests", READER)]);
    let _ingest = ingest
        .command()
        .args(["--require-signatures", "writes"])
        .spawn()
        .expect("ingest starts");
    ingest.wait_healthy().await;

    let port = free_port();
    let mut server = python("reporting_mcp_server.py")
        .args([&port.to_string(), &ingest.base, KEY])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the MCP SDK: pip install mcp; .ci/run does)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = server.try_wait() {
            panic!("the MCP server exited: {status}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the MCP server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let calls = python("call_tools.py")
        .arg(format!("http://127.0.0.1:{port}/mcp"))
        .output()
        .await
        .expect("the MCP client runs");
    let said = String::from_utf8_lossy(&calls.stdout);
    assert!(
        calls.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&calls.stderr)
    );
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            "extract_text ok",
            "extract_text ok",
            "extract_text ok",
            "broken error"
        ]
    );

    // Every call is an interaction with its tool's name, timing and outcome.
    let base = &ingest.base;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let items = loop {
        let body = get(&format!("{base}/v1/mcps/{MCP}/interactions?limit=100")).await;
        let items = body["interactions"].as_array().cloned().unwrap_or_default();
        let settled = items
            .iter()
            .filter(|i| i["status"] != "in_progress")
            .count();
        if items.len() == 4 && settled == 4 {
            break items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tool calls were not all reported: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let of = |tool: &str| -> Vec<&Value> {
        items
            .iter()
            .filter(|i| i["request_data"]["request_type"] == tool)
            .collect()
    };
    assert_eq!(of("extract_text").len(), 3);
    for call in of("extract_text") {
        assert_eq!(call["status"], "completed", "{call}");
        let took = call["processing_data"]["processing_time"]
            .as_f64()
            .unwrap_or(0.0);
        assert!((0.05..5.0).contains(&took), "the call's own time: {call}");
        assert_eq!(call["metadata"]["mcp_version"], "1.4.0");
    }
    let broken = of("broken");
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0]["status"], "failed", "{}", broken[0]);
    assert_eq!(broken[0]["result_data"]["error_code"], "VALUE_ERROR");
    assert!(
        broken[0]["result_data"]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot read s3://scans/bad.png")),
        "{}",
        broken[0]
    );

    // The seed's range names work, and the metrics count the failure.
    let metrics = get(&format!("{base}/v1/mcps/{MCP}/metrics?range=last_24h")).await;
    assert_eq!(metrics["metrics"]["count"], 4, "{metrics}");
    assert_eq!(
        metrics["metrics"]["errors_by_code"]["VALUE_ERROR"], 1,
        "{metrics}"
    );

    // Heartbeats flow from the client's background thread.
    let heartbeats = get(&format!("{base}/v1/heartbeats")).await;
    assert!(heartbeats[MCP].is_string(), "{heartbeats}");
    drop(server.start_kill());
}

/// The client's own unit tests (queue bound, retries, drops, signing, heartbeats), run here so
/// `make test` holds the package to them.
#[test]
fn the_python_clients_own_tests_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/python");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(&root)
        .env("PYTHONPATH", root.join("src"))
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
