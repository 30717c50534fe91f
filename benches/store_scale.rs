//! The interaction log at volume: how the reads the controller and dashboards make grow with the
//! history behind them, on a real ClickHouse (started as the tests start it), timed through the
//! ingest API (the release binary, `mcp-coordinator ingest`, on loopback).
//!
//! 20 MCPs with 1,000 interactions each in the last 10 minutes; then old events, 1 hour to 30 days
//! old (so today's partition holds old events too), generated inside ClickHouse
//! (`INSERT … SELECT … FROM system.numbers`): first a tenth of `MCP_BENCH_HISTORY`, then the rest
//! (default 10,000,000 events in all). Each read is timed (median of 5). At the first size the
//! store is also read over all history (what every read did before windowed reads); at the last,
//! each read's peak memory on the server comes from `system.query_log`. Run with `make bench`.

use test_support::clickhouse as clickhouse_support;

use std::time::{Duration, Instant};

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::{ClickHouseStore, DEFAULT_MAX_INTERACTION_MS};
use mcp_coordinator::store::{
    Breakdown, EventSink, HistoryQuery, InteractionReads, TimeRange, Upkeep,
};

const MCPS: usize = 20;
const RECENT_PER_MCP: usize = 1_000;
const HOUR: i64 = 3_600_000;
/// A slack that opens every window to all history: reads as they were before windowing.
const UNBOUNDED_SLACK: i64 = i64::MAX;

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let history: u64 = std::env::var("MCP_BENCH_HISTORY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let first_step = history / 10;
    let server = clickhouse_support::ClickHouseServer::start("store-scale");
    let mut config = server.config();
    config.max_interaction_ms = DEFAULT_MAX_INTERACTION_MS;
    let windowed = ClickHouseStore::connect(&config).await.expect("ClickHouse");
    config.max_interaction_ms = UNBOUNDED_SLACK;
    config.read_rollups = false;
    let whole = ClickHouseStore::connect(&config).await.expect("ClickHouse");

    let now = now_ms();
    let mut events = Vec::with_capacity(MCPS * RECENT_PER_MCP * 2);
    for m in 0..MCPS {
        for i in 0..RECENT_PER_MCP {
            let at = now - 600_000 + (i as i64 * 600);
            let id = format!("int_recent_{m}_{i}");
            let mcp = format!("mcp_{m}");
            events.push(InteractionEvent::new(
                id.clone(),
                mcp.clone(),
                EventKind::Start,
                at,
                Fields {
                    timestamp_ms: Some(at),
                    request_type: Some("ocr".into()),
                    ..Default::default()
                },
            ));
            events.push(InteractionEvent::new(
                id,
                mcp,
                EventKind::Complete,
                at + 500,
                Fields {
                    success: Some(i % 10 != 0),
                    processing_time: Some(0.1 + (i % 50) as f64 / 100.0),
                    ..Default::default()
                },
            ));
        }
    }
    for chunk in events.chunks(10_000) {
        windowed.insert(chunk).await.expect("insert recent events");
    }

    roll_from_scratch(&server, &config.database, &windowed).await;
    let api = Api::start(&config).await;
    let empty = measure(&api, &server, None, now).await;
    let generate_first = generate_history(&server, &config.database, now, 0, first_step).await;
    roll_from_scratch(&server, &config.database, &windowed).await;
    let first = measure(&api, &server, Some(&whole), now).await;
    let rest = history - first_step;
    let generate_rest = generate_history(&server, &config.database, now, first_step, rest).await;
    // History generated inside ClickHouse bypasses the store, so roll it all again: the backfill
    // a first start after an upgrade does.
    let (rolled_in, rollup_rows) = roll_from_scratch(&server, &config.database, &windowed).await;
    let full = measure(&api, &server, None, now).await;
    let memory = peak_memory(&server, &full).await;

    println!();
    println!(
        "interaction log reads through the ingest API (ClickHouse 18.16, {MCPS} MCPs, {} recent events; then events 1 h–30 days old generated in the server: {first_step} in {:.1} s, {} more in {:.1} s; median of 5)",
        MCPS * RECENT_PER_MCP * 2,
        generate_first.as_secs_f64(),
        history - first_step,
        generate_rest.as_secs_f64()
    );
    println!(
        "rollups: all {history} events rolled (a backfill of 30 days) in {:.1} s into {rollup_rows} rows; windows over an hour read them",
        rolled_in.as_secs_f64()
    );
    println!(
        "| read | no history | {} events | {} events | growth | server memory at {} (query_log peak) | {} events, store reading all (before) |",
        first_step, history, history, first_step
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (((name, at_empty, _, _), ((_, at_first, before, _), (_, at_full, _, _))), memory) in
        empty.iter().zip(first.iter().zip(&full)).zip(&memory)
    {
        let before = match before {
            Some(before) => format!("{:.1} ms", ms(*before)),
            None => "—".to_string(),
        };
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× | {memory} | {before} |",
            ms(*at_empty),
            ms(*at_first),
            ms(*at_full),
            ms(*at_full) / ms(*at_empty).max(0.001),
        );
    }
}

