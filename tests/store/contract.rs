//! The contract every interaction store meets. Each test runs against each store: the embedded
//! SQLite store and a real ClickHouse server (Debian's 18.16, started by the harness).

use test_support::clickhouse as clickhouse_support;

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::ClickHouseStore;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::store::{
    Cursor, EventSink, HistoryQuery, InteractionReads, InteractionStore, TimeRange,
};

const T0: i64 = 1_750_000_000_000;

async fn stores() -> Vec<(&'static str, Box<dyn InteractionStore>)> {
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let clickhouse = ClickHouseStore::connect(&server.config())
        .await
        .expect("ClickHouse store connects");
    vec![
        (
            "sqlite",
            Box::new(SqliteStore::in_memory().expect("in-memory SQLite")),
        ),
        ("clickhouse", Box::new(clickhouse)),
    ]
}

fn event(id: &str, mcp: &str, kind: EventKind, at: i64, fields: Fields) -> InteractionEvent {
    InteractionEvent::new(id.into(), mcp.into(), kind, at, fields)
}

fn start(id: &str, mcp: &str, at: i64) -> InteractionEvent {
    event(
        id,
        mcp,
        EventKind::Start,
        at,
        Fields {
            timestamp_ms: Some(at),
            user_id: Some("user_1".into()),
            request_type: Some("ocr".into()),
            ..Default::default()
        },
    )
}

fn complete(id: &str, mcp: &str, at: i64, seconds: f64, quality: f64) -> InteractionEvent {
    event(
        id,
        mcp,
        EventKind::Complete,
        at,
        Fields {
            success: Some(true),
            processing_time: Some(seconds),
            quality_score: Some(quality),
            cpu_usage: Some(50.0),
            ..Default::default()
        },
    )
}

fn failure(id: &str, mcp: &str, at: i64, code: &str) -> InteractionEvent {
    event(
        id,
        mcp,
        EventKind::Error,
        at,
        Fields {
            success: Some(false),
            error_code: Some(code.into()),
            processing_time: Some(1.0),
            ..Default::default()
        },
    )
}

