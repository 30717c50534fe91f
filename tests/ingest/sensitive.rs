//! Sensitive interactions: free-form fields are sealed with AES-256-GCM before they are spooled;
//! admins and the MCP itself read them, readers get them redacted, and destroying the key erases
//! them (crypto-shredding).

use test_support as common;

use common::http_client as http;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::privacy::seal::Sealer;
use mcp_coordinator::privacy::SensitiveMcps;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use serde_json::{json, Value};

const KEY: &str = "mcpk_sensitive_test_key_0123456789";
const READER: &str = "sensitive-reader-token";
const ADMIN: &str = "sensitive-admin-token";
const SECRET_DOC: &str = "passport-of-jane-doe.png";
const SECRET_ERROR: &str = "could not read the passport of Jane Doe";

async fn start(dir: &std::path::Path, key_id: &str, key: [u8; 32]) -> InProcessIngest {
    let readers = ReaderTokens::from_tokens([READER]);
    readers.add_admin("ops", ADMIN);
    let sensitive = Arc::new(SensitiveMcps::default());
    sensitive.set("ocr_workflow_mcp_001", true);
    InProcessIngest::start(
        IngestConfig {
            drain_timeout: Duration::from_secs(2),
            privacy: mcp_coordinator::privacy::Pseudonymizer::new(vec![4; 32]).unwrap(),
            sealer: Arc::new(Sealer::from_keys(
                key_id,
                BTreeMap::from([(key_id.to_string(), key)]),
            )),
            sensitive_mcps: sensitive,
            ..test_config(dir)
        },
        Arc::new(SqliteStore::open(&dir.join("interactions.db")).unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(readers),
    )
    .await
}

async fn history_as(base: &str, token: &str) -> Value {
    common::eventually(Duration::from_secs(20), || async {
        let items = common::interactions(base, "ocr_workflow_mcp_001", token, "").await;
        match items.first() {
            Some(i) if i["status"] == "failed" => Ok(i.clone()),
            _ => Err(format!("the interaction did not arrive: {items:?}")),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_fields_are_sealed_redacted_and_shreddable() {
    let scratch = TestDir::new("sensitive");
    let dir = scratch.path();
    let mut ingest = start(dir, "k1", [8; 32]).await;
    let base = ingest.base.clone();
    let client = http();
    let start_report = json!({"interaction_id": "s1", "request_data": {"parameters": {"document": SECRET_DOC, "quality_level": "high"}}});
    assert_eq!(
        client
            .post(format!("{base}/v1/interactions"))
            .bearer_auth(KEY)
            .json(&start_report)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let error = json!({"error_code": "OCR_FAILED", "error_message": SECRET_ERROR});
    assert_eq!(
        client
            .post(format!("{base}/v1/interactions/s1/error"))
            .bearer_auth(KEY)
            .json(&error)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );

    let admin = history_as(&base, ADMIN).await;
    assert_eq!(admin["request_data"]["parameters"]["document"], SECRET_DOC);
    assert_eq!(admin["result_data"]["error_message"], SECRET_ERROR);
    let own = history_as(&base, KEY).await;
    assert_eq!(
        own["result_data"]["error_message"], SECRET_ERROR,
        "the MCP reads its own data"
    );
    let reader = history_as(&base, READER).await;
    assert_eq!(reader["request_data"]["parameters"]["redacted"], true);
    assert_eq!(
        reader["request_data"]["parameters"]["quality_level"], "high",
        "analysis columns stay readable"
    );
    assert_eq!(reader["result_data"]["error_message"], "[redacted]");
    ingest.stop().await;

    // Nothing readable on disk.
    for secret in [SECRET_DOC, "Jane Doe"] {
        for entry in walk(dir) {
            let bytes = std::fs::read(&entry).unwrap();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret:?} in {}",
                entry.display()
            );
        }
    }

    // Crypto-shredding: without key k1, the sealed fields are gone for everyone.
    let mut ingest = start(dir, "k2", [9; 32]).await;
    let admin = history_as(&ingest.base, ADMIN).await;
    assert_eq!(admin["request_data"]["parameters"]["erased"], true);
    assert_eq!(admin["result_data"]["error_message"], "[erased]");
    ingest.stop().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_look_sealed_are_refused() {
    let scratch = TestDir::new("sensitive-lookalike");
    let mut ingest = start(scratch.path(), "k1", [8; 32]).await;
    let lookalike =
        json!({"interaction_id": "s9", "error_code": "E", "error_message": "sealed:v2:k1:AAAA"});
    let answer = http()
        .post(format!("{}/v1/interactions/s9/error", ingest.base))
        .bearer_auth(KEY)
        .json(&lookalike)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(
        body["error"]["field"], "result_data.error_message",
        "{body}"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interaction_marked_sensitive_at_its_start_stays_sealed_to_its_end() {
    let scratch = TestDir::new("sensitive-marked");
    let readers = ReaderTokens::from_tokens([READER]);
    readers.add_admin("ops", ADMIN);
    // The MCP itself is not sensitive: only this interaction says so.
    let mut ingest = InProcessIngest::start(
        test_config(scratch.path()),
        Arc::new(SqliteStore::open(&scratch.path().join("interactions.db")).unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(readers),
    )
    .await;
    let start = json!({"interaction_id": "m1", "request_data": {"parameters": {"privacy_level": "sensitive"}}});
    let error = json!({"error_code": "OCR_FAILED", "error_message": SECRET_ERROR});
    for (path, body) in [
        ("/v1/interactions", start),
        ("/v1/interactions/m1/error", error),
    ] {
        let answer = http()
            .post(format!("{}{path}", ingest.base))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 202, "{path}");
    }
    let reader = history_as(&ingest.base, READER).await;
    assert_eq!(reader["result_data"]["error_message"], "[redacted]");
    let admin = history_as(&ingest.base, ADMIN).await;
    assert_eq!(admin["result_data"]["error_message"], SECRET_ERROR);
    ingest.stop().await;
    for entry in walk(scratch.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(8).any(|w| w == &SECRET_ERROR.as_bytes()[..8]),
            "the error message is readable in {}",
            entry.display()
        );
    }
}
