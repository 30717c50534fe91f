//! Controller scale run: 1,000 MCPRegistrations against the test API server with fast fake MCPs.
//! Reports the time until every registration is Ready and the controller process's peak RSS.
//! Goals: all Ready in ≤ 30 s, peak RSS ≤ 64 MiB. Run with `make bench`.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use futures::StreamExt;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use mcp_coordinator::crd::{MCPRegistration, Phase};
use warp::Filter;

const COUNT: usize = 1000;

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; test runners listing or running targets do not: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count = std::env::var("MCP_BENCH_REGISTRATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(COUNT);
    let server = FakeApiServer::start().await.expect("fake API server");
    server
        .install_crd(serde_json::to_value(mcp_coordinator::crd::crd()).expect("crd"))
        .expect("install CRD");

    // One loopback server plays every MCP: any `/<name>/health` answers 200.
    let probes = Arc::new(AtomicU64::new(0));
    let counter = probes.clone();
    let health = warp::path!(String / "health").map(move |_name: String| {
        counter.fetch_add(1, Ordering::Relaxed);
        "ok"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mcp_addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(health).incoming(listener).run());

    let dir = std::env::temp_dir().join(format!("mcp-coordinator-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut controller = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-coordinator"))
        .arg("controller")
        .env("KUBECONFIG", &kubeconfig)
        .env(
            "MCP_COORDINATOR_METRICS_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("controller binary starts");
    let pid = controller.id().expect("pid");

    let client =
        Client::try_from(kube::Config::new(server.url().parse().expect("url"))).expect("client");
    let api: Api<MCPRegistration> = Api::namespaced(client, "default");
    let started = Instant::now();
    futures::stream::iter(0..count)
        .map(|i| {
            let api = api.clone();
            let yaml = format!(
                "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata: {{name: mcp-{i}, namespace: default}}\nspec: {{version: 1.0.0, type: tool, capabilities: [bench], endpoint: {{url: 'http://{mcp_addr}/mcp-{i}'}}}}\n"
            );
            async move {
                let reg: MCPRegistration = serde_saphyr::from_str(&yaml).expect("manifest");
                api.create(&PostParams::default(), &reg).await.expect("create");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    let created = started.elapsed();

    let deadline = started + Duration::from_secs(120);
    let mut ready = 0;
    let mut peak_rss_kib = 0;
    while Instant::now() < deadline {
        peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(pid));
        let list = api.list(&ListParams::default()).await.expect("list");
        ready = list
            .items
            .iter()
            .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Phase::Ready))
            .count();
        if ready == count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    peak_rss_kib = peak_rss_kib.max(vm_hwm_kib(pid));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    let reconciles = metrics
        .lines()
        .find(|l| l.starts_with("mcp_coordinator_reconciles_total"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("?")
        .to_string();
    let _ = controller.start_kill();
    let _ = std::fs::remove_dir_all(&dir);

    let rss_mib = peak_rss_kib as f64 / 1024.0;
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("controller scale run ({count} MCPRegistrations, test API server, fast fake MCPs)");
    println!("| metric                         | value        | goal     | result |");
    println!("|--------------------------------|--------------|----------|--------|");
    println!(
        "| registrations created in       | {:>9.2} s  |          |        |",
        created.as_secs_f64()
    );
    println!(
        "| time until all Ready           | {:>9.2} s  | <= 30 s  | {:<6} |",
        all_ready.as_secs_f64(),
        verdict(ready == count && all_ready <= Duration::from_secs(30))
    );
    println!(
        "| Ready at the end               | {:>6} / {:<4}|          |        |",
        ready, count
    );
    println!(
        "| controller peak RSS (VmHWM)    | {:>8.1} MiB | <= 64 MiB| {:<6} |",
        rss_mib,
        verdict(rss_mib <= 64.0)
    );
    println!(
        "| reconciles                     | {:>12} |          |        |",
        reconciles
    );
    println!(
        "| health probes served           | {:>12} |          |        |",
        probes.load(Ordering::Relaxed)
    );
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
