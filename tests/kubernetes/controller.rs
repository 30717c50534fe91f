//! The controller end to end: the real `Controller` loop over HTTP against the fake API server,
//! with real HTTP MCPs on loopback.

use test_support as common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use mcp_coordinator::controller::ids;
use mcp_coordinator::crd::{MCPRegistration, Phase, CREDENTIALS_LABEL, MCP_ID_LABEL};
use serde_json::json;

fn ready(r: &MCPRegistration) -> bool {
    phase(r) == Some(Phase::Ready)
}

async fn create_assigns_id_key_secret_and_becomes_ready(place: Place) {
    let scene = Scene::start(&place).await;
    let reg = scene.ready("ocr").await;
    let status = reg.status.clone().unwrap();
    assert_eq!(status.mcp_id.as_deref(), Some("ocr_workflow_mcp_001"));
    assert_eq!(status.observed_generation, reg.metadata.generation);
    assert!(reg
        .finalizers()
        .iter()
        .any(|f| f == "mcp.coordinator.dev/cleanup"));
    let routing = status.routing.unwrap();
    assert_eq!((routing.weight, routing.effective_weight), (100, 100));
    let config = status.coordinator_config.unwrap();
    assert_eq!(config.api_key_secret_ref.name, "ocr-mcp-key");
    // The seed's endpoint takes its envelope; the base URL is there for the REST API.
    assert_eq!(
        config.interaction_log_endpoint,
        "http://ingest.test:8081/api/interactions"
    );
    assert_eq!(config.api_url.as_deref(), Some("http://ingest.test:8081"));
    let types: Vec<(&str, &str)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("Registered", "True"),
            ("Compatible", "True"),
            ("Healthy", "True"),
            ("Ready", "True")
        ]
    );

    let secrets: Api<Secret> = Api::namespaced(place.client(), &place.namespace);
    let secret = secrets.get("ocr-mcp-key").await.unwrap();
    assert_eq!(secret.labels()[CREDENTIALS_LABEL], "true");
    assert_eq!(secret.labels()[MCP_ID_LABEL], "ocr_workflow_mcp_001");
    let key = String::from_utf8(secret.data.unwrap()["api-key"].0.clone()).unwrap();
    assert!(key.len() >= 64, "key too short: {} chars", key.len());
    assert_eq!(
        secret.metadata.owner_references.unwrap()[0].uid,
        reg.uid().unwrap()
    );

    // The key never shows up in status or events.
    let status_text = serde_json::to_string(&reg.status).unwrap();
    assert!(!status_text.contains(&key));
    let events: Api<Event> = Api::namespaced(place.client(), &place.namespace);
    let all = events.list(&Default::default()).await.unwrap();
    let reasons: HashSet<String> = all.items.iter().filter_map(|e| e.reason.clone()).collect();
    assert!(
        reasons.contains("Registered") && reasons.contains("BecameReady"),
        "{reasons:?}"
    );
    assert!(!serde_json::to_string(&all.items).unwrap().contains(&key));
}

async fn mcp_going_down_becomes_unavailable_and_recovers(place: Place) {
    let scene = Scene::start(&place).await;
    let Scene {
        mcp,
        controller,
        api,
        ..
    } = &scene;
    scene.ready("flaky").await;

    mcp.set_healthy(false);
    let down = wait_for(api, "flaky", WAIT, "Unavailable", |r| {
        phase(r) == Some(Phase::Unavailable)
    })
    .await;
    let status = down.status.unwrap();
    assert_eq!(status.routing.unwrap().effective_weight, 0);
    let health = status.health.unwrap();
    assert!(
        health.consecutive_failures >= 2,
        "failureThreshold is 2: {health:?}"
    );
    assert!(health.last_error.unwrap().contains("503"));
    let id = status.mcp_id.unwrap();
    assert_eq!(
        controller
            .metrics
            .mcp_up
            .with_label_values(&[id.as_str()])
            .get(),
        0
    );

    mcp.set_healthy(true);
    let back = wait_for(api, "flaky", WAIT, "Ready again", ready).await;
    assert_eq!(back.status.unwrap().routing.unwrap().effective_weight, 100);
    assert_eq!(
        controller
            .metrics
            .mcp_up
            .with_label_values(&[id.as_str()])
            .get(),
        1
    );
}

