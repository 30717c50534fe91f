//! Per-minute rollups on a real ClickHouse 18.16: long windows read them and answer as the events
//! do (counts, rates and means exact, percentiles within 1 %), and hours rolled again after late
//! events count nothing twice.

use test_support::clickhouse as clickhouse_support;

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::ClickHouseStore;
use mcp_coordinator::store::metrics::{self, McpMetrics};
use mcp_coordinator::store::sketch::RELATIVE_ERROR;
use mcp_coordinator::store::{EventSink, HistoryQuery, InteractionReads, TimeRange, Upkeep};

const MINUTE: i64 = 60_000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Interaction `i` of `mcp`, filed at `at`: a start, and (mostly) a completion or failure.
fn interaction(i: u64, mcp: &str, at: i64) -> Vec<InteractionEvent> {
    let id = format!("{mcp}_{i}");
    let start = InteractionEvent::new(
        id.clone(),
        mcp.into(),
        EventKind::Start,
        at,
        Fields {
            timestamp_ms: Some(at),
            request_type: Some(["ocr", "translate"][(i % 2) as usize].into()),
            ..Default::default()
        },
    );
    let mut fields = Fields {
        processing_time: Some(0.05 + (i % 37) as f64 * 0.11),
        quality_score: (!i.is_multiple_of(3)).then_some((i % 10) as f64 / 10.0),
        ..Default::default()
    };
    match i % 7 {
        0 => return vec![start],
        1 => fields.error_code = Some("TIMEOUT".into()),
        2 => fields.success = Some(false),
        _ => fields.success = Some(true),
    }
    let end = InteractionEvent::new(id, mcp.into(), EventKind::Complete, at + 2_000, fields);
    vec![start, end]
}

async fn exact(store: &ClickHouseStore, mcp: &str, range: TimeRange) -> McpMetrics {
    let rows = store
        .history(&HistoryQuery {
            mcp_id: mcp.into(),
            limit: 100_000,
            since_ms: Some(range.since_ms),
            until_ms: Some(range.until_ms),
            ..Default::default()
        })
        .await
        .unwrap();
    metrics::compute(mcp, &rows, range)
}

fn assert_agrees(got: &McpMetrics, want: &McpMetrics) {
    assert_eq!(
        (got.count, got.completed, got.failed, got.in_progress),
        (want.count, want.completed, want.failed, want.in_progress),
        "{}",
        got.mcp_id
    );
    assert_eq!(got.errors_by_code, want.errors_by_code);
    assert_eq!(got.success_rate, want.success_rate);
    for (g, w) in [
        (got.p50_processing_time, want.p50_processing_time),
        (got.p95_processing_time, want.p95_processing_time),
        (got.p99_processing_time, want.p99_processing_time),
    ] {
        let (g, w) = (g.unwrap(), w.unwrap());
        assert!(((g - w) / w).abs() <= RELATIVE_ERROR + 1e-9, "{g} vs {w}");
    }
    let (g, w) = (
        got.mean_quality_score.unwrap(),
        want.mean_quality_score.unwrap(),
    );
    assert!((g - w).abs() < 1e-9, "{g} vs {w}");
}

async fn rollup_rows(server: &clickhouse_support::ClickHouseServer, db: &str) -> u64 {
    let text = server
        .sql(&format!("SELECT count() FROM {db}.interaction_rollups"))
        .await;
    text.trim().parse().unwrap()
}

/// The shared server, a database of the test's own, and a store over it.
async fn fresh_store() -> (
    &'static clickhouse_support::ClickHouseServer,
    mcp_coordinator::store::clickhouse::ClickHouseConfig,
    ClickHouseStore,
) {
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let config = server.config();
    let store = ClickHouseStore::connect(&config).await.unwrap();
    (server, config, store)
}

#[tokio::test]
async fn long_windows_read_rollups_and_answer_as_the_events_do() {
    let (server, config, store) = fresh_store().await;
    let now = now_ms();
    // Three hours of interactions for two MCPs, the newest a minute old (not yet rollable).
    let mut events = Vec::new();
    for i in 0..1_800u64 {
        let at = now - MINUTE - (i as i64) * 6_000;
        events.extend(interaction(i, ["a", "b"][(i % 2) as usize], at));
    }
    store.insert(&events).await.unwrap();
    store.maintain().await.unwrap();
    assert!(
        rollup_rows(server, &config.database).await > 0,
        "minutes older than the slack are rolled"
    );

    let range = TimeRange {
        since_ms: now - 4 * 3_600_000 + 12_345,
        until_ms: now + 1,
    };
    let all = store.metrics(None, range).await.unwrap();
    assert_eq!(all.len(), 2);
    for got in &all {
        assert_agrees(got, &exact(&store, &got.mcp_id, range).await);
    }
    let one = store.metrics(Some("b"), range).await.unwrap();
    assert_agrees(&one[0], &exact(&store, "b", range).await);
    let nobody = store.metrics(Some("nobody"), range).await.unwrap();
    assert_eq!((nobody[0].count, nobody[0].success_rate), (0, None));

    // Rolling again changes nothing.
    store.maintain().await.unwrap();
    let again = store.metrics(Some("a"), range).await.unwrap();
    assert_eq!(again[0].count, all[0].count);
}

#[tokio::test]
async fn events_that_reach_the_store_late_are_rolled_in_without_counting_twice() {
    let (server, config, store) = fresh_store().await;
    let now = now_ms();
    let two_hours_ago = now - 2 * 3_600_000;
    // Started two hours ago; the completion and another interaction sit in a spool meanwhile.
    let started = InteractionEvent::new(
        "late_1".into(),
        "c".into(),
        EventKind::Start,
        two_hours_ago,
        Fields {
            timestamp_ms: Some(two_hours_ago),
            ..Default::default()
        },
    );
    let mut events = vec![started];
    for i in 0..50 {
        events.extend(interaction(
            i * 7 + 3,
            "c",
            two_hours_ago + i as i64 * 1_000,
        ));
    }
    store.insert(&events).await.unwrap();
    store.maintain().await.unwrap();
    assert!(rollup_rows(server, &config.database).await > 0);
    let range = TimeRange {
        since_ms: now - 3 * 3_600_000,
        until_ms: now,
    };
    let before = &store.metrics(Some("c"), range).await.unwrap()[0];
    assert_eq!(
        (before.count, before.in_progress, before.failed),
        (51, 1, 0)
    );

    // The failure of late_1 and one more interaction arrive now, received two hours ago.
    let failure = InteractionEvent::new(
        "late_1".into(),
        "c".into(),
        EventKind::Error,
        two_hours_ago + 5_000,
        Fields {
            success: Some(false),
            error_code: Some("OOM".into()),
            processing_time: Some(5.0),
            ..Default::default()
        },
    );
    let mut late = vec![failure];
    late.extend(interaction(999 * 7 + 3, "c", two_hours_ago + 30_000));
    store.insert(&late).await.unwrap();
    // The upkeep loop (every minute in the ingest server) rolls the marked hour again.
    store.maintain().await.unwrap();

    let after = &store.metrics(Some("c"), range).await.unwrap()[0];
    assert_agrees(after, &exact(&store, "c", range).await);
    assert_eq!(
        (after.count, after.in_progress, after.failed),
        (52, 0, 1),
        "the interaction moved from in progress to failed, counted once"
    );
    assert_eq!(after.errors_by_code.get("OOM"), Some(&1));
}
