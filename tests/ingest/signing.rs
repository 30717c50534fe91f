//! Request signing over HTTP: batches need a fresh, untampered signature; replays are refused.

use test_support as common;

use std::sync::Arc;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use mcp_coordinator::trust::signing::{sign, SigningPolicy};
use serde_json::Value;

const KEY: &str = "mcpk_signing_http_key_0123456789";

async fn start(policy: SigningPolicy) -> (String, TestDir, InProcessIngest) {
    let dir = TestDir::new(&format!("signing-{policy:?}"));
    let ingest = InProcessIngest::start(
        IngestConfig {
            signing: policy,
            ..test_config(dir.path())
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    (ingest.base.clone(), dir, ingest)
}

async fn post(
    base: &str,
    path: &str,
    body: &str,
    timestamp: Option<i64>,
    signature: Option<String>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = timestamp {
        req = req.header("X-MCP-Timestamp", t.to_string());
    }
    if let Some(s) = signature {
        req = req.header("X-MCP-Signature", s);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_need_a_fresh_untampered_signature() {
    let (base, _dir, _ingest) = start(SigningPolicy::Batch).await;
    let path = "/v1/interactions:batch";
    let body = r#"[{"interaction_id": "s1"}]"#;
    let (status, err) = post(&base, path, body, None, None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "{err}"
    );

    let t = now();
    let signature = sign(KEY, "POST", path, &t.to_string(), body.as_bytes());
    assert_eq!(
        post(&base, path, body, Some(t), Some(signature.clone()))
            .await
            .0,
        200
    );
    let (status, err) = post(&base, path, body, Some(t), Some(signature.clone())).await;
    assert_eq!(status, 401);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already received"),
        "{err}"
    );

    let tampered = r#"[{"interaction_id": "s2"}]"#;
    assert_eq!(
        post(&base, path, tampered, Some(t), Some(signature))
            .await
            .0,
        401,
        "tampered body"
    );

    let old = now() - 600;
    let stale = sign(KEY, "POST", path, &old.to_string(), body.as_bytes());
    let (status, err) = post(&base, path, body, Some(old), Some(stale)).await;
    assert_eq!(status, 401);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("clock"),
        "{err}"
    );

    // Under the batch policy, single reports need no signature.
    assert_eq!(
        post(
            &base,
            "/v1/interactions",
            r#"{"interaction_id": "s3"}"#,
            None,
            None
        )
        .await
        .0,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writes_policy_covers_every_report() {
    let (base, _dir, _ingest) = start(SigningPolicy::Writes).await;
    assert_eq!(
        post(
            &base,
            "/v1/interactions",
            r#"{"interaction_id": "w1"}"#,
            None,
            None
        )
        .await
        .0,
        401
    );
    let body = r#"{"interaction_id": "w1"}"#;
    let t = now();
    let signature = sign(
        KEY,
        "POST",
        "/v1/interactions",
        &t.to_string(),
        body.as_bytes(),
    );
    assert_eq!(
        post(&base, "/v1/interactions", body, Some(t), Some(signature))
            .await
            .0,
        202
    );
    let envelope = format!(
        r#"{{"action": "report_interaction_start", "api_key": "{KEY}", "data": {{"interaction_id": "w2"}}}}"#
    );
    assert_eq!(
        post(&base, "/api/interactions", &envelope, None, None)
            .await
            .0,
        401,
        "the envelope too"
    );
}
