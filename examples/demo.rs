//! `make demo`: the coordinator in standalone mode with three example MCPs of different quality
//! (fast, slow, flaky): two declared by the manifests of `examples/standalone/`, the flaky one
//! registering itself when it starts (the seed's `register_mcp`, with a registrar token). Four
//! clients call the `extract_text` tool through the MCP gateway (`/mcp/default`, MCP 2026-07-28 on
//! the wire), which routes each call to the best MCP, fails over, and logs it. Every few seconds the
//! status table is printed: IDs assigned, interactions flowing, weights moving toward the better
//! MCP. Stops after DEMO_SECONDS (default 40) or on Ctrl-C.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mcp_coordinator::controller::status::ReportingSettings;
use mcp_coordinator::example_mcp::{self, ExampleMcp};
use mcp_coordinator::gateway::GatewayConfig;
use mcp_coordinator::ingest::assemble::IngestParts;
use mcp_coordinator::ingest::registrar::RegistrarTokens;
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::standalone::{self, StandaloneConfig};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::callers::Grant;
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};

const LISTEN: &str = "127.0.0.1:18081";
const TOKEN: &str = "demo-admin-token-0123456789";
const GATEWAY: &str = "127.0.0.1:18082";
const CALLER_TOKEN: &str = "demo-caller-token-0123456789";
const REGISTRAR_TOKEN: &str = "demo-registrar-token-0123456789";
/// The example MCP that registers itself instead of having a manifest.
const SELF_REGISTERED: &str = "ocr-flaky";

