//! Several ingest replicas over one ClickHouse: what one replica hears, every replica answers.

use test_support as common;
use test_support::clickhouse as clickhouse_support;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use common::*;
use mcp_coordinator::store::clickhouse::ClickHouseStore;
use mcp_coordinator::store::InteractionStore;
use mcp_coordinator::trust::keys::ReaderTokens;

const MCP: &str = "beating_mcp_001";
const KEY: &str = "mcpk_replicas_key_0123456789abcdef";
const READER: &str = "replicas-reader-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_sent_to_one_replica_is_answered_by_every_replica() {
    let server = tokio::task::spawn_blocking(clickhouse_support::shared)
        .await
        .expect("ClickHouse");
    let config = server.config();
    let dir = TestDir::new("replicas");
    let mut replicas = Vec::new();
    for n in 0..2 {
        let store: Arc<dyn InteractionStore> = Arc::new(
            ClickHouseStore::connect(&config)
                .await
                .expect("ClickHouse store"),
        );
        let mut ingest_config = test_config(&dir.path().join(format!("replica-{n}")));
        ingest_config.heartbeat_save_interval = Duration::from_millis(100);
        replicas.push(
            InProcessIngest::start(
                ingest_config,
                store,
                key_ring(&[(MCP, KEY)]),
                Arc::new(ReaderTokens::from_tokens([READER])),
            )
            .await,
        );
    }
    let sent = http_client()
        .post(format!("{}/v1/heartbeat", replicas[0].base))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(sent.status().as_u16(), 200);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get_json_as(&format!("{}/v1/heartbeats", replicas[1].base), READER).await;
        if answer[MCP].is_string() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other replica never saw the heartbeat: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for replica in &mut replicas {
        replica.stop().await;
    }
}
