//! Kill ClickHouse during a steady load and restart it: every acknowledged report arrives, once.

use test_support as common;
use test_support::clickhouse as clickhouse_support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest};
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::store::clickhouse::LazyClickHouseStore;
use mcp_coordinator::store::{HistoryQuery, InteractionReads, TimeRange};
use mcp_coordinator::trust::keys::ReaderTokens;
use serde_json::json;

const KEY: &str = "mcpk_outage_test_key_0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_reports_survive_a_clickhouse_crash() {
    let mut clickhouse =
        tokio::task::spawn_blocking(|| clickhouse_support::ClickHouseServer::start("outage"))
            .await
            .unwrap();
    let store = Arc::new(LazyClickHouseStore::new(clickhouse.config()));
    let mut running = InProcessIngest::start(
        IngestConfig {
            batch_max: 200,
            ..test_config(&clickhouse.dir)
        },
        store.clone(),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    let base = format!("http://{}", running.addr);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build().unwrap();

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let keep_going = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (http, base, acked, keep_going) = (
                http.clone(),
                base.clone(),
                acked.clone(),
                keep_going.clone(),
            );
            tokio::spawn(async move {
                for i in 0..250 {
                    if !keep_going.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("c{c}_{i}");
                    let r = http
                        .post(format!("{base}/v1/interactions"))
                        .bearer_auth(KEY)
                        .json(&json!({"interaction_id": id, "result_data": {"success": true}}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status().as_u16(),
                        202,
                        "reports are acknowledged while ClickHouse is down"
                    );
                    acked.lock().unwrap().insert(id);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    let wait_for = |n: usize| {
        let acked = acked.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while acked.lock().unwrap().len() < n {
                assert!(tokio::time::Instant::now() < deadline, "load stalled");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(100).await;
    clickhouse.kill();
    wait_for(300).await;
    let mut clickhouse = tokio::task::spawn_blocking(move || {
        clickhouse.restart();
        clickhouse
    })
    .await
    .unwrap();
    wait_for(400).await;
    keep_going.store(false, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().clone();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let stored = loop {
        let query = HistoryQuery {
            mcp_id: "ocr_workflow_mcp_001".into(),
            limit: 5000,
            since_ms: None,
            until_ms: None,
            ..Default::default()
        };
        if let Ok(found) = store.history(&query).await {
            let ids: Vec<String> = found.into_iter().map(|i| i.interaction_id).collect();
            if acked.iter().all(|a| ids.contains(a)) {
                break ids;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acknowledged reports did not all arrive after ClickHouse came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        stored.len(),
        acked.len(),
        "every acknowledged report exactly once, nothing else"
    );
    let now = jiff::Timestamp::now().as_millisecond();
    let metrics = store
        .metrics(
            Some("ocr_workflow_mcp_001"),
            TimeRange {
                since_ms: now - 3_600_000,
                until_ms: now + 60_000,
            },
        )
        .await
        .unwrap();
    assert_eq!(metrics[0].count, acked.len() as u64);
    assert!(
        running
            .metrics
            .pipeline
            .store_errors
            .with_label_values(&["unavailable"])
            .get()
            > 0,
        "the outage was noticed"
    );
    running.stop().await;
    clickhouse.kill();
}
