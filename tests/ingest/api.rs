//! The ingest server over HTTP: the seed's protocol, REST, batches, authentication, bad input,
//! and durability through store outages and restarts.

use test_support as common;

use common::http_client as http;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, TestDir};
use futures::future::BoxFuture;
use futures::FutureExt;
use mcp_coordinator::ingest::state::Limits;
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::interaction::InteractionEvent;
use mcp_coordinator::pipeline::SpoolConfig;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::store::{EventSink, Heartbeats, StoreError, Stores};
use mcp_coordinator::trust::keys::ReaderTokens;
use serde_json::{json, Value};

const KEY: &str = "mcpk_test_key_of_ocr_0123456789";
const OTHER_KEY: &str = "mcpk_test_key_of_gpt_0123456789";
const READER: &str = "reader-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// A store whose writes can be switched off (unavailable) and that can refuse one interaction id
/// as poison; reads go to the embedded store underneath.
struct Switchable {
    inner: Arc<SqliteStore>,
    up: AtomicBool,
    poison_id: Option<String>,
}

impl EventSink for Switchable {
    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            if !self.up.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable("switched off by the test".into()));
            }
            if let Some(p) = &self.poison_id {
                if events.iter().any(|e| &e.interaction_id == p) {
                    return Err(StoreError::Rejected(format!("{p} is poison")));
                }
            }
            self.inner.insert(events).await
        }
        .boxed()
    }
}

impl Heartbeats for Switchable {
    fn record_heartbeats<'a>(
        &'a self,
        beats: &'a [(String, i64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            if !self.up.load(Ordering::Relaxed) {
                return Err(StoreError::Unavailable("switched off by the test".into()));
            }
            self.inner.record_heartbeats(beats).await
        }
        .boxed()
    }

    fn heartbeats(
        &self,
    ) -> BoxFuture<'_, Result<std::collections::HashMap<String, i64>, StoreError>> {
        self.inner.heartbeats()
    }
}

struct Ingest {
    base: String,
    server: InProcessIngest,
    store: Arc<Switchable>,
    /// Removed with the server, when the test started it in a scratch directory of its own.
    _dir: Option<TestDir>,
}

impl Ingest {
    async fn stop(mut self) {
        self.server.stop().await;
    }
}

async fn start_with(dir: PathBuf, store: Arc<Switchable>, limits: Limits) -> Ingest {
    let readers = ReaderTokens::from_tokens([READER]);
    readers.add_admin("ops", ADMIN);
    let config = IngestConfig {
        // Small segments, so the outage test sees shipped segments deleted.
        spool: SpoolConfig {
            dir: dir.join("spool"),
            segment_bytes: 64 * 1024,
            max_bytes: 64 << 20,
        },
        limits,
        batch_max: 500,
        drain_timeout: Duration::from_millis(500),
        ..test_config(&dir)
    };
    let keys = key_ring(&[
        ("ocr_workflow_mcp_001", KEY),
        ("gpt_adapter_mcp_001", OTHER_KEY),
    ]);
    let stores = Stores {
        events: store.clone(),
        heartbeats: store.clone(),
        ..Stores::of(store.inner.clone())
    };
    let server = InProcessIngest::start(config, stores, keys, Arc::new(readers)).await;
    Ingest {
        base: server.base.clone(),
        server,
        store,
        _dir: None,
    }
}

fn store_in(dir: &std::path::Path, up: bool, poison_id: Option<&str>) -> Arc<Switchable> {
    Arc::new(Switchable {
        inner: Arc::new(SqliteStore::open(&dir.join("interactions.db")).unwrap()),
        up: AtomicBool::new(up),
        poison_id: poison_id.map(str::to_string),
    })
}

async fn start(name: &str) -> Ingest {
    let dir = TestDir::new(&format!("ingest-{name}"));
    let store = store_in(dir.path(), true, None);
    let mut ingest = start_with(dir.path().to_path_buf(), store, Limits::default()).await;
    ingest._dir = Some(dir);
    ingest
}

