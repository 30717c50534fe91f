//! A registration's `spec.gatewayPolicy` through the gateway, with an MCP built with the Python SDK
//! behind it: CEL rules that allow a tool for one group and refuse it to others (and hide it from
//! their `tools/list`), a rule that cannot be evaluated, a change applied without a restart, and a
//! rate limit that answers 429 with `Retry-After` to one caller and leaves another alone.

use test_support as common;

use std::time::Duration;

use common::{free_port, http_client};
use serde_json::{json, Value};

use super::gateway::{manifest, python_server, Coordinator};

const APP: &str = "app-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// A session of `token` on `url` (the handshake generation): its ID.
async fn session(url: &str, token: &str) -> String {
    let answer = http_client()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "policy-test", "version": "1"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    answer.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// `method` with `params` in `session`: the HTTP status, `Retry-After`, and the JSON-RPC answer.
async fn rpc(
    url: &str,
    token: &str,
    session: &str,
    method: &str,
    params: Value,
) -> (u16, Option<String>, Value) {
    let answer = http_client()
        .post(url)
        .bearer_auth(token)
        .header("mcp-session-id", session)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    let retry = answer
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = answer.text().await.unwrap();
    // A streamed answer's last event, or the JSON body.
    let body = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .next_back()
        .map_or(text.as_str(), str::trim);
    (
        status,
        retry,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

async fn tools(url: &str, token: &str) -> Vec<String> {
    let s = session(url, token).await;
    let (_, _, answer) = rpc(url, token, &s, "tools/list", json!({})).await;
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

async fn call(
    url: &str,
    token: &str,
    tool: &str,
    arguments: Value,
) -> (u16, Option<String>, Value) {
    let s = session(url, token).await;
    rpc(
        url,
        token,
        &s,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

fn policy(whoami_rule: &str) -> String {
    format!(
        "  gatewayPolicy:\n    rules:\n      - name: admins-whoami\n        expression: '{whoami_rule}'\n      - name: few-steps\n        expression: 'tool.name != \"count\" || tool.arguments.steps <= 3'\n    rateLimits:\n      - name: per-caller-tool\n        per: callerAndTool\n        requests: 3\n        periodSeconds: 60\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_rate_limits_of_a_registration_decide_who_calls_what() {
    let port = free_port();
    let _mcp = python_server(port, "ocr-p", 0.0, 0.0);
    common::peers::wait_listening(port, "the MCP server").await;
    let dir = common::TestDir::new("gateway-policy");
    let callers = dir.join("callers.yaml");
    std::fs::write(
        &callers,
        format!("app: {{token: {APP}, namespaces: [default]}}\nadmin: {{token: {ADMIN}, namespaces: [default], groups: [ocr-admins]}}\n"),
    )
    .unwrap();
    let admins_only = r#""ocr-admins" in caller.groups || tool.name != "whoami""#;
    let text = manifest("ocr-p", port, "text_extraction", &policy(admins_only));
    let manifests = [("ocr-p", text)];
    let c = Coordinator::start(
        &manifests,
        &["--caller-tokens-file", callers.to_str().unwrap()],
        1,
    )
    .await;
    let url = format!("{}/mcp/default", c.gateway);

    // The rule hides whoami from the app and shows it to an admin.
    assert_eq!(tools(&url, APP).await, ["count", "extract_text"]);
    assert_eq!(
        tools(&url, ADMIN).await,
        ["count", "extract_text", "whoami"]
    );
    // Calling it anyway: a JSON-RPC error naming the rule and the registration.
    let (status, _, answer) = call(&url, APP, "whoami", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(answer["error"]["code"], -32003, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("admins-whoami") && message.contains("ocr-p"),
        "{message}"
    );
    let (_, _, answer) = call(&url, ADMIN, "whoami", json!({})).await;
    assert_eq!(answer["result"]["content"][0]["text"], "ocr-p", "{answer}");
    // A rule on the arguments: allowed within it, refused beyond it, and refused (naming the rule)
    // when it cannot be evaluated.
    let (_, _, answer) = call(&url, APP, "count", json!({"steps": 2})).await;
    assert!(answer["result"].is_object(), "{answer}");
    let (_, _, answer) = call(&url, APP, "count", json!({"steps": 9})).await;
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("few-steps"),
        "{answer}"
    );
    let (_, _, answer) = call(&url, APP, "count", json!({})).await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("few-steps") && message.contains("could not be evaluated"),
        "{answer}"
    );

    // Three calls a minute for each caller on each tool: the app's fourth is 429 with Retry-After,
    // the admin's first goes through.
    for n in 0..3 {
        let (status, _, answer) = call(
            &url,
            APP,
            "extract_text",
            json!({"image_url": format!("{n}.png")}),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"].is_object(), "{answer}");
    }
    let (status, retry, answer) =
        call(&url, APP, "extract_text", json!({"image_url": "4.png"})).await;
    assert_eq!(status, 429, "{answer}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    assert_eq!(answer["error"]["code"], -32004, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("per-caller-tool"));
    let (status, _, _) = call(&url, ADMIN, "extract_text", json!({"image_url": "a.png"})).await;
    assert_eq!(status, 200);

    // Refusals are counted and audited.
    let metrics = c.metrics().await;
    assert!(
        metrics.contains("mcp_coordinator_gateway_policy_refusals_total{refused_by=\"rule:admins-whoami\",registration=\"ocr-p\"} 1"),
        "{metrics}"
    );
    let audit = common::get_json_as(
        &format!("{}/v1/audit?limit=100", c.api),
        &c.token("admin.token"),
    )
    .await;
    assert!(
        audit
            .to_string()
            .contains("gateway_refused whoami rule:admins-whoami"),
        "{audit}"
    );

    // A policy change applies without a restart: the rule now lets everyone call whoami.
    std::fs::write(
        c.data.parent().unwrap().join("registrations/ocr-p.yaml"),
        manifest("ocr-p", port, "text_extraction", &policy("true")),
    )
    .unwrap();
    common::eventually(Duration::from_secs(20), || async {
        let (_, _, answer) = call(&url, APP, "whoami", json!({})).await;
        (answer["result"]["content"][0]["text"] == "ocr-p")
            .then_some(())
            .ok_or(answer.to_string())
    })
    .await;
}
