//! Routing simulation: the smart router against round-robin, random and
//! least-outstanding-requests on the same seeded traffic, then the cost of one decision.
//!
//! Five MCPs with different latency distributions and failure rates serve one capability; each
//! has 8 workers and a queue. Half-way, `b` (fast until then) degrades to 10× its latency and 30%
//! failures, and `e` (failing 40% until then) recovers. The smart router sees only what MCPs
//! would report to the ingest server: starts, and ends with processing time and success.
//! Run with `make bench`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_coordinator::routing::router::{Outcome, Router, RouterConfig};
use mcp_coordinator::routing::table::{Candidate, RoutingTable};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal};

const SEED: u64 = 20261124;
const DURATION: f64 = 120.0;
const CHANGE_AT: f64 = 60.0;
const ARRIVALS_PER_SECOND: f64 = 250.0;
const WORKERS: usize = 8;
const MAX_CONCURRENT: u32 = 32;

#[derive(Clone, Copy)]
struct Behaviour {
    median_s: f64,
    failure_rate: f64,
}

struct McpModel {
    id: &'static str,
    before: Behaviour,
    after: Behaviour,
}

fn mcps() -> Vec<McpModel> {
    let b = |median_ms: f64, failure_rate: f64| Behaviour {
        median_s: median_ms / 1000.0,
        failure_rate,
    };
    vec![
        McpModel {
            id: "a",
            before: b(40.0, 0.005),
            after: b(40.0, 0.005),
        },
        McpModel {
            id: "b",
            before: b(45.0, 0.01),
            after: b(450.0, 0.30),
        },
        McpModel {
            id: "c",
            before: b(80.0, 0.01),
            after: b(80.0, 0.01),
        },
        McpModel {
            id: "d",
            before: b(120.0, 0.02),
            after: b(120.0, 0.02),
        },
        McpModel {
            id: "e",
            before: b(50.0, 0.40),
            after: b(50.0, 0.01),
        },
    ]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Policy {
    RoundRobin,
    Random,
    LeastOutstanding,
    Smart { choices: usize },
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round-robin",
            Policy::Random => "random",
            Policy::LeastOutstanding => "least-outstanding",
            Policy::Smart { choices: 2 } => "smart, 2 choices (P2C)",
            Policy::Smart { .. } => "smart (default: 3 choices)",
        }
    }
}

/// One MCP in the simulation: workers, a FIFO queue, outstanding requests.
#[derive(Default)]
struct Server {
    busy: usize,
    queue: VecDeque<usize>,
    outstanding: u32,
}

struct Request {
    arrived: f64,
    mcp: usize,
}

struct Results {
    latencies: Vec<f64>,
    successes: usize,
    total: usize,
    /// Requests sent to each MCP, per simulated second.
    per_second: Vec<Vec<usize>>,
}

/// Events ordered by time (then sequence, for determinism).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at_ns: u64,
    seq: u64,
    request: usize,
}

