//! `mcp` health checks against real MCP servers of the official SDKs: Python (which speaks the
//! 2026-07-28 revision: `server/discover`, no sessions) and TypeScript (the handshake
//! generation: `initialize`, sessions); functional probes and tool-schema changes.

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
    python_mcp_server_of(port, "1.4.0").await
}

async fn python_mcp_server_of(port: u16, version: &str) -> tokio::process::Child {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mcp_server.py");
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(version)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (the official MCP SDK is installed by .ci/run: pip install mcp)");
    common::peers::wait_listening(
        port,
        "the Python MCP server (is the `mcp` package installed?)",
    )
    .await;
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
    let status = ready.status.unwrap();
    // The Python SDK speaks 2026-07-28: its identity comes from `_meta`, and no session.
    let info = status.server_info.expect("serverInfo");
    assert_eq!(
        (
            info.name.as_deref(),
            info.version.as_deref(),
            info.protocol_version.as_str()
        ),
        (Some("ocr-tools"), Some("1.4.0"), "2026-07-28")
    );
    assert!(info.capabilities.contains(&"tools".to_string()), "{info:?}");
    assert!(!info.legacy_features.contains(&"sessions".to_string()));
    let names: Vec<&str> = status.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["detect_layout", "extract_text"]);
    assert_eq!(status.tools[1].required, ["image_url"]);
    assert_eq!(status.tools[1].properties["image_url"], "string");
    // The field of earlier releases is still written, for one release.
    let discovered = status.discovered.unwrap();
    assert_eq!(discovered.tools, ["detect_layout", "extract_text"]);
    assert_eq!(discovered.server_name.as_deref(), Some("ocr-tools"));
    assert_eq!(discovered.protocol_version.as_deref(), Some("2026-07-28"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_era_server_of_the_typescript_sdk_is_probed_in_a_session() {
    let port = free_port();
    let _node = common::peers::node_script("legacy_mcp_server.mjs")
        .args([port.to_string(), "legacy-ocr".into(), "0".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs the SDK server");
    common::peers::wait_listening(port, "the TypeScript MCP server").await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let extra = "    type: mcp\n  paths:\n    process: /mcp\n";
    let reg = registration("legacy-ocr", &format!("http://127.0.0.1:{port}"), extra);
    api.create(&PostParams::default(), &reg).await.unwrap();
    let ready = wait_for(&api, "legacy-ocr", Duration::from_secs(30), "Ready", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Ready && s.server_info.is_some())
    })
    .await;
    let status = ready.status.unwrap();
    let info = status.server_info.unwrap();
    assert_eq!(info.name.as_deref(), Some("legacy-ocr"));
    assert!(
        ["2025-03-26", "2025-06-18", "2025-11-25"].contains(&info.protocol_version.as_str()),
        "a handshake version: {info:?}"
    );
    assert_eq!(info.legacy_features, ["sessions"]);
    assert_eq!(status.tools.len(), 1);
    assert_eq!(status.tools[0].name, "extract_text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_functional_probe_with_the_wrong_answer_degrades_the_mcp_and_quotes_it() {
    let port = free_port();
    let _python = python_mcp_server(port).await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let call = |expected: &str| {
        format!("    type: mcp\n    call:\n      tool: extract_text\n      arguments: {{image_url: a.png}}\n      expect: {{contains: ['{expected}']}}\n  paths:\n    process: /mcp\n")
    };
    let reg = registration(
        "checked",
        &format!("http://127.0.0.1:{port}"),
        &call("text of b.png"),
    );
    api.create(&PostParams::default(), &reg).await.unwrap();
    let degraded = wait_for(&api, "checked", Duration::from_secs(30), "Degraded", |r| {
        phase(r) == Some(Phase::Degraded)
    })
    .await;
    let status = degraded.status.unwrap();
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "FunctionalProbe")
        .expect("a FunctionalProbe condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("False", "UnexpectedAnswer")
    );
    assert!(
        condition
            .message
            .contains(r#"expected the answer to contain "text of b.png""#)
            && condition.message.contains("text of a.png"),
        "the difference is quoted: {}",
        condition.message
    );
    assert_eq!(status.routing.unwrap().effective_weight, 50, "half weight");

    // The right expectation: Ready again.
    let fixed = registration(
        "checked",
        &format!("http://127.0.0.1:{port}"),
        &call("text of a.png"),
    );
    let mut current = api.get("checked").await.unwrap();
    current.spec = fixed.spec;
    api.replace("checked", &PostParams::default(), &current)
        .await
        .unwrap();
    wait_for(&api, "checked", Duration::from_secs(30), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
            && r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "FunctionalProbe" && c.status == "True")
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_that_breaks_a_tool_schema_is_named_in_a_condition() {
    let port = free_port();
    let mut python = python_mcp_server(port).await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let extra = "    type: mcp\n  paths:\n    process: /mcp\n";
    let reg = registration("evolving", &format!("http://127.0.0.1:{port}"), extra);
    api.create(&PostParams::default(), &reg).await.unwrap();
    let first = wait_for(
        &api,
        "evolving",
        Duration::from_secs(30),
        "Ready with tools",
        |r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.phase == Phase::Ready && !s.tools.is_empty())
        },
    )
    .await;
    let unchanged = first.status.unwrap();
    let condition = unchanged
        .conditions
        .iter()
        .find(|c| c.type_ == "ToolSchemaChanged")
        .unwrap();
    assert_eq!(condition.status, "False");

    // Version 2.0.0 of the same server: extract_text takes a list and needs a language.
    python.kill().await.unwrap();
    let _python = python_mcp_server_of(port, "2.0.0").await;
    let changed = wait_for(
        &api,
        "evolving",
        Duration::from_secs(30),
        "ToolSchemaChanged",
        |r| {
            r.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "ToolSchemaChanged" && c.status == "True")
            })
        },
    )
    .await;
    let status = changed.status.unwrap();
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "ToolSchemaChanged")
        .unwrap()
        .message;
    assert!(
        message.contains("server 2.0.0")
            && message.contains("extract_text: property image_url retyped from string to array")
            && message.contains("extract_text: required property lang added")
            && !message.contains("detect_layout"),
        "{message}"
    );
    // It stays while the server keeps that version.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = api.get("evolving").await.unwrap().status.unwrap();
    assert!(later
        .conditions
        .iter()
        .any(|c| c.type_ == "ToolSchemaChanged" && c.status == "True"));
    assert_ne!(
        later
            .tools
            .iter()
            .find(|t| t.name == "extract_text")
            .unwrap()
            .digest,
        unchanged
            .tools
            .iter()
            .find(|t| t.name == "extract_text")
            .unwrap()
            .digest
    );
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
async fn endless_tools_mcp(per_page: usize, properties: usize) -> (String, Arc<AtomicUsize>) {
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
                            let props: serde_json::Map<String, serde_json::Value> = (0..properties)
                                .map(|p| {
                                    (format!("{p}{}", "p".repeat(300)), json!({"type": "string"}))
                                })
                                .collect();
                            json!({
                                "name": format!("{}{page}-{i}", "t".repeat(300)),
                                "inputSchema": {"type": "object", "properties": props},
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
    let (url, pages) = endless_tools_mcp(0, 0).await;
    let tools = discovered_when_ready(&url, "endless").await;
    assert!(tools.is_empty());
    let read = pages.load(Ordering::SeqCst);
    assert!(
        (16..=32).contains(&read),
        "{read} pages read by one or two probes"
    );

    // Full pages: the list kept in status is capped, and so is each name.
    let (url, _) = endless_tools_mcp(300, 0).await;
    let tools = discovered_when_ready(&url, "crowded").await;
    assert_eq!(tools.len(), 256, "the tool list kept in status is capped");
    assert!(
        tools.iter().all(|t| t.chars().count() <= 128),
        "tool names are cut"
    );

    // Tools with many long properties: what status keeps of them is bounded in bytes too.
    let (url, _) = endless_tools_mcp(20, 100).await;
    let server = api_server().await;
    let _controller = start_controller(&server);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let reg = registration("wide", &url, "    type: mcp\n  paths:\n    process: /mcp\n");
    api.create(&PostParams::default(), &reg).await.unwrap();
    let ready = wait_for(&api, "wide", Duration::from_secs(20), "Ready", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase == Phase::Ready && !s.tools.is_empty())
    })
    .await;
    let status = ready.status.unwrap();
    let kept = serde_json::to_string(&status.tools).unwrap().len();
    assert!(
        kept < 200 * 1024 && status.tools.len() < 256,
        "{kept} bytes of {} tools",
        status.tools.len()
    );
    assert!(status.tools.iter().all(|t| t.properties.len() <= 64));
}
