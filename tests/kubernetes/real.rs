//! The controller against a real API server (kube-apiserver, etcd and kube-controller-manager
//! built from their Go modules, on loopback): what the test API server only imitates, the real
//! one decides here: the CRD's schema and CEL rules, server-side apply, events.k8s.io Events,
//! finalizers, and the garbage collector.

use test_support as common;

use std::time::Duration;

use common::cluster::{install_crd, namespace, shared};
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use mcp_coordinator::crd::{MCPRegistration, Phase};
use serde_json::json;

/// The real server and the controller are slower to settle than the test server.
const SLOW: Duration = Duration::from_secs(60);

/// A registration of `url` named `name` in `namespace`.
fn registration_in(namespace: &str, name: &str, url: &str) -> MCPRegistration {
    let mut reg = registration(name, url, "");
    reg.metadata.namespace = Some(namespace.to_string());
    reg
}

/// The namespace's routing table, written by the controller and read by gateways. (The rest of
/// the controller's scenarios run on both servers: `controller.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_mcp_is_in_its_namespaces_routing_table() {
    let place = Place::real("real-routing-table").await;
    let scene = Scene::start(&place).await;
    scene.ready("ocr").await;
    let tables: Api<ConfigMap> = place.api();
    common::eventually(SLOW, || async {
        match tables.get_opt("mcp-routing-table").await {
            Ok(Some(table))
                if serde_json::to_string(&table.data)
                    .unwrap()
                    .contains("ocr_workflow_mcp_001") =>
            {
                Ok(())
            }
            other => Err(format!("no routing table naming the MCP yet: {other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_garbage_collector_removes_the_key_of_a_registration_deleted_while_no_controller_runs()
{
    let place = Place::real("real-gc").await;
    let scene = Scene::start(&place).await;
    scene.ready("orphan").await;
    let (ns, admin) = (place.namespace.clone(), place.client());
    let Scene {
        controller, api, ..
    } = scene;
    controller.stop().await;

    // No controller: remove the finalizer by hand and delete. Only the garbage collector
    // (kube-controller-manager) can remove the Secret now, through its owner reference.
    let no_finalizers = json!({"metadata": {"finalizers": null}});
    api.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(&no_finalizers),
    )
    .await
    .unwrap();
    api.delete("orphan", &DeleteParams::default())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    common::eventually(SLOW, || async {
        match secrets.get_opt("orphan-mcp-key").await {
            Ok(None) => Ok(()),
            other => Err(format!(
                "the owned Secret is still there: {}",
                other.is_ok()
            )),
        }
    })
    .await;
}

/// The real helm, from `.tools/bin` (scripts/install-kube-tools.sh) or PATH.
fn helm(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let tools = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    let program = if tools.exists() { tools } else { "helm".into() };
    let out = std::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("helm runs (scripts/install-kube-tools.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_charts_own_service_accounts_the_controller_works_and_the_ingest_identity_cannot_write(
) {
    let cluster = shared();
    let admin = cluster.admin().await;
    install_crd(&admin).await;
    let release_ns = namespace(&admin, "real-chart").await;
    let mcps = namespace(&admin, "real-chart-mcps").await;
    // No kubelet runs here, so no pod starts: what matters is every object the chart creates,
    // its RBAC above all, as the real API server takes it.
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mcp-coordinator");
    let (ok, out) = helm(
        &cluster.admin_kubeconfig_file(),
        &[
            "install",
            "mcp-coordinator",
            &chart.to_string_lossy(),
            "-n",
            &release_ns,
            "--set",
            &format!("crds.install=false,watchNamespace={mcps}"),
        ],
    );
    assert!(ok, "helm install into the real API server failed:\n{out}");

    // The controller with the token of the chart's controller ServiceAccount: the real RBAC
    // authorizer decides every call it makes.
    let (_, controller_identity) = cluster
        .service_account(&release_ns, "mcp-coordinator")
        .await;
    let mut settings = settings();
    settings.namespace = Some(mcps.clone());
    settings.state_namespace = release_ns.clone();
    settings.probe_policy = settings.probe_policy.refusing_api_server(&cluster.url);
    let mcp = FakeMcp::start().await;
    let controller = start_controller_on(controller_identity, settings);
    let api: Api<MCPRegistration> = Api::namespaced(admin.clone(), &mcps);
    api.create(
        &PostParams::default(),
        &registration_in(&mcps, "charted", &mcp.url()),
    )
    .await
    .unwrap();
    let reg = wait_for(&api, "charted", SLOW, "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    assert_eq!(
        reg.status.unwrap().mcp_id.as_deref(),
        Some("charted_workflow_mcp_001")
    );
    assert_eq!(
        controller
            .metrics
            .reconcile_errors
            .with_label_values(&["api"])
            .get(),
        0,
        "no call of the controller was refused"
    );

    // The ingest server's watches, with the token of the chart's ingest ServiceAccount: the key
    // of the registration the controller made becomes a key the ingest server trusts.
    let (_, ingest_identity) = cluster
        .service_account(&release_ns, "mcp-coordinator-ingest")
        .await;
    let keys = std::sync::Arc::new(mcp_coordinator::trust::keys::KeyRing::default());
    let watching = tokio::spawn(mcp_coordinator::trust::watch::watch(
        ingest_identity.clone(),
        Some(mcps.clone()),
        keys.clone(),
        Default::default(),
        Default::default(),
    ));
    let admin_secrets: Api<Secret> = Api::namespaced(admin.clone(), &mcps);
    let key_secret = admin_secrets.get("charted-mcp-key").await.unwrap();
    let key = String::from_utf8(key_secret.data.unwrap()["api-key"].0.clone()).unwrap();
    common::eventually(SLOW, || async {
        match keys.mcp_for(&key) {
            Some(id) if id == "charted_workflow_mcp_001" => Ok(()),
            other => Err(format!(
                "the ingest identity's watch does not trust the key yet: {other:?}"
            )),
        }
    })
    .await;
    watching.abort();

    // The ingest identity reads keys but writes nothing.
    let secrets: Api<Secret> = Api::namespaced(ingest_identity.clone(), &mcps);
    let listed = secrets
        .list(&Default::default())
        .await
        .expect("the ingest identity lists Secrets");
    assert!(listed
        .items
        .iter()
        .any(|s| s.name_any() == "charted-mcp-key"));
    let forged: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "forged", "namespace": mcps},
        "stringData": {"api-key": "x"},
    }))
    .unwrap();
    match secrets.create(&PostParams::default(), &forged).await {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the ingest identity wrote a Secret: {other:?}"),
    }
    let registrations: Api<MCPRegistration> = Api::namespaced(ingest_identity, &mcps);
    let refused = registrations
        .delete("charted", &DeleteParams::default())
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref e)) if e.code == 403),
        "{refused:?}"
    );

    // Uninstalled: the registrations and their CRD stay.
    let (ok, out) = helm(
        &cluster.admin_kubeconfig_file(),
        &["uninstall", "mcp-coordinator", "-n", &release_ns],
    );
    assert!(ok, "{out}");
    assert!(api.get_opt("charted").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_registration_acts_as_the_charts_registrar_service_account() {
    use common::build::seed_register_message;
    use common::ingest::{test_config, InProcessIngest};
    use mcp_coordinator::ingest::registrar::kubernetes::KubernetesRegistrations;
    use mcp_coordinator::ingest::registrar::{Registrar, RegistrarTokens};
    use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
    use std::sync::Arc;

    const TOKEN: &str = "registrar-token-0123456789";
    let cluster = shared();
    let admin = cluster.admin().await;
    install_crd(&admin).await;
    let release_ns = namespace(&admin, "real-registrar").await;
    let mcps = namespace(&admin, "real-registrar-mcps").await;
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mcp-coordinator");
    let (ok, out) = helm(
        &cluster.admin_kubeconfig_file(),
        &[
            "install",
            "registrar-test",
            &chart.to_string_lossy(),
            "-n",
            &release_ns,
            "--set",
            &format!("crds.install=false,watchNamespace={mcps},registrar.enabled=true,registrar.namespaces={{{mcps}}}"),
        ],
    );
    assert!(ok, "helm install failed:\n{out}");
    let mut settings = settings();
    settings.namespace = Some(mcps.clone());
    settings.state_namespace = release_ns.clone();
    settings.probe_policy = settings.probe_policy.refusing_api_server(&cluster.url);
    let _controller = start_controller_on(admin.clone(), settings);

    // The ingest server's registrar acts as the chart's registrar ServiceAccount.
    let (_, registrar_identity) = cluster
        .service_account(&release_ns, "registrar-test-mcp-coordinator-registrar")
        .await;
    let dir = TestDir::new("real-registrar");
    let mut tokens = RegistrarTokens::default();
    tokens.add("ci", TOKEN, vec![mcps.clone(), "kube-system".into()]);
    let mut config = test_config(dir.path());
    config.registrar = Some(Arc::new(Registrar::new(
        Arc::new(tokens),
        Arc::new(KubernetesRegistrations::new(registrar_identity)),
        SLOW,
    )));
    let store = Arc::new(
        mcp_coordinator::store::sqlite::SqliteStore::open(&dir.join("interactions.db")).unwrap(),
    );
    let mut ingest = InProcessIngest::start(
        config,
        store,
        Arc::new(KeyRing::default()),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    let mcp = FakeMcp::start().await;
    let mut message = seed_register_message(&mcp.url());
    message["mcp_info"]["namespace"] = json!(mcps);
    let (status, answer) = common::post_json(&ingest.base, "/api/register", TOKEN, &message).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["mcp_id"], "ocr_workflow_mcp_001", "{answer}");
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &mcps);
    let secret = secrets.get("ocr-workflow-mcp-mcp-key").await.unwrap();
    let stored = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
    assert_eq!(answer["api_key"], stored.as_str());

    // The token allows kube-system, but the registrar's identity has no Role there: the real
    // authorizer refuses, and the caller hears why instead of a success.
    let mut elsewhere = message.clone();
    elsewhere["mcp_info"]["namespace"] = json!("kube-system");
    let (status, body) = common::post_json(&ingest.base, "/api/register", TOKEN, &elsewhere).await;
    assert_ne!(status, 200, "{body}");
    let api: Api<MCPRegistration> = Api::namespaced(admin.clone(), "kube-system");
    assert!(api.get_opt("ocr-workflow-mcp").await.unwrap().is_none());

    // Retired through the same identity.
    let unregister =
        json!({"action": "unregister_mcp", "name": "ocr_workflow_mcp", "namespace": mcps});
    let (status, body) = common::post_json(&ingest.base, "/api/register", TOKEN, &unregister).await;
    assert_eq!(status, 200, "{body}");
    let api: Api<MCPRegistration> = Api::namespaced(admin.clone(), &mcps);
    common::eventually(SLOW, || async {
        match api.get_opt("ocr-workflow-mcp").await {
            Ok(None) => Ok(()),
            other => Err(format!("not retired: {}", other.is_ok())),
        }
    })
    .await;
    ingest.stop().await;
    let (ok, out) = helm(
        &cluster.admin_kubeconfig_file(),
        &["uninstall", "registrar-test", "-n", &release_ns],
    );
    assert!(ok, "{out}");
}