fn simulate(policy: Policy) -> Results {
    let models = mcps();
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut policy_rng = StdRng::seed_from_u64(SEED + 1);
    let arrivals = Exp::new(ARRIVALS_PER_SECOND).expect("rate");
    let mut config = RouterConfig::default();
    if let Policy::Smart { choices } = policy {
        config.choices = choices;
    }
    let router = Router::new(config);
    router.install(&RoutingTable {
        capabilities: [(
            "ocr".to_string(),
            models
                .iter()
                .map(|m| Candidate {
                    mcp_id: m.id.into(),
                    name: m.id.into(),
                    namespace: "sim".into(),
                    endpoint: format!("http://{}", m.id),
                    process_path: "/process".into(),
                    priority: 0,
                    weight: 100,
                    max_concurrent_requests: MAX_CONCURRENT,
                })
                .collect(),
        )]
        .into(),
    });
    let mut servers: Vec<Server> = models.iter().map(|_| Server::default()).collect();
    let mut requests: Vec<Request> = Vec::new();
    let mut outcomes: Vec<bool> = Vec::new();
    let mut completions: BinaryHeap<Reverse<Event>> = BinaryHeap::new();
    let mut results = Results {
        latencies: Vec::new(),
        successes: 0,
        total: 0,
        per_second: vec![vec![0; models.len()]; DURATION as usize + 1],
    };
    let mut next_rr = 0usize;
    let mut seq = 0u64;
    let mut now;
    let mut next_arrival = arrivals.sample(&mut rng);
    let to_ns = |t: f64| (t * 1e9) as u64;

    // Starts service of `request` on its MCP: draws its service time and outcome now.
    let start_service = |request: usize,
                         at: f64,
                         requests: &Vec<Request>,
                         outcomes: &mut Vec<bool>,
                         completions: &mut BinaryHeap<Reverse<Event>>,
                         rng: &mut StdRng,
                         seq: &mut u64| {
        let model = &models[requests[request].mcp];
        let behaviour = if at < CHANGE_AT {
            model.before
        } else {
            model.after
        };
        let service = LogNormal::new(behaviour.median_s.ln(), 0.5)
            .expect("lognormal")
            .sample(rng);
        outcomes[request] = rng.random::<f64>() >= behaviour.failure_rate;
        *seq += 1;
        completions.push(Reverse(Event {
            at_ns: to_ns(at + service),
            seq: *seq,
            request,
        }));
    };

    loop {
        let next_completion = completions.peek().map(|Reverse(e)| e.at_ns as f64 / 1e9);
        let arrival_first = match next_completion {
            Some(c) => next_arrival <= c,
            None => true,
        };
        if arrival_first {
            if next_arrival >= DURATION {
                if completions.is_empty() {
                    break;
                }
                next_arrival = f64::INFINITY;
                continue;
            }
            now = next_arrival;
            next_arrival = now + arrivals.sample(&mut rng);
            let id = requests.len();
            let mcp = match policy {
                Policy::RoundRobin => {
                    next_rr = (next_rr + 1) % servers.len();
                    next_rr
                }
                Policy::Random => policy_rng.random_range(0..servers.len()),
                Policy::LeastOutstanding => {
                    let min = servers.iter().map(|s| s.outstanding).min().unwrap_or(0);
                    let tied: Vec<usize> = (0..servers.len())
                        .filter(|i| servers[*i].outstanding == min)
                        .collect();
                    tied[policy_rng.random_range(0..tied.len())]
                }
                Policy::Smart { .. } => {
                    match router.route_with("ocr", None, now, &mut policy_rng) {
                        Ok(route) => models
                            .iter()
                            .position(|m| m.id == route.mcp_id)
                            .expect("routed to a simulated MCP"),
                        // Every MCP at its limit: the request waits on the least loaded one.
                        Err(_) => (0..servers.len())
                            .min_by_key(|i| servers[*i].outstanding)
                            .unwrap_or(0),
                    }
                }
            };
            requests.push(Request { arrived: now, mcp });
            outcomes.push(false);
            results.per_second[now as usize][mcp] += 1;
            router.started(models[mcp].id, &id.to_string(), None, now);
            let server = &mut servers[mcp];
            server.outstanding += 1;
            if server.busy < WORKERS {
                server.busy += 1;
                start_service(
                    id,
                    now,
                    &requests,
                    &mut outcomes,
                    &mut completions,
                    &mut rng,
                    &mut seq,
                );
            } else {
                server.queue.push_back(id);
            }
        } else {
            let Some(Reverse(event)) = completions.pop() else {
                break;
            };
            now = event.at_ns as f64 / 1e9;
            let request = &requests[event.request];
            let mcp = request.mcp;
            let latency = now - request.arrived;
            let success = outcomes[event.request];
            results.latencies.push(latency);
            results.total += 1;
            results.successes += usize::from(success);
            router.finished(
                models[mcp].id,
                &event.request.to_string(),
                None,
                Outcome {
                    success,
                    processing_time: Some(latency),
                },
                now,
            );
            let server = &mut servers[mcp];
            server.outstanding -= 1;
            match server.queue.pop_front() {
                Some(next) => start_service(
                    next,
                    now,
                    &requests,
                    &mut outcomes,
                    &mut completions,
                    &mut rng,
                    &mut seq,
                ),
                None => server.busy -= 1,
            }
        }
    }
    results
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seconds after the change until the first one-second window in which `mcp`'s share of the
/// requests satisfies `holds`; `None` if none does.
fn first_window(r: &Results, mcp: usize, holds: impl Fn(f64) -> bool) -> Option<f64> {
    (CHANGE_AT as usize..DURATION as usize).find_map(|second| {
        let counts = &r.per_second[second];
        let total: usize = counts.iter().sum();
        (total > 0 && holds(counts[mcp] as f64 / total as f64))
            .then(|| (second + 1) as f64 - CHANGE_AT)
    })
}

fn share_after(r: &Results, mcp: usize, from: f64) -> f64 {
    let (mut sent, mut total) = (0usize, 0usize);
    for counts in &r.per_second[from as usize..DURATION as usize] {
        sent += counts[mcp];
        total += counts.iter().sum::<usize>();
    }
    sent as f64 / total.max(1) as f64
}

/// Five equal candidates for the decision-cost measurements.
fn bench_table() -> RoutingTable {
    RoutingTable {
        capabilities: [(
            "ocr".to_string(),
            (0..5)
                .map(|i| Candidate {
                    mcp_id: format!("m{i}"),
                    name: format!("m{i}"),
                    namespace: "bench".into(),
                    endpoint: format!("http://m{i}"),
                    process_path: "/process".into(),
                    priority: 0,
                    weight: 100,
                    max_concurrent_requests: 1000,
                })
                .collect(),
        )]
        .into(),
    }
}

fn decision_cost() {
    let router = Arc::new(Router::default());
    router.install(&bench_table());
    for i in 0..5 {
        for n in 0..50 {
            router.finished(
                &format!("m{i}"),
                &n.to_string(),
                None,
                Outcome {
                    success: n % 10 != 0,
                    processing_time: Some(0.05 * (i + 1) as f64),
                },
                0.0,
            );
        }
    }
    let n = 1_000_000;
    let started = Instant::now();
    for _ in 0..n {
        std::hint::black_box(router.route("ocr", None, 1.0).expect("routes"));
    }
    let one_thread = started.elapsed();
    let threads = 2;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let router = router.clone();
            scope.spawn(move || {
                for _ in 0..n {
                    std::hint::black_box(router.route("ocr", None, 1.0).expect("routes"));
                }
            });
        }
    });
    let both = started.elapsed();
    println!();
    println!("route decision cost (in process, 5 candidates)");
    println!("| threads | decisions | ns per decision | decisions/s |");
    println!("|--------:|----------:|----------------:|------------:|");
    println!(
        "| {:>7} | {n:>9} | {:>15.0} | {:>11.0} |",
        1,
        one_thread.as_nanos() as f64 / n as f64,
        n as f64 / one_thread.as_secs_f64()
    );
    println!(
        "| {:>7} | {:>9} | {:>15.0} | {:>11.0} |",
        threads,
        n * threads,
        both.as_nanos() as f64 / n as f64,
        (n * threads) as f64 / both.as_secs_f64()
    );
}

