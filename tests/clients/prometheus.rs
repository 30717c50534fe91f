//! Prometheus: both components' /metrics pass `promtool check metrics`, and a real Prometheus
//! (Debian's package, installed by .ci/run) scrapes them on loopback and has the project's series.

use test_support as common;

use std::process::Stdio;
use std::time::Duration;

use common::free_port;
use common::ingest::{bin, IngestProcess};
use common::*;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

const KEY: &str = "mcpk_prometheus_test_key_0123456789";

/// Percent-encodes a PromQL expression for a query string.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn tool(name: &str) -> &str {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{name} is not installed: apt-get install prometheus (.ci/run does)"
    );
    name
}

async fn promtool_check(metrics: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(metrics.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("promtool ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && text.trim().is_empty(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_components_and_their_metrics_follow_the_conventions() {
    let ingest_process = IngestProcess::prepare("prometheus", &[("ocr_mcp_001", KEY)], &[]);
    let dir = ingest_process.dir.path().to_path_buf();

    // The controller, against the test API server, with one Ready MCP.
    let server = api_server().await;
    let mcp = FakeMcp::start().await;
    std::fs::write(dir.join("kubeconfig"), server.kubeconfig()).expect("kubeconfig");
    let controller_port = free_port();
    let _controller = tokio::process::Command::new(bin())
        .args([
            "controller",
            "--metrics-addr",
            &format!("127.0.0.1:{controller_port}"),
        ])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("controller starts");
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(
        &PostParams::default(),
        &registration("scraped", &mcp.url(), ""),
    )
    .await
    .expect("create");
    wait_for(&api, "scraped", Duration::from_secs(30), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;

    // The ingest server, with one report so labelled series exist.
    let _ingest = ingest_process.command().spawn().expect("ingest starts");
    let ingest = ingest_process.base.clone();
    let ingest_port = ingest_process.port;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sent = http_client()
            .post(format!("{ingest}/v1/interactions"))
            .bearer_auth(KEY)
            .json(&json!({"request_data": {"request_type": "ocr"}, "processing_time": 0.2}))
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().as_u16() == 202) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest never accepted a report"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for (name, url) in [
        (
            "controller",
            format!("http://127.0.0.1:{controller_port}/metrics"),
        ),
        ("ingest", format!("{ingest}/metrics")),
    ] {
        let text = get_text(&url).await;
        let (clean, complaints) = promtool_check(&text).await;
        assert!(
            clean,
            "promtool check metrics on the {name}'s /metrics:\n{complaints}"
        );
        let build = format!(
            "mcp_coordinator_build_info{{version=\"{}\"}} 1",
            mcp_coordinator::COORDINATOR_VERSION
        );
        for series in [
            build.as_str(),
            "process_resident_memory_bytes ",
            "process_cpu_seconds_total ",
        ] {
            assert!(
                text.contains(series),
                "the {name}'s /metrics lacks {series}"
            );
        }
    }
    // The check is real: a counter without _total is reported.
    let (clean, _) = promtool_check(
        "# HELP bad_counter A counter.\n# TYPE bad_counter counter\nbad_counter 1\n",
    )
    .await;
    assert!(!clean, "promtool accepted a counter named without _total");

    let prometheus_port = free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: controller\n    static_configs: [{{targets: ['127.0.0.1:{controller_port}']}}]\n  - job_name: ingest\n    static_configs: [{{targets: ['127.0.0.1:{ingest_port}']}}]\n"
        ),
    )
    .expect("config");
    let _prometheus = tokio::process::Command::new(tool("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus starts");
    let api_url = format!("http://127.0.0.1:{prometheus_port}/api/v1");
    let query = |q: &str| {
        let url = format!("{api_url}/query");
        let q = q.to_string();
        async move {
            let r = http_client()
                .get(format!("{url}?query={}", encode(&q)))
                .send()
                .await
                .ok()?;
            let body: Value = r.json().await.ok()?;
            body["data"]["result"].as_array().cloned()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = query("up == 1").await.unwrap_or_default();
        let jobs: Vec<&str> = up
            .iter()
            .filter_map(|s| s["metric"]["job"].as_str())
            .collect();
        if jobs.contains(&"controller") && jobs.contains(&"ingest") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "targets not up in Prometheus: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for series in [
        "mcp_coordinator_reconciles_total",
        "mcp_coordinator_registrations",
        "mcp_up",
        "mcp_coordinator_effective_weight",
        "mcp_coordinator_leader",
        "mcp_ingest_events_received_total",
        "mcp_ingest_spool_bytes",
        "mcp_ingest_processing_time_seconds_bucket",
    ] {
        let result = query(series).await.unwrap_or_default();
        assert!(!result.is_empty(), "Prometheus has no {series}");
    }
    let ready = query("mcp_coordinator_registrations{phase=\"Ready\"}")
        .await
        .unwrap_or_default();
    assert_eq!(
        ready.first().and_then(|s| s["value"][1].as_str()),
        Some("1"),
        "{ready:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Standalone mode serves the ingest server's series and the controller's on one `/metrics`: each
/// family once (both registries carry the process's own series and the build info), so that
/// `promtool` and a real scrape accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_metrics_pass_promtool_with_each_family_once() {
    let dir = TestDir::new("standalone-metrics");
    std::fs::create_dir_all(dir.join("registrations")).expect("registrations");
    let port = free_port();
    let _standalone = tokio::process::Command::new(bin())
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--registrations")
        .arg(dir.join("registrations"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("standalone starts");
    let base = format!("http://127.0.0.1:{port}");
    common::ingest::wait_healthy(&base).await;
    let text = get_text(&format!("{base}/metrics")).await;
    let (clean, complaints) = promtool_check(&text).await;
    assert!(
        clean,
        "promtool check metrics on standalone's /metrics:\n{complaints}"
    );
    for family in [
        "# TYPE mcp_coordinator_build_info gauge",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE mcp_coordinator_reconciles_total counter",
        "# TYPE mcp_ingest_spool_records gauge",
    ] {
        assert_eq!(text.matches(family).count(), 1, "{family}:\n{text}");
    }
}