async fn steady_health_does_not_rewrite_status(place: Place) {
    let scene = Scene::start(&place).await;
    let Scene { mcp, api, .. } = &scene;
    let first = scene.ready("steady").await;
    let probes_before = mcp.probes.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = api.get("steady").await.unwrap();
    assert!(
        mcp.probes.load(std::sync::atomic::Ordering::Relaxed) >= probes_before + 3,
        "probing continues"
    );
    assert_eq!(
        later.resource_version(),
        first.resource_version(),
        "no status writes while nothing changes"
    );
}

async fn spec_edit_is_followed_by_observed_generation(place: Place) {
    let scene = Scene::start(&place).await;
    let Scene { api, .. } = &scene;
    scene.ready("edit").await;
    let patch = json!({"spec": {"routing": {"weight": 700, "priority": 2}}});
    let edited = api
        .patch("edit", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let generation = edited.metadata.generation.unwrap();
    assert_eq!(generation, 2);
    let reg = wait_for(api, "edit", WAIT, "observing generation 2", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    let routing = reg.status.unwrap().routing.unwrap();
    assert_eq!(
        (routing.weight, routing.effective_weight, routing.priority),
        (700, 700, 2)
    );
}

async fn fifty_registrations_at_once_get_fifty_distinct_ids(place: Place) {
    let mcp = FakeMcp::start().await;
    let api: Api<MCPRegistration> = Api::namespaced(place.client(), &place.namespace);
    // Two controller replicas racing for the same ledger.
    let _a = place.start_controller();
    let _b = place.start_controller();
    let creates = (0..50).map(|i| {
        let api = api.clone();
        let reg = place.registration(&format!("burst-{i}"), &mcp.url(), "");
        async move { api.create(&PostParams::default(), &reg).await.unwrap() }
    });
    futures::future::join_all(creates).await;
    let mut ids = HashSet::new();
    for i in 0..50 {
        let reg = wait_for(&api, &format!("burst-{i}"), WAIT, "assigned an ID", |r| {
            r.status.as_ref().and_then(|s| s.mcp_id.as_ref()).is_some()
        })
        .await;
        ids.insert(reg.status.unwrap().mcp_id.unwrap());
    }
    assert_eq!(ids.len(), 50, "IDs collided: {ids:?}");
}

async fn delete_and_recreate_gets_a_new_id_and_cleans_up(place: Place) {
    let mcp = FakeMcp::start().await;
    let _controller = place.start_controller();
    let c = place.client();
    let api: Api<MCPRegistration> = Api::namespaced(c.clone(), &place.namespace);
    let secrets: Api<Secret> = Api::namespaced(c.clone(), &place.namespace);
    api.create(
        &PostParams::default(),
        &place.registration("ocr", &mcp.url(), ""),
    )
    .await
    .unwrap();
    let first = wait_for(&api, "ocr", WAIT, "Ready", ready).await;
    let first_id = first.status.unwrap().mcp_id.unwrap();
    let first_uid = first.metadata.uid.unwrap();

    api.delete("ocr", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt("ocr").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "finalizer was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        secrets.get_opt("ocr-mcp-key").await.unwrap().is_none(),
        "key Secret removed"
    );
    let ledger: Api<ConfigMap> = Api::namespaced(c.clone(), &place.state_namespace);
    let shard = ids::shard_name("mcp-coordinator-ids", ids::shard_of("ocr_workflow"));
    let data = ledger.get(&shard).await.unwrap().data.unwrap();
    assert!(
        !data.contains_key(&format!("uid.{first_uid}")),
        "ID retired from the ledger"
    );

    api.create(
        &PostParams::default(),
        &place.registration("ocr", &mcp.url(), ""),
    )
    .await
    .unwrap();
    let second = wait_for(&api, "ocr", WAIT, "Ready", ready).await;
    let second_id = second.status.unwrap().mcp_id.unwrap();
    assert_eq!(first_id, "ocr_workflow_mcp_001");
    assert_eq!(
        second_id, "ocr_workflow_mcp_002",
        "a deleted MCP's ID is never reused"
    );
}

async fn ids_survive_a_controller_restart(place: Place) {
    let mcp = FakeMcp::start().await;
    let api: Api<MCPRegistration> = Api::namespaced(place.client(), &place.namespace);
    let first = place.start_controller();
    api.create(
        &PostParams::default(),
        &place.registration("keep", &mcp.url(), ""),
    )
    .await
    .unwrap();
    let before = wait_for(&api, "keep", WAIT, "Ready", ready).await;
    first.stop().await;
    // Even with status wiped (e.g. restored from a backup without status), the ledger keeps the ID.
    let wipe = json!({"status": null});
    api.patch_status("keep", &PatchParams::default(), &Patch::Merge(&wipe))
        .await
        .unwrap();
    let _second = place.start_controller();
    let after = wait_for(&api, "keep", WAIT, "Ready", ready).await;
    assert_eq!(after.status.unwrap().mcp_id, before.status.unwrap().mcp_id);
}

async fn a_ledger_from_before_sharding_keeps_counting_and_edits_keep_ids(place: Place) {
    let mcp = FakeMcp::start().await;
    let c = place.client();
    let ledger: Api<ConfigMap> = Api::namespaced(c.clone(), &place.state_namespace);
    // One ConfigMap, as earlier versions kept it: `ocr_workflow` already issued 41 IDs.
    let old: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "mcp-coordinator-ids", "namespace": place.state_namespace},
        "data": {"next.ocr_workflow": "42", "uid.gone": "ocr_workflow_mcp_041"},
    }))
    .unwrap();
    ledger.create(&PostParams::default(), &old).await.unwrap();
    let first = place.start_controller();
    let api: Api<MCPRegistration> = Api::namespaced(c.clone(), &place.namespace);
    api.create(
        &PostParams::default(),
        &place.registration("ocr", &mcp.url(), ""),
    )
    .await
    .unwrap();
    let reg = wait_for(&api, "ocr", WAIT, "Ready", ready).await;
    let id = reg.status.unwrap().mcp_id.unwrap();
    assert_eq!(
        id, "ocr_workflow_mcp_042",
        "no number of the old ledger is issued again"
    );

    // Changing the type changes the prefix, not the ID the MCP already reports under; a fresh
    // controller (nothing remembered in memory) must find it in the ledger.
    first.stop().await;
    let retype = json!({"spec": {"type": "tool"}});
    api.patch("ocr", &PatchParams::default(), &Patch::Merge(&retype))
        .await
        .unwrap();
    let _second = place.start_controller();
    let edited = wait_for(&api, "ocr", WAIT, "observing the edit", |r| {
        r.status.as_ref().and_then(|s| s.observed_generation) == Some(2)
    })
    .await;
    assert_eq!(edited.status.unwrap().mcp_id.as_deref(), Some(id.as_str()));
    let shard = ids::shard_name("mcp-coordinator-ids", ids::shard_of("ocr_tool"));
    let new_prefix_shard = ledger.get_opt(&shard).await.unwrap();
    assert!(
        new_prefix_shard
            .is_none_or(|cm| !cm.data.unwrap_or_default().contains_key("next.ocr_tool")),
        "no ID was spent under the new prefix"
    );
}