/// What standalone mode says of the same manifest: accepted, or its problems' reasons.
fn standalone_verdict(manifest: &serde_json::Value) -> Result<(), String> {
    use mcp_coordinator::standalone::manifests;
    let text = serde_json::to_string(manifest).unwrap();
    let (_, problems) =
        manifests::parse(std::path::Path::new("m.yaml"), &text, manifests::schema());
    match problems.as_slice() {
        [] => Ok(()),
        problems => Err(problems
            .iter()
            .map(|p| p.reason.clone())
            .collect::<Vec<_>>()
            .join("; ")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_mode_accepts_and_refuses_what_the_real_api_server_does_with_its_words() {
    let cluster = shared();
    let admin = cluster.admin().await;
    install_crd(&admin).await;
    let ns = namespace(&admin, "real-differential").await;
    let base = json!({
        "apiVersion": "mcp.coordinator.dev/v1alpha1",
        "kind": "MCPRegistration",
        "metadata": {"name": "m", "namespace": ns},
        "spec": {
            "version": "1.0.0",
            "type": "workflow",
            "capabilities": ["ocr"],
            "endpoint": {"url": "http://m:8080"},
        },
    });
    let with = |path: &[&str], value: serde_json::Value| {
        let mut m = base.clone();
        let mut at = &mut m["spec"];
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        if value.is_null() {
            at.as_object_mut().unwrap().remove(path[path.len() - 1]);
        } else {
            at[path[path.len() - 1]] = value;
        }
        m
    };
    let cases = [
        ("valid", base.clone()),
        (
            "weight over the maximum",
            with(&["routing", "weight"], json!(5000)),
        ),
        (
            "a negative priority",
            with(&["routing", "priority"], json!(-1)),
        ),
        (
            "a probe timeout over its interval (a CEL rule)",
            with(
                &["healthCheck"],
                json!({"intervalSeconds": 5, "timeoutSeconds": 30}),
            ),
        ),
        (
            "no capabilities",
            with(&["capabilities"], serde_json::Value::Null),
        ),
        (
            "an endpoint URL of the wrong type",
            with(&["endpoint", "url"], json!(8080)),
        ),
        (
            "an unknown probe type",
            with(&["healthCheck"], json!({"type": "grpc"})),
        ),
        (
            "an unknown field (pruned by both)",
            with(&["colour"], json!("blue")),
        ),
    ];
    let mut differences = Vec::new();
    for (what, manifest) in &cases {
        let real = common::cluster::create_dry_run(&admin, &ns, manifest).await;
        let standalone = standalone_verdict(manifest);
        let same = match (&real, &standalone) {
            (Ok(()), Ok(())) => true,
            // The real server's message names the object first; each of standalone mode's
            // reasons is one of its causes, word for word.
            (Err(real), Err(standalone)) => standalone.split("; ").all(|r| real.contains(r)),
            _ => false,
        };
        if !same {
            differences.push(format!(
                "{what}:\n  real:       {real:?}\n  standalone: {standalone:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_carries_on_across_an_api_server_restart_and_changes_nothing_it_decided() {
    // A control plane of this test's own: it is restarted under the controller.
    let mut cluster = common::cluster::RealCluster::start_own();
    let place = Place::real_on(&cluster, "restart").await;
    let (ns, admin) = (place.namespace.clone(), place.client());
    let scene = Scene::start(&place).await;
    let before = scene.ready("before").await;
    let (mcp, api, controller) = (&scene.mcp, &scene.api, &scene.controller);
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let key_before = secrets.get("before-mcp-key").await.unwrap().data;

    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.restart_api_server();
        cluster
    })
    .await
    .unwrap();

    // The watches resume: a registration made after the restart is reconciled.
    api.create(
        &PostParams::default(),
        &registration_in(&ns, "after", &mcp.url()),
    )
    .await
    .expect("the restarted API server takes a registration");
    let after = wait_for(api, "after", SLOW, "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    assert_eq!(
        after.status.unwrap().mcp_id.as_deref(),
        Some("after_workflow_mcp_001")
    );
    // What was decided before stays decided: the same ID and the same key.
    let again = api.get("before").await.unwrap();
    assert_eq!(
        again.status.as_ref().and_then(|s| s.mcp_id.clone()),
        before.status.as_ref().and_then(|s| s.mcp_id.clone())
    );
    assert_eq!(phase(&again), Some(Phase::Ready));
    assert_eq!(
        secrets.get("before-mcp-key").await.unwrap().data,
        key_before
    );
    assert_eq!(
        controller
            .metrics
            .reconcile_errors
            .with_label_values(&["id_ledger"])
            .get(),
        0
    );
}

/// `src` copied into `dst`, recursively.
fn copy_tree(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_upgrades_and_keeps_the_crd_on_a_real_api_server() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    // The chart owns the CRD here, so this test has a control plane of its own.
    let cluster = common::cluster::RealCluster::start_own();
    let admin = cluster.admin().await;
    let release_ns = namespace(&admin, "chart-crd").await;
    let kubeconfig = cluster.admin_kubeconfig_file();
    let dir = TestDir::new("chart-crd");
    let chart = dir.join("mcp-coordinator");
    copy_tree(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mcp-coordinator"),
        &chart,
    );
    let (ok, out) = helm(
        &kubeconfig,
        &[
            "install",
            "crd-test",
            &chart.to_string_lossy(),
            "-n",
            &release_ns,
            "--wait=false",
        ],
    );
    assert!(ok, "{out}");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let name = "mcpregistrations.mcp.coordinator.dev";
    let installed = crds.get(name).await.expect("the chart installed the CRD");
    let columns = |crd: &CustomResourceDefinition| {
        crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default()
            .len()
    };
    let before = columns(&installed);

    // A release whose CRD has one more printer column: `helm upgrade` brings the CRD up to date.
    let file = chart.join("files/mcpregistration.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let marker = "  - additionalPrinterColumns:\n";
    assert!(
        text.contains(marker),
        "the generated CRD has printer columns"
    );
    let changed = text.replacen(
        marker,
        &format!("{marker}    - jsonPath: .spec.type\n      name: Type\n      type: string\n"),
        1,
    );
    std::fs::write(&file, changed).unwrap();
    let (ok, out) = helm(
        &kubeconfig,
        &[
            "upgrade",
            "crd-test",
            &chart.to_string_lossy(),
            "-n",
            &release_ns,
        ],
    );
    assert!(ok, "{out}");
    let upgraded = crds.get(name).await.unwrap();
    assert_eq!(
        columns(&upgraded),
        before + 1,
        "the upgrade changed the CRD"
    );

    // Uninstalled: the CRD stays (crds.keep), and with it every registration.
    let (ok, out) = helm(&kubeconfig, &["uninstall", "crd-test", "-n", &release_ns]);
    assert!(ok, "{out}");
    assert!(
        crds.get_opt(name).await.unwrap().is_some(),
        "the CRD was kept"
    );
}

/// Issue 37: the chart's three interaction-log modes (a ClickHouse deployed with the release,
/// the default; an existing one; the embedded store) pass the real API server's validation of
/// every object, `kubectl apply --dry-run=server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_three_log_modes_pass_the_real_api_servers_validation() {
    let cluster = shared();
    let admin = cluster.admin().await;
    install_crd(&admin).await;
    let ns = namespace(&admin, "real-chart-modes").await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let chart = root.join("charts/mcp-coordinator");
    let dir = common::TestDir::new("chart-modes");
    let kubectl = {
        let tools = root.join(".tools/bin/kubectl");
        if tools.exists() {
            tools
        } else {
            "kubectl".into()
        }
    };
    for (release, set) in [
        ("deployed", "crds.install=false"),
        (
            "existing",
            "crds.install=false,clickhouse.url=http://ch.db.svc:8123",
        ),
        ("embedded", "crds.install=false,clickhouse.deploy=false"),
    ] {
        let (ok, rendered) = helm(
            &cluster.admin_kubeconfig_file(),
            &[
                "template",
                release,
                &chart.to_string_lossy(),
                "-n",
                &ns,
                "--set",
                set,
            ],
        );
        assert!(ok, "{release}: {rendered}");
        let file = dir.join(format!("{release}.yaml"));
        std::fs::write(&file, &rendered).unwrap();
        let out = std::process::Command::new(&kubectl)
            .args(["apply", "--dry-run=server", "-n", &ns, "-f"])
            .arg(&file)
            .env("KUBECONFIG", cluster.admin_kubeconfig_file())
            .output()
            .expect("kubectl runs");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{release}: {said}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            said.contains("statefulset.apps/deployed-mcp-coordinator-clickhouse"),
            release == "deployed",
            "{release}: {said}"
        );
    }
}
