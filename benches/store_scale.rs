//! The interaction log at volume: how the reads the controller and dashboards make grow with the
//! history behind them, on a real ClickHouse (started as the tests start it).
//!
//! 20 MCPs with 1,000 interactions each in the last 10 minutes; then old events, 1 hour to 30 days
//! old (so today's partition holds old events too), generated inside ClickHouse
//! (`INSERT … SELECT … FROM system.numbers`): first a tenth of `MCP_BENCH_HISTORY`, then the rest
//! (default 10,000,000 events in all). Each read is timed (median of 5) as the store reads now
//! (events received within `--max-interaction-seconds` of the window), and, at the first size,
//! also over all history (what every read did before windowed reads). Run with `make bench`.

#[path = "../tests/clickhouse_support/mod.rs"]
mod clickhouse_support;

use std::time::{Duration, Instant};

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::{ClickHouseStore, DEFAULT_MAX_INTERACTION_MS};
use mcp_coordinator::store::{Breakdown, HistoryQuery, InteractionStore, TimeRange};

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
    let empty = measure(&windowed, None, now).await;
    let generate_first = generate_history(&server, &config.database, now, 0, first_step).await;
    roll_from_scratch(&server, &config.database, &windowed).await;
    let first = measure(&windowed, Some(&whole), now).await;
    let rest = history - first_step;
    let generate_rest = generate_history(&server, &config.database, now, first_step, rest).await;
    // History generated inside ClickHouse bypasses the store, so roll it all again: the backfill
    // a first start after an upgrade does.
    let (rolled_in, rollup_rows) = roll_from_scratch(&server, &config.database, &windowed).await;
    let full = measure(&windowed, None, now).await;

    println!();
    println!(
        "interaction log reads (ClickHouse 18.16, {MCPS} MCPs, {} recent events; then events 1 h–30 days old generated in the server: {first_step} in {:.1} s, {} more in {:.1} s; median of 5)",
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
        "| read | no history | {} events | {} events | growth | {} events, all read (before) | growth |",
        first_step, history, first_step
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for ((name, at_empty, _), ((_, at_first, before), (_, at_full, _))) in
        empty.iter().zip(first.iter().zip(&full))
    {
        let before = match before {
            Some(before) => format!(
                "{:.1} ms | {:.1}×",
                ms(*before),
                ms(*before) / ms(*at_empty).max(0.001)
            ),
            None => "— | —".to_string(),
        };
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1}× | {before} |",
            ms(*at_empty),
            ms(*at_first),
            ms(*at_full),
            ms(*at_full) / ms(*at_empty).max(0.001),
        );
    }
}

/// Forgets the rollups and rolls everything again; returns how long that took and the rows made.
async fn roll_from_scratch(
    server: &clickhouse_support::ClickHouseServer,
    database: &str,
    store: &ClickHouseStore,
) -> (Duration, u64) {
    for table in ["interaction_rollups", "rollup_progress"] {
        sql(server, &format!("TRUNCATE TABLE {database}.{table}")).await;
    }
    let started = Instant::now();
    store.maintain().await.expect("rolls up");
    let took = started.elapsed();
    let rows = sql(
        server,
        &format!("SELECT count() FROM {database}.interaction_rollups"),
    )
    .await;
    (took, rows.trim().parse().unwrap_or(0))
}

async fn sql(server: &clickhouse_support::ClickHouseServer, statement: &str) -> String {
    let response = reqwest::Client::new()
        .post(server.url())
        .body(statement.to_string())
        .send()
        .await
        .expect("ClickHouse answers");
    let ok = response.status().is_success();
    let text = response.text().await.unwrap_or_default();
    assert!(ok, "{statement}: {text}");
    text
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
    sql(server, &generate).await;
    started.elapsed()
}

type Row = (&'static str, Duration, Option<Duration>);

async fn measure(
    windowed: &ClickHouseStore,
    whole: Option<&ClickHouseStore>,
    now: i64,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (name, read) in [
        (
            "metrics, all MCPs, 15 m (controller poll)",
            Read::Metrics(None, HOUR / 4),
        ),
        (
            "metrics, one MCP, 15 m",
            Read::Metrics(Some("mcp_3"), HOUR / 4),
        ),
        ("metrics, all MCPs, 24 h", Read::Metrics(None, 24 * HOUR)),
        ("metrics, all MCPs, 7 d", Read::Metrics(None, 7 * 24 * HOUR)),
        ("history, one MCP, limit=100", Read::History),
        ("series, one MCP, 24 h in 5 m steps", Read::Series),
    ] {
        let a = median_of_5(windowed, &read, now).await;
        // The series endpoint is new: there is no "before" to compare with.
        let b = match (whole, &read) {
            (Some(whole), Read::Metrics(..) | Read::History) => {
                Some(median_of_5(whole, &read, now).await)
            }
            _ => None,
        };
        rows.push((name, a, b));
    }
    rows
}

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