async fn invalid_spec_is_reported_without_a_retry_storm(place: Place) {
    let controller = place.start_controller();
    let api: Api<MCPRegistration> = Api::namespaced(place.client(), &place.namespace);
    // Passes the schema, fails the controller's checks: an unparsable version range.
    let reg = place.registration(
        "bad",
        "http://127.0.0.1:9",
        "  compatibility:\n    coordinatorVersion: '>>1'\n",
    );
    api.create(&PostParams::default(), &reg).await.unwrap();
    let invalid = wait_for(&api, "bad", WAIT, "Invalid", |r| {
        phase(r) == Some(Phase::Invalid)
    })
    .await;
    let status = invalid.status.unwrap();
    let ready_condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        ready_condition
            .message
            .contains("spec.compatibility.coordinatorVersion"),
        "{}",
        ready_condition.message
    );
    assert!(
        status.mcp_id.is_none(),
        "no ID is spent on an invalid registration"
    );
    let reconciles = controller.metrics.reconciles.get();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        controller.metrics.reconciles.get() <= reconciles + 1,
        "invalid specs are not retried in a loop"
    );

    // Fixing the spec brings it through.
    let fix = json!({"spec": {"compatibility": {"coordinatorVersion": ">=0.1"}}});
    api.patch("bad", &PatchParams::default(), &Patch::Merge(&fix))
        .await
        .unwrap();
    wait_for(&api, "bad", WAIT, "past Invalid", |r| {
        r.status
            .as_ref()
            .is_some_and(|s| s.phase != Phase::Invalid && s.mcp_id.is_some())
    })
    .await;
}

