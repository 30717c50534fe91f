//! The gateway's cost: the same in-process fast MCP called directly and through the gateway, side
//! by side in one run, at 4 and 64 connections: calls/s, p50 and p99, and what the gateway adds.
//! Every call through the gateway is routed, logged (spooled) and learned from, as in production.
//! Beside them, a bare proxy on the same HTTP stacks that only forwards bytes: the floor any
//! proxy pays on this machine, where the load, the proxy and the MCP share two cores. And the
//! same MCP behind a registration's gateway policy (two CEL rules and a rate limit), to show
//! what checking them adds.
//! `MCP_BENCH_SECONDS` sets each run's length (default 5). Run with `make bench`.

use test_support as common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_coordinator::gateway::{Backend, GatewayConfig};
use mcp_coordinator::routing::table::{Candidate, RoutingTable};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::callers::Grant;
use serde_json::{json, Value};
use warp::Filter;

const CALLER_TOKEN: &str = "bench-caller-token-0123456789";

/// A fast MCP of the 2026-07-28 revision: answers `server/discover`, `tools/list` and
/// `tools/call` at once, as JSON.
async fn fast_mcp() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let routes = warp::post()
        .and(warp::body::bytes())
        .map(|body: bytes::Bytes| {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let id = request["id"].clone();
            let result = match request["method"].as_str() {
                Some("server/discover") => {
                    json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}})
                }
                Some("tools/list") => {
                    json!({"tools": [{"name": "echo", "inputSchema": {"type": "object"}}]})
                }
                _ => json!({"content": [{"type": "text", "text": "ok"}], "isError": false}),
            };
            warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
        });
    let config = mcp_coordinator::serve::ServeConfig {
        grace: Duration::from_secs(1),
        ..mcp_coordinator::serve::ServeConfig::new("backend")
    };
    let metrics = mcp_coordinator::serve::ServeMetrics::new(&Default::default()).unwrap();
    tokio::spawn(mcp_coordinator::serve::serve(
        listener,
        config,
        std::sync::Arc::new(metrics),
        routes,
        std::future::pending(),
    ));
    addr
}

/// The floor of any proxy on this machine: the same HTTP server and client stacks as the gateway
/// (warp, reqwest), forwarding the body and the answer as bytes, with nothing else (no caller
/// check, no parsing, no routing, no log).
async fn bare_proxy(mcp: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let url: reqwest::Url = format!("http://{mcp}/mcp").parse().expect("URL");
    let routes = warp::post()
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let answer = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let bytes = match answer {
                    Ok(r) => r.bytes().await.unwrap_or_default(),
                    Err(_) => bytes::Bytes::new(),
                };
                warp::http::Response::builder()
                    .header("content-type", "application/json")
                    .body(bytes.to_vec())
                    .unwrap_or_default()
            }
        });
    let config = mcp_coordinator::serve::ServeConfig {
        grace: Duration::from_secs(1),
        ..mcp_coordinator::serve::ServeConfig::new("backend")
    };
    let metrics = mcp_coordinator::serve::ServeMetrics::new(&Default::default()).unwrap();
    tokio::spawn(mcp_coordinator::serve::serve(
        listener,
        config,
        std::sync::Arc::new(metrics),
        routes,
        std::future::pending(),
    ));
    addr
}

#[derive(Clone)]
struct Run {
    calls: usize,
    seconds: f64,
    latencies: Vec<f64>,
    errors: usize,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] * 1000.0
    }
    fn rate(&self) -> f64 {
        self.calls as f64 / self.seconds
    }
}

