//! `--clickhouse-cluster` for real: ZooKeeper and two ClickHouse 18.16 servers on loopback, one
//! shard each. Every acknowledged event is counted once, both shards hold data, and every answer
//! (metrics, rollups, breakdowns, history, retention) equals the single-server answer.

use test_support::clickhouse as clickhouse_support;

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::ClickHouseStore;
use mcp_coordinator::store::{
    Breakdown, Dimension, EventSink, HistoryQuery, InteractionReads, TimeRange, Upkeep,
};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// 30 MCPs, each with interactions over the last three hours, and some 40 days old.
fn events(now: i64) -> Vec<InteractionEvent> {
    let mut out = Vec::new();
    for m in 0..30 {
        let mcp = format!("mcp_{m}");
        for i in 0..40i64 {
            let at = now - 2 * 60_000 - i * 4 * 60_000;
            let id = format!("{mcp}_{i}");
            out.push(InteractionEvent::new(
                id.clone(),
                mcp.clone(),
                EventKind::Start,
                at,
                Fields {
                    timestamp_ms: Some(at),
                    request_type: Some(["ocr", "asr"][(i % 2) as usize].into()),
                    ..Default::default()
                },
            ));
            let mut done = Fields {
                processing_time: Some(0.2 + (i % 9) as f64 * 0.3),
                ..Default::default()
            };
            if i % 5 == 0 {
                done.error_code = Some("TIMEOUT".into());
            } else {
                done.success = Some(true);
            }
            out.push(InteractionEvent::new(
                id,
                mcp.clone(),
                EventKind::Complete,
                at + 700,
                done,
            ));
        }
        let old = now - 40 * DAY;
        out.push(InteractionEvent::new(
            format!("{mcp}_old"),
            mcp.clone(),
            EventKind::Start,
            old,
            Fields {
                timestamp_ms: Some(old),
                ..Default::default()
            },
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_answers_as_one_server_does() {
    let cluster =
        tokio::task::spawn_blocking(|| clickhouse_support::ClickHouseCluster::start("cluster"))
            .await
            .unwrap();
    let single_server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .unwrap();
    let config = cluster.config();
    let db = config.database.clone();
    let clustered = ClickHouseStore::connect(&config)
        .await
        .unwrap_or_else(|e| panic!("connects to the cluster: {e}{}", cluster.diagnose()));
    let single = ClickHouseStore::connect(&single_server.config())
        .await
        .unwrap();

    let now = jiff::Timestamp::now().as_millisecond();
    let all = events(now);
    for store in [&clustered, &single] {
        for batch in all.chunks(500) {
            store
                .insert(batch)
                .await
                .unwrap_or_else(|e| panic!("inserts: {e}{}", cluster.diagnose()));
        }
        // A replay of the first batch (a spool resent after a lost acknowledgement).
        store
            .insert(&all[..500])
            .await
            .unwrap_or_else(|e| panic!("inserts again: {e}{}", cluster.diagnose()));
        store
            .maintain()
            .await
            .unwrap_or_else(|e| panic!("maintains: {e}{}", cluster.diagnose()));
    }

    // Both shards hold events, and the acknowledged ones are all there, counted once.
    let mut per_shard = Vec::new();
    for server in &cluster.servers {
        let local = server
            .sql(&format!(
                "SELECT uniqExact(event_id) FROM {db}.interaction_events_local"
            ))
            .await;
        per_shard.push(local.trim().parse::<u64>().unwrap());
    }
    assert!(per_shard.iter().all(|n| *n > 0), "{per_shard:?}");
    assert_eq!(per_shard.iter().sum::<u64>(), all.len() as u64);
    let rolled = cluster.servers[1]
        .sql(&format!(
            "SELECT count() FROM {db}.interaction_rollups_local"
        ))
        .await;
    assert!(
        rolled.trim().parse::<u64>().unwrap() > 0,
        "the second shard holds rollups"
    );

    for span in [15 * 60_000, 4 * HOUR, 50 * DAY] {
        let range = TimeRange {
            since_ms: now - span,
            until_ms: now + 1,
        };
        assert_eq!(
            clustered.metrics(None, range).await.unwrap(),
            single.metrics(None, range).await.unwrap(),
            "metrics over {span} ms"
        );
        let by = Breakdown {
            group_by: Some(Dimension::RequestType),
            step_ms: Some(HOUR),
        };
        assert_eq!(
            clustered.breakdown(Some("mcp_7"), range, by).await.unwrap(),
            single.breakdown(Some("mcp_7"), range, by).await.unwrap()
        );
    }
    let everything = TimeRange {
        since_ms: now - 50 * DAY,
        until_ms: now + 1,
    };
    let counted: u64 = clustered
        .metrics(None, everything)
        .await
        .unwrap()
        .iter()
        .map(|m| m.count)
        .sum();
    assert_eq!(counted, 30 * 41, "every interaction once");
    let page = |mcp: &str| HistoryQuery {
        mcp_id: mcp.into(),
        limit: 25,
        since_ms: None,
        until_ms: None,
        ..Default::default()
    };
    assert_eq!(
        clustered.history(&page("mcp_3")).await.unwrap(),
        single.history(&page("mcp_3")).await.unwrap()
    );

    // Retention drops the old day on every shard.
    let per_mcp = std::collections::BTreeMap::from([("mcp_0".to_string(), 90u32)]);
    for expiry in mcp_coordinator::store::retention::plan(now, 30, &per_mcp) {
        clustered.expire(&expiry).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let old = cluster.servers[0]
            .sql(&format!(
                "SELECT count() FROM {db}.interaction_events WHERE interaction_id LIKE '%_old'"
            ))
            .await;
        if old.trim() == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only mcp_0 (90 days) keeps its old interaction: {old}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
