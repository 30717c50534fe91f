//! API keys from the controller's credentials Secrets, end to end: the controller registers an MCP
//! against the test API server, and the ingest server accepts that MCP's key from its Secret.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};
use mcp_coordinator::trust::keys::KeyRing;

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The test API server, the controller, the ingest server's key watch, and a registration
/// `ocr` that is Ready (its key Secret written).
struct World {
    server: fake_apiserver::FakeApiServer,
    _mcp: FakeMcp,
    _controller: RunningController,
    keys: Arc<KeyRing>,
    retention: Arc<mcp_coordinator::store::retention::RetentionDays>,
    api: Api<MCPRegistration>,
}

async fn registered_ocr() -> World {
    let server = api_server().await;
    let mcp = FakeMcp::start().await;
    let _controller = start_controller(&server);
    let keys = Arc::new(KeyRing::default());
    let retention = Arc::new(mcp_coordinator::store::retention::RetentionDays::default());
    tokio::spawn(mcp_coordinator::trust::watch::watch(
        client(&server),
        None,
        keys.clone(),
        retention.clone(),
        Default::default(),
    ));
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(&PostParams::default(), &registration("ocr", &mcp.url(), ""))
        .await
        .unwrap();
    wait_for(&api, "ocr", Duration::from_secs(20), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    World {
        server,
        _mcp: mcp,
        _controller,
        keys,
        retention,
        api,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_follow_the_credentials_secrets() {
    let World {
        server,
        _controller,
        keys,
        retention,
        api,
        ..
    } = registered_ocr().await;
    let secrets: Api<Secret> = Api::namespaced(client(&server), "default");
    let key_of = |s: Secret| String::from_utf8(s.data.unwrap()["api-key"].0.clone()).unwrap();
    let key = key_of(secrets.get("ocr-mcp-key").await.unwrap());
    eventually("the key is accepted", || {
        keys.mcp_for(&key).as_deref() == Some("ocr_workflow_mcp_001")
    })
    .await;
    assert_eq!(
        retention.snapshot().get("ocr_workflow_mcp_001"),
        Some(&30),
        "the MCP's retention days travel on its Secret"
    );

    // Rotation: the new key works, the old one no longer does.
    let patch =
        serde_json::json!({"metadata": {"annotations": {"mcp.coordinator.dev/rotate-key": "1"}}});
    api.patch(
        "ocr",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let rotated = loop {
        let now = key_of(secrets.get("ocr-mcp-key").await.unwrap());
        if now != key {
            break now;
        }
        assert!(tokio::time::Instant::now() < deadline, "not rotated");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eventually("the rotated key is accepted", || {
        keys.mcp_for(&rotated).is_some()
    })
    .await;
    assert_eq!(keys.mcp_for(&key), None, "the old key is gone");

    // Deleting the registration removes its key.
    api.delete("ocr", &DeleteParams::default()).await.unwrap();
    eventually("the key is dropped", || keys.mcp_for(&rotated).is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_tokens_follow_their_secrets() {
    let server = api_server().await;
    let readers = Arc::new(mcp_coordinator::trust::keys::ReaderTokens::default());
    tokio::spawn(mcp_coordinator::trust::watch::watch_reader_tokens(
        client(&server),
        "mcp-coordinator".into(),
        readers.clone(),
    ));
    // A reader token labelled in another namespace grants nothing.
    let elsewhere: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sneaky-reader", "labels": {"mcp.coordinator.dev/reader-token": "true"}},
        "data": {"token": "c25lYWt5LXJlYWRlci10b2tlbg=="}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client(&server), "team-a")
        .create(&PostParams::default(), &elsewhere)
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client(&server), "mcp-coordinator");
    let token: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "grafana-reader", "labels": {"mcp.coordinator.dev/reader-token": "true"}},
        "data": {"token": "Z3JhZmFuYS1yZWFkZXItdG9rZW4="}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &token)
        .await
        .unwrap();
    eventually("the token reads", || readers.allows("grafana-reader-token")).await;
    assert!(!readers.allows("some-other-token"));
    assert!(
        !readers.allows("sneaky-reader-token"),
        "a token from another namespace was accepted"
    );
    secrets
        .delete("grafana-reader", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the token is revoked", || {
        !readers.allows("grafana-reader-token")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labelled_secret_the_controller_does_not_own_mints_no_key_and_revokes_none() {
    let World {
        server,
        _controller,
        keys,
        retention,
        ..
    } = registered_ocr().await;
    let secrets: Api<Secret> = Api::namespaced(client(&server), "default");
    let real = secrets.get("ocr-mcp-key").await.unwrap();
    let real_key = String::from_utf8(real.data.unwrap()["api-key"].0.clone()).unwrap();
    eventually("the real key is accepted", || {
        keys.mcp_for(&real_key).is_some()
    })
    .await;

    // Someone who can write Secrets in another namespace labels one for the same MCP.
    let forged: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "forged", "labels": {
            "mcp.coordinator.dev/credentials": "true",
            "mcp.coordinator.dev/mcp-id": "ocr_workflow_mcp_001"},
            "annotations": {"mcp.coordinator.dev/retention-days": "3650"}},
        "data": {"api-key": "Zm9yZ2VkLWtleS0wMTIzNDU2Nzg5"}
    }))
    .unwrap();
    let evil: Api<Secret> = Api::namespaced(client(&server), "evil");
    evil.create(&PostParams::default(), &forged).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        keys.mcp_for("forged-key-0123456789"),
        None,
        "a forged key was accepted"
    );
    assert_eq!(
        retention.snapshot().get("ocr_workflow_mcp_001"),
        Some(&30),
        "a forged annotation changed the retention"
    );
    evil.delete("forged", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        keys.mcp_for(&real_key).is_some(),
        "deleting the forged Secret revoked the real key"
    );
}
