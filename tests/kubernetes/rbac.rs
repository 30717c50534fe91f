//! The code makes no Kubernetes API call outside `rbac::API_CALLS`: every call the controller
//! makes in a full scenario is in the controller's part of the list, and every call the ingest
//! server's watchers make is in the ingest's (read-only) part.

use test_support as common;

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

    let controller = start_controller(&server);
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
    controller.stop().await;
    let by_controller: Vec<_> = server.store().calls().into_iter().collect();
    assert!(
        by_controller.len() >= 8,
        "the scenario exercised the controller: {by_controller:?}"
    );
    let outside: Vec<_> = by_controller
        .iter()
        // The test itself gets, patches and deletes registrations; the controller also patches them.
        .filter(|(verb, group, resource)| {
            !(group == "mcp.coordinator.dev"
                && resource == "mcpregistrations"
                && matches!(verb.as_str(), "get" | "delete"))
        })
        .filter(|(verb, group, resource)| !allowed("controller", verb, group, resource))
        .collect();
    assert!(
        outside.is_empty(),
        "controller calls missing from its part of rbac::API_CALLS: {outside:?}"
    );

    // The ingest server's watchers, alone, with the chart's flags: each call is in the ingest's
    // read-only part of the list (the identity the chart gives the ingest container).
    api.create(
        &PostParams::default(),
        &registration("again", &mcp.url(), ""),
    )
    .await
    .unwrap();
    server.store().clear_calls();
    let keys = Arc::new(mcp_coordinator::trust::keys::KeyRing::default());
    let retention = Arc::new(mcp_coordinator::store::retention::RetentionDays::default());
    let readers = Arc::new(mcp_coordinator::trust::keys::ReaderTokens::default());
    let router = Arc::new(mcp_coordinator::routing::router::Router::new(
        Default::default(),
    ));
    let watchers = [
        tokio::spawn(mcp_coordinator::trust::watch::watch(
            client(&server),
            None,
            keys,
            retention,
            Default::default(),
        )),
        tokio::spawn(mcp_coordinator::trust::watch::watch_reader_tokens(
            client(&server),
            STATE_NAMESPACE.into(),
            readers,
        )),
        tokio::spawn(mcp_coordinator::ingest::routes::watch_registrations(
            client(&server),
            None,
            router,
            Default::default(),
            Default::default(),
        )),
    ];
    tokio::time::sleep(Duration::from_secs(1)).await;
    for watcher in watchers {
        watcher.abort();
    }
    let by_ingest: Vec<_> = server.store().calls().into_iter().collect();
    assert!(
        by_ingest.len() >= 3,
        "the ingest watchers ran: {by_ingest:?}"
    );
    let outside: Vec<_> = by_ingest
        .iter()
        .filter(|(verb, group, resource)| !allowed("ingest", verb, group, resource))
        .collect();
    assert!(
        outside.is_empty(),
        "ingest calls missing from its part of rbac::API_CALLS: {outside:?}"
    );

    // Self-registration, alone: declare, change, retire. No controller runs, so the wait for an
    // ID is cut short; the calls made are what counts.
    use mcp_coordinator::ingest::registrar::message::{declare, RegisterMessage};
    use mcp_coordinator::ingest::registrar::{
        kubernetes::KubernetesRegistrations, RegistrationPort,
    };
    server.store().clear_calls();
    let port = KubernetesRegistrations::new(client(&server));
    let mut message = serde_json::json!({"action": "register_mcp", "mcp_info": {
        "name": "self", "version": "1.0.0", "type": "workflow", "capabilities": ["ocr"], "url": mcp.url()
    }});
    for version in ["1.0.0", "1.1.0"] {
        message["mcp_info"]["version"] = serde_json::json!(version);
        let parsed: RegisterMessage = serde_json::from_value(message.clone()).unwrap();
        let declared = declare(parsed, "default".into(), true).unwrap();
        let registering = port.register(&declared, "ci", 100);
        let _ = tokio::time::timeout(Duration::from_millis(500), registering).await;
    }
    port.unregister("default", "self").await.unwrap();
    let by_registrar: Vec<_> = server.store().calls().into_iter().collect();
    for verb in ["list", "create", "update", "delete"] {
        assert!(
            by_registrar
                .iter()
                .any(|(v, _, r)| v == verb && r == "mcpregistrations"),
            "the scenario exercised the registrar's {verb}: {by_registrar:?}"
        );
    }
    let outside: Vec<_> = by_registrar
        .iter()
        .filter(|(verb, group, resource)| !allowed("registrar", verb, group, resource))
        .collect();
    assert!(
        outside.is_empty(),
        "registrar calls missing from its part of rbac::API_CALLS: {outside:?}"
    );
}
