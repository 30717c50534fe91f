//! `mcp` health checks against a real MCP server from the official Python SDK.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::ingest::free_port;
use common::*;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};

async fn python_mcp_server(port: u16) -> tokio::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (the official MCP SDK is installed by .ci/run: pip install mcp)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Python MCP server did not listen on {port}; is the `mcp` package installed?"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_health_check_discovers_the_tools_of_a_python_sdk_server() {
    let port = free_port();
    let _python = python_mcp_server(port).await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let reg = registration(
        "ocr-tools",
        &format!("http://127.0.0.1:{port}"),
        "    type: mcp\n  paths:\n    process: /mcp\n",
    );
    api.create(&PostParams::default(), &reg).await.unwrap();
    let ready = wait_for(
        &api,
        "ocr-tools",
        Duration::from_secs(30),
        "Ready with discovered tools",
        |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Ready && s.discovered.is_some())
        },
    )
    .await;
    let discovered = ready.status.unwrap().discovered.unwrap();
    assert_eq!(discovered.tools, ["detect_layout", "extract_text"]);
    assert_eq!(discovered.server_name.as_deref(), Some("ocr-tools"));
    assert!(discovered.protocol_version.is_some_and(|v| !v.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_health_check_against_a_plain_http_server_is_a_clear_failure() {
    let plain = FakeMcp::start().await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let reg = registration(
        "not-mcp",
        &plain.url(),
        "    type: mcp\n  paths:\n    process: /health\n",
    );
    api.create(&PostParams::default(), &reg).await.unwrap();
    let down = wait_for(
        &api,
        "not-mcp",
        Duration::from_secs(20),
        "Unavailable",
        |r| phase(r) == Some(Phase::Unavailable),
    )
    .await;
    let error = down.status.unwrap().health.unwrap().last_error.unwrap();
    assert!(error.starts_with("MCP initialize failed"), "{error}");
}
