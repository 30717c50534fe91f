//! Controller scale run: 1,000, 5,000 and 10,000 MCPRegistrations against the test API server and
//! a real one (kube-apiserver and etcd from `scripts/build-kube-binaries.sh`), with fast fake MCPs. For each: the time until every registration is Ready, the controller's peak RSS
//! and what it asked of the API server. Then, at the largest size, the steady state: the
//! controller's CPU while every MCP is probed every 10 s, and the status writes while nothing
//! changes. Goals (10,000): all Ready in ≤ 30 s, peak RSS ≤ 128 MiB, steady CPU ≤ 0.5 core, no
//! status writes. Run with `make bench`; `MCP_BENCH_REGISTRATIONS=1000,2000` picks the sizes and
//! `MCP_BENCH_SERVERS=fake,real` the API servers (the real one only when its binaries are built).
//!
//! The bench watches registrations (never lists them in a loop), so the test API server's cost
//! stays what the controller causes. `MCP_BENCH_WRAPPER=heaptrack` runs the controller under a
//! profiler.

use std::collections::HashSet;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use kube::api::PostParams;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use mcp_coordinator::crd::{MCPRegistration, Phase};
use warp::Filter;

const SIZES: &str = "1000,5000,10000";
/// How long a run waits for every registration to be Ready: the real API server, sharing the two
/// cores with etcd, the controller and the bench, writes about 300 objects a second.
const READY_DEADLINE: Duration = Duration::from_secs(180);
const READY_DEADLINE_REAL: Duration = Duration::from_secs(600);
const STEADY_SETTLE: Duration = Duration::from_secs(10);
const STEADY_WINDOW: Duration = Duration::from_secs(30);

struct Run {
    server: &'static str,
    count: usize,
    created: Duration,
    all_ready: Option<Duration>,
    ready: usize,
    peak_rss_mib: f64,
    reconciles: String,
    api_writes: u64,
    steady: Option<Steady>,
}

struct Steady {
    cpu_cores: f64,
    probes_per_second: f64,
    status_writes: u64,
    rss_mib: f64,
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; test runners listing or running targets do not: do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = std::env::var("MCP_BENCH_REGISTRATIONS")
        .unwrap_or_else(|_| SIZES.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let servers = std::env::var("MCP_BENCH_SERVERS").unwrap_or_else(|_| "fake,real".into());
    let mut runs = Vec::new();
    for server in servers.split(',').map(str::trim) {
        let real = match server {
            "fake" => false,
            "real"
                if test_support::cluster::bin_dir()
                    .join("kube-apiserver")
                    .exists() =>
            {
                true
            }
            "real" => {
                println!(
                    "the real API server is not built (scripts/build-kube-binaries.sh): skipped"
                );
                continue;
            }
            other => panic!("MCP_BENCH_SERVERS: unknown server {other:?} (fake, real)"),
        };
        for &count in &sizes {
            runs.push(run(count, count == largest, real).await);
        }
    }
    print_table(&runs);
}

/// The API server of a run: the test one, or a real control plane of the run's own.
enum Server {
    Fake(FakeApiServer),
    Real(test_support::cluster::RealCluster),
}

impl Server {
    async fn start(real: bool) -> Self {
        if real {
            let cluster =
                tokio::task::spawn_blocking(test_support::cluster::RealCluster::start_own)
                    .await
                    .expect("a control plane");
            let admin = cluster.admin().await;
            test_support::cluster::install_crd(&admin).await;
            test_support::cluster::namespace(&admin, "mcp-coordinator").await;
            Server::Real(cluster)
        } else {
            let server = FakeApiServer::start().await.expect("fake API server");
            server
                .install_crd(serde_json::to_value(mcp_coordinator::crd::crd()).expect("crd"))
                .expect("install CRD");
            Server::Fake(server)
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Server::Fake(_) => "test",
            Server::Real(_) => "real",
        }
    }

    fn kubeconfig(&self) -> String {
        match self {
            Server::Fake(server) => server.kubeconfig(),
            Server::Real(cluster) => cluster.admin_kubeconfig(),
        }
    }

    async fn client(&self) -> Client {
        match self {
            Server::Fake(server) => {
                Client::try_from(kube::Config::new(server.url().parse().expect("url")))
                    .expect("client")
            }
            Server::Real(cluster) => cluster.admin().await,
        }
    }