async fn http_decisions() {
    use mcp_coordinator::ingest::{self, IngestConfig};
    use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("mcp-route-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Arc::new(
        mcp_coordinator::store::sqlite::SqliteStore::open(&dir.join("db.sqlite")).expect("store"),
    );
    let token = "bench-reader-token-0123456789";
    let config =
        IngestConfig::new("127.0.0.1:0".parse().expect("addr"), dir.join("spool")).expect("config");
    config.router.install(&bench_table());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = ingest::start(
        config,
        store,
        Arc::new(KeyRing::default()),
        Arc::new(ReaderTokens::from_tokens([token])),
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .expect("ingest starts");
    let addr = running.addr;
    println!();
    println!("route decisions over HTTP (GET /v1/route, keep-alive HTTP/1.1, client in the same process)");
    println!("| connections | decisions | decisions/s | p50 / p99 ms |");
    println!("|------------:|----------:|------------:|-------------:|");
    for connections in [16usize, 64] {
        let deadline = Instant::now() + Duration::from_secs(4);
        let tasks: Vec<_> = (0..connections)
            .map(|_| {
                tokio::spawn(async move {
                    let mut connection = Connection::open(addr).await;
                    let request = format!("GET /v1/route?capability=ocr HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n");
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let t = Instant::now();
                        let status = connection.exchange(request.as_bytes()).await;
                        assert_eq!(status, 200);
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    latencies
                })
            })
            .collect();
        let started = Instant::now();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.expect("client task"));
        }
        let secs = started.elapsed().as_secs_f64();
        all.sort_by(f64::total_cmp);
        println!(
            "| {connections:>11} | {:>9} | {:>11.0} | {:>5.2} / {:>5.2} |",
            all.len(),
            all.len() as f64 / secs,
            percentile(&all, 50.0),
            percentile(&all, 99.0)
        );
    }
    let _ = stop.send(());
    let _ = running.done.await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    println!();
    println!(
        "routing simulation: {} MCPs, {ARRIVALS_PER_SECOND}/s for {DURATION} s, seed {SEED}; at {CHANGE_AT} s `b` degrades (450 ms, 30% failures) and `e` recovers",
        mcps().len()
    );
    println!("| policy | requests | success | p50 ms | p95 ms | p99 ms | traffic off `b` after | `b` share after | `e` back after |");
    println!("|--------|---------:|--------:|-------:|-------:|-------:|----------------------:|----------------:|---------------:|");
    let mut rows = Vec::new();
    let default_choices = RouterConfig::default().choices;
    for policy in [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastOutstanding,
        Policy::Smart { choices: 2 },
        Policy::Smart {
            choices: default_choices,
        },
    ] {
        let mut r = simulate(policy);
        r.latencies.sort_by(f64::total_cmp);
        let success = r.successes as f64 / r.total as f64;
        let p95 = percentile(&r.latencies, 95.0);
        let off = first_window(&r, 1, |share| share < 0.05);
        let back = first_window(&r, 4, |share| share >= 0.15);
        let fmt = |s: Option<f64>| s.map_or("never".to_string(), |s| format!("{s:.0} s"));
        println!(
            "| {} | {} | {:.2}% | {:.0} | {:.0} | {:.0} | {} | {:.1}% | {} |",
            policy.name(),
            r.total,
            success * 100.0,
            percentile(&r.latencies, 50.0) * 1000.0,
            p95 * 1000.0,
            percentile(&r.latencies, 99.0) * 1000.0,
            fmt(off),
            share_after(&r, 1, CHANGE_AT + 10.0) * 100.0,
            fmt(back),
        );
        rows.push((policy, success, p95, off));
    }
    let baselines = rows.iter().filter(|r| !matches!(r.0, Policy::Smart { .. }));
    let best_p95 = baselines.clone().map(|r| r.2).fold(f64::INFINITY, f64::min);
    let best_success = baselines.map(|r| r.1).fold(0.0, f64::max);
    let smart = Policy::Smart {
        choices: default_choices,
    };
    if let Some(smart) = rows.iter().rev().find(|r| r.0 == smart) {
        println!();
        println!("| goal | target | smart | met |");
        println!("|------|--------|-------|-----|");
        let improvement = 1.0 - smart.2 / best_p95;
        println!(
            "| p95 below the best baseline | ≥ 20% | {:.0}% | {} |",
            improvement * 100.0,
            yes(improvement >= 0.2)
        );
        println!(
            "| success rate | ≥ {:.2}% | {:.2}% | {} |",
            best_success * 100.0,
            smart.1 * 100.0,
            yes(smart.1 >= best_success)
        );
        println!(
            "| traffic off a degraded MCP | ≤ 10 s | {} | {} |",
            smart.3.map_or("never".into(), |s| format!("{s:.0} s")),
            yes(smart.3.is_some_and(|s| s <= 10.0))
        );
    }
    decision_cost();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(http_decisions());
}

/// A bare HTTP/1.1 keep-alive connection: the lightest client, so the server gets the cores.
struct Connection {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(addr: std::net::SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            stream: tokio::io::BufReader::new(stream),
            buffer: Vec::new(),
        }
    }

    /// Sends one request and reads its whole response; returns the status code.
    async fn exchange(&mut self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.stream
            .get_mut()
            .write_all(request)
            .await
            .expect("write");
        let mut status = 0;
        let mut length = 0usize;
        loop {
            self.buffer.clear();
            self.stream
                .read_until(b'\n', &mut self.buffer)
                .await
                .expect("read");
            let line = String::from_utf8_lossy(&self.buffer);
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(rest) = line.strip_prefix("HTTP/1.1 ") {
                status = rest[..3].parse().expect("status");
            } else if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().expect("length");
                }
            }
        }
        self.buffer.resize(length, 0);
        self.stream
            .read_exact(&mut self.buffer)
            .await
            .expect("body");
        status
    }
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "no"
    }
}
