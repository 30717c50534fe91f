//! The gateway fed from Kubernetes (as the chart runs it): the MCPs from the registrations and the
//! routing status, each called with the headers of its opted-in `headersFromSecret`, callers from
//! labelled Secrets of the coordinator's namespace, and the caller's token never forwarded.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{test_config, InProcessIngest};
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use mcp_coordinator::crd::MCPRegistration;
use mcp_coordinator::gateway::GatewayConfig;
use mcp_coordinator::store::sqlite::SqliteStore;
use serde_json::{json, Value};
use warp::Filter;

const CALLER: &str = "kube-caller-token-0123456789";
const READER: &str = "kube-reader-token-0123456789";

/// An MCP of 2026-07-28 that answers only with its own header (`x-api-key: s3cret`) and says
/// whether it saw an `Authorization` header.
async fn guarded_mcp(fail_calls: bool, delay_ms: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |headers: warp::http::HeaderMap, body: bytes::Bytes| async move {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if request["method"] == "tools/call" {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                }
                (headers, body)
            },
        )
        .map(
            move |(headers, body): (warp::http::HeaderMap, bytes::Bytes)| {
                let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some("s3cret") {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "no key"})),
                        warp::http::StatusCode::UNAUTHORIZED,
                    );
                }
                if fail_calls && request["method"] == "tools/call" {
                    return warp::reply::with_status(
                        warp::reply::json(&json!({"error": "overloaded"})),
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    );
                }
                let result = match request["method"].as_str() {
                    Some("server/discover") => {
                        json!({"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}})
                    }
                    Some("tools/list") => {
                        json!({"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]})
                    }
                    _ => {
                        let text = if headers.contains_key("authorization") {
                            "saw the caller's token"
                        } else {
                            "headers ok"
                        };
                        json!({"content": [{"type": "text", "text": text}]})
                    }
                };
                warp::reply::with_status(
                    warp::reply::json(
                        &json!({"jsonrpc": "2.0", "id": request["id"], "result": result}),
                    ),
                    warp::http::StatusCode::OK,
                )
            },
        );
    let config = mcp_coordinator::serve::ServeConfig {
        header_timeout: Duration::from_secs(5),
        grace: Duration::from_secs(1),
        ..mcp_coordinator::serve::ServeConfig::new("backend")
    };
    let metrics = mcp_coordinator::serve::ServeMetrics::new(&Default::default()).unwrap();
    tokio::spawn(mcp_coordinator::serve::serve(
        listener,
        config,
        Arc::new(metrics),
        routes,
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// A Secret's `data`: each value base64 (not every API server turns `stringData` into it).
fn encode(data: Value) -> Value {
    use base64::Engine;
    let map = data.as_object().expect("an object");
    map.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD
                    .encode(v.as_str().unwrap_or_default())),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_calls_kubernetes_registrations_with_their_own_headers_for_callers_from_secrets(
) {
    let server = api_server().await;
    let kube = client(&server);
    let mcp = guarded_mcp(false, 0).await;
    let broken = guarded_mcp(true, 0).await;
    let busy = guarded_mcp(false, 600).await;
    for ns in ["tools", "coordinator"] {
        let namespace: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(kube.clone())
            .create(&PostParams::default(), &namespace)
            .await;
    }
    let secret = |name: &str, label: &str, data: Value| -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {label: "true"}}, "data": encode(data)}),
        )
        .unwrap()
    };
    Api::<Secret>::namespaced(kube.clone(), "tools")
        .create(
            &PostParams::default(),
            &secret(
                "mcp-headers",
                "mcp.coordinator.dev/probe-headers",
                json!({"x-api-key": "s3cret\n"}),
            ),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(kube.clone(), "coordinator")
        .create(
            &PostParams::default(),
            &secret(
                "app",
                "mcp.coordinator.dev/caller-token",
                json!({"token": CALLER, "namespaces": "tools"}),
            ),
        )
        .await
        .unwrap();
    // Two registrations: "guarded" answers (with its header), "broken" lists its tool and then
    // answers every call 503; each has a capability of its own, so calls go to it alone.
    let registrations: Api<MCPRegistration> = Api::namespaced(kube.clone(), "tools");
    for (name, url, capability, max) in [
        ("guarded", &mcp, "guarded", 10),
        ("broken", &broken, "broken", 10),
        ("busy", &busy, "busy", 1),
    ] {
        let mut reg = registration(name, url, "  paths:\n    process: /mcp\n");
        reg.spec.capabilities = vec![capability.into()];
        reg.spec.health_check.headers_from_secret = Some(mcp_coordinator::crd::SecretName {
            name: "mcp-headers".into(),
        });
        reg.metadata.namespace = Some("tools".into());
        registrations
            .create(&PostParams::default(), &reg)
            .await
            .unwrap();
        // What the controller would write once the MCP is Ready.
        let status = json!({"status": {"mcpId": format!("{name}_workflow_mcp_001"), "phase": "Ready", "routing": {"priority": 0, "weight": 100, "effectiveWeight": 100, "maxConcurrentRequests": max, "reason": "Ready"}}});
        registrations
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    let dir = TestDir::new("gateway-kubernetes");
    let mut config = test_config(&dir);
    config.gateway = Some(GatewayConfig::new("127.0.0.1:0".parse().unwrap()));
    tokio::spawn(mcp_coordinator::ingest::routes::watch_registrations(
        kube.clone(),
        None,
        config.router.clone(),
        config.directory.clone(),
        config.fleet.clone(),
    ));
    tokio::spawn(mcp_coordinator::trust::callers::watch_caller_tokens(
        kube.clone(),
        "coordinator".into(),
        config.callers.clone(),
    ));
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let readers = Arc::new(mcp_coordinator::trust::keys::ReaderTokens::from_tokens([
        READER,
    ]));
    let ingest = InProcessIngest::start(config, store, Arc::default(), readers).await;
    let url = format!("http://{}/mcp/tools", ingest.gateway_addr.unwrap());

    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}});
    let text = eventually(Duration::from_secs(20), || async {
        let r = http_client()
            .post(&url)
            .bearer_auth(CALLER)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "whoami")
            .json(&call)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| e.to_string())?;
        body["result"]["content"][0]["text"]
            .as_str()
            .map(str::to_string)
            .ok_or(format!("{status} {body}"))
    })
    .await;
    assert_eq!(
        text, "headers ok",
        "the MCP got its own header and not the caller's token"
    );

    let r = http_client()
        .post(format!(
            "http://{}/mcp/default",
            ingest.gateway_addr.unwrap()
        ))
        .bearer_auth(CALLER)
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "the Secret grants namespace tools only");

    // The broken MCP fails three calls in a row: the gateway ejects it, and says so.
    let broken_url = format!("http://{}/mcp/tools/broken", ingest.gateway_addr.unwrap());
    for attempt in 0..3 {
        let r = http_client()
            .post(&broken_url)
            .bearer_auth(CALLER)
            .header("mcp-protocol-version", "2026-07-28")
            .json(&call)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32001, "attempt {attempt}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("answered HTTP 503"),
            "{body}"
        );
    }
    let ejections = get_json_as(&format!("{}/v1/gateway/ejections", ingest.base), READER).await;
    assert_eq!(
        ejections["mcps"]["broken_workflow_mcp_001"]["ejections"], 1,
        "{ejections}"
    );
    assert!(
        ejections["mcps"].get("guarded_workflow_mcp_001").is_none(),
        "{ejections}"
    );

    // maxConcurrentRequests is enforced at the gateway: "busy" takes one call at a time, and with
    // no other MCP for its capability the second call at once is refused, saying why.
    let busy_url = format!("http://{}/mcp/tools/busy", ingest.gateway_addr.unwrap());
    let send = || {
        http_client()
            .post(&busy_url)
            .bearer_auth(CALLER)
            .header("mcp-protocol-version", "2026-07-28")
            .json(&call)
            .send()
    };
    let first = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(second["error"]["code"], -32001, "{second}");
    assert!(
        second["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at maxConcurrentRequests"),
        "{second}"
    );
    let first: Value = first.await.unwrap().unwrap().json().await.unwrap();
    assert_eq!(
        first["result"]["content"][0]["text"], "headers ok",
        "{first}"
    );
}
