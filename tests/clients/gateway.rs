//! The MCP gateway with real peers only: MCP servers built with the official Python and
//! TypeScript SDKs (and nothing of ours) behind it, the official SDKs' clients in front of it,
//! standalone mode in between.

use test_support as common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::ingest::bin;
use common::{free_port, get_json_as, http_client};
use serde_json::{json, Value};

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An MCP server of the Python SDK (tests/python/gateway_mcp.py), on its own port.
pub(crate) fn python_server(port: u16, name: &str, delay: f64, fail: f64) -> tokio::process::Child {
    tokio::process::Command::new("python3")
        .arg(root().join("tests/python/gateway_mcp.py"))
        .args([
            port.to_string(),
            name.into(),
            delay.to_string(),
            fail.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the SDK server")
}

/// The Node.js scripts run from `.tools/npm`, where the TypeScript SDK is installed (ES modules
/// resolve packages from the script's own directory).
use common::peers::node_script as node;

pub(crate) fn manifest(name: &str, port: u16, capability: &str, extra: &str) -> String {
    format!("apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: {name}\nspec:\n  version: 1.0.0\n  type: ocr\n  capabilities: [{capability}]\n  endpoint:\n    url: http://127.0.0.1:{port}\n  paths:\n    process: /mcp\n  healthCheck:\n    type: mcp\n    intervalSeconds: 1\n    timeoutSeconds: 1\n  routing:\n    maxConcurrentRequests: 32\n{extra}")
}

pub(crate) struct Coordinator {
    _dir: common::TestDir,
    pub(crate) data: PathBuf,
    pub(crate) api: String,
    pub(crate) gateway: String,
    _process: tokio::process::Child,
}

impl Coordinator {
    /// Standalone mode over `manifests`, waiting until `ready` of them are Ready.
    pub(crate) async fn start(manifests: &[(&str, String)], flags: &[&str], ready: usize) -> Self {
        Self::start_with_env(manifests, flags, ready, &[]).await
    }

    /// [`Coordinator::start`] with environment variables.
    pub(crate) async fn start_with_env(
        manifests: &[(&str, String)],
        flags: &[&str],
        ready: usize,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(manifests, flags, ready, env, free_port()).await
    }

    /// [`Coordinator::start_with_env`] with the gateway on `gateway_port`.
    pub(crate) async fn start_on(
        manifests: &[(&str, String)],
        flags: &[&str],
        ready: usize,
        env: &[(&str, &str)],
        gateway_port: u16,
    ) -> Self {
        let dir = common::TestDir::new("gateway");
        let (regs, data) = (dir.join("registrations"), dir.join("data"));
        std::fs::create_dir_all(&regs).expect("dirs");
        for (name, text) in manifests {
            std::fs::write(regs.join(format!("{name}.yaml")), text).expect("manifest");
        }
        let api_port = free_port();
        let process = tokio::process::Command::new(bin())
            .args([
                "standalone",
                "--listen",
                &format!("127.0.0.1:{api_port}"),
                "--gateway-listen",
                &format!("127.0.0.1:{gateway_port}"),
                "--poll-interval-ms",
                "200",
            ])
            .args(flags)
            .envs(env.iter().copied())
            .arg("--registrations")
            .arg(&regs)
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("coordinator.log")).expect("log file"),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("standalone starts");
        let c = Self {
            _dir: dir,
            data,
            api: format!("http://127.0.0.1:{api_port}"),
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            _process: process,
        };
        common::eventually(Duration::from_secs(60), || async {
            let token =
                std::fs::read_to_string(c.data.join("admin.token")).map_err(|e| e.to_string())?;
            let view = async {
                http_client()
                    .get(format!("{}/v1/registrations", c.api))
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()?
                    .json::<Value>()
                    .await
                    .ok()
            }
            .await
            .ok_or("no view yet")?;
            let n = view["registrations"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|r| r["phase"] == "Ready").count());
            if n >= ready {
                Ok(())
            } else {
                Err(format!("{n} of {ready} Ready: {view}"))
            }
        })
        .await;
        c
    }

    /// What the coordinator logged so far.
    pub(crate) fn log(&self) -> String {
        let dir = self.data.parent().expect("test dir");
        std::fs::read_to_string(dir.join("coordinator.log")).unwrap_or_default()
    }

    /// The coordinator's `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.api))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub(crate) fn token(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.join(name)).expect("token file")
    }

    pub(crate) async fn mcp_id(&self, name: &str) -> String {
        let view = get_json_as(
            &format!("{}/v1/registrations", self.api),
            &self.token("admin.token"),
        )
        .await;
        view["registrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["mcpId"].as_str().or(r["mcp_id"].as_str()))
            .unwrap_or_else(|| panic!("{name} has an ID: {view}"))
            .to_string()
    }

    pub(crate) async fn history(&self, mcp_id: &str) -> Vec<Value> {
        let found = get_json_as(
            &format!("{}/v1/mcps/{mcp_id}/interactions?limit=1000", self.api),
            &self.token("admin.token"),
        )
        .await;
        found["interactions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// The JSON lines a client script printed: the calls, then the summary.
fn lines(out: &std::process::Output) -> (Vec<Value>, Value) {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut values: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = values.pop().unwrap_or_else(|| {
        panic!(
            "the client printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (values, summary)
}

async fn python_client(url: &str, token: &str, calls: usize, mode: &str) -> (Vec<Value>, Value) {
    let out = tokio::process::Command::new("python3")
        .arg(root().join("tests/python/gateway_client.py"))
        .args([url, token, &calls.to_string(), mode])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs the SDK client");
    lines(&out)
}

fn answered_by(calls: &[Value], server: &str) -> usize {
    calls
        .iter()
        .filter(|c| {
            c["text"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("{server}:")))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_clients_call_through_the_gateway_which_fails_over_logs_every_call_and_prefers_the_fast_mcp(
) {
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let _fast = python_server(ports[0], "fast", 0.005, 0.0);
    let _slow = python_server(ports[1], "slow", 0.3, 0.0);
    let _flaky = python_server(ports[2], "flaky", 0.005, 0.25);
    let mut doomed = python_server(ports[3], "doomed", 0.005, 0.0);
    let idempotent = "    idempotentTools: [extract_text]\n";
    let manifests = [
        (
            "ocr-fast",
            manifest("ocr-fast", ports[0], "text_extraction", idempotent),
        ),
        (
            "ocr-slow",
            manifest("ocr-slow", ports[1], "text_extraction", idempotent),
        ),
        (
            "ocr-flaky",
            manifest("ocr-flaky", ports[2], "text_extraction", idempotent),
        ),
        (
            "ocr-doomed",
            manifest("ocr-doomed", ports[3], "text_extraction", idempotent),
        ),
    ];
    let c = Coordinator::start(&manifests, &[], 4).await;
    let url = format!("{}/mcp/default", c.gateway);
    let token = c.token("caller.token");

    // A 2026-07-28 client (server/discover, no session) while one MCP is killed mid-run.
    let run = python_client(&url, &token, 200, "auto");
    let kill = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        doomed.kill().await.expect("kill the doomed MCP");
    };
    let ((calls, summary), ()) = tokio::join!(run, kill);
    assert_eq!(summary["version"], "2026-07-28", "{summary}");
    assert_eq!(
        summary["tools"],
        json!(["count", "extract_text", "whoami"]),
        "one tool offered by four MCPs is one tool"
    );
    assert_eq!(calls.len(), 200);
    // Progress notifications of a streamed answer reach the client as they come; prompts and
    // resources are routed like tools.
    assert_eq!(
        summary["progress"],
        json!([
            [1.0, 3.0, "step 1"],
            [2.0, 3.0, "step 2"],
            [3.0, 3.0, "step 3"]
        ]),
        "{summary}"
    );
    assert!(
        summary["count"]
            .as_str()
            .is_some_and(|c| c.ends_with("counted to 3")),
        "{summary}"
    );
    assert_eq!(summary["prompt"], "Summarize: a page", "{summary}");
    assert!(
        summary["resource"]
            .as_str()
            .is_some_and(|r| r.ends_with(" readme")),
        "{summary}"
    );
    let failed: Vec<&Value> = calls.iter().filter(|c| c.get("error").is_some()).collect();
    assert!(failed.is_empty(), "every call is answered: {failed:?}");
    assert!(
        calls.iter().any(|c| c["is_error"] == true),
        "the flaky MCP's tool errors reach the client as tool errors"
    );
    let (fast, slow, flaky) = (
        answered_by(&calls, "fast"),
        answered_by(&calls, "slow"),
        answered_by(&calls, "flaky"),
    );
    assert!(
        fast > slow && fast > flaky,
        "most traffic ends on the fast MCP: fast {fast}, slow {slow}, flaky {flaky}"
    );

    // A handshake-era client (initialize and a session) of the TypeScript SDK.
    let out = node("gateway_client.mjs")
        .args([&url, &token, "20"])
        .output()
        .await
        .expect("node runs the SDK client");
    let (ts_calls, ts_summary) = lines(&out);
    assert_eq!(
        ts_summary["tools"],
        json!(["count", "extract_text", "whoami"]),
        "{ts_summary}"
    );
    assert!(ts_calls.iter().all(|c| c["ok"] == true), "{ts_calls:?}");

    // Every call is in the log, with the MCP's timing and the flaky one's errors.
    let (fast_id, slow_id, flaky_id) = (
        c.mcp_id("ocr-fast").await,
        c.mcp_id("ocr-slow").await,
        c.mcp_id("ocr-flaky").await,
    );
    let logged = common::eventually(Duration::from_secs(20), || async {
        let (f, s, k) = (
            c.history(&fast_id).await,
            c.history(&slow_id).await,
            c.history(&flaky_id).await,
        );
        let n = f.len() + s.len() + k.len();
        // Every call but those the doomed MCP answered before it was killed (only the flaky MCP
        // answers with errors, which carry no server name).
        // The `count` call is logged too, unless the doomed MCP answered it.
        let count_logged = summary["count"]
            .as_str()
            .is_some_and(|c| !c.starts_with("doomed"));
        let expected = calls.len() + ts_calls.len() + usize::from(count_logged)
            - answered_by(&calls, "doomed")
            - answered_by(&ts_calls, "doomed");
        if n >= expected {
            Ok((f, s, k))
        } else {
            Err(format!("{n} of {expected} calls logged"))
        }
    })
    .await;
    let (fast_log, slow_log, flaky_log) = logged;
    assert!(fast_log
        .iter()
        .all(|i| i["processing_data"]["adapter_used"] == "mcp-gateway"));
    // Timings of extract_text (the `count` call takes its own time).
    let extract = |log: &[Value]| -> Vec<Value> {
        log.iter()
            .filter(|i| i["request_data"]["request_type"] == "extract_text")
            .cloned()
            .collect()
    };
    let (fast_log, slow_log) = (extract(&fast_log), extract(&slow_log));
    assert!(
        slow_log
            .iter()
            .all(|i| i["processing_data"]["processing_time"].as_f64().unwrap() >= 0.3),
        "the slow MCP's own time is logged"
    );
    assert!(fast_log
        .iter()
        .all(|i| i["processing_data"]["processing_time"].as_f64().unwrap() < 0.3));
    let tool_errors = flaky_log
        .iter()
        .filter(|i| i["result_data"]["error_code"] == "TOOL_ERROR")
        .count();
    let flaky_errors = calls
        .iter()
        .chain(&ts_calls)
        .filter(|c| c["is_error"] == true)
        .count();
    assert_eq!(tool_errors, flaky_errors, "isError is logged as TOOL_ERROR");
    assert!(
        fast_log.iter().all(|i| i["request_data"]["user_id"]
            .as_str()
            .unwrap()
            .starts_with("u_")),
        "the caller is pseudonymized"
    );

    // The gateway's metrics: per tool, with failovers from the killed MCP.
    let metrics = c.metrics().await;
    assert!(metrics.contains("mcp_client_operation_duration_seconds_count{error_type=\"\",gen_ai_tool_name=\"extract_text\""), "{metrics}");
    assert!(
        metrics.contains("mcp_client_operation_duration_seconds_count{error_type=\"tool_error\""),
        "{metrics}"
    );
    let failovers: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("mcp_coordinator_gateway_failovers_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        failovers >= 1.0,
        "calls to the killed MCP failed over: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_backends_of_either_protocol_generation_work_together() {
    let (modern_port, legacy_port) = (free_port(), free_port());
    let _modern = python_server(modern_port, "modern", 0.0, 0.0);
    let _legacy = node("legacy_mcp_server.mjs")
        .args([legacy_port.to_string(), "legacy".into(), "0".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs the SDK server");
    let manifests = [
        ("modern", manifest("modern", modern_port, "modern_ocr", "")),
        ("legacy", manifest("legacy", legacy_port, "legacy_ocr", "")),
    ];
    let c = Coordinator::start(&manifests, &[], 2).await;
    let token = c.token("caller.token");
    for backend in ["modern", "legacy"] {
        let url = format!("{}/mcp/default/{backend}_ocr", c.gateway);
        for mode in ["auto", "legacy"] {
            let (calls, summary) = python_client(&url, &token, 3, mode).await;
            let expected = if mode == "auto" {
                "2026-07-28"
            } else {
                "2025-11-25"
            };
            assert_eq!(
                summary["version"], expected,
                "{backend} backend, {mode} client"
            );
            assert!(
                calls.iter().all(|c| c["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{backend}:")))),
                "{backend} backend, {mode} client: {calls:?}"
            );
        }
        let out = node("gateway_client.mjs")
            .args([&url, &token, "3"])
            .output()
            .await
            .expect("node runs the SDK client");
        let (calls, _) = lines(&out);
        assert!(
            calls.iter().all(|c| c["ok"] == true),
            "{backend} backend, TypeScript client: {calls:?}"
        );
    }
    // Both MCPs offer extract_text with different input schemas (the SDKs describe the argument
    // differently): the namespace lists each under its registration's name.
    let (_, summary) =
        python_client(&format!("{}/mcp/default", c.gateway), &token, 0, "auto").await;
    assert_eq!(
        summary["tools"],
        json!([
            "count",
            "legacy.extract_text",
            "modern.extract_text",
            "whoami"
        ]),
        "{summary}"
    );

    // The fleet's protocol migration: the endpoint, the status command's column, the metric.
    let admin = c.token("admin.token");
    let fleet = get_json_as(&format!("{}/v1/protocols", c.api), &admin).await;
    assert_eq!(fleet["versions"]["2026-07-28"], 1, "{fleet}");
    assert_eq!(fleet["legacy_features"]["sessions"], 1, "{fleet}");
    let version_of = |name: &str| {
        fleet["registrations"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .map(|r| r["protocol_version"].clone())
    };
    assert_eq!(version_of("modern"), Some(json!("2026-07-28")));
    let legacy_version = version_of("legacy").expect("legacy listed");
    assert!(
        legacy_version
            .as_str()
            .is_some_and(|v| v.starts_with("2025-")),
        "{fleet}"
    );
    let status = tokio::process::Command::new(bin())
        .args(["status", "--url", &c.api, "--token", &admin])
        .output()
        .await
        .expect("the status command runs");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("PROTOCOL")),
        "{table}"
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("modern ").contains(" 2026-07-28 "), "{table}");
    assert!(
        row("legacy ").contains(&format!(
            "{} (legacy)",
            legacy_version.as_str().unwrap_or_default()
        )),
        "{table}"
    );
    let metrics = c.metrics().await;
    // Probing healthy MCPs of both generations over MCP logs no errors (the rmcp client the
    // probes used logged "worker quit with fatal" on every closed session).
    let log = c.log();
    assert!(log.contains("standalone coordinator running"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains(" ERROR ") || l.contains("rmcp")),
        "{log}"
    );
    assert!(
        metrics.contains("mcp_coordinator_protocol_versions{version=\"2026-07-28\"} 1")
            && metrics.contains("mcp_coordinator_protocol_legacy_features{feature=\"sessions\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_token_or_a_grant_or_with_a_body_over_the_limit_get_clear_errors() {
    let port = free_port();
    let _server = python_server(port, "fast", 0.0, 0.0);
    let dir = common::TestDir::new("gateway-callers");
    let callers = dir.join("callers.yaml");
    std::fs::write(&callers, "ocr-app: {token: ocr-app-token-0123456789, namespaces: [ocr]}\nwide: {token: wide-app-token-0123456789, namespaces: [default]}\n").unwrap();
    let flags = [
        "--caller-tokens-file",
        callers.to_str().unwrap(),
        "--gateway-max-body-bytes",
        "2000",
    ];
    let c = Coordinator::start(
        &[("fast", manifest("fast", port, "text_extraction", ""))],
        &flags,
        1,
    )
    .await;
    let url = format!("{}/mcp/default", c.gateway);
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let post = |token: Option<&str>, body: String| {
        let mut r = http_client()
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };

    let r = post(None, init.to_string()).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("caller token"),
        "{body}"
    );

    let r = post(Some("ocr-app-token-0123456789"), init.to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("caller ocr-app may not use namespace \"default\""),
        "{body}"
    );

    let big = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "extract_text", "arguments": {"image_url": "x".repeat(3000)}}});
    let r = post(Some("wide-app-token-0123456789"), big.to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2000 bytes"),
        "{body}"
    );

    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    let r = post(Some("wide-app-token-0123456789"), list.to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a handshake-era request without a session");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send initialize first"),
        "{body}"
    );

    let r = http_client().post(&url).bearer_auth("wide-app-token-0123456789").header("content-type", "application/json").header("mcp-protocol-version", "2026-07-28").header("mcp-method", "tools/list").body(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "extract_text"}}).to_string()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32020, "{body}");

    let r = post(Some("wide-app-token-0123456789"), init.to_string())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["mcp-session-id"].to_str().unwrap().len(), 32);
}

