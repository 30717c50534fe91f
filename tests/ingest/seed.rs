//! The seed's own messages, sent as the seed writes them (`tests/fixtures/seed/`): registration
//! through the seed's single endpoint, the four reports, the standard record, and what the
//! coordinator makes of them. In Kubernetes a registration without a URL is reached through the
//! Service of its name; standalone mode, which has no Services, refuses it with what to add.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{test_config, InProcessIngest, TestDir};
use common::*;
use kube::Api;
use mcp_coordinator::crd::MCPRegistration;
use mcp_coordinator::ingest::registrar::kubernetes::KubernetesRegistrations;
use mcp_coordinator::ingest::registrar::{Registrar, RegistrarTokens};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
use serde_json::{json, Value};

const TOKEN: &str = "registrar-token-0123456789";
const READER: &str = "reader-token-0123456789";
const PLACEHOLDER_KEY: &str = "mcp_api_key_xyz789";

/// A fixture file as the seed writes it; its placeholder API key replaced by `key`, if given.
fn fixture(name: &str, key: Option<&str>) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seed")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let text = match key {
        Some(key) => text.replace(PLACEHOLDER_KEY, key),
        None => text,
    };
    serde_json::from_str(&text).expect("fixture JSON")
}

async fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = http_client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The interactions of `mcp` once `done` holds for them (at most 20 s).
async fn history_when(base: &str, mcp: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let body = get_json_as(&format!("{base}/v1/mcps/{mcp}/interactions"), READER).await;
        last = body["interactions"].as_array().cloned().unwrap_or_default();
        if done(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("history never got there: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_messages_work_as_written_in_kubernetes() {
    let server = api_server().await;
    let controller = start_controller(&server);
    let dir = TestDir::new("seed-messages");
    let mut tokens = RegistrarTokens::default();
    tokens.add("ci", TOKEN, vec!["mcps".into()]);
    let mut config = test_config(dir.path());
    config.registrar = Some(Arc::new(Registrar::new(
        Arc::new(tokens),
        Arc::new(KubernetesRegistrations::new(client(&server))),
        Duration::from_secs(20),
    )));
    let store = Arc::new(SqliteStore::open(&dir.path().join("interactions.db")).unwrap());
    let keys = Arc::new(KeyRing::default());
    let mut ingest = InProcessIngest::start(
        config,
        store,
        keys.clone(),
        Arc::new(ReaderTokens::from_tokens([READER])),
    )
    .await;
    let base = ingest.base.clone();

    // register_mcp, to the seed's one endpoint: the seed's answer, value for value.
    let envelope = format!("{base}/api/interactions");
    let (status, answer) = post(&envelope, Some(TOKEN), &fixture("register_mcp.json", None)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["mcp_id"], "ocr_workflow_mcp_001");
    let config = &answer["coordinator_config"];
    assert_eq!(
        config["interaction_log_endpoint"],
        "http://ingest.test:8081/api/interactions"
    );
    assert_eq!(
        (
            &config["heartbeat_interval"],
            &config["data_report_interval"]
        ),
        (&json!(30), &json!(10))
    );
    assert_eq!(
        answer["routing_config"],
        json!({"priority": 1, "weight": 100, "effective_weight": 0, "max_concurrent_requests": 10}),
        "the seed's defaults (no traffic until its probes pass)"
    );
    // No URL: the Service of the registration's name, and the answer says so.
    let notes = answer["notes"].to_string();
    assert!(notes.contains("Service ocr-workflow-mcp"), "{answer}");
    let reg = Api::<MCPRegistration>::namespaced(client(&server), "mcps")
        .get("ocr-workflow-mcp")
        .await
        .unwrap();
    let service = reg
        .spec
        .endpoint
        .service
        .clone()
        .expect("a Service endpoint");
    assert_eq!(
        (service.name.as_str(), service.port),
        ("ocr-workflow-mcp", 80)
    );
    assert_eq!(
        reg.spec.endpoint.base_url("mcps"),
        "http://ocr-workflow-mcp.mcps.svc:80"
    );

    // The reports, as written, with the key the coordinator answered (as the key Secret's watch
    // would teach the ingest server), to the path of the endpoint it named.
    let key = answer["api_key"].as_str().unwrap().to_string();
    keys.set("ocr_workflow_mcp_001", &key);
    for name in [
        "report_interaction_start.json",
        "report_interaction_progress.json",
        "report_interaction_complete.json",
        "report_interaction_error.json",
    ] {
        let (status, reply) = post(&envelope, None, &fixture(name, Some(&key))).await;
        assert_eq!(status, 202, "{name}: {reply}");
        assert_eq!(reply["success"], true, "{name}: {reply}");
    }
    let history = history_when(&base, "ocr_workflow_mcp_001", |items| {
        items.len() == 2
            && items.iter().any(|i| {
                i["interaction_id"] == "int_20250615_194500_abc123" && i["status"] == "completed"
            })
    })
    .await;
    let of = |id: &str| history.iter().find(|i| i["interaction_id"] == id).unwrap();
    let done = of("int_20250615_194500_abc123");
    assert_eq!(done["processing_data"]["processing_time"], 5.333);
    assert_eq!(done["result_data"]["quality_score"], 0.95);
    assert_eq!(done["request_data"]["input_size"], 1024000);
    assert_eq!(
        done["metadata"]["coordinator_version"],
        mcp_coordinator::COORDINATOR_VERSION,
        "filled by the coordinator"
    );
    // Free-form progress data is kept, in the timeline.
    assert_eq!(done["timeline"][0]["progress"], 0.5, "{done}");
    assert_eq!(
        done["timeline"][0]["details"],
        json!({"pages_done": 3, "current_step": "postprocessing"})
    );
    let failed = of("int_20250615_194600_def789");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["result_data"]["error_code"], "UNKNOWN_ERROR");
    assert_eq!(
        failed["result_data"]["error_message"],
        "the model did not answer"
    );

    // A refusal is the seed's shape too.
    let mut wrong = fixture("report_interaction_complete.json", Some(&key));
    wrong["data"]["quality_score"] = json!("great");
    let (status, reply) = post(&envelope, None, &wrong).await;
    assert_eq!((status, &reply["success"]), (400, &json!(false)), "{reply}");
    assert_eq!(reply["error"]["field"], "data.quality_score");

    ingest.stop().await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_says_what_the_seeds_registration_lacks_and_takes_its_record() {
    let dir = TestDir::new("seed-standalone");
    let (_standalone, base, _, data) = super::self_registration::standalone(&dir, &[]).await;
    let token = std::fs::read_to_string(data.join("registrar.token")).unwrap();

    let envelope = format!("{base}/api/interactions");
    let (status, refused) =
        post(&envelope, Some(&token), &fixture("register_mcp.json", None)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["success"], false);
    assert_eq!(refused["error"]["field"], "mcp_info.url");
    assert!(
        refused["error"]["message"].as_str().is_some_and(|m| m
            .contains("Standalone mode has no Services")
            && m.contains("add mcp_info.url")),
        "{refused}"
    );
    // With the one thing it lacks, the same message registers.
    let mcp = FakeMcp::start().await;
    let mut message = fixture("register_mcp.json", None);
    message["mcp_info"]["url"] = json!(mcp.url());
    let (status, answer) = post(&envelope, Some(&token), &message).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["coordinator_config"]["interaction_log_endpoint"],
        envelope
    );
    let key = answer["api_key"].as_str().unwrap().to_string();

    // The seed's standard record, whole, as a batch of one (batches are signed by default).
    let body = json!([fixture("interaction_record.json", None)]).to_string();
    let path = "/v1/interactions:batch";
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let response = http_client()
        .post(format!("{base}{path}"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("x-mcp-timestamp", &timestamp)
        .header(
            "x-mcp-signature",
            mcp_coordinator_client::sign(&key, "POST", path, &timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{reply}");
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let body = get_json_as(
            &format!("{base}/v1/mcps/ocr_workflow_mcp_001/interactions"),
            admin.trim(),
        )
        .await;
        if let Some(item) = body["interactions"].as_array().and_then(|i| i.first()) {
            break item.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stored["interaction_id"], "int_20250615_194500_abc123");
    assert_eq!(stored["status"], "completed");
    assert_eq!(stored["processing_data"]["processing_time"], 5.333);
    assert_eq!(
        stored["metadata"]["coordinator_version"],
        mcp_coordinator::COORDINATOR_VERSION,
        "which coordinator took it is the coordinator's to say"
    );
    assert_eq!(stored["metadata"]["region"], "us-west-1");
}
