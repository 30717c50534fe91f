//! `mcp-coordinator example-mcp`: a small MCP for demos and tests. It serves `GET /health`,
//! `POST /process` (answers after `latency`, failing at `failure_rate`) and `GET /status`, and
//! reports every interaction (start, then complete or error) and a heartbeat to the coordinator
//! with its API key through the `mcp-coordinator-client` crate, like a real MCP would: without
//! waiting for the reports, and picking up a rotated key from its file.
//!
//! It also speaks MCP itself at `POST /mcp` (both protocol generations, JSON answers, one tool
//! `extract_text` doing the same work), for callers that go through the gateway: those calls are
//! not reported, since the gateway logs them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_coordinator_client::{Client, Key};
use rand::Rng;
use serde_json::{json, Value};
use warp::http::StatusCode;
use warp::Filter;

#[derive(Debug, Clone)]
pub struct ExampleMcp {
    pub name: String,
    pub listen: SocketAddr,
    /// Median processing time; each request takes 0.7–1.5× of it.
    pub latency: Duration,
    /// Share of requests that fail (0–1).
    pub failure_rate: f64,
    /// The coordinator's ingest URL; no reports without it.
    pub coordinator: Option<String>,
    /// File holding this MCP's API key (standalone writes `<data-dir>/keys/<ns>/<name>-mcp-key`);
    /// read again when the coordinator refuses the key (it was rotated).
    pub key_file: Option<PathBuf>,
    /// A registrar token: the MCP registers itself (`register_mcp`) when it starts and reports
    /// with the key the coordinator answers, instead of reading `key_file`.
    pub registrar_token: Option<String>,
    pub heartbeat: Duration,
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    failed: AtomicU64,
}

/// Serves until `shutdown` resolves. Returns the address it listens on.
pub async fn serve(
    mcp: ExampleMcp,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(mcp.listen).await?;
    let addr = listener.local_addr()?;
    // Reports go through the client crate's queue: the MCP answers without waiting for them.
    let reporter = match (&mcp.coordinator, &mcp.registrar_token, &mcp.key_file) {
        (Some(url), Some(token), _) => {
            let registration = register(url, token, &mcp.name, addr)
                .await
                .map_err(std::io::Error::other)?;
            tracing::info!(mcp_id = %registration.mcp_id, "registered itself with the coordinator");
            Some(registration.client().map_err(std::io::Error::other)?)
        }
        (Some(url), None, Some(key_file)) => {
            let mut builder = Client::builder(url.clone(), Key::File(key_file.clone()))
                .heartbeat_every(mcp.heartbeat);
            builder = builder.timeout(Duration::from_secs(5));
            Some(builder.build().map_err(std::io::Error::other)?)
        }
        _ => None,
    };
    let counters = Arc::new(Counters::default());

    let health = warp::path!("health")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})));
    let (name, c, r) = (mcp.name.clone(), counters.clone(), reporter.clone());
    let status = warp::path!("status").and(warp::get()).map(move || {
        let reports = r.as_ref().map(Client::stats).unwrap_or_default();
        warp::reply::json(&json!({
            "name": name,
            "served": c.served.load(Ordering::Relaxed),
            "failed": c.failed.load(Ordering::Relaxed),
            "reports_sent": reports.sent,
            "reports_dropped": reports.dropped,
        }))
    });
    let config = Arc::new(mcp);
    let (mcp_config, mcp_counters) = (config.clone(), counters.clone());
    let mcp_endpoint = warp::path!("mcp")
        .and(warp::post())
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let (config, counters) = (mcp_config.clone(), mcp_counters.clone());
            async move { speak_mcp(&config, &counters, &body).await }
        });
    let process = warp::path!("process")
        .and(warp::post())
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let (config, reporter, counters) = (config.clone(), reporter.clone(), counters.clone());
            async move { process(&config, reporter.as_ref(), &counters, &body).await }
        });
    let routes = health.or(status).or(process).or(mcp_endpoint);
    let task = tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(shutdown)
            .run()
            .await;
    });
    Ok((addr, task))
}

