//! `mcp` health checks against a real MCP server from the official Python SDK.

use test_support as common;

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};
use serde_json::json;

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

/// An MCP (JSON responses over Streamable HTTP) whose tools/list never ends: every page holds
/// `per_page` tools with long names and points at a next one. Counts the tools/list requests.
async fn endless_tools_mcp(per_page: usize) -> (String, Arc<AtomicUsize>) {
    use warp::Filter;
    let pages = Arc::new(AtomicUsize::new(0));
    let counter = pages.clone();
    let rpc = warp::post()
        .and(warp::path("mcp"))
        .and(warp::body::json())
        .map(move |request: serde_json::Value| {
            let id = request.get("id").cloned();
            let method = request["method"].as_str().unwrap_or_default().to_string();
            let result = match method.as_str() {
                "initialize" => json!({
                    "protocolVersion": request["params"]["protocolVersion"],
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "endless", "version": "1.0.0"},
                }),
                "tools/list" => {
                    let page = counter.fetch_add(1, Ordering::SeqCst);
                    let tools: Vec<_> = (0..per_page)
                        .map(|i| {
                            json!({
                                "name": format!("{}{page}-{i}", "t".repeat(300)),
                                "inputSchema": {"type": "object"},
                            })
                        })
                        .collect();
                    json!({"tools": tools, "nextCursor": format!("page-{}", page + 1)})
                }
                _ => json!({}),
            };
            match id {
                Some(id) => warp::reply::with_status(
                    warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "result": result})),
                    warp::http::StatusCode::OK,
                ),
                // A notification: accepted, no body.
                None => warp::reply::with_status(
                    warp::reply::json(&json!(null)),
                    warp::http::StatusCode::ACCEPTED,
                ),
            }
        });
    let end = warp::delete().map(warp::reply);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(rpc.or(end)).incoming(listener).run());
    (format!("http://{addr}"), pages)
}

async fn discovered_when_ready(url: &str, name: &str) -> Vec<String> {
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let reg = registration(name, url, "    type: mcp\n  paths:\n    process: /mcp\n");
    api.create(&PostParams::default(), &reg).await.unwrap();
    let ready = wait_for(&api, name, Duration::from_secs(20), "Ready", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Ready && s.discovered.is_some())
    })
    .await;
    ready.status.unwrap().discovered.unwrap().tools
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_that_pages_tools_forever_is_read_to_a_bound() {
    // Empty pages forever: without a page limit the probe never finishes.
    let (url, pages) = endless_tools_mcp(0).await;
    let tools = discovered_when_ready(&url, "endless").await;
    assert!(tools.is_empty());
    let read = pages.load(Ordering::SeqCst);
    assert!(
        (16..=32).contains(&read),
        "{read} pages read by one or two probes"
    );

    // Full pages: the list kept in status is capped, and so is each name.
    let (url, _) = endless_tools_mcp(300).await;
    let tools = discovered_when_ready(&url, "crowded").await;
    assert_eq!(tools.len(), 256, "the tool list kept in status is capped");
    assert!(
        tools.iter().all(|t| t.chars().count() <= 128),
        "tool names are cut"
    );
}