fn history(mcp: &str) -> HistoryQuery {
    HistoryQuery {
        mcp_id: mcp.into(),
        limit: 100,
        since_ms: None,
        until_ms: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn start_and_complete_are_one_interaction() {
    for (name, store) in stores().await {
        store.insert(&[start("i1", "m", T0)]).await.unwrap();
        store
            .insert(&[complete("i1", "m", T0 + 5, 5.3, 0.9)])
            .await
            .unwrap();
        let found = store.history(&history("m")).await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
        let f = &found[0].fields;
        assert_eq!(
            (f.user_id.as_deref(), f.success, f.processing_time),
            (Some("user_1"), Some(true), Some(5.3)),
            "{name}"
        );
    }
}

#[tokio::test]
async fn duplicates_and_replays_count_once() {
    for (name, store) in stores().await {
        let events = [start("i1", "m", T0), complete("i1", "m", T0 + 1, 2.0, 0.5)];
        store.insert(&events).await.unwrap();
        store.insert(&events).await.unwrap();
        // The same report delivered again later (a client retry): same identity, no change.
        store
            .insert(&[complete("i1", "m", T0 + 99, 2.0, 0.5)])
            .await
            .unwrap();
        let metrics = store
            .metrics(
                Some("m"),
                TimeRange {
                    since_ms: T0 - 1000,
                    until_ms: T0 + 1000,
                },
            )
            .await
            .unwrap();
        assert_eq!((metrics[0].count, metrics[0].completed), (1, 1), "{name}");
        // An older progress report replayed after completion does not undo the completion.
        let progress = event(
            "i1",
            "m",
            EventKind::Progress,
            T0,
            Fields {
                steps_executed: Some("[\"ocr\"]".into()),
                ..Default::default()
            },
        );
        store.insert(std::slice::from_ref(&progress)).await.unwrap();
        store.insert(&[progress]).await.unwrap();
        let found = store.history(&history("m")).await.unwrap();
        assert_eq!(found[0].fields.success, Some(true), "{name}");
    }
}

#[tokio::test]
async fn history_is_newest_first_with_limit_and_range() {
    for (name, store) in stores().await {
        let events: Vec<_> = (0..10)
            .map(|i| start(&format!("i{i}"), "m", T0 + i * 1000))
            .collect();
        store.insert(&events).await.unwrap();
        store.insert(&[start("other", "n", T0)]).await.unwrap();
        let mut q = history("m");
        q.limit = 3;
        let ids: Vec<String> = store
            .history(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.interaction_id)
            .collect();
        assert_eq!(ids, ["i9", "i8", "i7"], "{name}");
        q.limit = 100;
        q.since_ms = Some(T0 + 2000);
        q.until_ms = Some(T0 + 5000);
        let ids: Vec<String> = store
            .history(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.interaction_id)
            .collect();
        assert_eq!(ids, ["i4", "i3", "i2"], "{name}");
    }
}

#[tokio::test]
async fn history_reads_one_users_interactions() {
    for (name, store) in stores().await {
        let by = |id: &str, user: &str, at: i64| {
            event(
                id,
                "m",
                EventKind::Record,
                at,
                Fields {
                    user_id: Some(user.into()),
                    request_type: Some("ocr".into()),
                    ..Default::default()
                },
            )
        };
        store
            .insert(&[
                by("a1", "u_alice", T0),
                by("b1", "u_bob", T0 + 1000),
                by("a2", "u_alice", T0 + 2000),
            ])
            .await
            .unwrap();
        let mut q = history("m");
        q.user_id = Some("u_alice".into());
        let ids: Vec<String> = store
            .history(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.interaction_id)
            .collect();
        assert_eq!(ids, ["a2", "a1"], "{name}");
        q.user_id = Some("u_nobody".into());
        assert!(store.history(&q).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn metrics_summarise_the_range() {
    for (name, store) in stores().await {
        let mut events = Vec::new();
        for i in 0..20 {
            let id = format!("ok{i}");
            events.push(start(&id, "m", T0 + i));
            events.push(complete(&id, "m", T0 + i + 1, (i + 1) as f64, 0.8));
        }
        for (i, code) in ["TIMEOUT", "TIMEOUT", "BAD_INPUT"].iter().enumerate() {
            let id = format!("bad{i}");
            events.push(start(&id, "m", T0 + 100 + i as i64));
            events.push(failure(&id, "m", T0 + 200, code));
        }
        events.push(start("running", "m", T0 + 300));
        events.push(start("late", "m", T0 + 3_600_000));
        store.insert(&events).await.unwrap();
        let range = TimeRange {
            since_ms: T0,
            until_ms: T0 + 60_000,
        };
        let m = &store.metrics(Some("m"), range).await.unwrap()[0];
        assert_eq!(
            (m.count, m.completed, m.failed, m.in_progress),
            (24, 20, 3, 1),
            "{name}"
        );
        assert_eq!(m.success_rate, Some(20.0 / 23.0), "{name}");
        assert_eq!(m.errors_by_code.get("TIMEOUT"), Some(&2), "{name}");
        // 23 processing times: 1 s four times (three failures), then 2 … 20 s.
        assert_eq!(m.p50_processing_time, Some(9.0), "{name}");
        assert_eq!(m.p99_processing_time, Some(20.0), "{name}");
        assert_eq!(m.interactions_per_minute, 24.0, "{name}");
        assert!((m.mean_quality_score.unwrap() - 0.8).abs() < 1e-9, "{name}");
        let all = store.metrics(None, range).await.unwrap();
        assert_eq!(
            all.iter().map(|m| m.mcp_id.as_str()).collect::<Vec<_>>(),
            ["m"],
            "{name}"
        );
        let empty = store.metrics(Some("nobody"), range).await.unwrap();
        assert_eq!((empty[0].count, empty[0].success_rate), (0, None), "{name}");
    }
}

#[tokio::test]
async fn sqlite_keeps_data_across_reopen() {
    let dir = test_support::TestDir::new("store");
    let path = dir.join("interactions.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.insert(&[start("i1", "m", T0)]).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.history(&history("m")).await.unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_audit_log_keeps_every_read_newest_first() {
    use mcp_coordinator::store::AuditEntry;
    for (name, store) in stores().await {
        for (i, query) in ["history", "metrics", "all_metrics"].iter().enumerate() {
            let entry = AuditEntry {
                at_ms: T0 + i as i64,
                who: "grafana".into(),
                role: "reader".into(),
                mcp_id: if i == 2 { "*".into() } else { "m".into() },
                query: query.to_string(),
                since_ms: Some(T0 - 1000),
                until_ms: None,
                rows: 10 + i as u64,
            };
            store.record_access(&entry).await.unwrap();
        }
        let log = store.audit_log(2).await.unwrap();
        let queries: Vec<&str> = log.iter().map(|e| e.query.as_str()).collect();
        assert_eq!(queries, ["all_metrics", "metrics"], "{name}");
        assert_eq!(
            (log[0].rows, log[0].since_ms, log[0].until_ms),
            (12, Some(T0 - 1000), None),
            "{name}"
        );
    }
}

#[tokio::test]
async fn retention_removes_expired_interactions_and_keeps_fresh_ones() {
    use mcp_coordinator::store::retention::plan;
    let now = jiff::Timestamp::now().as_millisecond();
    let day = 86_400_000;
    for (name, store) in stores().await {
        let events = [
            start("a_old", "a", now - 40 * day),
            start("a_new", "a", now - day),
            start("b_old", "b", now - 40 * day),
            start("b_ancient", "b", now - 90 * day),
        ];
        store.insert(&events).await.unwrap();
        let per_mcp = std::collections::BTreeMap::from([("b".to_string(), 60u32)]);
        for expiry in plan(now, 30, &per_mcp) {
            store.expire(&expiry).await.unwrap();
        }
        let ids = |mcp: &'static str| {
            let store = &store;
            async move {
                let q = HistoryQuery {
                    mcp_id: mcp.into(),
                    limit: 100,
                    since_ms: None,
                    until_ms: None,
                    ..Default::default()
                };
                let mut ids: Vec<String> = store
                    .history(&q)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|i| i.interaction_id)
                    .collect();
                ids.sort();
                ids
            }
        };
        // ClickHouse applies deletions in the background.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while ids("a").await != ["a_new"] || ids("b").await != ["b_old"] {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: a={:?} b={:?}",
                ids("a").await,
                ids("b").await
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn retention_follows_the_receive_time_not_the_clients_timestamp() {
    use mcp_coordinator::store::retention::plan;
    let now = jiff::Timestamp::now().as_millisecond();
    let day = 86_400_000;
    let year_2999 = 32_503_680_000_000;
    for (name, store) in stores().await {
        // Received 40 days ago, but claiming to happen in 2999.
        let fields = Fields {
            timestamp_ms: Some(year_2999),
            ..Default::default()
        };
        let late = event(
            "future_stamp",
            "c",
            EventKind::Start,
            now - 40 * day,
            fields,
        );
        store
            .insert(&[late, start("fresh", "c", now - day)])
            .await
            .unwrap();
        for expiry in plan(now, 30, &Default::default()) {
            store.expire(&expiry).await.unwrap();
        }
        let q = HistoryQuery {
            mcp_id: "c".into(),
            limit: 100,
            since_ms: None,
            until_ms: None,
            ..Default::default()
        };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ids: Vec<String> = store
                .history(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.interaction_id)
                .collect();
            if ids == ["fresh"] {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{name}: {ids:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn recent_history_and_windows_read_newest_first_across_days() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hour = 3_600_000;
    for (name, store) in stores().await {
        // Interactions 40 days, 2 days, 2 hours and 10 minutes old, each started and completed.
        let ages = [
            ("month", 40 * 24 * hour),
            ("days", 48 * hour),
            ("hours", 2 * hour),
            ("minutes", hour / 6),
        ];
        for (id, age) in ages {
            let at = now - age;
            store
                .insert(&[start(id, "m", at), complete(id, "m", at + 2_000, 2.0, 0.5)])
                .await
                .unwrap();
        }
        let newest = |limit: usize| {
            let mut q = history("m");
            q.limit = limit;
            q
        };
        let ids = |found: Vec<mcp_coordinator::interaction::Interaction>| -> Vec<String> {
            found.into_iter().map(|i| i.interaction_id).collect()
        };
        assert_eq!(
            ids(store.history(&newest(1)).await.unwrap()),
            ["minutes"],
            "{name}"
        );
        assert_eq!(
            ids(store.history(&newest(3)).await.unwrap()),
            ["minutes", "hours", "days"],
            "{name}"
        );
        assert_eq!(
            ids(store.history(&newest(10)).await.unwrap()),
            ["minutes", "hours", "days", "month"],
            "{name}: a short page does not hide older history"
        );
        let mut bounded = newest(10);
        bounded.since_ms = Some(now - 3 * hour);
        assert_eq!(
            ids(store.history(&bounded).await.unwrap()),
            ["minutes", "hours"],
            "{name}"
        );

        let last_15m = TimeRange {
            since_ms: now - hour / 4,
            until_ms: now + 1,
        };
        let metrics = store.metrics(Some("m"), last_15m).await.unwrap();
        assert_eq!((metrics[0].count, metrics[0].completed), (1, 1), "{name}");
        let last_7d = TimeRange {
            since_ms: now - 7 * 24 * hour,
            until_ms: now + 1,
        };
        let all = store.metrics(None, last_7d).await.unwrap();
        assert_eq!(all.iter().map(|m| m.count).sum::<u64>(), 3, "{name}");
    }
}

#[tokio::test]
async fn breakdowns_cut_by_region_and_time_bucket() {
    use mcp_coordinator::store::{Breakdown, Dimension};
    let minute = 60_000;
    for (name, store) in stores().await {
        let mut events = Vec::new();
        // 30 interactions a minute apart; regions alternate, every third one fails.
        for i in 0..30i64 {
            let id = format!("r{i}");
            let at = T0 + i * minute;
            let mut s = start(&id, "m", at);
            s.fields.region = Some(["eu", "us"][(i % 2) as usize].into());
            events.push(s);
            events.push(if i % 3 == 0 {
                failure(&id, "m", at + 1, "TIMEOUT")
            } else {
                complete(&id, "m", at + 1, (i + 1) as f64, 0.5)
            });
        }
        store.insert(&events).await.unwrap();
        let range = TimeRange {
            since_ms: T0,
            until_ms: T0 + 30 * minute,
        };
        let by = Breakdown {
            group_by: Some(Dimension::Region),
            step_ms: Some(10 * minute),
        };
        let mut cells = store.breakdown(Some("m"), range, by).await.unwrap();
        cells.sort_by(|a, b| (&a.group, a.bucket).cmp(&(&b.group, b.bucket)));
        let shape: Vec<(Option<&str>, i64, u64, u64)> = cells
            .iter()
            .map(|c| {
                (
                    c.group.as_deref(),
                    c.bucket,
                    c.metrics.count,
                    c.metrics.failed,
                )
            })
            .collect();
        // Bucket 0 holds minutes 0–9: eu 0,2,4,6,8 (0 and 6 fail), us 1,3,5,7,9 (3 and 9 fail).
        assert_eq!(
            shape,
            [
                (Some("eu"), 0, 5, 2),
                (Some("eu"), 1, 5, 2),
                (Some("eu"), 2, 5, 1),
                (Some("us"), 0, 5, 2),
                (Some("us"), 1, 5, 1),
                (Some("us"), 2, 5, 2),
            ],
            "{name}"
        );
        assert_eq!(
            cells[0].metrics.errors_by_code.get("TIMEOUT"),
            Some(&2),
            "{name}"
        );
        assert_eq!(cells[0].metrics.interactions_per_minute, 0.5, "{name}");
        // eu, minutes 10–19: 11, 15 and 17 s, and 12 and 18 failed (1 s each).
        let p95 = cells[1].metrics.p95_processing_time.unwrap();
        assert!((p95 - 17.0).abs() <= 17.0 * 0.01, "{name}: {p95}");
        let nobody = store.breakdown(Some("nobody"), range, by).await.unwrap();
        assert!(nobody.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn heartbeats_keep_each_mcps_latest() {
    for (name, store) in stores().await {
        let (a, b) = (format!("beat_a_{name}"), format!("beat_b_{name}"));
        store
            .record_heartbeats(&[(a.clone(), T0 + 2_000), (b.clone(), T0)])
            .await
            .expect("recorded");
        // Another replica's older heartbeat of `a` arrives later: it must not win.
        store
            .record_heartbeats(&[(a.clone(), T0 + 1_000), (b.clone(), T0 + 5_000)])
            .await
            .expect("recorded");
        let beats = store.heartbeats().await.expect("read");
        assert_eq!(beats.get(&a), Some(&(T0 + 2_000)), "{name}");
        assert_eq!(beats.get(&b), Some(&(T0 + 5_000)), "{name}");
        assert!(!beats.contains_key("never_beat"), "{name}");
    }
}

#[tokio::test]
async fn progress_reports_make_a_timeline_and_steps_accumulate() {
    for (name, store) in stores().await {
        let progress = |at: i64, p: f64, message: &str, steps: &str| {
            event(
                "i1",
                "m",
                EventKind::Progress,
                at,
                Fields {
                    progress: Some(p),
                    progress_message: Some(message.into()),
                    steps_executed: Some(steps.into()),
                    ..Default::default()
                },
            )
        };
        let first = progress(T0 + 10, 0.25, "pages split", "[\"split\"]");
        store.insert(&[start("i1", "m", T0)]).await.unwrap();
        store.insert(std::slice::from_ref(&first)).await.unwrap();
        // A client retry of the first report (its acknowledgement was lost): the same event,
        // received again later, before the client's next report.
        let mut retried = first.clone();
        retried.received_ms = T0 + 15;
        store.insert(&[retried]).await.unwrap();
        store
            .insert(&[progress(T0 + 20, 0.75, "text read", "[\"split\",\"ocr\"]")])
            .await
            .unwrap();
        let mut done = complete("i1", "m", T0 + 30, 0.03, 0.9);
        done.fields.steps_executed = Some("[\"layout\"]".into());
        store.insert(&[done]).await.unwrap();

        let found = store.history(&history("m")).await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
        let interaction = &found[0];
        let notes: Vec<(i64, Option<f64>, Option<&str>)> = interaction
            .timeline
            .iter()
            .map(|n| (n.at_ms, n.progress, n.message.as_deref()))
            .collect();
        assert_eq!(
            notes,
            [
                (T0 + 10, Some(0.25), Some("pages split")),
                (T0 + 20, Some(0.75), Some("text read"))
            ],
            "{name}: each progress report once, in order"
        );
        assert_eq!(
            interaction.fields.progress,
            Some(0.75),
            "{name}: the latest"
        );
        let json = interaction.to_json();
        assert_eq!(
            json["processing_data"]["steps_executed"],
            serde_json::json!(["split", "ocr", "layout"]),
            "{name}: steps accumulate across reports, each once"
        );
        assert_eq!(json["timeline"][1]["message"], "text read", "{name}");
        assert_eq!(json["status"], "completed", "{name}");
    }
}

#[tokio::test]
async fn the_versions_mcps_report_are_counted_per_mcp() {
    for (name, store) in stores().await {
        let versioned = |id: &str, mcp: &str, at: i64, version: Option<&str>| {
            let mut e = start(id, mcp, at);
            e.fields.mcp_version = version.map(str::to_string);
            e
        };
        store
            .insert(&[
                versioned("i1", "a", T0, Some("1.0.0")),
                versioned("i2", "a", T0 + 1, Some("1.1.0")),
                versioned("i3", "a", T0 + 2, Some("1.1.0")),
                versioned("i4", "a", T0 + 3, None),
                versioned("i5", "b", T0 + 4, Some("2.0.0")),
                versioned("old", "b", T0 - 3_600_000, Some("0.9.0")),
            ])
            .await
            .unwrap();
        // The same interaction reporting its version again counts once.
        store
            .insert(&[event(
                "i2",
                "a",
                EventKind::Complete,
                T0 + 5,
                Fields {
                    mcp_version: Some("1.1.0".into()),
                    success: Some(true),
                    ..Default::default()
                },
            )])
            .await
            .unwrap();
        let counted = store
            .reported_versions(TimeRange {
                since_ms: T0 - 1000,
                until_ms: T0 + 1000,
            })
            .await
            .unwrap();
        let got: Vec<(&str, &str, u64)> = counted
            .iter()
            .map(|v| (v.mcp_id.as_str(), v.version.as_str(), v.interactions))
            .collect();
        assert_eq!(
            got,
            [("a", "1.0.0", 1), ("a", "1.1.0", 2), ("b", "2.0.0", 1)],
            "{name}"
        );
    }
}

/// Issue 34, attack 5: a page of history is bounded in bytes as well as in count, and the next
/// page starts after a cursor, even among interactions of one millisecond.
#[tokio::test]
async fn history_pages_end_at_their_bytes_and_cursors_read_on_without_loss_or_repeat() {
    for (name, store) in stores().await {
        let mcp = "m_pages";
        let big = |id: &str, at: i64| {
            event(
                id,
                mcp,
                EventKind::Error,
                at,
                Fields {
                    timestamp_ms: Some(at),
                    success: Some(false),
                    error_message: Some("x".repeat(2_000)),
                    ..Default::default()
                },
            )
        };
        let mut events: Vec<InteractionEvent> = (0..5).map(|i| big(&format!("p{i}"), T0)).collect();
        events.extend((5..7).map(|i| big(&format!("p{i}"), T0 - 1_000)));
        store.insert(&events).await.unwrap();
        for (limit, max_bytes, pages) in [(100, 6_000, 4), (3, usize::MAX, 3)] {
            let mut after = None;
            let mut seen = Vec::new();
            let mut count = 0;
            loop {
                let q = HistoryQuery {
                    mcp_id: mcp.into(),
                    limit,
                    after: after.clone(),
                    max_bytes,
                    ..Default::default()
                };
                let page = store.history_page(&q).await.unwrap();
                count += 1;
                assert!(count <= 10, "{name}: the cursor does not move");
                let Some(last) = page.interactions.last() else {
                    break;
                };
                assert!(page.interactions.len() <= 2 || max_bytes == usize::MAX);
                after = Some(Cursor::of(last));
                seen.extend(page.interactions.iter().map(|i| i.interaction_id.clone()));
                if !page.full_by_bytes && page.interactions.len() < limit {
                    break;
                }
            }
            assert_eq!(
                seen,
                ["p4", "p3", "p2", "p1", "p0", "p6", "p5"],
                "{name}, {limit} per page, {max_bytes} bytes"
            );
            assert_eq!(count, pages, "{name}, {limit} per page");
        }
    }
}