async fn rotation_annotation_issues_a_new_key(place: Place) {
    let mcp = FakeMcp::start().await;
    let _controller = place.start_controller();
    let c = place.client();
    let api: Api<MCPRegistration> = Api::namespaced(c.clone(), &place.namespace);
    let secrets: Api<Secret> = Api::namespaced(c, &place.namespace);
    api.create(
        &PostParams::default(),
        &place.registration("rot", &mcp.url(), ""),
    )
    .await
    .unwrap();
    wait_for(&api, "rot", WAIT, "Ready", ready).await;
    let key = |s: Secret| s.data.unwrap()["api-key"].0.clone();
    let old = key(secrets.get("rot-mcp-key").await.unwrap());
    let patch =
        json!({"metadata": {"annotations": {"mcp.coordinator.dev/rotate-key": "2026-11-24"}}});
    api.patch("rot", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = key(secrets.get("rot-mcp-key").await.unwrap());
        if now != old {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "key was not rotated"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn auth_refusal_is_reported_as_such_and_headers_from_secret_fix_it(place: Place) {
    let mcp = FakeMcp::start_with_auth(Some("Bearer s3cret".into())).await;
    let _controller = place.start_controller();
    let c = place.client();
    let api: Api<MCPRegistration> = Api::namespaced(c.clone(), &place.namespace);
    api.create(
        &PostParams::default(),
        &place.registration("guarded", &mcp.url(), ""),
    )
    .await
    .unwrap();
    let degraded = wait_for(&api, "guarded", WAIT, "Degraded", |r| {
        phase(r) == Some(Phase::Degraded)
    })
    .await;
    let error = degraded.status.unwrap().health.unwrap().last_error.unwrap();
    assert!(
        error.contains("401") && error.contains("headersFromSecret"),
        "{error}"
    );

    let secrets: Api<Secret> = Api::namespaced(c, &place.namespace);
    let headers: Secret = serde_json::from_value(json!({
        "metadata": {"name": "guarded-probe"},
        "data": {"authorization": "QmVhcmVyIHMzY3JldA=="}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &headers)
        .await
        .unwrap();
    let patch = json!({"spec": {"healthCheck": {"headersFromSecret": {"name": "guarded-probe"}}}});
    api.patch("guarded", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // A Secret that did not opt in is not sent anywhere.
    let refused = wait_for(&api, "guarded", WAIT, "told to label the Secret", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.last_error.as_deref())
            .is_some_and(|e| e.contains("mcp.coordinator.dev/probe-headers=true"))
    })
    .await;
    assert_ne!(phase(&refused), Some(Phase::Ready));
    let label = json!({"metadata": {"labels": {"mcp.coordinator.dev/probe-headers": "true"}}});
    secrets
        .patch(
            "guarded-probe",
            &PatchParams::default(),
            &Patch::Merge(&label),
        )
        .await
        .unwrap();
    wait_for(&api, "guarded", WAIT, "Ready", ready).await;
}

async fn deleting_a_registration_leaves_a_key_secret_it_does_not_own(place: Place) {
    let mcp = FakeMcp::start().await;
    let c = place.client();
    let secrets: Api<Secret> = Api::namespaced(c.clone(), &place.namespace);
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "squatted-mcp-key"},
        "data": {"api-key": "bm90LXlvdXJz"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let _controller = place.start_controller();
    let api: Api<MCPRegistration> = Api::namespaced(c, &place.namespace);
    api.create(
        &PostParams::default(),
        &place.registration("squatted", &mcp.url(), ""),
    )
    .await
    .unwrap();
    wait_for(&api, "squatted", WAIT, "to have a finalizer", |r| {
        !r.metadata.finalizers.clone().unwrap_or_default().is_empty()
    })
    .await;
    api.delete("squatted", &Default::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt("squatted").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        secrets.get_opt("squatted-mcp-key").await.unwrap().is_some(),
        "the controller deleted a Secret it does not own"
    );
}

async fn controller_serves_its_metrics(place: Place) {
    let scene = Scene::start(&place).await;
    let Scene { controller, .. } = &scene;
    scene.ready("m").await;
    let text = controller.metrics.render();
    for series in [
        "mcp_coordinator_reconciles_total",
        "mcp_coordinator_reconcile_duration_seconds_bucket",
        "mcp_coordinator_registrations{phase=\"Ready\"} 1",
        "mcp_coordinator_probe_duration_seconds_bucket{result=\"up\",type=\"http\"",
        "mcp_up{mcp_id=\"m_workflow_mcp_001\"} 1",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
    for _ in 0..50 {
        if controller.ready.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        controller.ready.load(std::sync::atomic::Ordering::Relaxed),
        "readyz turns true once the watch cache synced"
    );
}

async fn probes_do_not_go_to_the_api_server(place: Place) {
    let _controller = place.start_controller();
    let api: Api<MCPRegistration> = Api::namespaced(place.client(), &place.namespace);
    // A registration aiming the controller's probes at the API server itself.
    api.create(
        &PostParams::default(),
        &place.registration("apiserver", &place.url.clone(), ""),
    )
    .await
    .unwrap();
    let refused = wait_for(&api, "apiserver", WAIT, "refused as the API server", |r| {
        r.status
            .as_ref()
            .and_then(|s| s.health.as_ref())
            .and_then(|h| h.last_error.as_deref())
            .is_some_and(|e| e.contains("API server"))
    })
    .await;
    assert_ne!(phase(&refused), Some(Phase::Ready));
}

common::on_both_servers!(
    create_assigns_id_key_secret_and_becomes_ready,
    mcp_going_down_becomes_unavailable_and_recovers,
    steady_health_does_not_rewrite_status,
    spec_edit_is_followed_by_observed_generation,
    fifty_registrations_at_once_get_fifty_distinct_ids,
    delete_and_recreate_gets_a_new_id_and_cleans_up,
    ids_survive_a_controller_restart,
    a_ledger_from_before_sharding_keeps_counting_and_edits_keep_ids,
    invalid_spec_is_reported_without_a_retry_storm,
    rotation_annotation_issues_a_new_key,
    auth_refusal_is_reported_as_such_and_headers_from_secret_fix_it,
    deleting_a_registration_leaves_a_key_secret_it_does_not_own,
    controller_serves_its_metrics,
    probes_do_not_go_to_the_api_server,
);
