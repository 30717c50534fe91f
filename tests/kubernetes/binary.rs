//! The shipped binary: `crdgen` output, and `controller` run as a process against a kubeconfig.

use test_support as common;

use std::process::Stdio;
use std::time::Duration;

use common::ingest::bin;
use common::*;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};

#[test]
fn crdgen_prints_the_checked_in_crd() {
    let out = std::process::Command::new(bin())
        .arg("crdgen")
        .output()
        .unwrap();
    assert!(out.status.success());
    let checked_in = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/mcpregistration.yaml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), checked_in);
}

#[test]
fn controller_without_a_cluster_fails_with_a_clear_message() {
    let out = std::process::Command::new(bin())
        .args(["controller", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KUBECONFIG"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_process_reconciles_and_serves_metrics() {
    let server = api_server().await;
    let mcp = FakeMcp::start().await;
    let dir = common::TestDir::new("bin");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(bin())
        .args(["controller", "--log-format", "json"])
        .env("KUBECONFIG", &kubeconfig)
        .env(
            "MCP_COORDINATOR_METRICS_ADDR",
            format!("127.0.0.1:{metrics_port}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(
        &PostParams::default(),
        &registration("proc", &mcp.url(), ""),
    )
    .await
    .unwrap();
    wait_for(&api, "proc", Duration::from_secs(30), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;

    let http = http_client();
    let base = format!("http://127.0.0.1:{metrics_port}");
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never turned 200"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the chart's `helm test` runs: ready against a ready endpoint, not against a closed one.
    let ready = |urls: Vec<String>| {
        let mut args = vec!["ready".to_string()];
        for url in urls {
            args.extend(["--url".to_string(), url]);
        }
        std::process::Command::new(bin())
            .args(args)
            .output()
            .expect("ready runs")
    };
    let out = ready(vec![base.clone()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = format!(
        "http://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let out = ready(vec![base.clone(), closed.clone()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("cannot reach the coordinator at {closed}/readyz")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("mcp_up{mcp_id=\"proc_workflow_mcp_001\"} 1"),
        "{metrics}"
    );

    // SIGTERM shuts it down cleanly.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 34, attack 3: the controller's metrics port held partial-header and zero-byte clients
/// for more than 43 s, and SIGTERM waited on them (and on an API server that never answers)
/// without limit. Now the port has the ingest server's deadlines and the stop is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_3_the_metrics_port_has_deadlines_and_sigterm_is_bounded_with_a_silent_api_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An API server that accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = black_hole.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = black_hole.accept().await {
            held.push(tcp);
        }
    });
    let dir = common::TestDir::new("bin-bounded");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{api_addr}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut child = tokio::process::Command::new(bin())
        .args(["controller", "--shutdown-timeout-seconds", "3"])
        .args(["--metrics-addr", &metrics_addr])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::ingest::wait_healthy(&format!("http://{metrics_addr}")).await;

    let hold = || async {
        let mut held = Vec::new();
        for i in 0..20 {
            let mut tcp = tokio::net::TcpStream::connect(&metrics_addr).await.unwrap();
            if i % 2 == 1 {
                tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: con")
                    .await
                    .unwrap();
            }
            held.push(tcp);
        }
        held
    };
    // Before: held for more than 43 s. Now the 10 s header deadline closes them.
    let mut held = hold().await;
    for tcp in held.iter_mut() {
        let mut buf = [0u8; 512];
        let closed = tokio::time::timeout(Duration::from_secs(14), async {
            while let Ok(n) = tcp.read(&mut buf).await {
                if n == 0 {
                    return;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "a stalled client held the metrics port");
    }

    // Held clients and an API server that never answers: SIGTERM still stops it in time.
    let _held = hold().await;
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(8), child.wait()).await;
    assert!(
        stopped.is_ok(),
        "SIGTERM with --shutdown-timeout-seconds 3 did not stop the controller in 8 s"
    );
}
