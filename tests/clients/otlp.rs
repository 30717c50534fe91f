//! OTLP from real exporters: MCP servers built with the official SDKs, traced with the
//! OpenTelemetry SDKs and configured only by the standard `OTEL_*` variables, export to the real
//! ingest binary, directly or through an OpenTelemetry Collector built from its Go modules. Their
//! tool calls (good, failing) become interactions in history and metrics, with their timings.

use test_support as common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::ingest::IngestProcess;
use common::peers::{node_script, repo_root, wait_listening};
use common::*;
use serde_json::Value;

const PY_MCP: &str = "py_ocr_mcp_001";
const PY_KEY: &str = "mcpk_otlp_python_key_0123456789abcdef";
const TS_MCP: &str = "ts_ocr_mcp_001";
const TS_KEY: &str = "mcpk_otlp_typescript_key_0123456789abc";
const VIA_MCP: &str = "collected_ocr_mcp_001";
const VIA_KEY: &str = "mcpk_otlp_collector_key_0123456789abcd";
const READER: &str = "otlp-clients-reader-token";

/// The standard exporter variables that send this process's spans to `endpoint` with `key`.
fn otel_env(command: &mut tokio::process::Command, endpoint: &str, key: Option<&str>) {
    command
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "ocr-tools")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.version=1.4.0,deployment.environment.name=test",
        )
        // Exports every 200 ms rather than every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    if let Some(key) = key {
        command.env(
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization=Bearer%20{key}"),
        );
    }
}

fn python_server(port: u16) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(repo_root().join("tests/python/otel_mcp_server.py"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Calls `extract_text` three times and `broken` once with the official Python client.
async fn call_tools(port: u16) {
    wait_listening(port, "the MCP server").await;
    let calls = tokio::process::Command::new("python3")
        .arg(repo_root().join("tests/python/call_tools.py"))
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
}

/// The MCP's four interactions once all are stored, each checked as a user reads it: three
/// completed `extract_text` calls that took the tool's 50 ms, one failed `broken` as a tool error.
async fn four_interactions(base: &str, mcp: &str, version: &str) -> Vec<Value> {
    let items = eventually(Duration::from_secs(30), || async {
        let items = interactions(base, mcp, READER, "?limit=100").await;
        (items.len() == 4)
            .then_some(items.clone())
            .ok_or(format!("{mcp}: {items:?}"))
    })
    .await;
    let of = |tool: &str| -> Vec<&Value> {
        items
            .iter()
            .filter(|i| i["request_data"]["request_type"] == tool)
            .collect()
    };
    assert_eq!(of("extract_text").len(), 3, "{items:?}");
    for call in of("extract_text") {
        assert_eq!(call["status"], "completed", "{call}");
        let took = call["processing_data"]["processing_time"]
            .as_f64()
            .unwrap_or(0.0);
        assert!((0.045..5.0).contains(&took), "the call's own time: {call}");
        assert!(
            call["interaction_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("otel:")),
            "{call}"
        );
        assert_eq!(call["metadata"]["mcp_version"], version, "{call}");
        assert_eq!(call["metadata"]["environment"], "test", "{call}");
    }
    let broken = of("broken");
    assert_eq!(broken.len(), 1, "{items:?}");
    assert_eq!(broken[0]["status"], "failed", "{}", broken[0]);
    assert_eq!(broken[0]["result_data"]["error_code"], "TOOL_ERROR");
    let metrics = get_json_as(
        &format!("{base}/v1/mcps/{mcp}/metrics?range=last_24h"),
        READER,
    )
    .await;
    assert_eq!(metrics["metrics"]["count"], 4, "{metrics}");
    assert_eq!(
        metrics["metrics"]["errors_by_code"]["TOOL_ERROR"], 1,
        "{metrics}"
    );
    items
}

fn otelcol() -> PathBuf {
    repo_root().join(".tools/bin/otelcol-mcp-test")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_sdk_servers_become_interactions_directly_and_through_a_collector() {
    let ingest = IngestProcess::prepare(
        "otlp-clients",
        &[(PY_MCP, PY_KEY), (TS_MCP, TS_KEY), (VIA_MCP, VIA_KEY)],
        &[("tests", READER)],
    );
    let _ingest = ingest.command().spawn().expect("ingest starts");
    ingest.wait_healthy().await;
    let base = ingest.base.clone();

    // 1. The Python SDK's own server spans, by the Python OTel SDK's OTLP/HTTP (protobuf)
    //    exporter, gzip-compressed, straight to the ingest server.
    let port = free_port();
    let mut server = python_server(port);
    otel_env(&mut server, &base, Some(PY_KEY));
    server.env("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip");
    let mut python = server
        .spawn()
        .expect("python3 runs (pip install mcp opentelemetry-sdk opentelemetry-exporter-otlp-proto-http; .ci/run does)");
    call_tools(port).await;
    four_interactions(&base, PY_MCP, "1.4.0").await;
    drop(python.start_kill());

    // 2. The same server through an OpenTelemetry Collector: OTLP in, OTLP/HTTP out with the key.
    assert!(
        otelcol().exists(),
        "{} is not built: scripts/build-otelcol.sh (make tools) builds it",
        otelcol().display()
    );
    let collector_port = free_port();
    let mut collector = tokio::process::Command::new(otelcol())
        .arg("--config")
        .arg(repo_root().join("tests/fixtures/otelcol.yaml"))
        .env("COLLECTOR_PORT", collector_port.to_string())
        .env("COORDINATOR_URL", &base)
        .env("MCP_API_KEY", VIA_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the collector runs");
    wait_listening(collector_port, "the collector").await;
    let port = free_port();
    let mut server = python_server(port);
    otel_env(
        &mut server,
        &format!("http://127.0.0.1:{collector_port}"),
        None,
    );
    let _python = server.spawn().expect("python3 runs");
    call_tools(port).await;
    four_interactions(&base, VIA_MCP, "1.4.0").await;
    if let Ok(Some(status)) = collector.try_wait() {
        panic!("the collector exited: {status}");
    }

    // 3. A TypeScript SDK server traced by @opentelemetry/sdk-node, exporting OTLP/JSON.
    let port = free_port();
    let mut server = node_script("otel_mcp_server.mjs");
    server
        .arg(port.to_string())
        .env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
        .env("OTEL_TRACES_EXPORTER", "otlp")
        .env("OTEL_METRICS_EXPORTER", "none")
        .env("OTEL_LOGS_EXPORTER", "none")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    otel_env(&mut server, &base, Some(TS_KEY));
    server.env(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.version=2.0.0,deployment.environment.name=test",
    );
    let _node = server
        .spawn()
        .expect("node runs (make tools installs the SDKs)");
    call_tools(port).await;
    let items = four_interactions(&base, TS_MCP, "2.0.0").await;
    // A server of the handshake era has sessions; the span carries its ID.
    assert!(
        items
            .iter()
            .all(|i| i["session_id"].as_str().is_some_and(|s| s.len() > 10)),
        "{items:?}"
    );

    // Every method was counted per MCP; nothing was refused.
    let metrics = get_text(&format!("{base}/metrics")).await;
    for mcp in [PY_MCP, VIA_MCP] {
        assert!(
            metrics.contains(&format!(
                "mcp_ingest_otlp_spans_total{{mcp_id=\"{mcp}\",method=\"initialize\"}} 1"
            )),
            "{metrics}"
        );
    }
    assert!(
        !metrics.contains("mcp_ingest_otlp_spans_refused_total{"),
        "{metrics}"
    );
}