/// Registers the example MCP listening on `addr` as the seed's `register_mcp` describes it.
async fn register(
    coordinator: &str,
    token: &str,
    name: &str,
    addr: SocketAddr,
) -> Result<mcp_coordinator_client::Registration, mcp_coordinator_client::ClientError> {
    let info = mcp_coordinator_client::McpInfo {
        name: name.to_string(),
        version: crate::COORDINATOR_VERSION.to_string(),
        mcp_type: "workflow".into(),
        capabilities: vec!["text_extraction".into()],
        supported_formats: vec!["image/png".into(), "application/pdf".into()],
        min_memory: Some("256MB".into()),
        min_cpu: Some("0.5 cores".into()),
        url: format!("http://{addr}"),
        process_path: Some("/mcp".into()),
        ..Default::default()
    };
    mcp_coordinator_client::register(coordinator, token, &info, false).await
}

/// One MCP message: `server/discover` or `initialize` (no session), `tools/list`, `tools/call`.
async fn speak_mcp(config: &ExampleMcp, counters: &Counters, body: &[u8]) -> warp::reply::Response {
    use warp::Reply;
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let Some(id) = request.get("id").cloned() else {
        return StatusCode::ACCEPTED.into_response();
    };
    let result = match request["method"].as_str().unwrap_or("") {
        "server/discover" => json!({
            "supportedVersions": ["2025-11-25", "2026-07-28"],
            "capabilities": {"tools": {}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": config.name, "version": "1.0.0"}},
        }),
        "initialize" => json!({
            "protocolVersion": request["params"]["protocolVersion"].as_str().unwrap_or("2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": config.name, "version": "1.0.0"},
        }),
        "ping" => json!({}),
        "tools/list" => json!({"tools": [{
            "name": "extract_text",
            "description": "Extract the text of an image.",
            "inputSchema": {"type": "object", "properties": {"image_url": {"type": "string"}}},
        }]}),
        "tools/call" if request["params"]["name"] == "extract_text" => {
            let (jitter, fails) = {
                let mut rng = rand::rng();
                (
                    rng.random_range(0.7..1.5),
                    rng.random::<f64>() < config.failure_rate,
                )
            };
            tokio::time::sleep(config.latency.mul_f64(jitter)).await;
            counters.served.fetch_add(1, Ordering::Relaxed);
            if fails {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            let text = if fails {
                "the example MCP failed on purpose"
            } else {
                "done"
            };
            json!({"content": [{"type": "text", "text": format!("{}: {text}", config.name)}], "isError": fails})
        }
        other => {
            let error = json!({"code": -32601, "message": format!("no method {other:?}")});
            return warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "error": error}))
                .into_response();
        }
    };
    warp::reply::json(&json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
}

async fn process(
    config: &ExampleMcp,
    reporter: Option<&Client>,
    counters: &Counters,
    body: &[u8],
) -> warp::reply::WithStatus<warp::reply::Json> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let request_type = request["request_type"].as_str().unwrap_or("example");
    let started = Instant::now();
    let interaction = reporter.map(|r| r.start(request_type, json!({"input_size": body.len()})));
    let (jitter, fails) = {
        let mut rng = rand::rng();
        (
            rng.random_range(0.7..1.5),
            rng.random::<f64>() < config.failure_rate,
        )
    };
    tokio::time::sleep(config.latency.mul_f64(jitter)).await;
    let processing_time = started.elapsed().as_secs_f64();
    counters.served.fetch_add(1, Ordering::Relaxed);
    let report = reporter.zip(interaction.as_deref());
    if fails {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        if let Some((r, id)) = report {
            r.fail(
                id,
                "SIMULATED_FAILURE",
                "the example MCP failed on purpose",
                json!({"processing_time": processing_time}),
            );
        }
        warp::reply::with_status(
            warp::reply::json(&json!({"error": "simulated failure", "mcp": config.name})),
            StatusCode::INTERNAL_SERVER_ERROR,
        )
    } else {
        if let Some((r, id)) = report {
            r.complete(
                id,
                json!({"processing_time": processing_time, "output_size": 64}),
            );
        }
        warp::reply::with_status(
            warp::reply::json(
                &json!({"result": "done", "mcp": config.name, "processing_time": processing_time}),
            ),
            StatusCode::OK,
        )
    }
}