/// (name in examples/standalone, port, median latency ms, failure rate)
const MCPS: [(&str, u16, u64, f64); 3] = [
    ("ocr-fast", 18101, 40, 0.01),
    ("ocr-slow", 18102, 250, 0.02),
    ("ocr-flaky", 18103, 60, 0.25),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,warp::server=off".into()),
        )
        .init();
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let data_dir =
        std::env::temp_dir().join(format!("mcp-coordinator-demo-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    // The examples' manifests, copied: self-registration writes its manifest beside them.
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/standalone");
    let registrations = data_dir.join("registrations");
    std::fs::create_dir_all(&registrations)?;
    for (name, ..) in MCPS.iter().filter(|(name, ..)| *name != SELF_REGISTERED) {
        let file = format!("{name}.yaml");
        std::fs::copy(examples.join(&file), registrations.join(&file))?;
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let store = Arc::new(SqliteStore::open(&data_dir.join("interactions.db"))?);
    let readers = ReaderTokens::default();
    readers.add_admin("demo", TOKEN);
    let mut config = IngestConfig::new(LISTEN.parse()?, data_dir.join("spool"))?;
    config.gateway = Some(GatewayConfig::new(GATEWAY.parse()?));
    config.callers.set(
        "demo",
        CALLER_TOKEN,
        Grant {
            namespaces: vec!["default".into()],
            ..Grant::default()
        },
    );
    let ingest = IngestParts {
        config,
        store,
        store_name: "SQLite".into(),
        keys: Arc::new(KeyRing::default()),
        readers: Arc::new(readers),
        retention_days: Arc::default(),
        registrar_tokens: Some(Arc::new({
            let mut tokens = RegistrarTokens::default();
            tokens.add("demo", REGISTRAR_TOKEN, vec!["default".into()]);
            tokens
        })),
    };
    let coordinator = standalone::start(
        StandaloneConfig {
            registrations: registrations.clone(),
            data_dir: data_dir.clone(),
            ingest,
            reporting: ReportingSettings {
                interaction_log_endpoint: String::new(),
                heartbeat_interval_seconds: 5,
                data_report_interval_seconds: 10,
            },
            routing_interval: Duration::from_secs(3),
            routing_window: "2m".into(),
            poll_interval: Duration::from_millis(500),
            allow_link_local_probes: false,
            probe_concurrency: 8,
            registration_wait: Duration::from_secs(20),
            registrations_per_token: mcp_coordinator::ingest::registrar::DEFAULT_MAX_PER_TOKEN,
        },
        stopped(stop_rx.clone()),
    )
    .await?;
    let base = format!("http://{}", coordinator.addr);
    println!(
        "standalone coordinator on {base}, registrations from {}",
        registrations.display()
    );
    println!("data (IDs, keys, status files) in {}", data_dir.display());
    let gateway = match coordinator.gateway_addr {
        Some(addr) => format!("http://{addr}/mcp/default"),
        None => anyhow::bail!("the gateway did not start"),
    };
    println!("MCP gateway on {gateway} (clients call tools here, with a caller token)");

    for (name, port, latency_ms, failure_rate) in MCPS {
        example_mcp::serve(
            ExampleMcp {
                name: name.into(),
                listen: format!("127.0.0.1:{port}").parse()?,
                latency: Duration::from_millis(latency_ms),
                failure_rate,
                coordinator: Some(base.clone()),
                key_file: Some(
                    data_dir
                        .join("keys/default")
                        .join(format!("{name}-mcp-key")),
                ),
                registrar_token: (name == SELF_REGISTERED).then(|| REGISTRAR_TOKEN.to_string()),
                heartbeat: Duration::from_secs(5),
            },
            stopped(stop_rx.clone()),
        )
        .await?;
        println!(
            "example MCP {name} on 127.0.0.1:{port}: ~{latency_ms} ms, {:.0}% failures{}",
            failure_rate * 100.0,
            if name == SELF_REGISTERED {
                " (registered itself: register_mcp)"
            } else {
                ""
            }
        );
    }

    let running = Arc::new(AtomicBool::new(true));
    let served: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    // The clients: the official MCP Python SDK's when it is installed (`pip install mcp`), else a
    // few lines of Rust speaking the same wire (the demo needs nothing but Rust).
    let python_sdk = std::process::Command::new("python3")
        .args(["-c", "import mcp.client.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "4 clients call extract_text through the gateway with {}",
        if python_sdk {
            "the official MCP Python SDK client (tests/python/gateway_client.py)"
        } else {
            "MCP 2026-07-28 JSON-RPC from Rust (pip install mcp to use the Python SDK's client)"
        }
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, gateway, running, served) = (
                http.clone(),
                gateway.clone(),
                running.clone(),
                served.clone(),
            );
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let calls = if python_sdk {
                        python_calls(&gateway).await
                    } else {
                        call_tool(&http, &gateway).await.into_iter().collect()
                    };
                    if calls.is_empty() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    let mut s = served
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for (name, ok) in calls {
                        let entry = s.entry(name).or_default();
                        entry.0 += 1;
                        entry.1 += u64::from(ok);
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(4)) => {}
            _ = tokio::signal::ctrl_c() => { println!("\ninterrupted"); break; }
        }
        match mcp_coordinator::api_client::get_json(&base, "/v1/registrations", TOKEN).await {
            Ok(view) => {
                println!(
                    "\n--- after {:>2} s (`mcp-coordinator status`) ---",
                    started.elapsed().as_secs()
                );
                print!(
                    "{}",
                    mcp_coordinator::api_client::status_table(
                        &view,
                        jiff::Timestamp::now().as_millisecond()
                    )
                );
                let s = served
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let line: Vec<String> = s
                    .iter()
                    .map(|(name, (n, ok))| format!("{name}: {n} calls, {ok} ok"))
                    .collect();
                println!(
                    "calls through the gateway so far: {}",
                    if line.is_empty() {
                        "none yet".into()
                    } else {
                        line.join("; ")
                    }
                );
            }
            Err(e) => println!("status unavailable: {e}"),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    running.store(false, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let _ = stop_tx.send(true);
    let _ = coordinator.done.await;
    let _ = std::fs::remove_dir_all(&data_dir);
    println!("demo stopped cleanly");
    Ok(())
}

/// 20 calls of `extract_text` by the official MCP Python SDK client, one at a time: (the MCP that
/// answered, succeeded) for each.
async fn python_calls(gateway: &str) -> Vec<(String, bool)> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/gateway_client.py");
    let Ok(out) = tokio::process::Command::new("python3")
        .arg(script)
        .args([gateway, CALLER_TOKEN, "20", "auto", "extract_text", "1"])
        .kill_on_drop(true)
        .output()
        .await
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|call| {
            let (name, _) = call["text"].as_str()?.split_once(':')?;
            Some((name.to_string(), call["is_error"] != true))
        })
        .collect()
}

/// Calls `extract_text` through the gateway (MCP 2026-07-28: no session, the version on every
/// request): (the MCP that answered, succeeded).
async fn call_tool(http: &reqwest::Client, gateway: &str) -> Option<(String, bool)> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "extract_text",
            "arguments": {"image_url": "scan.png"},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    });
    let answer: serde_json::Value = http
        .post(gateway)
        .bearer_auth(CALLER_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "extract_text")
        .json(&body)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let result = answer.get("result")?;
    let text = result["content"][0]["text"].as_str()?;
    let (name, _) = text.split_once(':')?;
    Some((name.to_string(), result["isError"] != true))
}
