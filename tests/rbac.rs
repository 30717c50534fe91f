//! The code makes no Kubernetes API call outside `rbac::API_CALLS`: every call the controller and
//! the ingest key watcher make against the test API server in a full scenario is in the list.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::Api;
use mcp_coordinator::crd::{MCPRegistration, Phase};
use mcp_coordinator::rbac::allowed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_call_is_in_the_rbac_list() {
    let server = api_server().await;
    let test_client = client(&server);
    let mcp = FakeMcp::start_with_auth(Some("Bearer t".into())).await;
    let api: Api<MCPRegistration> = Api::namespaced(test_client.clone(), "default");
    let headers: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe-headers", "labels": {"mcp.coordinator.dev/probe-headers": "true"}},
        "data": {"authorization": "QmVhcmVyIHQ="}
    }))
    .unwrap();
    Api::namespaced(test_client.clone(), "default")
        .create(&PostParams::default(), &headers)
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &registration(
            "rbac",
            &mcp.url(),
            "    headersFromSecret: {name: probe-headers}\n",
        ),
    )
    .await
    .unwrap();
    // The test's own set-up calls are not the code's.
    server.store().clear_calls();

    let _controller = start_controller(&server);
    let keys = Arc::new(mcp_coordinator::ingest::auth::KeyRing::default());
    let retention = Arc::new(mcp_coordinator::store::retention::RetentionDays::default());
    tokio::spawn(mcp_coordinator::ingest::secrets::watch(
        client(&server),
        None,
        keys.clone(),
        retention.clone(),
        Default::default(),
    ));
    wait_for(&api, "rbac", Duration::from_secs(20), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    let rotate =
        serde_json::json!({"metadata": {"annotations": {"mcp.coordinator.dev/rotate-key": "1"}}});
    api.patch("rbac", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.delete("rbac", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api.get_opt("rbac").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let made: Vec<_> = server.store().calls().into_iter().collect();
    assert!(made.len() >= 8, "the scenario exercised the code: {made:?}");
    let outside: Vec<_> = made
        .iter()
        // The test itself gets and deletes registrations; the code does not.
        .filter(|(verb, group, resource)| {
            !(group == "mcp.coordinator.dev"
                && resource == "mcpregistrations"
                && matches!(verb.as_str(), "get" | "delete"))
        })
        .filter(|(verb, group, resource)| {
            !allowed("controller", verb, group, resource)
                && !allowed("ingest", verb, group, resource)
        })
        .collect();
    assert!(
        outside.is_empty(),
        "API calls missing from rbac::API_CALLS: {outside:?}"
    );
}
