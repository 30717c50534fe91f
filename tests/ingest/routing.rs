//! Smart routing end to end: the controller turns logged performance into weights in status and
//! the routing-table ConfigMap; the ingest server answers GET /v1/route from what MCPs report.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{InProcessIngest, TestDir};
use common::*;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::controller::routing::RoutingSettings;
use mcp_coordinator::crd::{MCPRegistration, Phase};
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::routing::table::{Candidate, RoutingTable, CONFIGMAP_KEY, CONFIGMAP_NAME};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::store::{EventSink, Heartbeats};
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
use serde_json::{json, Value};

const READER: &str = "reader-token-for-routing-0123";

struct Ingest {
    url: String,
    store: Arc<SqliteStore>,
    keys: Arc<KeyRing>,
    router: Arc<mcp_coordinator::routing::router::Router>,
    _server: InProcessIngest,
    _dir: TestDir,
}

async fn start_ingest(tag: &str) -> Ingest {
    let dir = TestDir::new(&format!("routing-{tag}"));
    let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).expect("store opens"));
    let keys = Arc::new(KeyRing::default());
    let readers = Arc::new(ReaderTokens::from_tokens([READER]));
    let config = IngestConfig::new(
        "127.0.0.1:0".parse().expect("addr"),
        dir.path().join("spool"),
    )
    .expect("config");
    let router = config.router.clone();
    let server = InProcessIngest::start(config, store.clone(), keys.clone(), readers).await;
    Ingest {
        url: server.base.clone(),
        store,
        keys,
        router,
        _server: server,
        _dir: dir,
    }
}

fn record(mcp_id: &str, n: usize, processing_time: f64, success: bool) -> InteractionEvent {
    let now = jiff::Timestamp::now().as_millisecond();
    InteractionEvent::new(
        format!("int_{mcp_id}_{n}"),
        mcp_id.into(),
        EventKind::Record,
        now,
        Fields {
            timestamp_ms: Some(now),
            start_time_ms: Some(now),
            end_time_ms: Some(now),
            processing_time: Some(processing_time),
            success: Some(success),
            error_code: (!success).then(|| "TIMEOUT".to_string()),
            ..Fields::default()
        },
    )
}

fn routing_of(reg: &MCPRegistration) -> (u32, String) {
    let r = reg
        .status
        .as_ref()
        .and_then(|s| s.routing.as_ref())
        .expect("routing status");
    (r.effective_weight, r.reason.clone())
}

async fn table(api: &Api<ConfigMap>) -> Option<RoutingTable> {
    let cm = api.get_opt(CONFIGMAP_NAME).await.expect("get works")?;
    let text = cm.data?.get(CONFIGMAP_KEY)?.clone();
    Some(serde_json::from_str(&text).expect("the table is valid JSON"))
}