/// A span as an OTLP sink received it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    attributes: std::collections::BTreeMap<String, String>,
}

/// An OTLP/HTTP sink on loopback: every span posted to `/v1/traces` (protobuf), kept in order.
async fn otlp_sink() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    use warp::Filter;
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = received.clone();
    let route = warp::post()
        .and(warp::path!("v1" / "traces"))
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| {
            let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
            let mut kept = kept.lock().unwrap();
            for resource_spans in request.resource_spans {
                let text = |v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>| match v
                    .as_ref()
                    .and_then(|v| v.value.clone())
                {
                    Some(Any::StringValue(s)) => s,
                    Some(Any::IntValue(i)) => i.to_string(),
                    Some(Any::BoolValue(b)) => b.to_string(),
                    other => format!("{other:?}"),
                };
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|kv| kv.key == "service.name")
                    .map(|kv| text(&kv.value))
                    .unwrap_or_default();
                for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                    kept.push(Received {
                        service: service.clone(),
                        name: span.name,
                        kind: span.kind,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(&kv.value)))
                            .collect(),
                    });
                }
            }
            warp::http::Response::builder()
                .header("content-type", "application/x-protobuf")
                .body(Vec::<u8>::new())
                .unwrap()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinators_spans_reach_a_collector_and_carry_the_trace_to_the_mcp() {
    const SERVER: i32 = 2;
    const CLIENT: i32 = 3;
    let (sink, received) = otlp_sink().await;
    let endpoint = format!("http://127.0.0.1:{sink}");
    // The MCP: the Python SDK, its own spans exported to the same sink.
    let port = free_port();
    let _mcp = tokio::process::Command::new("python3")
        .arg(root().join("tests/python/otel_mcp_server.py"))
        .arg(port.to_string())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_SERVICE_NAME", "ocr-backend")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the SDK server");
    common::peers::wait_listening(port, "the MCP server").await;
    let manifests = [(
        "ocr-traced",
        manifest("ocr-traced", port, "text_extraction", ""),
    )];
    let c = Coordinator::start_with_env(
        &manifests,
        &[],
        1,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let (calls, _) = python_client(
        &format!("{}/mcp/default", c.gateway),
        &c.token("caller.token"),
        2,
        "auto",
    )
    .await;
    assert!(calls.iter().all(|c| c["ok"] == true), "{calls:?}");
    let mcp_id = c.mcp_id("ocr-traced").await;
    let history = common::eventually(Duration::from_secs(20), || async {
        let h = c.history(&mcp_id).await;
        (h.len() == 2).then_some(h.clone()).ok_or(format!("{h:?}"))
    })
    .await;

    let spans = common::eventually(Duration::from_secs(20), || async {
        let spans = received.lock().unwrap().clone();
        let named = |service: &str, name: &str| {
            spans.iter().any(|s| s.service == service && s.name == name)
        };
        let ours = "mcp-coordinator-standalone";
        let complete = [
            "tools/call extract_text",
            "reconcile MCPRegistration",
            "probe mcp",
            "INSERT interaction events",
            "GET /v1/mcps/{mcp_id}/interactions",
        ]
        .iter()
        .all(|n| named(ours, n))
            && spans
                .iter()
                .filter(|s| s.service == "ocr-backend" && s.name == "tools/call extract_text")
                .count()
                == 2;
        complete.then_some(spans.clone()).ok_or(format!(
            "{:?}",
            spans
                .iter()
                .map(|s| (&s.service, &s.name))
                .collect::<Vec<_>>()
        ))
    })
    .await;
    let ours = |name: &str, kind: i32| -> Vec<&Received> {
        spans
            .iter()
            .filter(|s| {
                s.service == "mcp-coordinator-standalone" && s.name == name && s.kind == kind
            })
            .collect()
    };
    // The gateway's calls in the MCP conventions: a SERVER span for the client's call, a CLIENT
    // span for the attempt on the MCP, the interaction's ID on the first.
    let calls = ours("tools/call extract_text", SERVER);
    assert_eq!(calls.len(), 2, "{spans:?}");
    for call in &calls {
        assert_eq!(call.attributes["mcp.method.name"], "tools/call");
        assert_eq!(call.attributes["gen_ai.tool.name"], "extract_text");
        assert_eq!(call.attributes["gen_ai.operation.name"], "execute_tool");
        assert!(!call.attributes.contains_key("error.type"), "{call:?}");
        let id = &call.attributes["mcp_coordinator.interaction_id"];
        assert!(history.iter().any(|i| &i["interaction_id"] == id), "{id}");
    }
    let attempts = ours("tools/call extract_text", CLIENT);
    assert_eq!(attempts.len(), 2, "{spans:?}");
    for attempt in &attempts {
        assert_eq!(attempt.attributes["mcp_coordinator.mcp_id"], mcp_id);
        assert_eq!(attempt.attributes["server.port"], port.to_string());
        assert!(
            calls
                .iter()
                .any(|c| c.span_id == attempt.parent_span_id && c.trace_id == attempt.trace_id),
            "an attempt is its call's child: {attempt:?}"
        );
        // The MCP's own span continues the trace: the context went in params._meta.
        assert!(
            spans.iter().any(|s| s.service == "ocr-backend"
                && s.kind == SERVER
                && s.trace_id == attempt.trace_id
                && s.parent_span_id == attempt.span_id),
            "the MCP's span is the attempt's child: {attempt:?}"
        );
    }
    let reconcile = &ours("reconcile MCPRegistration", 1)[0];
    assert_eq!(
        reconcile.attributes["mcp_coordinator.registration"],
        "ocr-traced"
    );
    let probe = &ours("probe mcp", CLIENT)[0];
    assert!(
        probe.attributes["url.full"].ends_with(&format!(":{port}/mcp")),
        "{probe:?}"
    );
    let read = &ours("GET /v1/mcps/{mcp_id}/interactions", SERVER)[0];
    assert_eq!(read.attributes["http.response.status_code"], "200");
    assert!(!ours("INSERT interaction events", CLIENT).is_empty());
}