/// `connections` clients calling `url` back to back for `seconds`.
async fn load(url: &str, connections: usize, seconds: f64) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "hello"}, "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.to_string(), body.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(CALLER_TOKEN)
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", "echo")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(b) if b.windows(4).any(|w| w == b"\"ok\"") => {
                                latencies.push(t.elapsed().as_secs_f64())
                            }
                            _ => errors += 1,
                        },
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut run = Run {
        calls: 0,
        seconds: 0.0,
        latencies: Vec::new(),
        errors: 0,
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("client task");
        run.latencies.extend(latencies);
        run.errors += errors;
    }
    run.seconds = started.elapsed().as_secs_f64();
    run.calls = run.latencies.len();
    run.latencies.sort_by(f64::total_cmp);
    run
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    mcp_coordinator::allocator::prefer_small_pages();
    let seconds: f64 = std::env::var("MCP_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let dir = common::TestDir::new("gateway-bench");
    let mcp = fast_mcp().await;
    let mut config = common::ingest::test_config(&dir);
    config.gateway = Some(GatewayConfig::new("127.0.0.1:0".parse().expect("address")));
    let backend = Backend {
        mcp_id: "bench_fast_mcp_001".into(),
        name: "fast".into(),
        namespace: "default".into(),
        capabilities: vec!["echo".into()],
        url: format!("http://{mcp}/mcp").parse().expect("URL"),
        mcp_type: "bench".into(),
        version: "1.0.0".into(),
        idempotent_tools: Vec::new(),
        call_timeout: None,
        max_concurrent_requests: 100_000,
        routable: true,
        headers: Default::default(),
        policy: None,
    };
    // The same MCP again in namespace `policed`, behind a gateway policy: two CEL rules (one on
    // the caller's groups, one on the arguments) and a rate limit too wide to refuse anything, so
    // the difference is what checking them costs.
    let policy: mcp_coordinator::crd::GatewayPolicy = serde_json::from_value(json!({
        "rules": [
            {"name": "admins-delete", "expression": "\"bench\" in caller.groups || tool.name != \"delete\""},
            {"name": "short-text", "expression": "tool.name != \"echo\" || size(tool.arguments.text) < 100"},
        ],
        "rateLimits": [{"name": "per-caller-tool", "per": "callerAndTool", "requests": 1000000, "periodSeconds": 1}],
    }))
    .expect("policy");
    let policed = Backend {
        mcp_id: "bench_policed_mcp_001".into(),
        name: "policed".into(),
        namespace: "policed".into(),
        policy: Some(Arc::new(mcp_coordinator::gateway::PolicyCell::new(policy))),
        ..backend.clone()
    };
    config.directory.install(vec![backend, policed]);
    config.router.install(&RoutingTable {
        capabilities: [(
            "echo".to_string(),
            vec![
                Candidate {
                    mcp_id: "bench_fast_mcp_001".into(),
                    name: "fast".into(),
                    namespace: "default".into(),
                    endpoint: format!("http://{mcp}"),
                    process_path: "/mcp".into(),
                    priority: 0,
                    weight: 100,
                    max_concurrent_requests: 100_000,
                },
                Candidate {
                    mcp_id: "bench_policed_mcp_001".into(),
                    name: "policed".into(),
                    namespace: "policed".into(),
                    endpoint: format!("http://{mcp}"),
                    process_path: "/mcp".into(),
                    priority: 0,
                    weight: 100,
                    max_concurrent_requests: 100_000,
                },
            ],
        )]
        .into(),
    });
    config.callers.set(
        "bench",
        CALLER_TOKEN,
        Grant {
            namespaces: vec!["default".into(), "policed".into()],
            groups: vec!["bench".into()],
            ..Grant::default()
        },
    );
    let store = Arc::new(SqliteStore::open(&dir.join("interactions.db")).expect("store"));
    let ingest =
        common::ingest::InProcessIngest::start(config, store, Arc::default(), Arc::default()).await;
    let gateway = format!(
        "http://{}/mcp/default",
        ingest.gateway_addr.expect("the gateway runs")
    );
    let policed = format!(
        "http://{}/mcp/policed",
        ingest.gateway_addr.expect("the gateway runs")
    );
    let direct = format!("http://{mcp}/mcp");
    let proxy = format!("http://{}/mcp", bare_proxy(mcp).await);

    // Warm both paths (connections, the gateway's discovery of the MCP, its catalog).
    load(&direct, 4, 0.5).await;
    load(&gateway, 4, 0.5).await;
    load(&proxy, 4, 0.5).await;
    load(&policed, 4, 0.5).await;

    println!();
    println!("gateway overhead: the same fast in-process MCP, direct and through the gateway ({seconds} s each, one process, 2 cores shared with the load)");
    println!("| connections | path | calls/s | p50 ms | p99 ms | errors | RSS MiB after |");
    println!("|------------:|------|--------:|-------:|-------:|-------:|--------------:|");
    let row = |connections: usize, path: &str, r: &Run| {
        println!(
            "| {connections} | {path} | {:.0} | {:.3} | {:.3} | {} | {:.0} |",
            r.rate(),
            r.percentile(0.5),
            r.percentile(0.99),
            r.errors,
            rss_mib()
        )
    };
    let mut rows = Vec::new();
    let mut policy_rows = Vec::new();
    for connections in [4usize, 64] {
        let d = load(&direct, connections, seconds).await;
        row(connections, "direct", &d);
        let p = load(&proxy, connections, seconds).await;
        row(connections, "bare proxy", &p);
        let g = load(&gateway, connections, seconds).await;
        row(connections, "gateway", &g);
        let q = load(&policed, connections, seconds).await;
        row(connections, "gateway + policy", &q);
        policy_rows.push((connections, g.clone(), q));
        rows.push((connections, d, p, g));
    }
    println!();
    println!("| connections | gateway added p50 ms | added p99 ms | gateway / direct rate | bare proxy / direct rate | gateway / bare proxy rate |");
    println!("|------------:|---------------------:|-------------:|----------------------:|-------------------------:|--------------------------:|");
    for (connections, d, p, g) in &rows {
        println!(
            "| {connections} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} |",
            g.percentile(0.5) - d.percentile(0.5),
            g.percentile(0.99) - d.percentile(0.99),
            g.rate() / d.rate(),
            p.rate() / d.rate(),
            g.rate() / p.rate()
        );
    }
    println!();
    println!(
        "| connections | policy added p50 ms | added p99 ms | gateway + policy / gateway rate |"
    );
    println!(
        "|------------:|--------------------:|-------------:|--------------------------------:|"
    );
    for (connections, g, q) in &policy_rows {
        println!(
            "| {connections} | {:.3} | {:.3} | {:.2} |",
            q.percentile(0.5) - g.percentile(0.5),
            q.percentile(0.99) - g.percentile(0.99),
            q.rate() / g.rate()
        );
    }
    // Overload: 512 connections, twice; memory should stop growing once the connections exist.
    println!();
    for round in 1..=2 {
        let before = rss_mib();
        let o = load(&gateway, 512, seconds).await;
        println!("overload round {round} (512 connections through the gateway): {:.0} calls/s, p99 {:.1} ms, {} refused or failed, RSS {:.0} → {:.0} MiB", o.rate(), o.percentile(0.99), o.errors, before, rss_mib());
    }
}