/// The release binary's ingest server over the bench's ClickHouse database, with every query
/// logged (`system.query_log`), stopped when dropped.
struct Api {
    base: String,
    token: String,
    child: std::process::Child,
    dir: std::path::PathBuf,
    http: reqwest::Client,
}

impl Api {
    async fn start(config: &mcp_coordinator::store::clickhouse::ClickHouseConfig) -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-store-scale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let token = "bench-admin-token-0123456789".to_string();
        std::fs::write(dir.join("admins.yaml"), format!("bench: {token}\n")).expect("token file");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-coordinator"))
            .arg("ingest")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!(
                "--admin-tokens-file={}",
                dir.join("admins.yaml").display()
            ))
            .arg(format!("--clickhouse-url={}", config.url))
            .arg(format!("--clickhouse-database={}", config.database))
            .arg("--clickhouse-setting=log_queries=1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the ingest server starts");
        let api = Self {
            base: format!("http://127.0.0.1:{port}"),
            token,
            child,
            dir,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = api.http.get(format!("{}/readyz", api.base)).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return api;
            }
            assert!(
                Instant::now() < deadline,
                "the ingest server did not get ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the ingest server answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {body}");
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The largest `memory_usage` (and rows read) of the queries each read made, found by the
/// seconds its runs took.
async fn peak_memory(server: &clickhouse_support::ClickHouseServer, rows: &[Row]) -> Vec<String> {
    // The query log is written every few seconds; ask for it now where the server can.
    if server.try_sql("SYSTEM FLUSH LOGS").await.is_err() {
        tokio::time::sleep(Duration::from_secs(8)).await;
    }
    let mut out = Vec::new();
    for (_, _, _, (from, to)) in rows {
        let answer = server
            .sql(&format!(
                "SELECT max(memory_usage), max(read_rows) FROM system.query_log \
                 WHERE toString(type) IN ('2', 'QueryFinish') AND event_time >= toDateTime({from}) AND event_time <= toDateTime({to}) \
                 AND query NOT LIKE 'INSERT%' AND query NOT LIKE '%system.%'"
            ))
            .await;
        let mut fields = answer.split_whitespace();
        let bytes: f64 = fields.next().and_then(|b| b.parse().ok()).unwrap_or(0.0);
        let rows_read: u64 = fields.next().and_then(|r| r.parse().ok()).unwrap_or(0);
        out.push(format!(
            "{:.1} MiB ({rows_read} rows read)",
            bytes / (1024.0 * 1024.0)
        ));
    }
    out
}

