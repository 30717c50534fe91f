//! Contract tests of the test API server, written from the Kubernetes API documentation
//! (API concepts: resource versions, watches, patches, server-side apply, finalizers, garbage
//! collection, the status subresource, CRD validation). The controller's tests are only as honest
//! as this fake, so its behaviour is pinned here.

use test_support as common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Api, ResourceExt};
use mcp_coordinator::crd::MCPRegistration;
use serde_json::{json, Value};

fn reg(name: &str) -> MCPRegistration {
    registration(name, "http://127.0.0.1:9", "")
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_sets_system_metadata_and_defaults() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let created = api.create(&PostParams::default(), &reg("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.resource_version().is_some());
    assert_eq!(
        created.spec.paths.health_check, "/health",
        "schema defaults applied"
    );
    let again = api_error(
        api.create(&PostParams::default(), &reg("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn generation_moves_only_with_spec_and_status_writes_cannot_touch_spec() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(&PostParams::default(), &reg("g")).await.unwrap();
    let labelled = api
        .patch(
            "g",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes keep generation"
    );
    let status_write =
        json!({"status": {"phase": "Ready", "mcpId": "x"}, "spec": {"version": "9.9.9"}});
    let after_status = api
        .patch_status("g", &PatchParams::default(), &Patch::Merge(&status_write))
        .await
        .unwrap();
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(
        after_status.spec.version, "1.0.0",
        "status subresource ignores spec"
    );
    assert_eq!(
        after_status.status.as_ref().unwrap().mcp_id.as_deref(),
        Some("x")
    );
    let spec_write = json!({"spec": {"version": "2.0.0"}, "status": {"phase": "Invalid"}});
    let after_spec = api
        .patch("g", &PatchParams::default(), &Patch::Merge(&spec_write))
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        after_spec.status.unwrap().mcp_id.as_deref(),
        Some("x"),
        "main resource ignores status"
    );
}

#[tokio::test]
async fn stale_resource_version_is_a_conflict_and_noop_writes_keep_it() {
    let server = api_server().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("a".to_string(), "2".to_string())].into());
    api.replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api_error(
        api.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let current = api.get("c").await.unwrap();
    let same = api
        .replace("c", &PostParams::default(), &current)
        .await
        .unwrap();
    assert_eq!(
        same.resource_version(),
        current.resource_version(),
        "a no-op write is not a change"
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let mut r = reg("f");
    r.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &r).await.unwrap();
    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let add = json!({"metadata": {"finalizers": ["example.com/hold", "example.com/new"]}});
    let err = api_error(
        api.patch("f", &PatchParams::default(), &Patch::Merge(&add))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422, "no new finalizers while deleting");
    let release = json!({"metadata": {"finalizers": null}});
    api.patch("f", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert!(api.get_opt("f").await.unwrap().is_none());
}

#[tokio::test]
async fn owned_objects_are_garbage_collected_with_their_owner() {
    let server = api_server().await;
    let c = client(&server);
    let regs: Api<MCPRegistration> = Api::namespaced(c.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c, "default");
    let owner = regs
        .create(&PostParams::default(), &reg("owner"))
        .await
        .unwrap();
    let owned: Secret = serde_json::from_value(json!({
        "metadata": {"name": "owned", "ownerReferences": [{
            "apiVersion": "mcp.coordinator.dev/v1alpha1", "kind": "MCPRegistration",
            "name": "owner", "uid": owner.uid().unwrap(), "controller": true
        }]}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &owned)
        .await
        .unwrap();
    let unrelated: Secret =
        serde_json::from_value(json!({"metadata": {"name": "unrelated"}})).unwrap();
    secrets
        .create(&PostParams::default(), &unrelated)
        .await
        .unwrap();
    regs.delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    assert!(secrets.get_opt("owned").await.unwrap().is_none());
    assert!(secrets.get_opt("unrelated").await.unwrap().is_some());
}

#[tokio::test]
async fn schema_violations_are_422_with_the_field_named() {
    let server = api_server().await;
    let regs: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    let mut bad = reg("bad");
    bad.spec.routing.weight = 5000;
    let err = api_error(regs.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("spec.routing.weight: Invalid value: 5000: spec.routing.weight in body should be less than or equal to 1000"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn list_paginates_with_continue_tokens() {
    let server = api_server().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    for i in 0..7 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("p{i}"), "labels": {"set": if i % 2 == 0 {"even"} else {"odd"}}}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    let even = api
        .list(&ListParams::default().labels("set=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_and_expires_after_compaction() {
    let server = api_server().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "w"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("w", &DeleteParams::default()).await.unwrap();

    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
            Ok(Ok(Some(WatchEvent::Added(o)))) => seen.push(format!("ADDED {}", o.name_any())),
            Ok(Ok(Some(WatchEvent::Deleted(o)))) => seen.push(format!("DELETED {}", o.name_any())),
            Ok(Ok(Some(WatchEvent::Bookmark(_)))) => {}
            other => panic!("unexpected watch outcome: {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED w", "DELETED w"]);

    server.store().compact();
    let mut expired = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), expired.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(e)))) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_removes_what_it_stops_applying() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(&PostParams::default(), &reg("ssa"))
        .await
        .unwrap();
    let apply = |status: Value| json!({"apiVersion": "mcp.coordinator.dev/v1alpha1", "kind": "MCPRegistration", "status": status});
    let params = PatchParams::apply("manager-a").force();
    api.patch_status("ssa", &params, &Patch::Apply(apply(json!({"phase": "Unavailable", "health": {"lastError": "boom", "consecutiveFailures": 3, "consecutiveSuccesses": 0}}))))
        .await
        .unwrap();
    let healed = api
        .patch_status("ssa", &params, &Patch::Apply(apply(json!({"phase": "Ready", "health": {"consecutiveFailures": 0, "consecutiveSuccesses": 1}}))))
        .await
        .unwrap();
    let health = healed.status.unwrap().health.unwrap();
    assert_eq!(
        health.last_error, None,
        "a field the manager no longer applies is removed"
    );

    let other = PatchParams::apply("manager-b");
    let err = api_error(
        api.patch_status(
            "ssa",
            &other,
            &Patch::Apply(apply(json!({"phase": "Invalid"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409, "taking another manager's field needs force");
    assert!(err.message.contains("manager-a"), "{}", err.message);
}

#[tokio::test]
async fn json_patch_test_operation_guards_against_races() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(&PostParams::default(), &reg("jp"))
        .await
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}
    ]))
    .unwrap();
    let err = api_error(
        api.patch("jp", &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(api.get("jp").await.unwrap().metadata.finalizers.is_none());
}

#[tokio::test]
async fn unsupported_patch_types_and_bad_bodies_are_refused_clearly() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::namespaced(client(&server), "default");
    api.create(&PostParams::default(), &reg("sm"))
        .await
        .unwrap();
    let err = api_error(
        api.patch(
            "sm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        err.code, 415,
        "custom resources do not support strategic merge patch"
    );
    let raw = http_client()
        .post(format!(
            "{}/apis/mcp.coordinator.dev/v1alpha1/namespaces/default/mcpregistrations",
            server.url()
        ))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["kind"], "Status");
}

#[tokio::test]
async fn discovery_lists_the_installed_crd() {
    let server = api_server().await;
    let http = http_client();
    let groups: Value = http
        .get(format!("{}/apis", server.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "mcp.coordinator.dev"));
    let resources: Value = http
        .get(format!(
            "{}/apis/mcp.coordinator.dev/v1alpha1",
            server.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mcpregistrations", "mcpregistrations/status"]);
    assert_eq!(resources["resources"][0]["shortNames"], json!(["mcpcreg"]));
}

#[tokio::test]
async fn a_non_structural_crd_is_rejected() {
    let server = fake_apiserver::FakeApiServer::start().await.unwrap();
    let mut crd = serde_json::to_value(mcp_coordinator::crd::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["additionalProperties"] = json!(false);
    let err = server.install_crd(crd).unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("mutual exclusive"), "{}", err.message);
}

#[tokio::test]
async fn watch_stream_of_a_list_watch_client_sees_new_objects() {
    let server = api_server().await;
    let api: Api<MCPRegistration> = Api::all(client(&server));
    let mut events = kube::runtime::watcher(api.clone(), Default::default()).boxed();
    let namespaced: Api<MCPRegistration> = Api::namespaced(client(&server), "team-a");
    namespaced
        .create(&PostParams::default(), &{
            let mut r = reg("seen");
            r.metadata.namespace = Some("team-a".into());
            r
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("event within 5 s");
        if let Some(Ok(
            kube::runtime::watcher::Event::Apply(o) | kube::runtime::watcher::Event::InitApply(o),
        )) = next
        {
            if o.name_any() == "seen" {
                break;
            }
        }
    }
}
