//! An events table written by an earlier release (partitioned by month, sorted by interaction) is
//! moved to the day-partitioned layout when the store connects, on a real ClickHouse 18.16, with
//! every row kept.

use test_support::clickhouse as clickhouse_support;

use mcp_coordinator::store::clickhouse::{ClickHouseStore, KEPT_TABLE};
use mcp_coordinator::store::{EventSink, HistoryQuery, InteractionReads, TimeRange, Upkeep};

const OLD_DDL: &str = "CREATE TABLE {db}.interaction_events (event_id String, mcp_id String, interaction_id String, kind String, received_ms Int64, event_date Date, timestamp_ms Nullable(Int64), success Nullable(UInt8), processing_time Nullable(Float64), error_code Nullable(String)) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(event_date) ORDER BY (mcp_id, interaction_id, event_id)";

#[tokio::test]
async fn a_table_of_the_month_layout_moves_to_days_with_every_row() {
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let config = server.config();
    let db = &config.database;
    server.sql(&format!("CREATE DATABASE {db}")).await;
    server.sql(&OLD_DDL.replace("{db}", db)).await;
    let day = 86_400_000i64;
    let now = jiff::Timestamp::now().as_millisecond();
    // 300 interactions over 60 days, each a start and a completion (a failure every tenth), in
    // three inserts, so the old table has several parts and two or three months.
    for chunk in 0..3 {
        let mut values = Vec::new();
        for i in (chunk * 100)..(chunk * 100 + 100) {
            let at = now - (i as i64 % 60) * day - 1_000;
            let date = format!("toDate(toDateTime(intDiv({at}, 1000)))");
            values.push(format!(
                "('s{i}', 'mcp_a', 'i{i}', 'start', {at}, {date}, {at}, NULL, NULL, NULL)"
            ));
            values.push(format!(
                "('c{i}', 'mcp_a', 'i{i}', 'complete', {}, {date}, NULL, {}, 0.5, NULL)",
                at + 1,
                u8::from(i % 10 != 0)
            ));
        }
        server.sql(&format!(
                "INSERT INTO {db}.interaction_events (event_id, mcp_id, interaction_id, kind, received_ms, event_date, timestamp_ms, success, processing_time, error_code) VALUES {}",
                values.join(", ")
            ),
        )
        .await;
    }

    let store = ClickHouseStore::connect(&config)
        .await
        .expect("connects and moves the table");

    let engine = server.sql(&format!("SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'interaction_events'"),
    )
    .await;
    assert!(
        engine.contains("PARTITION BY event_date ORDER BY (mcp_id, received_ms, event_id)"),
        "{engine}"
    );
    let kept = server
        .sql(&format!("SELECT count() FROM {db}.{KEPT_TABLE}"))
        .await;
    assert_eq!(kept.trim(), "600", "the old table is kept whole");

    let all = TimeRange {
        since_ms: now - 61 * day,
        until_ms: now + 1,
    };
    let metrics = store.metrics(Some("mcp_a"), all).await.unwrap();
    assert_eq!(metrics[0].count, 300);
    assert_eq!(metrics[0].failed, 30);
    assert_eq!(metrics[0].completed, 270);
    let page = store
        .history(&HistoryQuery {
            mcp_id: "mcp_a".into(),
            limit: 1_000,
            since_ms: None,
            until_ms: None,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.len(), 300);

    // Connecting again (another replica, a restart) finds the new layout and copies nothing.
    ClickHouseStore::connect(&config).await.expect("reconnects");
    let rows = server
        .sql(&format!("SELECT count() FROM {db}.interaction_events"))
        .await;
    assert_eq!(rows.trim(), "600");
}

#[tokio::test]
async fn retention_drops_whole_days_and_mutates_only_days_a_longer_retention_keeps() {
    use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
    use mcp_coordinator::store::retention::plan;
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let config = server.config();
    let db = config.database.clone();
    let store = ClickHouseStore::connect(&config).await.unwrap();
    let day = 86_400_000i64;
    let now = jiff::Timestamp::now().as_millisecond();
    let start = |id: &str, mcp: &str, at: i64| {
        InteractionEvent::new(
            id.into(),
            mcp.into(),
            EventKind::Start,
            at,
            Fields::default(),
        )
    };
    store
        .insert(&[
            // A day only default-retention MCPs used: dropped as a whole partition.
            start("a_40", "a", now - 40 * day),
            start("b_40", "b", now - 40 * day),
            // A day that "long" (90 days) also used: only the others' events go.
            start("a_50", "a", now - 50 * day),
            start("long_50", "long", now - 50 * day),
            start("a_1", "a", now - day),
        ])
        .await
        .unwrap();
    let partitions = |day_ms: i64| {
        let db = db.clone();
        async move {
            server.sql(&format!(
                    "SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'interaction_events' AND active AND partition_id = formatDateTime(toDate(toDateTime(intDiv({day_ms}, 1000))), '%Y%m%d')"
                ),
            )
            .await
            .trim()
            .parse::<u32>()
            .unwrap()
        }
    };
    assert!(partitions(now - 40 * day).await > 0);

    let per_mcp = std::collections::BTreeMap::from([("long".to_string(), 90u32)]);
    for expiry in plan(now, 30, &per_mcp) {
        store.expire(&expiry).await.unwrap();
    }

    assert_eq!(
        partitions(now - 40 * day).await,
        0,
        "the day 40 days ago is dropped"
    );
    let mutations = server
        .sql(&format!(
            "SELECT command FROM system.mutations WHERE database = '{db}'"
        ))
        .await;
    assert_eq!(
        mutations.lines().count(),
        1,
        "one mutation, for the day 'long' keeps: {mutations}"
    );
    let ids = |mcp: &'static str| {
        let store = &store;
        async move {
            let mut ids: Vec<String> = store
                .history(&HistoryQuery {
                    mcp_id: mcp.into(),
                    limit: 100,
                    since_ms: None,
                    until_ms: None,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.interaction_id)
                .collect();
            ids.sort();
            ids
        }
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while ids("a").await != ["a_1"]
        || ids("long").await != ["long_50"]
        || !ids("b").await.is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a={:?} b={:?} long={:?}",
            ids("a").await,
            ids("b").await,
            ids("long").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Runs again within the day queue nothing new.
    for expiry in plan(now, 30, &per_mcp) {
        store.expire(&expiry).await.unwrap();
    }
    let again = server
        .sql(&format!(
            "SELECT count() FROM system.mutations WHERE database = '{db}'"
        ))
        .await;
    assert_eq!(again.trim(), "1");
}

#[tokio::test]
async fn fields_added_since_the_table_was_made_become_columns_and_old_rows_read_them_as_absent() {
    use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let config = server.config();
    let db = &config.database;
    server.sql(&format!("CREATE DATABASE {db}")).await;
    // The events table of the release before progress notes were kept: today's layout, without
    // the `progress`, `progress_message` and `progress_details` columns.
    let today = mcp_coordinator::store::clickhouse::create_table_sql(db, (18, 16));
    let earlier = today
        .replace(", progress Nullable(Float64)", "")
        .replace(", progress_message Nullable(String)", "")
        .replace(", progress_details Nullable(String)", "");
    assert_ne!(earlier, today, "the test removes the newer columns");
    server.sql(&earlier).await;
    let now = jiff::Timestamp::now().as_millisecond();
    server
        .sql(&format!(
            "INSERT INTO {db}.interaction_events (event_id, mcp_id, interaction_id, kind, received_ms, event_date, timestamp_ms) \
             VALUES ('s1', 'mcp_a', 'old', 'start', {now}, today(), {now})"
        ))
        .await;

    let store = ClickHouseStore::connect(&config)
        .await
        .expect("connects and adds the columns");
    let columns = server
        .sql(&format!(
            "SELECT name FROM system.columns WHERE database = '{db}' AND table = 'interaction_events' AND name LIKE 'progress%' ORDER BY name"
        ))
        .await;
    assert_eq!(
        columns.split_whitespace().collect::<Vec<_>>(),
        ["progress", "progress_details", "progress_message"]
    );
    let progress = Fields {
        progress: Some(0.5),
        progress_message: Some("half way".into()),
        ..Default::default()
    };
    store
        .insert(&[InteractionEvent::new(
            "new".into(),
            "mcp_a".into(),
            EventKind::Progress,
            now + 1,
            progress,
        )])
        .await
        .expect("an event with the new fields is stored");
    let found = store
        .history(&HistoryQuery {
            mcp_id: "mcp_a".into(),
            limit: 10,
            since_ms: None,
            until_ms: None,
            ..Default::default()
        })
        .await
        .unwrap();
    let by_id = |id: &str| found.iter().find(|i| i.interaction_id == id).expect(id);
    assert_eq!(by_id("old").fields.progress, None);
    assert!(by_id("old").timeline.is_empty());
    assert_eq!(
        by_id("new").timeline[0].message.as_deref(),
        Some("half way")
    );
}