/// The server's clock, in seconds.
async fn server_now(server: &clickhouse_support::ClickHouseServer) -> u32 {
    server
        .sql("SELECT toUInt32(now())")
        .await
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Forgets the rollups and rolls everything again; returns how long that took and the rows made.
async fn roll_from_scratch(
    server: &clickhouse_support::ClickHouseServer,
    database: &str,
    store: &ClickHouseStore,
) -> (Duration, u64) {
    for table in ["interaction_rollups", "rollup_progress"] {
        server
            .sql(&format!("TRUNCATE TABLE {database}.{table}"))
            .await;
    }
    let started = Instant::now();
    store.maintain().await.expect("rolls up");
    let took = started.elapsed();
    let rows = server
        .sql(&format!(
            "SELECT count() FROM {database}.interaction_rollups"
        ))
        .await;
    (took, rows.trim().parse().unwrap_or(0))
}

/// Adds `count` old events, numbered from `offset`, spread over 1 hour to 30 days before `now`.
async fn generate_history(
    server: &clickhouse_support::ClickHouseServer,
    database: &str,
    now: i64,
    offset: u64,
    count: u64,
) -> Duration {
    let generate = format!(
        "INSERT INTO {database}.interaction_events (event_id, mcp_id, interaction_id, kind, received_ms, event_date, timestamp_ms, success, processing_time) \
         SELECT concat('old_', toString(n)), concat('mcp_', toString(n % {MCPS})), concat('int_old_', toString(intDiv(n, 2))), \
         if(n % 2 = 0, 'start', 'complete'), r, toDate(toDateTime(intDiv(r, 1000))), r, 1, 0.5 \
         FROM (SELECT number + {offset} AS n, {now} - {an_hour} - (n * 7919) % {span} AS r FROM system.numbers LIMIT {count})",
        an_hour = HOUR,
        span = 30 * 24 * HOUR - HOUR,
    );
    let started = Instant::now();
    server.sql(&generate).await;
    started.elapsed()
}

/// A read's median time through the API, its time reading all history from the store (where
/// asked), and the server seconds its API runs took.
type Row = (&'static str, Duration, Option<Duration>, (u32, u32));

async fn measure(
    api: &Api,
    server: &clickhouse_support::ClickHouseServer,
    whole: Option<&ClickHouseStore>,
    now: i64,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, path, read) in [
        (
            "metrics, all MCPs, 15 m (controller poll)",
            "/v1/metrics?range=15m",
            Read::Metrics(None, HOUR / 4),
        ),
        (
            "metrics, one MCP, 15 m",
            "/v1/mcps/mcp_3/metrics?range=15m",
            Read::Metrics(Some("mcp_3"), HOUR / 4),
        ),
        (
            "metrics, one MCP, 24 h",
            "/v1/mcps/mcp_3/metrics?range=24h",
            Read::Metrics(Some("mcp_3"), 24 * HOUR),
        ),
        (
            "metrics, all MCPs, 24 h",
            "/v1/metrics?range=24h",
            Read::Metrics(None, 24 * HOUR),
        ),
        (
            "metrics, one MCP, 7 d",
            "/v1/mcps/mcp_3/metrics?range=7d",
            Read::Metrics(Some("mcp_3"), 7 * 24 * HOUR),
        ),
        (
            "metrics, all MCPs, 7 d",
            "/v1/metrics?range=7d",
            Read::Metrics(None, 7 * 24 * HOUR),
        ),
        (
            "history, one MCP, limit=100",
            "/v1/mcps/mcp_3/interactions?limit=100",
            Read::History,
        ),
        (
            "series, one MCP, 24 h in 5 m steps",
            "/v1/mcps/mcp_3/metrics/series?range=24h&step=5m",
            Read::Series,
        ),
    ] {
        // Each read's queries in seconds of their own, for the query log.
        let from = server_now(server).await + 1;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let mut samples = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            api.get(path).await;
            samples.push(started.elapsed());
        }
        samples.sort();
        let to = server_now(server).await;
        // The series endpoint is new: there is no "before" to compare with.
        let before = match (whole, &read) {
            (Some(whole), Read::Metrics(..) | Read::History) => {
                Some(median_of_5(whole, &read, now).await)
            }
            _ => None,
        };
        rows.push((name, samples[2], before, (from, to)));
    }
    rows
}

/// The median of five reads straight from `store`.
async fn median_of_5(store: &ClickHouseStore, read: &Read, now: i64) -> Duration {
    let mut samples = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        match read {
            Read::Metrics(mcp, span) => {
                let range = TimeRange {
                    since_ms: now - span,
                    until_ms: now + 1,
                };
                store.metrics(*mcp, range).await.expect("metrics");
            }
            Read::Series => {
                let range = TimeRange {
                    since_ms: now - 24 * HOUR,
                    until_ms: now + 1,
                };
                let by = Breakdown {
                    group_by: None,
                    step_ms: Some(5 * 60_000),
                };
                store
                    .breakdown(Some("mcp_3"), range, by)
                    .await
                    .expect("series");
            }
            Read::History => {
                let page = HistoryQuery {
                    mcp_id: "mcp_3".into(),
                    limit: 100,
                    since_ms: None,
                    until_ms: None,
                    ..Default::default()
                };
                store.history(&page).await.expect("history");
            }
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[2]
}

enum Read {
    Metrics(Option<&'static str>, i64),
    History,
    Series,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