async fn post(base: &str, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http().post(format!("{base}{path}")).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls history until `n` interactions are there (the shipper works asynchronously).
async fn wait_for_history(base: &str, mcp: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(
            base,
            &format!("/v1/mcps/{mcp}/interactions?limit=1000"),
            Some(READER),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let items = body["interactions"].as_array().cloned().unwrap_or_default();
        if items.len() >= n {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {n} interactions arrived",
            items.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls until the newest interaction of the test MCP has `status`.
async fn wait_for_status(base: &str, status: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let items = wait_for_history(base, "ocr_workflow_mcp_001", 1).await;
        if items[0]["status"] == status {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never became {status}: {}",
            items[0]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_protocol_start_and_complete_become_one_interaction() {
    let ingest = start("seed").await;
    let start_report = json!({"action": "report_interaction_start", "api_key": KEY, "data": {
        "interaction_id": "int_20250615_194500_abc123", "mcp_id": "ocr_workflow_mcp_001",
        "request_info": {"user_id": "user_12345", "request_type": "ocr_processing", "input_size": 1024000}}});
    let (status, body) = post(&ingest.base, "/api/interactions", None, start_report).await;
    assert_eq!(status, 202, "{body}");
    let complete = json!({"action": "report_interaction_complete", "api_key": KEY, "data": {
        "interaction_id": "int_20250615_194500_abc123", "processing_time": 5.333, "success": true,
        "quality_score": 0.95, "resource_usage": {"cpu_usage": 45.2, "memory_usage": 512.5}}});
    assert_eq!(
        post(&ingest.base, "/api/interactions", None, complete)
            .await
            .0,
        202
    );
    let items = wait_for_status(&ingest.base, "completed").await;
    assert_eq!(items.len(), 1, "start and complete are one interaction");
    let i = &items[0];
    let user = i["request_data"]["user_id"].as_str().unwrap();
    assert!(
        user.starts_with("u_") && !user.contains("12345"),
        "user ids are pseudonymized: {user}"
    );
    assert_eq!(i["processing_data"]["processing_time"], 5.333);
    assert_eq!(i["result_data"]["success"], true);
    assert_eq!(i["status"], "completed");
    let (status, metrics) = get(
        &ingest.base,
        "/v1/mcps/ocr_workflow_mcp_001/metrics?range=15m",
        Some(READER),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(metrics["metrics"]["count"], 1);
    assert_eq!(metrics["metrics"]["success_rate"], 1.0);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_flow_assigns_ids_and_answers_queries() {
    let ingest = start("rest").await;
    let (status, body) = post(
        &ingest.base,
        "/v1/interactions",
        Some(KEY),
        json!({"request_data": {"request_type": "ocr"}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = body["interaction_id"].as_str().unwrap().to_string();
    // The seed's `int_YYYYMMDD_HHMMSS_` and 64 random bits.
    let parts: Vec<&str> = id.split('_').collect();
    assert_eq!(parts.len(), 4, "{id}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3].len()),
        ("int", 8, 6, 16),
        "{id}"
    );
    let base = &ingest.base;
    assert_eq!(
        post(
            base,
            &format!("/v1/interactions/{id}/progress"),
            Some(KEY),
            json!({"steps_executed": ["validation"], "progress": 0.5})
        )
        .await
        .0,
        202
    );
    assert_eq!(post(base, &format!("/v1/interactions/{id}/error"), Some(KEY), json!({"error_code": "OCR_TIMEOUT", "error_message": "took too long", "processing_time": 30.0})).await.0, 202);
    let items = wait_for_status(base, "failed").await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["processing_data"]["steps_executed"],
        json!(["validation"])
    );
    let (_, all) = get(base, "/v1/metrics?range=1h", Some(READER)).await;
    assert_eq!(all["mcps"][0]["errors_by_code"]["OCR_TIMEOUT"], 1);
    let (status, beat) = post(base, "/v1/heartbeat", Some(KEY), json!({})).await;
    assert_eq!(
        (status, beat["mcp_id"].as_str()),
        (200, Some("ocr_workflow_mcp_001"))
    );
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains(
            "mcp_ingest_events_received_total{event=\"start\",mcp_id=\"ocr_workflow_mcp_001\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("mcp_ingest_spool_records"));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_authorization() {
    let ingest = start("auth").await;
    let base = &ingest.base;
    let report = json!({"interaction_id": "int_a", "mcp_id": "ocr_workflow_mcp_001"});
    assert_eq!(
        post(base, "/v1/interactions", None, report.clone()).await.0,
        401
    );
    assert_eq!(
        post(
            base,
            "/v1/interactions",
            Some("mcpk_unknown_key_000000"),
            report.clone()
        )
        .await
        .0,
        401
    );
    let (status, body) = post(base, "/v1/interactions", Some(OTHER_KEY), report).await;
    assert_eq!(status, 403, "another MCP's key: {body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("gpt_adapter_mcp_001"));
    assert_eq!(
        get(base, "/v1/mcps/ocr_workflow_mcp_001/interactions", None)
            .await
            .0,
        401
    );
    // Roles: an MCP's key reads its own data only; readers read everything.
    let status = |path: &'static str, token: Option<&'static str>| async move {
        get(base, path, token).await.0
    };
    assert_eq!(
        status("/v1/mcps/ocr_workflow_mcp_001/interactions", Some(KEY)).await,
        200
    );
    assert_eq!(
        status("/v1/mcps/ocr_workflow_mcp_001/metrics", Some(KEY)).await,
        200
    );
    assert_eq!(
        status(
            "/v1/mcps/ocr_workflow_mcp_001/interactions",
            Some(OTHER_KEY)
        )
        .await,
        403
    );
    assert_eq!(
        status("/v1/metrics", Some(KEY)).await,
        403,
        "all-MCP metrics are for readers"
    );
    assert_eq!(status("/v1/metrics", Some(READER)).await, 200);
    assert_eq!(
        status("/v1/metrics", Some("no-such-token-000000")).await,
        401
    );

    // Every read is audited; only admins read the audit log.
    assert_eq!(status("/v1/audit", Some(READER)).await, 403);
    let (code, audit) = get(base, "/v1/audit?limit=10", Some(ADMIN)).await;
    assert_eq!(code, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let seen: Vec<(String, String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["who"].as_str().unwrap().into(),
                e["role"].as_str().unwrap().into(),
                e["query"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        seen.contains(&(
            "ocr_workflow_mcp_001".into(),
            "mcp".into(),
            "history".into()
        )),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("reader-0".into(), "reader".into(), "all_metrics".into())),
        "{seen:?}"
    );
    assert!(
        !seen.iter().any(|(who, _, _)| who == "gpt_adapter_mcp_001"),
        "refused reads return nothing, so there is nothing to audit: {seen:?}"
    );
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_the_field_named() {
    let ingest = start("bad").await;
    let base = &ingest.base;
    let raw = |body: &'static str, ctype: &'static str| {
        http()
            .post(format!("{base}/v1/interactions"))
            .bearer_auth(KEY)
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    let r = raw("{not json", "application/json").await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    assert_eq!(
        raw("{}", "text/plain").await.unwrap().status().as_u16(),
        415
    );
    let deep: &'static str =
        Box::leak(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_boxed_str());
    assert_eq!(
        raw(deep, "application/json")
            .await
            .unwrap()
            .status()
            .as_u16(),
        400,
        "deep nesting"
    );
    let invalid_utf8 = http()
        .post(format!("{base}/v1/interactions"))
        .bearer_auth(KEY)
        .header("content-type", "application/json")
        .body(vec![b'{', 0xff, 0xfe, b'}'])
        .send()
        .await
        .unwrap();
    assert_eq!(invalid_utf8.status().as_u16(), 400, "invalid UTF-8");
    let (status, body) = post(
        base,
        "/v1/interactions",
        Some(KEY),
        json!({"request_data": {"input_size": "big"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "request_data.input_size");
    // An error report without a code is the seed's report_interaction_error as written: kept,
    // as UNKNOWN_ERROR.
    let (status, body) = post(
        base,
        "/v1/interactions/int_x/error",
        Some(KEY),
        json!({"error_message": "no code"}),
    )
    .await;
    assert_eq!(
        (status, body["success"].as_bool()),
        (202, Some(true)),
        "{body}"
    );
    let (status, body) = post(
        base,
        "/api/interactions",
        None,
        json!({"action": "report_everything", "api_key": KEY, "data": {}}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("action"))
    );
    let (status, body) = post(base, "/api/interactions", None, json!({"action": "report_interaction_complete", "api_key": KEY, "data": {"interaction_id": "i", "quality_score": 7}})).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("data.result_data.quality_score"))
    );
    let huge = json!({"request_data": {"parameters": {"blob": "x".repeat(2 << 20)}}});
    assert_eq!(post(base, "/v1/interactions", Some(KEY), huge).await.0, 413);
    assert_eq!(get(base, "/v1/nothing", None).await.0, 404);
    assert_eq!(
        get(
            base,
            "/v1/mcps/ocr_workflow_mcp_001/metrics?range=3w",
            Some(READER)
        )
        .await
        .0,
        400
    );
    // Nothing refused above reached the store: only the error report without a code.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let history = wait_for_history(base, "ocr_workflow_mcp_001", 1).await;
    let ids: Vec<&str> = history
        .iter()
        .filter_map(|i| i["interaction_id"].as_str())
        .collect();
    assert_eq!(ids, ["int_x"]);
    assert_eq!(history[0]["result_data"]["error_code"], "UNKNOWN_ERROR");
    assert_eq!(history[0]["result_data"]["success"], false);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_answer_per_record_in_json_and_ndjson() {
    let ingest = start("batch").await;
    let base = &ingest.base;
    let records = json!([
        {"interaction_id": "b1", "timestamp": "2026-11-24T10:00:00.000Z", "result_data": {"success": true}, "processing_data": {"processing_time": 1.5}},
        {"interaction_id": "b2", "result_data": {"quality_score": "excellent"}},
        {"result_data": {"success": true}},
        {"interaction_id": "b3", "mcp_id": "gpt_adapter_mcp_001"}
    ]);
    let (status, body) = post(base, "/v1/interactions:batch", Some(KEY), records).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(body["results"][1]["field"], "result_data.quality_score");
    assert_eq!(body["results"][2]["field"], "interaction_id");
    assert_eq!(body["results"][3]["field"], "mcp_id");
    let ndjson = "{\"interaction_id\": \"n1\"}\n{broken\n{\"interaction_id\": \"n2\"}\n";
    let r = http()
        .post(format!("{base}/v1/interactions:batch"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    wait_for_history(base, "ocr_workflow_mcp_001", 3).await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_reports_survive_a_store_outage_and_a_restart() {
    let scratch = TestDir::new("ingest-outage");
    let dir = scratch.path().to_path_buf();
    let store = store_in(&dir, false, None);
    let ingest = start_with(dir.clone(), store, Limits::default()).await;
    for i in 0..200 {
        let (status, _) = post(
            &ingest.base,
            "/v1/interactions",
            Some(KEY),
            json!({"interaction_id": format!("o{i}")}),
        )
        .await;
        assert_eq!(status, 202, "acknowledged while the store is down");
    }
    // Shut down with the store still down: the spool keeps everything.
    ingest.stop().await;
    let store = store_in(&dir, false, None);
    let ingest = start_with(dir.clone(), store, Limits::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ingest.store.up.store(true, Ordering::Relaxed);
    let items = wait_for_history(&ingest.base, "ocr_workflow_mcp_001", 200).await;
    assert_eq!(items.len(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_dir(dir.join("spool")).unwrap().all(|e| {
        let p = e.unwrap().path();
        !p.to_string_lossy().ends_with(".log")
            || std::fs::metadata(&p).map(|m| m.len() == 0).unwrap_or(true)
            || p == latest_segment(&dir)
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "shipped segments were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ingest.stop().await;
}

fn latest_segment(dir: &std::path::Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".log"))
        .collect();
    segs.sort();
    segs.pop().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_set_aside_without_blocking_the_rest() {
    let scratch = TestDir::new("ingest-poison");
    let dir = scratch.path().to_path_buf();
    let store = store_in(&dir, true, Some("bad"));
    let ingest = start_with(dir.clone(), store, Limits::default()).await;
    for id in ["good1", "bad", "good2"] {
        assert_eq!(
            post(
                &ingest.base,
                "/v1/interactions",
                Some(KEY),
                json!({"interaction_id": id})
            )
            .await
            .0,
            202
        );
    }
    let items = wait_for_history(&ingest.base, "ocr_workflow_mcp_001", 2).await;
    assert_eq!(items.len(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let poison = dir.join("spool/poison.ndjson");
    while !poison.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no poison file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::fs::read_to_string(&poison)
        .unwrap()
        .contains("\"bad\""));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_store_is_refused_before_the_spool_and_the_rest_arrive() {
    let scratch = TestDir::new("ingest-oversize");
    let dir = scratch.path().to_path_buf();
    let store = store_in(&dir, true, None);
    let limits = Limits {
        batch_bytes: 32 << 20,
        ..Limits::default()
    };
    let ingest = start_with(dir, store, limits).await;
    // Free-form parameters are kept as JSON text, escapes included: 9 MiB of backslashes is an
    // 18 MiB body, and a record of more than 16 MiB.
    let blob = "\\".repeat(9 << 20);
    let records = json!([
        {"interaction_id": "huge", "request_data": {"parameters": {"blob": blob}}},
        {"interaction_id": "small", "result_data": {"success": true}},
    ]);
    let (status, body) = post(&ingest.base, "/v1/interactions:batch", Some(KEY), records).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{body}"
    );
    assert_eq!(body["results"][0]["accepted"], false);
    assert!(
        body["results"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("bytes once stored")),
        "{body}"
    );
    let items = wait_for_history(&ingest.base, "ocr_workflow_mcp_001", 1).await;
    assert_eq!(items[0]["interaction_id"], "small");
    // Nothing of the refused record stays counted against the spool.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = common::get_text(&format!("{}/metrics", ingest.base)).await;
        if metrics.contains("mcp_ingest_spool_bytes 0\n") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool bytes never drained: {}",
            metrics
                .lines()
                .filter(|l| l.starts_with("mcp_ingest_spool"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_and_breakdowns_cut_metrics_by_time_and_request_type() {
    let ingest = start("series").await;
    let base = &ingest.base;
    let now = jiff::Timestamp::now().as_millisecond();
    // Twelve interactions, one every 10 minutes of the last two hours: even ones "ocr" and
    // completed, odd ones "translate" and failed.
    for i in 0..12i64 {
        let at = now - 115 * 60_000 + i * 10 * 60_000;
        let at_text = jiff::Timestamp::from_millisecond(at).unwrap().to_string();
        let (request_type, result) = if i % 2 == 0 {
            ("ocr", json!({"success": true}))
        } else {
            ("translate", json!({"success": false, "error_code": "BAD"}))
        };
        let (status, body) = post(
            base,
            "/v1/interactions",
            Some(KEY),
            json!({"interaction_id": format!("int_series_{i}"), "timestamp": at_text,
                   "request_data": {"request_type": request_type},
                   "processing_data": {"processing_time": 1.0 + i as f64},
                   "result_data": result}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    wait_for_history(base, "ocr_workflow_mcp_001", 12).await;

    let path = "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=2h&step=30m";
    let (status, body) = get(base, path, Some(READER)).await;
    assert_eq!(status, 200, "{body}");
    let points = body["series"][0]["points"].as_array().unwrap();
    // 2 h in 30 m steps from the whole minute the window starts in: four buckets, and a fifth
    // for the seconds of the current minute.
    assert!((4..=5).contains(&points.len()), "{body}");
    let counts: Vec<u64> = points
        .iter()
        .map(|p| p["metrics"]["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 12, "{body}");
    assert!(
        counts[..4].iter().all(|n| (2..=4).contains(n)),
        "{counts:?}"
    );
    assert_eq!(
        points[1]["metrics"]["failed"].as_u64().unwrap()
            + points[1]["metrics"]["completed"].as_u64().unwrap(),
        counts[1]
    );

    let path =
        "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=2h&step=1h&group_by=request_type";
    let (status, body) = get(base, path, Some(READER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["group_by"], "request_type");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 2, "{body}");
    let ocr = series.iter().find(|s| s["value"] == "ocr").unwrap();
    let total: u64 = ocr["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metrics"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6);
    assert!(ocr["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["metrics"]["failed"] == 0));

    let (status, body) = get(
        base,
        "/v1/mcps/ocr_workflow_mcp_001/metrics?range=3h&group_by=request_type",
        Some(READER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["metrics"]["count"], 12);
    let translate = body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["value"] == "translate")
        .unwrap();
    assert_eq!(translate["metrics"]["failed"], 6);
    assert_eq!(translate["metrics"]["errors_by_code"]["BAD"], 6);
    let (status, all) = get(
        base,
        "/v1/metrics?range=3h&group_by=request_type",
        Some(READER),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(all["groups"].as_array().unwrap().len(), 2, "{all}");

    for (path, field) in [
        (
            "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=1h&step=30s",
            "step",
        ),
        (
            "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=7d&step=1m",
            "step",
        ),
        (
            "/v1/mcps/ocr_workflow_mcp_001/metrics?group_by=user_id",
            "group_by",
        ),
    ] {
        let (status, body) = get(base, path, Some(READER)).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}: {body}"
        );
    }
    // Another MCP's key may not read this MCP's series.
    let (status, _) = get(
        base,
        "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=1h",
        Some(OTHER_KEY),
    )
    .await;
    assert_eq!(status, 403);
    let (_, audit) = get(base, "/v1/audit?limit=100", Some(ADMIN)).await;
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["query"] == "series"));
    ingest.stop().await;
}

#[tokio::test]
async fn wrong_methods_tokens_and_names_get_answers_that_say_what_to_do() {
    let ingest = start("first-hour").await;
    let base = &ingest.base;
    // A method the path does not take: 405 with the methods it does take.
    let response = http()
        .delete(format!("{base}/v1/interactions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(
        response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let response = http()
        .post(format!("{base}/v1/mcps/ocr_workflow_mcp_001/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            response.status().as_u16(),
            response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
        ),
        (405, Some("GET"))
    );
    // A reader token used to write is told it is a reader token, not "unknown".
    let (status, body) = post(
        base,
        "/v1/interactions",
        Some(READER),
        json!({"request_data": {"request_type": "ocr"}}),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("reader or admin token") && m.contains("mcp-key")),
        "{body}"
    );
    // Metrics of an MCP nobody registered: 404, not a page of zeros; a known, quiet one: zeros.
    let (status, body) = get(base, "/v1/mcps/nobody_tool_mcp_001/metrics", Some(READER)).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no MCP nobody_tool_mcp_001"));
    let (status, body) = get(base, "/v1/mcps/ocr_workflow_mcp_001/metrics", Some(READER)).await;
    assert_eq!(
        (status, &body["metrics"]["count"]),
        (200, &json!(0)),
        "{body}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_endpoint_the_server_answers() {
    let ingest = start("openapi").await;
    let base = &ingest.base;
    let (status, doc) = get(base, "/openapi.json", None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{paths:?}");
    for (template, operations) in paths {
        let path = template
            .replace("{mcp_id}", "ocr_workflow_mcp_001")
            .replace("{interaction_id}", "int_openapi");
        for (method, operation) in operations.as_object().unwrap() {
            let token = if operation["description"]
                .as_str()
                .is_some_and(|d| d.contains("admin token>"))
            {
                ADMIN
            } else if operation["description"]
                .as_str()
                .is_some_and(|d| d.contains("reader"))
            {
                READER
            } else {
                KEY
            };
            let request = match method.as_str() {
                "get" => http().get(format!("{base}{path}")),
                "post" => http().post(format!("{base}{path}")).json(&json!({})),
                other => panic!("{other}"),
            };
            let response = request.bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let unrouted = status == 405
                || (status == 404
                    && body["error"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("no such endpoint")));
            assert!(
                !unrouted,
                "{method} {template} is documented but not served: {status} {body}"
            );
        }
    }
    // The report schema knows every key of the seed's standard record.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/seed/interaction_record.json"),
        )
        .unwrap(),
    )
    .unwrap();
    fn known(value: &Value, schema: &Value, at: &str) {
        let Some(object) = value.as_object() else {
            return;
        };
        if schema["additionalProperties"] == true {
            return;
        }
        for (key, inner) in object {
            let property = &schema["properties"][key];
            assert!(
                property.is_object(),
                "{at}{key} is not in the report schema"
            );
            known(inner, property, &format!("{at}{key}."));
        }
    }
    known(&record, &doc["components"]["schemas"]["Report"], "");
}

/// Issue 34, attack 4: 12 request types × 2,000 one-minute buckets answered 24,000 points (and
/// 2,000 types would have needed ~25 GB). Groups beyond what fits in 20,000 points fold into one
/// `other` series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_4_a_series_answer_holds_at_most_20000_points_whatever_the_groups() {
    let ingest = start("series-bound").await;
    let base = &ingest.base;
    for t in 0..60 {
        let (status, body) = post(
            base,
            "/v1/interactions",
            Some(KEY),
            json!({"interaction_id": format!("int_bound_{t}"),
                   "request_data": {"request_type": format!("type{t:02}")},
                   "result_data": {"success": false, "error_code": format!("E{t:02}")}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    wait_for_history(base, "ocr_workflow_mcp_001", 60).await;
    let path =
        "/v1/mcps/ocr_workflow_mcp_001/metrics/series?range=1999m&step=1m&group_by=request_type";
    let (status, body) = get(base, path, Some(READER)).await;
    assert_eq!(status, 200);
    let series = body["series"].as_array().unwrap();
    let points: usize = series
        .iter()
        .map(|s| s["points"].as_array().unwrap().len())
        .sum();
    assert!(points <= 20_000, "{points} points in one answer");
    assert_eq!(series.len(), 10, "9 groups and other");
    let other = series.last().unwrap();
    assert_eq!(other["other"], true);
    assert_eq!(other["groups"], 51);
    let folded: u64 = other["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metrics"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(folded, 51, "every interaction is counted once");

    // The 60 error codes clients chose: an answer names 20 and counts the rest; and the 60
    // request types: a metrics answer lists 50 and folds the rest.
    let (_, body) = get(
        base,
        "/v1/mcps/ocr_workflow_mcp_001/metrics?range=1h&group_by=request_type",
        Some(READER),
    )
    .await;
    let codes = body["metrics"]["errors_by_code"].as_object().unwrap();
    assert_eq!(codes.len(), 21, "{body}");
    assert_eq!(codes["OTHER"], 40);
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 51, "{body}");
    assert_eq!(groups[50]["other"], true);
    assert_eq!(groups[50]["groups"], 10);
    assert_eq!(groups[50]["metrics"]["count"], 10);
    ingest.stop().await;
}

/// Issue 34, attack 5: 8 records of 8 MiB made a 64 MiB page (and `limit=1000` allowed 16 GB).
/// A page now ends at `--max-page-bytes`, and its `next_cursor` reads on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_5_a_history_page_ends_at_its_bytes_and_the_cursor_reads_on() {
    let dir = TestDir::new("ingest-page-bytes");
    let store = store_in(dir.path(), true, None);
    let limits = Limits {
        page_bytes: 1 << 20,
        ..Limits::default()
    };
    let ingest = start_with(dir.path().to_path_buf(), store, limits).await;
    let base = &ingest.base;
    let at = "2026-01-01T00:00:00Z";
    for i in 0..8 {
        let (status, body) = post(
            base,
            "/v1/interactions",
            Some(KEY),
            json!({"interaction_id": format!("int_big_{i}"), "timestamp": at,
                   "request_data": {"parameters": {"blob": "x".repeat(700_000)}}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    // Walks every page; the shipper may still be storing the last reports, so walk again until
    // all eight are there.
    let walk = || async {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut path = "/v1/mcps/ocr_workflow_mcp_001/interactions?limit=1000".to_string();
            if let Some(c) = &cursor {
                path += &format!("&cursor={}", urlencode(c));
            }
            let response = http()
                .get(format!("{base}{path}"))
                .bearer_auth(READER)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let text = response.text().await.unwrap();
            assert!(text.len() < 1_500_000, "a page of {} bytes", text.len());
            let body: Value = serde_json::from_str(&text).unwrap();
            for i in body["interactions"].as_array().unwrap() {
                seen.push(i["interaction_id"].as_str().unwrap().to_string());
            }
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
        }
        seen
    };
    let mut seen = walk().await;
    for _ in 0..100 {
        if seen.len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = walk().await;
    }
    seen.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("int_big_{i}")).collect();
    assert_eq!(seen, expected, "every interaction once, across pages");
    let (status, body) = get(
        base,
        "/v1/mcps/ocr_workflow_mcp_001/interactions?cursor=yesterday",
        Some(READER),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body["error"].to_string().contains("cursor"), "{body}");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Issue 37: `helm test` checks the ingest server's store takes a write and reads it back
/// (`GET /v1/store`, through `mcp-coordinator ready --store-url`), and says so when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_check_writes_and_reads_back_and_says_when_the_store_is_away() {
    let ingest = start("store-check").await;
    let base = &ingest.base;
    let (status, body) = get(base, "/v1/store", Some(READER)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["written"].clone(), body["read"].clone()),
        (json!(true), json!(true))
    );
    let (status, _) = get(base, "/v1/store", None).await;
    assert_eq!(status, 401);
    let (_, audit) = get(base, "/v1/audit?limit=10", Some(ADMIN)).await;
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["query"] == "store_check"),
        "{audit}"
    );

    let dir = TestDir::new("store-check-ready");
    let token_file = dir.join("token");
    std::fs::write(&token_file, READER).unwrap();
    let ready = |base: &str| {
        std::process::Command::new(common::ingest::bin())
            .args(["ready", "--url", base, "--store-url", base, "--token-file"])
            .arg(&token_file)
            .output()
            .expect("ready runs")
    };
    let out = ready(base);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("written and read"));

    // A ClickHouse that is not there: the check fails, and says why.
    let readers = ReaderTokens::from_tokens([READER]);
    let away = mcp_coordinator::store::clickhouse::LazyClickHouseStore::new(
        mcp_coordinator::store::clickhouse::ClickHouseConfig {
            url: format!("http://127.0.0.1:{}", common::free_port()),
            database: "away".into(),
            user: None,
            password: None,
            max_interaction_ms: mcp_coordinator::store::clickhouse::DEFAULT_MAX_INTERACTION_MS,
            read_rollups: true,
            cluster: None,
            settings: Vec::new(),
        },
    );
    let without = InProcessIngest::start(
        test_config(dir.path()),
        Arc::new(away),
        key_ring(&[]),
        Arc::new(readers),
    )
    .await;
    let (status, body) = get(&without.base, "/v1/store", Some(READER)).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot write to the store"),
        "{body}"
    );
    let out = ready(&without.base);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot write to the store"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
