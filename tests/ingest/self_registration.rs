//! Self-registration (the seed's `register_mcp`) end to end: in Kubernetes (the controller over
//! the test API server, the registrar's port creating the registration and reading the key back)
//! and in standalone mode (the real binary, a manifest written into the registrations directory).
//! The ID and key answered are the ones the registry holds, and the key reports.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::free_port;
use common::ingest::{bin, test_config, InProcessIngest, TestDir};
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use mcp_coordinator::crd::{MCPRegistration, REGISTERED_BY_ANNOTATION};
use mcp_coordinator::ingest::registrar::kubernetes::KubernetesRegistrations;
use mcp_coordinator::ingest::registrar::{Registrar, RegistrarTokens};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
use serde_json::{json, Value};

const TOKEN: &str = "registrar-token-0123456789";

use common::build::seed_register_message as seed_message;
use common::post_json as post;

async fn report(base: &str, key: &str) -> u16 {
    let completed = json!({"request_data": {"request_type": "ocr_processing"}, "processing_time": 0.05, "success": true});
    post_report(base, key, &completed).await
}

/// The standalone binary over `dir/registrations` and `dir/data`: its URL and data directory.
pub(crate) async fn standalone(
    dir: &TestDir,
    flags: &[&str],
) -> (
    tokio::process::Child,
    String,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let (regs, data) = (dir.path().join("registrations"), dir.path().join("data"));
    std::fs::create_dir_all(&regs).unwrap();
    let port = free_port();
    let child = tokio::process::Command::new(bin())
        .args(["standalone", "--listen", &format!("127.0.0.1:{port}")])
        .args(flags)
        .arg("--registrations")
        .arg(&regs)
        .arg("--data-dir")
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("standalone starts");
    let base = format!("http://127.0.0.1:{port}");
    common::ingest::wait_healthy(&base).await;
    (child, base, regs, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_registers_itself_in_kubernetes_and_gets_its_id_and_key() {
    let server = api_server().await;
    let controller = start_controller(&server);
    let mcp = FakeMcp::start().await;
    let dir = TestDir::new("self-registration");
    let mut tokens = RegistrarTokens::default();
    tokens.add("ci", TOKEN, vec!["mcps".into(), "team-a".into()]);
    let mut config = test_config(dir.path());
    config.registrar = Some(Arc::new(Registrar::new(
        Arc::new(tokens),
        Arc::new(KubernetesRegistrations::new(client(&server))),
        Duration::from_secs(20),
    )));
    let store = Arc::new(SqliteStore::open(&dir.path().join("interactions.db")).unwrap());
    let mut ingest = InProcessIngest::start(
        config,
        store,
        Arc::new(KeyRing::default()),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    let base = ingest.base.clone();

    let (status, answer) = post(&base, "/api/register", TOKEN, &seed_message(&mcp.url())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(answer["mcp_id"], "ocr_workflow_mcp_001", "{answer}");
    assert_eq!(
        answer["registration"],
        json!({"namespace": "mcps", "name": "ocr-workflow-mcp"})
    );
    assert_eq!(
        answer["coordinator_config"]["interaction_log_endpoint"],
        "http://ingest.test:8081/api/interactions"
    );
    assert_eq!(
        answer["coordinator_config"]["api_url"],
        "http://ingest.test:8081"
    );
    assert_eq!(answer["coordinator_config"]["heartbeat_interval"], 30);
    assert_eq!(answer["routing_config"]["weight"], 100);
    assert_eq!(answer["routing_config"]["max_concurrent_requests"], 10);

    // The registration is an ordinary one, marked as self-registered, with the seed's sizes
    // translated; the key answered is the one in the Secret the controller owns.
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "mcps");
    let reg = api.get("ocr-workflow-mcp").await.unwrap();
    assert_eq!(reg.annotations()[REGISTERED_BY_ANNOTATION], "ci");
    let resources = reg.spec.resource_requirements.clone().unwrap();
    assert_eq!(resources.min_memory.unwrap().0, "1G");
    assert_eq!(resources.min_cpu.unwrap().0, "2");
    let secrets: Api<Secret> = Api::namespaced(client(&server), "mcps");
    let secret = secrets.get(&reg.key_secret_name()).await.unwrap();
    let stored = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
    assert_eq!(answer["api_key"], stored.as_str());
    assert_eq!(answer["coordinator_config"]["api_key"], stored.as_str());

    // Again: the same ID and key, through the seed's single endpoint too.
    let (status, again) = post(&base, "/api/interactions", TOKEN, &seed_message(&mcp.url())).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["mcp_id"], answer["mcp_id"]);
    assert_eq!(again["api_key"], answer["api_key"]);

    // A rotation asked for: a new key, issued by the controller.
    let mut rotate = seed_message(&mcp.url());
    rotate["rotate_key"] = json!(true);
    let (status, rotated) = post(&base, "/api/register", TOKEN, &rotate).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["mcp_id"], answer["mcp_id"]);
    assert_ne!(rotated["api_key"], answer["api_key"], "a new key");
    let secret = secrets.get(&reg.key_secret_name()).await.unwrap();
    let stored = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
    assert_eq!(rotated["api_key"], stored.as_str());

    // Refusals a user can act on.
    let (status, body) = post(
        &base,
        "/api/register",
        "not-a-registrar-token",
        &seed_message(&mcp.url()),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let mut elsewhere = seed_message(&mcp.url());
    elsewhere["mcp_info"]["namespace"] = json!("kube-system");
    let (status, body) = post(&base, "/api/register", TOKEN, &elsewhere).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mcps, team-a only"),
        "{body}"
    );
    let mut bad_size = seed_message(&mcp.url());
    bad_size["mcp_info"]["resource_requirements"]["min_memory"] = json!("lots");
    let (status, body) = post(&base, "/api/register", TOKEN, &bad_size).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["field"],
        "mcp_info.resource_requirements.min_memory"
    );
    // A name kubectl already uses is not taken over.
    api.create(&PostParams::default(), &{
        let mut r = registration("taken", &mcp.url(), "");
        r.metadata.namespace = Some("mcps".into());
        r
    })
    .await
    .unwrap();
    let mut taken = seed_message(&mcp.url());
    taken["mcp_info"]["name"] = json!("taken");
    let (status, body) = post(&base, "/api/register", TOKEN, &taken).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = post(
        &base,
        "/api/register",
        TOKEN,
        &json!({"action": "unregister_mcp", "name": "taken"}),
    )
    .await;
    assert_eq!(
        status, 409,
        "kubectl's registration is not retired by self-registration"
    );

    // Retired: the registration goes (its ID with it), and so does a second attempt.
    let unregister = json!({"action": "unregister_mcp", "name": "ocr_workflow_mcp"});
    let (status, body) = post(&base, "/api/register", TOKEN, &unregister).await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api.get_opt("ocr-workflow-mcp").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = post(&base, "/api/register", TOKEN, &unregister).await;
    assert_eq!(status, 404, "{body}");

    ingest.stop().await;
    controller.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mcp_registers_itself_in_standalone_mode_and_reports_with_its_key() {
    let dir = TestDir::new("standalone-self-registration");
    let (_standalone, base, regs, data) = standalone(&dir, &["--poll-interval-ms", "200"]).await;
    let token = std::fs::read_to_string(data.join("registrar.token"))
        .expect("a registrar token is kept in the data directory");
    let mcp = FakeMcp::start().await;

    let (status, answer) = post(&base, "/api/register", &token, &seed_message(&mcp.url())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["mcp_id"], "ocr_workflow_mcp_001");
    assert_eq!(answer["registration"]["namespace"], "default");
    assert_eq!(
        answer["coordinator_config"]["interaction_log_endpoint"],
        format!("{base}/api/interactions")
    );
    let key = answer["api_key"].as_str().unwrap().to_string();
    assert_eq!(
        report(&base, &key).await,
        202,
        "the key answered reports at once"
    );
    let manifest = regs.join("self-registered.default.ocr-workflow-mcp.yaml");
    assert!(
        manifest.is_file(),
        "the registration is a manifest in the directory"
    );

    let (_, again) = post(&base, "/api/register", &token, &seed_message(&mcp.url())).await;
    assert_eq!(
        (again["mcp_id"].clone(), again["api_key"].clone()),
        (answer["mcp_id"].clone(), answer["api_key"].clone())
    );
    let mut rotate = seed_message(&mcp.url());
    rotate["rotate_key"] = json!(true);
    let (status, rotated) = post(&base, "/api/register", &token, &rotate).await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["api_key"].as_str().unwrap().to_string();
    assert_ne!(new_key, key);
    assert_eq!(report(&base, &new_key).await, 202);

    // A manifest of the user's own keeps its name.
    std::fs::write(
        regs.join("mine.yaml"),
        format!("apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: mine\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: {}\n", mcp.url()),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mut mine = seed_message(&mcp.url());
    mine["mcp_info"]["name"] = json!("mine");
    let (status, body) = post(&base, "/api/register", &token, &mine).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mine.yaml"),
        "{body}"
    );

    let (status, body) = post(
        &base,
        "/api/register",
        &token,
        &json!({"action": "unregister_mcp", "name": "ocr_workflow_mcp"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!manifest.exists(), "its manifest is gone");
    assert_eq!(report(&base, &new_key).await, 401, "its key is revoked");
    let (status, again) = post(&base, "/api/register", &token, &seed_message(&mcp.url())).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["mcp_id"], "ocr_workflow_mcp_002",
        "a retired ID is never handed out again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_registers_and_reports_with_the_key_it_got() {
    let dir = TestDir::new("python-self-registration");
    let (_standalone, base, _, data) = standalone(&dir, &[]).await;
    let token = std::fs::read_to_string(data.join("registrar.token")).unwrap();
    let mcp = FakeMcp::start().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new("python3")
        .arg(root.join("tests/python/self_register.py"))
        .args([&base, &token, &mcp.url()])
        .env("PYTHONPATH", root.join("clients/python/src"))
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        printed["mcp_id"], "python_ocr_workflow_mcp_001",
        "{printed}"
    );
    assert_eq!(printed["name"], "python-ocr-mcp");
    // The seed's reads, with the MCP's own key.
    assert_eq!(printed["history"][0]["status"], "completed", "{printed}");
    assert_eq!(printed["history"][0]["result_data"]["quality_score"], 0.9);
    assert_eq!(printed["metrics"]["count"], 1, "{printed}");

    // The interaction it reported with that key is in the MCP's history.
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let history = get_json_as(
            &format!("{base}/v1/mcps/python_ocr_workflow_mcp_001/interactions"),
            admin.trim(),
        )
        .await;
        // Start and complete are two events: wait until both are stored.
        let found = history["interactions"].as_array().map_or(0, Vec::len);
        if found == 1 && history["interactions"][0]["result_data"]["quality_score"] == 0.9 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in history: {history}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 34, attack 8: one registrar token made 200 registrations, none refused, and every call
/// re-read and re-reconciled the whole directory (17 ms → 123 ms a call). Now a token holds at
/// most `--registrar-max-registrations` per namespace, a name another token made is refused,
/// and a registration reconciles only itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_8_registrations_per_token_are_capped_and_reconciled_one_by_one() {
    let dir = TestDir::new("standalone-registrar-cap");
    let tokens = dir.path().join("registrars.yaml");
    std::fs::write(
        &tokens,
        "a:\n  token: registrar-a-token-0123456789\n  namespaces: [default]\nb:\n  token: registrar-b-token-0123456789\n  namespaces: [default]\n",
    )
    .unwrap();
    let tokens_flag = tokens.display().to_string();
    let (_standalone, base, _, _) = standalone(
        &dir,
        &[
            "--registrar-tokens-file",
            &tokens_flag,
            "--registrar-max-registrations",
            "12",
            // No periodic resync in this test: what reconciles is what registering caused.
            "--poll-interval-ms",
            "600000",
        ],
    )
    .await;
    let mcp = FakeMcp::start().await;
    let named = |n: &str| {
        let mut m = seed_message(&mcp.url());
        m["mcp_info"]["name"] = json!(n);
        m
    };
    for i in 0..12 {
        let (status, body) = post(
            &base,
            "/api/register",
            "registrar-a-token-0123456789",
            &named(&format!("tool-{i}")),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post(
        &base,
        "/api/register",
        "registrar-a-token-0123456789",
        &named("tool-12"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("maximum of 12 registrations in namespace default"),
        "{body}"
    );
    assert!(message.contains("--registrar-max-registrations"), "{body}");
    // What it holds it may still register again (idempotent), and another token has its own cap.
    let (status, _) = post(
        &base,
        "/api/register",
        "registrar-a-token-0123456789",
        &named("tool-3"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &base,
        "/api/register",
        "registrar-b-token-0123456789",
        &named("tool-3"),
    )
    .await;
    assert_eq!(status, 409, "another token's name: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another registrar token"),
        "{body}"
    );
    let (status, body) = post(
        &base,
        "/api/register",
        "registrar-b-token-0123456789",
        &named("tool-b"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // 14 registrations: before, each reconciled every registration so far (105 and more).
    let metrics = common::get_text(&format!("{base}/metrics")).await;
    let reconciles: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_coordinator_reconciles_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::MAX);
    assert!(
        reconciles <= 3.0 * 14.0,
        "{reconciles} reconciles for 14 registrations"
    );
}

/// Issue 34, attack 9: a registrar registered `invoices`; the operator then added
/// `invoices.yaml`, which adopted the registration and its key, so the registrar's copy still
/// reported as it. A new owner now gets a new key, the old one is revoked, and the audit log
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_9_a_name_that_changes_owner_gets_a_new_key() {
    let dir = TestDir::new("standalone-owner-change");
    let (_standalone, base, regs, data) = standalone(&dir, &["--poll-interval-ms", "200"]).await;
    let token = std::fs::read_to_string(data.join("registrar.token")).unwrap();
    let mcp = FakeMcp::start().await;
    let mut message = seed_message(&mcp.url());
    message["mcp_info"]["name"] = json!("invoices");
    let (status, answer) = post(&base, "/api/register", &token, &message).await;
    assert_eq!(status, 200, "{answer}");
    let old_key = answer["api_key"].as_str().unwrap().to_string();
    let mcp_id = answer["mcp_id"].as_str().unwrap().to_string();
    assert_eq!(report(&base, &old_key).await, 202);

    std::fs::write(
        regs.join("invoices.yaml"),
        format!("apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: invoices\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: {}\n", mcp.url()),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while report(&base, &old_key).await != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the registrar's key still reports after the operator took the name over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key_file = data.join("keys/default/invoices-mcp-key");
    let new_key = std::fs::read_to_string(&key_file).unwrap();
    assert_ne!(new_key, old_key);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while report(&base, &new_key).await != 202 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new key never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = post(&base, "/api/register", &token, &message).await;
    assert_eq!(status, 409, "the operator's name is not taken back: {body}");

    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let audit = get_json_as(&format!("{base}/v1/audit?limit=50"), admin.trim()).await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    let reissued = entries
        .iter()
        .find(|e| e["query"] == "key_reissued")
        .unwrap_or_else(|| panic!("no key_reissued entry: {audit}"));
    assert_eq!(reissued["mcp_id"], mcp_id.as_str());
    assert!(
        reissued["who"].as_str().unwrap().contains("invoices.yaml"),
        "{reissued}"
    );
}