    /// Writes (create, update, patch, delete) to `resources` (`"secrets"`,
    /// `"mcpregistrations/status"`), as the server counted them.
    fn writes(&self, resources: &[&str]) -> u64 {
        match self {
            Server::Fake(server) => ["create", "update", "patch", "delete"]
                .iter()
                .map(|verb| {
                    resources
                        .iter()
                        .map(|r| server.store().call_count(verb, r))
                        .sum::<u64>()
                })
                .sum(),
            Server::Real(cluster) => {
                let metrics = cluster.curl("/metrics").unwrap_or_default();
                resources
                    .iter()
                    .map(|r| {
                        let (resource, sub) = r.split_once('/').unwrap_or((r, ""));
                        test_support::cluster::requests(
                            &metrics,
                            &["POST", "PUT", "PATCH", "DELETE", "APPLY"],
                            resource,
                            sub,
                        )
                    })
                    .sum()
            }
        }
    }
}

async fn run(count: usize, measure_steady_state: bool, real: bool) -> Run {
    let server = Server::start(real).await;

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
    let mcp_server = tokio::spawn(warp::serve(health).incoming(listener).run());

    let dir = std::env::temp_dir().join(format!(
        "mcp-coordinator-bench-{}-{count}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig");
    let all_writes = [
        "mcpregistrations",
        "mcpregistrations/status",
        "secrets",
        "configmaps",
    ];
    let writes_before = server.writes(&all_writes);
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    // A profiler can wrap the controller: MCP_BENCH_WRAPPER=heaptrack (RSS then includes it).
    let binary = env!("CARGO_BIN_EXE_mcp-coordinator");
    let mut command = match std::env::var("MCP_BENCH_WRAPPER") {
        Ok(wrapper) if !wrapper.is_empty() => {
            let mut c = tokio::process::Command::new(wrapper);
            c.arg(binary);
            c
        }
        _ => tokio::process::Command::new(binary),
    };
    let mut controller = command
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

    let api: Api<MCPRegistration> = Api::namespaced(server.client().await, "default");
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(0usize);
    let watch = tokio::spawn(count_ready(api.clone(), ready_tx));

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

    let mut peak_rss_kib = 0;
    let deadline = started
        + if real {
            READY_DEADLINE_REAL
        } else {
            READY_DEADLINE
        };
    let mut all_ready = None;
    while Instant::now() < deadline {
        peak_rss_kib = peak_rss_kib.max(proc_status_kib(pid, "VmHWM:"));
        if *ready_rx.borrow() >= count {
            all_ready = Some(started.elapsed());
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), ready_rx.changed()).await;
    }
    let ready = *ready_rx.borrow();
    let api_writes = server.writes(&all_writes) - writes_before;

    let steady = if measure_steady_state && all_ready.is_some() {
        tokio::time::sleep(STEADY_SETTLE).await;
        let cpu_before = cpu_seconds(pid);
        let probes_before = probes.load(Ordering::Relaxed);
        let writes_before = server.writes(&["mcpregistrations/status"]);
        let window = Instant::now();
        tokio::time::sleep(STEADY_WINDOW).await;
        let elapsed = window.elapsed().as_secs_f64();
        Some(Steady {
            cpu_cores: (cpu_seconds(pid) - cpu_before) / elapsed,
            probes_per_second: (probes.load(Ordering::Relaxed) - probes_before) as f64 / elapsed,
            status_writes: server.writes(&["mcpregistrations/status"]) - writes_before,
            rss_mib: proc_status_kib(pid, "VmRSS:") as f64 / 1024.0,
        })
    } else {
        None
    };
    peak_rss_kib = peak_rss_kib.max(proc_status_kib(pid, "VmHWM:"));
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
    let _ = controller.wait().await;
    watch.abort();
    mcp_server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        server: server.name(),
        count,
        created,
        all_ready,
        ready,
        peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        reconciles,
        api_writes,
        steady,
    }
}

/// Keeps `ready` at the number of registrations whose status says Ready.
async fn count_ready(api: Api<MCPRegistration>, ready: tokio::sync::watch::Sender<usize>) {
    let mut names = HashSet::new();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Ok(Some(reg)) = events.try_next().await {
        let is_ready = reg.status.as_ref().is_some_and(|s| s.phase == Phase::Ready);
        let changed = if is_ready {
            names.insert(reg.name_any())
        } else {
            names.remove(&reg.name_any())
        };
        if changed {
            ready.send_replace(names.len());
        }
    }
}

fn print_table(runs: &[Run]) {
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("controller scale run (fast fake MCPs, default 10 s probe interval; API writes as the API server counted them)");
    println!("| API server | registrations | all Ready in | Ready at end | peak RSS | reconciles | API writes | writes per registration | goal (10,000: <= 30 s, <= 128 MiB) |");
    println!("|------------|---------------|--------------|--------------|----------|------------|------------|-------------------------|-------------------------------------|");
    for r in runs {
        let time = r.all_ready.map_or_else(
            || match r.server {
                "real" => format!("> {} s", READY_DEADLINE_REAL.as_secs()),
                _ => format!("> {} s", READY_DEADLINE.as_secs()),
            },
            |t| format!("{:.2} s", t.as_secs_f64()),
        );
        let goal = if r.count >= 10_000 {
            verdict(
                r.all_ready.is_some_and(|t| t <= Duration::from_secs(30))
                    && r.peak_rss_mib <= 128.0,
            )
        } else {
            ""
        };
        println!(
            "| {:>10} | {:>13} | {:>12} | {:>12} | {:>4.1} MiB | {:>10} | {:>10} | {:>23.1} | {:<35} |",
            r.server,
            r.count,
            time,
            r.ready,
            r.peak_rss_mib,
            r.reconciles,
            r.api_writes,
            r.api_writes as f64 / r.count.max(1) as f64,
            goal
        );
    }
    if let Some(first) = runs.first() {
        println!(
            "(creating the registrations took {:.2} s for {}; time until Ready counts from the first create)",
            first.created.as_secs_f64(),
            first.count
        );
    }
    for r in runs {
        if let Some(s) = &r.steady {
            println!();
            println!(
                "steady state, {} API server, {} registrations, {} s window after {} s settling",
                r.server,
                r.count,
                STEADY_WINDOW.as_secs(),
                STEADY_SETTLE.as_secs()
            );
            println!("| metric                  | value        | goal        | result |");
            println!("|-------------------------|--------------|-------------|--------|");
            println!(
                "| controller CPU          | {:>7.3} core | <= 0.5 core | {:<6} |",
                s.cpu_cores,
                verdict(s.cpu_cores <= 0.5)
            );
            println!(
                "| probes served           | {:>9.0} /s |             |        |",
                s.probes_per_second
            );
            println!(
                "| status writes           | {:>12} | 0           | {:<6} |",
                s.status_writes,
                verdict(s.status_writes == 0)
            );
            println!(
                "| controller RSS          | {:>8.1} MiB |             |        |",
                s.rss_mib
            );
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User plus system CPU time of the process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the state.
    (ticks(11) + ticks(12)) / ticks_per_second
}
