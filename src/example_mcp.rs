//! `mcp-coordinator example-mcp`: a small MCP for demos and tests. It serves `GET /health`,
//! `POST /process` (answers after `latency`, failing at `failure_rate`) and `GET /status`, and
//! reports every interaction (start, then complete or error) and a heartbeat to the coordinator
//! with its API key, like a real MCP would.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    pub heartbeat: Duration,
}

#[derive(Default)]
struct Counters {
    served: AtomicU64,
    failed: AtomicU64,
    reports_refused: AtomicU64,
}

struct Reporter {
    http: reqwest::Client,
    coordinator: Option<String>,
    key_file: Option<PathBuf>,
    key: std::sync::Mutex<Option<String>>,
}

impl Reporter {
    fn key(&self) -> Option<String> {
        let mut key = self
            .key
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if key.is_none() {
            *key = self
                .key_file
                .as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty());
        }
        key.clone()
    }

    /// POSTs `body` to `path`; false when it was not accepted. A refused key is re-read next time.
    async fn post(&self, path: &str, body: &Value) -> Option<Value> {
        let (base, key) = (self.coordinator.as_ref()?, self.key()?);
        let response = self
            .http
            .post(format!("{}{path}", base.trim_end_matches('/')))
            .bearer_auth(&key)
            .json(body)
            .send()
            .await
            .ok()?;
        if response.status() == StatusCode::UNAUTHORIZED {
            *self
                .key
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }
}

/// Serves until `shutdown` resolves. Returns the address it listens on.
pub async fn serve(
    mcp: ExampleMcp,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(std::io::Error::other)?;
    let reporter = Arc::new(Reporter {
        http,
        coordinator: mcp.coordinator.clone(),
        key_file: mcp.key_file.clone(),
        key: std::sync::Mutex::new(None),
    });
    let counters = Arc::new(Counters::default());
    let listener = tokio::net::TcpListener::bind(mcp.listen).await?;
    let addr = listener.local_addr()?;

    let beat = reporter.clone();
    let every = mcp.heartbeat;
    let heartbeat = tokio::spawn(async move {
        loop {
            let _ = beat.post("/v1/heartbeat", &json!({})).await;
            tokio::time::sleep(every).await;
        }
    });

    let health = warp::path!("health")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})));
    let (name, c) = (mcp.name.clone(), counters.clone());
    let status = warp::path!("status").and(warp::get()).map(move || {
        warp::reply::json(&json!({
            "name": name,
            "served": c.served.load(Ordering::Relaxed),
            "failed": c.failed.load(Ordering::Relaxed),
            "reports_refused": c.reports_refused.load(Ordering::Relaxed),
        }))
    });
    let config = Arc::new(mcp);
    let process = warp::path!("process")
        .and(warp::post())
        .and(warp::body::content_length_limit(1 << 20))
        .and(warp::body::bytes())
        .then(move |body: bytes::Bytes| {
            let (config, reporter, counters) = (config.clone(), reporter.clone(), counters.clone());
            async move { process(&config, &reporter, &counters, &body).await }
        });
    let routes = health.or(status).or(process);
    let task = tokio::spawn(async move {
        warp::serve(routes)
            .incoming(listener)
            .graceful(shutdown)
            .run()
            .await;
        heartbeat.abort();
    });
    Ok((addr, task))
}

async fn process(
    config: &ExampleMcp,
    reporter: &Reporter,
    counters: &Counters,
    body: &[u8],
) -> warp::reply::WithStatus<warp::reply::Json> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let request_type = request["request_type"]
        .as_str()
        .unwrap_or("example")
        .to_string();
    let started = Instant::now();
    let interaction = reporter
        .post(
            "/v1/interactions",
            &json!({
                "timestamp": jiff::Timestamp::now().to_string(),
                "request_data": {"request_type": request_type, "input_size": body.len()},
            }),
        )
        .await
        .and_then(|r| r["interaction_id"].as_str().map(str::to_string));
    if interaction.is_none() && reporter.coordinator.is_some() {
        counters.reports_refused.fetch_add(1, Ordering::Relaxed);
    }
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
    let (code, answer, report_path, report) = if fails {
        counters.failed.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": "simulated failure", "mcp": config.name}),
            "error",
            json!({"error_code": "SIMULATED_FAILURE", "error_message": "the example MCP failed on purpose", "processing_time": processing_time}),
        )
    } else {
        (
            StatusCode::OK,
            json!({"result": "done", "mcp": config.name, "processing_time": processing_time}),
            "complete",
            json!({"success": true, "processing_time": processing_time, "output_size": 64}),
        )
    };
    if let Some(id) = interaction {
        if reporter
            .post(&format!("/v1/interactions/{id}/{report_path}"), &report)
            .await
            .is_none()
        {
            counters.reports_refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    warp::reply::with_status(warp::reply::json(&answer), code)
}