#[tokio::test]
async fn logged_performance_moves_weights_in_status_and_the_routing_table() {
    let server = api_server().await;
    let ingest = start_ingest("weights").await;
    let (fast, slow) = (FakeMcp::start().await, FakeMcp::start().await);
    let mut settings = settings();
    settings.routing = RoutingSettings {
        interval: Duration::from_millis(500),
        window: "15m".into(),
        ingest_url: Some(ingest.url.clone()),
        ingest_token: Some(READER.into()),
    };
    let _controller = start_controller_with(&server, settings);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    for (name, mcp) in [("fast", &fast), ("slow", &slow)] {
        api.create(&PostParams::default(), &registration(name, &mcp.url(), ""))
            .await
            .expect("create");
    }
    let ready = |r: &MCPRegistration| phase(r) == Some(Phase::Ready);
    let fast_id = wait_for(&api, "fast", Duration::from_secs(20), "Ready", ready)
        .await
        .status
        .and_then(|s| s.mcp_id)
        .expect("id");
    let slow_id = wait_for(&api, "slow", Duration::from_secs(20), "Ready", ready)
        .await
        .status
        .and_then(|s| s.mcp_id)
        .expect("id");

    // Ready and no data yet: both at the configured weight, and both in the table.
    let configmaps: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = table(&configmaps).await {
            let c = &t.capabilities["text_extraction"];
            if c.len() == 2 && c.iter().all(|c| c.weight == 100) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "table never listed both at weight 100: {:?}",
            table(&configmaps).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The slow MCP is four times slower than the fast one and fails a fifth of the time.
    let mut events = Vec::new();
    for n in 0..50 {
        events.push(record(&fast_id, n, 0.1, true));
        events.push(record(&slow_id, n, 0.4, n % 5 != 0));
    }
    ingest.store.insert(&events).await.expect("insert");

    let slow_reg = wait_for(
        &api,
        "slow",
        Duration::from_secs(10),
        "weighted down",
        |r| {
            r.status
                .as_ref()
                .and_then(|s| s.routing.as_ref())
                .is_some_and(|r| r.effective_weight < 60)
        },
    )
    .await;
    let fast_reg = wait_for(&api, "fast", Duration::from_secs(10), "weighted up", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.routing.as_ref())
            .is_some_and(|r| r.effective_weight > 100)
    })
    .await;
    let (slow_weight, slow_reason) = routing_of(&slow_reg);
    let (fast_weight, fast_reason) = routing_of(&fast_reg);
    // Peers' median p95 = 0.25 s. Success smoothed by the prior (9.5 of 10): fast (50 + 9.5) / 60,
    // squared, × √min(2.5, 2) → 139; slow ((40 + 9.5) / 60)² × √0.625 → 54.
    assert_eq!(fast_weight, 139, "{fast_reason}");
    assert_eq!(slow_weight, 54, "{slow_reason}");
    assert!(
        slow_reason.contains("success 80.0% of 50"),
        "the reason says why: {slow_reason}"
    );
    assert!(
        slow_reason.contains("p95 0.400 s vs peers 0.250 s"),
        "{slow_reason}"
    );

    // Same data, several more intervals: no status rewrites.
    let rv = api
        .get("slow")
        .await
        .expect("get")
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        api.get("slow")
            .await
            .expect("get")
            .metadata
            .resource_version,
        rv,
        "status rewritten without a change"
    );

    // The table follows status; the better MCP is listed first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(t) = table(&configmaps).await {
            let c = &t.capabilities["text_extraction"];
            if c.iter()
                .map(|c| (c.mcp_id.as_str(), c.weight))
                .collect::<Vec<_>>()
                == [(fast_id.as_str(), 139), (slow_id.as_str(), 54)]
            {
                assert_eq!(c[0].endpoint, fast.url());
                assert_eq!(c[0].max_concurrent_requests, 10, "the seed's default");
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "table did not follow: {:?}",
            table(&configmaps).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The fast MCP goes down: weight 0 in status and in the table, whatever its history.
    fast.set_healthy(false);
    wait_for(&api, "fast", Duration::from_secs(15), "unroutable", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.routing.as_ref())
            .is_some_and(|r| r.effective_weight == 0)
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while table(&configmaps).await.is_none_or(|t| {
        t.capabilities["text_extraction"]
            .iter()
            .any(|c| c.mcp_id == fast_id && c.weight != 0)
    }) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "table still routes to the down MCP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Someone who can write ConfigMaps publishes a table of their own for the same capability.
    let forged: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "mcp-routing-table"},
        "data": {"routing-table.json": serde_json::to_string(&json!({"capabilities": {"text_extraction": [
            {"mcpId": "forged_mcp_001", "name": "forged", "namespace": "evil",
             "endpoint": "http://attacker.example", "processPath": "/process",
             "priority": 0, "weight": 1000, "maxConcurrentRequests": 1000}
        ]}})).unwrap()}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client(&server), "evil")
        .create(&PostParams::default(), &forged)
        .await
        .unwrap();
    // The ingest server builds the same table from the registrations (as the chart runs it), never
    // from ConfigMaps, and routes away from the down MCP.
    tokio::spawn(mcp_coordinator::ingest::routes::watch_registrations(
        client(&server),
        None,
        ingest.router.clone(),
        Default::default(),
        Default::default(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = route(&ingest, "capability=text_extraction", Some(READER)).await;
        assert_ne!(body["mcp_id"], "forged_mcp_001", "routed to a forged table");
        if status == 200 && body["mcp_id"] == slow_id.as_str() {
            assert!(
                body["fallbacks"].as_array().is_some_and(|f| f.is_empty()),
                "{body}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the route never came from the registrations: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(ingest.keys);
}

#[tokio::test]
async fn a_routing_table_file_is_followed_and_a_broken_edit_keeps_the_last_good_table() {
    let ingest = start_ingest("file").await;
    let path = ingest._dir.join("routing-table.json");
    let write = |candidates: Vec<Candidate>| {
        let table = RoutingTable {
            capabilities: [("ocr".to_string(), candidates)].into(),
        };
        std::fs::write(&path, serde_json::to_vec(&table).expect("JSON")).expect("write");
    };
    write(vec![candidate("first", 0, 10)]);
    mcp_coordinator::ingest::routes::follow_file(path.clone(), ingest.router.clone())
        .await
        .expect("the file loads");
    assert_eq!(
        route(&ingest, "capability=ocr", Some(READER)).await.1["mcp_id"],
        "first"
    );
    write(vec![candidate("second", 0, 10)]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while route(&ingest, "capability=ocr", Some(READER)).await.1["mcp_id"] != "second" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edit was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&path, "{ not json").expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        route(&ingest, "capability=ocr", Some(READER)).await.1["mcp_id"],
        "second"
    );
    let missing = mcp_coordinator::ingest::routes::follow_file(
        ingest._dir.join("absent.json"),
        ingest.router.clone(),
    )
    .await;
    assert!(missing.is_err_and(|e| e.to_string().contains("absent.json")));
}

fn candidate(id: &str, priority: u32, max: u32) -> Candidate {
    Candidate {
        mcp_id: id.into(),
        name: id.into(),
        namespace: "default".into(),
        endpoint: format!("http://{id}.default.svc:8080"),
        process_path: "/process".into(),
        priority,
        weight: 100,
        max_concurrent_requests: max,
    }
}

async fn route(ingest: &Ingest, query: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http_client().get(format!("{}/v1/route?{query}", ingest.url));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

async fn report(ingest: &Ingest, key: &str, path: &str, body: Value) {
    let response = http_client()
        .post(format!("{}{path}", ingest.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("report");
    assert_eq!(
        response.status().as_u16(),
        202,
        "{:?}",
        response.text().await
    );
}

#[tokio::test]
async fn the_route_endpoint_fails_over_when_a_tier_is_saturated_and_learns_from_reports() {
    let ingest = start_ingest("route").await;
    ingest.router.install(&RoutingTable {
        capabilities: [(
            "ocr".to_string(),
            vec![
                candidate("primary", 0, 2),
                candidate("other", 0, 50),
                candidate("backup", 1, 50),
            ],
        )]
        .into(),
    });
    for id in ["primary", "other", "backup"] {
        ingest
            .keys
            .set(id, &format!("key-of-{id}-0123456789abcdef"));
    }

    let (status, body) = route(
        &ingest,
        "capability=ocr&request_type=ocr_processing",
        Some(READER),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["priority"], 0);
    assert_eq!(body["failed_over"], false);
    let fallbacks: Vec<&str> = body["fallbacks"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["mcp_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(fallbacks.len(), 2);
    assert_eq!(fallbacks[1], "backup", "the next tier comes last");

    // `other` fails every request it reports: traffic concentrates on `primary` (about 95 % with
    // Thompson sampling against an untried MCP; the bound leaves room for the randomness).
    let other_key = "key-of-other-0123456789abcdef";
    for n in 0..20 {
        report(
            &ingest,
            other_key,
            "/v1/interactions",
            json!({"interaction_id": format!("o{n}")}),
        )
        .await;
        report(
            &ingest,
            other_key,
            &format!("/v1/interactions/o{n}/error"),
            json!({"error_code": "MODEL_ERROR", "processing_time": 0.05}),
        )
        .await;
    }
    let mut to_primary = 0;
    for _ in 0..50 {
        let (_, body) = route(&ingest, "capability=ocr", Some(READER)).await;
        to_primary += usize::from(body["mcp_id"] == "primary");
    }
    assert!(
        to_primary >= 40,
        "a failing MCP keeps traffic: primary got {to_primary}/50"
    );

    // Two interactions in flight saturate `primary` (max 2); `other` is last in its tier.
    let primary_key = "key-of-primary-0123456789abcdef";
    for n in 0..2 {
        report(
            &ingest,
            primary_key,
            "/v1/interactions",
            json!({"interaction_id": format!("p{n}")}),
        )
        .await;
    }
    let (_, body) = route(&ingest, "capability=ocr", Some(READER)).await;
    assert_eq!(body["mcp_id"], "other", "{body}");
    // The whole tier 0 full: fail over to tier 1.
    for n in 0..50 {
        report(
            &ingest,
            other_key,
            "/v1/interactions",
            json!({"interaction_id": format!("q{n}")}),
        )
        .await;
    }
    let (_, body) = route(&ingest, "capability=ocr", Some(READER)).await;
    assert_eq!(
        (body["mcp_id"].as_str(), body["failed_over"].as_bool()),
        (Some("backup"), Some(true)),
        "{body}"
    );
    // One completes: primary has room again.
    report(
        &ingest,
        primary_key,
        "/v1/interactions/p0/complete",
        json!({"success": true, "processing_time": 0.1}),
    )
    .await;
    let (_, body) = route(&ingest, "capability=ocr", Some(READER)).await;
    assert_eq!(body["mcp_id"], "primary", "{body}");

    // Errors a gateway can act on.
    let (status, body) = route(&ingest, "capability=translate", Some(READER)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("unknown_capability")),
        "{body}"
    );
    let (status, body) = route(&ingest, "request_type=x", Some(READER)).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("capability")),
        "{body}"
    );
    let (status, _) = route(&ingest, "capability=ocr", None).await;
    assert_eq!(status, 401);
    let (status, _) = route(&ingest, "capability=ocr", Some("not-a-token")).await;
    assert_eq!(status, 401);
    let (status, _) = route(&ingest, "capability=ocr", Some(primary_key)).await;
    assert_eq!(status, 200, "an MCP's key may ask for routes too");

    let metrics = http_client()
        .get(format!("{}/metrics", ingest.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("mcp_ingest_route_decisions_total{result=\"failed_over\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_mcp_whose_heartbeats_stop_is_degraded_at_half_weight_until_the_next_one() {
    let server = api_server().await;
    let ingest = start_ingest("heartbeats").await;
    let mcp = FakeMcp::start().await;
    let mut settings = settings();
    settings.routing = RoutingSettings {
        interval: Duration::from_millis(300),
        window: "15m".into(),
        ingest_url: Some(ingest.url.clone()),
        ingest_token: Some(READER.into()),
    };
    let interval_ms = i64::from(settings.reporting.heartbeat_interval_seconds) * 1000;
    let _controller = start_controller_with(&server, settings);
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(
        &PostParams::default(),
        &registration("beats", &mcp.url(), ""),
    )
    .await
    .expect("create");
    let ready = wait_for(&api, "beats", Duration::from_secs(20), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    let id = ready.status.and_then(|s| s.mcp_id).expect("id");
    let heartbeat_condition = |r: &MCPRegistration| {
        r.status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "HeartbeatMissing"))
            .map(|c| c.status.clone())
    };

    // Its last heartbeat, as any ingest replica stored it, is four intervals old.
    let now = jiff::Timestamp::now().as_millisecond();
    ingest
        .store
        .record_heartbeats(&[(id.clone(), now - 4 * interval_ms)])
        .await
        .expect("heartbeat stored");
    let degraded = wait_for(&api, "beats", Duration::from_secs(20), "Degraded", |r| {
        phase(r) == Some(Phase::Degraded) && heartbeat_condition(r).as_deref() == Some("True")
    })
    .await;
    let (weight, reason) = routing_of(&degraded);
    assert_eq!(weight, 50, "half of 100: {reason}");
    assert!(reason.contains("heartbeats missing"), "{reason}");
    assert!(degraded
        .status
        .as_ref()
        .and_then(|s| s.last_heartbeat.as_ref())
        .is_some());

    // The next heartbeat brings it back to full weight.
    ingest
        .store
        .record_heartbeats(&[(id, jiff::Timestamp::now().as_millisecond())])
        .await
        .expect("heartbeat stored");
    let back = wait_for(&api, "beats", Duration::from_secs(20), "Ready again", |r| {
        phase(r) == Some(Phase::Ready) && heartbeat_condition(r).as_deref() == Some("False")
    })
    .await;
    assert_eq!(routing_of(&back).0, 100);
}
