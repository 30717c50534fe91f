//! The gateway as an OAuth 2.1 resource server, with real peers: an authorization server built on
//! the MCP Python SDK's own support (tests/python/oauth_server.py), the SDK's client with its OAuth
//! support discovering it from the gateway's 401, and tokens that must be refused, each with the
//! error RFC 6750 gives it.

use test_support as common;

use std::process::Stdio;
use std::time::Duration;

use common::{free_port, http_client};
use serde_json::{json, Value};

use super::gateway::{manifest, python_server, root, Coordinator};

async fn stats(issuer: &str) -> u64 {
    let body: Value = http_client()
        .get(format!("{issuer}stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["jwks_fetches"].as_u64().unwrap()
}

async fn mint(issuer: &str, ask: Value) -> String {
    let body: Value = http_client()
        .post(format!("{issuer}mint"))
        .json(&ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// A `tools/list` through the gateway with `token`: the status, `WWW-Authenticate` and the body.
async fn call(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = http_client()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, challenge, answer.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_client_gets_a_token_by_discovery_and_bad_tokens_are_refused() {
    let as_port = free_port();
    let _authorization_server = tokio::process::Command::new("python3")
        .arg(root().join("tests/python/oauth_server.py"))
        .arg(as_port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the authorization server");
    common::peers::wait_listening(as_port, "the authorization server").await;
    let issuer_base = format!("http://127.0.0.1:{as_port}");
    // The issuer identifier as the SDK's authorization server writes it in its metadata.
    let issuer = format!("{issuer_base}/");
    let mcp_port = free_port();
    let _mcp = python_server(mcp_port, "ocr-a", 0.0, 0.0);
    let gateway_port = free_port();
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let dir = common::TestDir::new("gateway-oauth");
    let oauth_file = dir.join("oauth.yaml");
    std::fs::write(
        &oauth_file,
        format!("resource: {gateway}\nissuers:\n  - issuer: {issuer}\n    jwksUrl: {issuer_base}/jwks\n    algorithms: [RS256]\n    namespacesClaim: mcp_namespaces\n    minRefreshSeconds: 2\n"),
    )
    .unwrap();
    let manifests = [("ocr-a", manifest("ocr-a", mcp_port, "text_extraction", ""))];
    let c = Coordinator::start_on(
        &manifests,
        &["--gateway-oauth-file", oauth_file.to_str().unwrap()],
        1,
        &[],
        gateway_port,
    )
    .await;
    let url = format!("{gateway}/mcp/default");

    // Without a token: 401 pointing at the metadata, which names the authorization server.
    let (status, challenge, _) = call(&url, None).await;
    assert_eq!(status, 401);
    let metadata_url = format!("{gateway}/.well-known/oauth-protected-resource/mcp/default");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\"")
    );
    let metadata: Value = http_client()
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], url);
    assert_eq!(metadata["authorization_servers"], json!([issuer]));

    // The SDK's client: discovery from the 401, registration, authorization, token, calls.
    let out = tokio::process::Command::new("python3")
        .arg(root().join("tests/python/oauth_client.py"))
        .arg(&url)
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs the SDK client");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_str(said.trim()).expect("one JSON line");
    assert_eq!(answer["text"], "ocr-a: text of oauth.png", "{answer}");
    assert_eq!(answer["is_error"], false);
    // The interaction names the caller by a pseudonym of its subject, never the subject itself.
    let mcp_id = c.mcp_id("ocr-a").await;
    let history = common::eventually(Duration::from_secs(10), || async {
        let h = c.history(&mcp_id).await;
        (!h.is_empty()).then_some(h.clone()).ok_or(format!("{h:?}"))
    })
    .await;
    let user = history[0]["request_data"]["user_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !user.is_empty() && !user.contains("alice"),
        "{}",
        history[0]
    );
    // An admin reads one caller's calls by that pseudonym.
    let mine = common::get_json_as(
        &format!("{}/v1/mcps/{mcp_id}/interactions?user_id={user}", c.api),
        &c.token("admin.token"),
    )
    .await;
    assert_eq!(
        mine["interactions"].as_array().map(Vec::len),
        Some(1),
        "{mine}"
    );
    let nobody = common::get_json_as(
        &format!("{}/v1/mcps/{mcp_id}/interactions?user_id=u_nobody", c.api),
        &c.token("admin.token"),
    )
    .await;
    assert_eq!(nobody["interactions"], json!([]), "{nobody}");
    let fetches = stats(&issuer).await;
    assert_eq!(fetches, 1, "one JWKS fetch for every token so far");

    // Tokens to refuse, each with its reason.
    let good = mint(&issuer, json!({"aud": url})).await;
    assert_eq!(call(&url, Some(&good)).await.0, 200);
    for (ask, status, error, says) in [
        (
            json!({"aud": url, "ttl": -600}),
            401,
            "invalid_token",
            "expired",
        ),
        (
            json!({"aud": format!("{gateway}/mcp/other")}),
            401,
            "invalid_token",
            "another resource",
        ),
        (
            json!({"aud": url, "namespaces": ["ocr"]}),
            403,
            "insufficient_scope",
            "grants no access",
        ),
        (
            json!({"aud": url, "alg": "none"}),
            401,
            "invalid_token",
            "not a signed JWT",
        ),
        (
            json!({"aud": url, "iss": "http://127.0.0.1:9"}),
            401,
            "invalid_token",
            "not accepted here",
        ),
    ] {
        let token = mint(&issuer, ask.clone()).await;
        let (got, challenge, body) = call(&url, Some(&token)).await;
        assert_eq!(got, status, "{ask}: {body}");
        assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{ask}: {challenge}"
        );
        assert!(body.contains(says), "{ask}: {body}");
    }
    // A key the issuer does not publish: its keys are fetched again once (a rotation would be
    // found so), then the token is refused; another such token at once fetches nothing more.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = stats(&issuer).await;
    for kid in ["k9", "k10"] {
        let token = mint(&issuer, json!({"aud": url, "kid": kid, "stranger": true})).await;
        let (got, _, body) = call(&url, Some(&token)).await;
        assert_eq!(got, 401, "{body}");
        assert!(body.contains("publishes no key"), "{body}");
    }
    assert_eq!(stats(&issuer).await, before + 1);
    // Caller tokens keep working beside OAuth.
    assert_eq!(call(&url, Some(&c.token("caller.token"))).await.0, 200);
}
