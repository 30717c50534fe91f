//! `mcp-coordinator standalone` as a process: registration files added, edited, broken and
//! removed while it runs; IDs kept across a restart and never reused; the status and query CLI.

use test_support as common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::free_port;
use common::ingest::bin;
use common::{http_client, post_report, FakeMcp};
use serde_json::{json, Value};

/// A test's registrations and data directories, in a directory of its own (the tests of this file
/// run at once).
struct Dirs {
    _root: common::TestDir,
    regs: PathBuf,
    data: PathBuf,
}

impl Dirs {
    fn new() -> Self {
        let root = common::TestDir::new("standalone");
        let (regs, data) = (root.join("registrations"), root.join("data"));
        std::fs::create_dir_all(&regs).expect("dirs");
        Self {
            _root: root,
            regs,
            data,
        }
    }
}

fn manifest(name: &str, url: &str, weight: u32) -> String {
    format!("apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: {name}\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: {url}\n  healthCheck:\n    intervalSeconds: 1\n    timeoutSeconds: 1\n  routing:\n    weight: {weight}\n")
}

fn spawn(dirs: &Dirs, port: u16) -> tokio::process::Child {
    spawn_with(dirs, port, &[])
}

/// [`spawn`] with more flags.
fn spawn_with(dirs: &Dirs, port: u16, flags: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(bin())
        .args([
            "standalone",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-interval-ms",
            "200",
        ])
        .args(flags)
        .arg("--registrations")
        .arg(&dirs.regs)
        .arg("--data-dir")
        .arg(&dirs.data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("standalone starts")
}

fn token(dirs: &Dirs) -> String {
    std::fs::read_to_string(dirs.data.join("admin.token")).unwrap_or_default()
}

async fn view(base: &str, token: &str) -> Option<Value> {
    let r = http_client()
        .get(format!("{base}/v1/registrations"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    r.json().await.ok()
}

fn find<'a>(view: &'a Value, name: &str) -> Option<&'a Value> {
    view["registrations"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == name)
}

async fn wait_view(dirs: &Dirs, base: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = view(base, &token(dirs)).await {
            if done(&v) {
                return v;
            }
            last = v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}; last: {last:#}");
}

async fn cli(args: &[&str], base: &str, dirs: &Dirs) -> (bool, String, String) {
    let out = tokio::process::Command::new(bin())
        .args(args)
        .env("MCP_COORDINATOR_URL", base)
        .env("MCP_COORDINATOR_TOKEN_FILE", dirs.data.join("admin.token"))
        .output()
        .await
        .expect("cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn report(base: &str, key: &str) -> u16 {
    let completed = json!({"request_data": {"request_type": "ocr_processing"}, "processing_time": 0.05, "success": true});
    post_report(base, key, &completed).await
}

fn key_file(dirs: &Dirs, name: &str) -> PathBuf {
    dirs.data
        .join("keys/default")
        .join(format!("{name}-mcp-key"))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write manifest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_follow_their_files_and_ids_survive_restarts() {
    let dirs = Dirs::new();
    let (mcp_a, mcp_b) = (FakeMcp::start().await, FakeMcp::start().await);
    write(
        &dirs.regs.join("ocr.yaml"),
        &manifest("ocr", &mcp_a.url(), 100),
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut process = spawn(&dirs, port);

    // Added → ID, key file, Ready, status file.
    let v = wait_view(&dirs, &base, "ocr is Ready", |v| {
        find(v, "ocr").is_some_and(|r| r["phase"] == "Ready")
    })
    .await;
    let ocr = find(&v, "ocr").expect("ocr");
    assert_eq!(ocr["mcp_id"], "ocr_workflow_mcp_001");
    let key = std::fs::read_to_string(key_file(&dirs, "ocr")).expect("key file");
    let status: Value = serde_json::from_str(
        &std::fs::read_to_string(dirs.data.join("status/default/ocr.json")).expect("status file"),
    )
    .expect("JSON");
    assert_eq!(status["status"]["mcpId"], "ocr_workflow_mcp_001");
    assert_eq!(
        status["status"]["coordinatorConfig"]["interactionLogEndpoint"],
        format!("{base}/api/interactions")
    );
    assert_eq!(
        status["status"]["coordinatorConfig"]["apiUrl"],
        base.as_str()
    );
    assert_eq!(
        report(&base, &key).await,
        202,
        "the MCP reports with its key"
    );

    // A broken manifest is reported with file, field and reason, and skipped.
    write(
        &dirs.regs.join("broken.yaml"),
        &manifest("broken", &mcp_b.url(), 5000),
    );
    let v = wait_view(&dirs, &base, "broken is reported", |v| {
        v["invalid"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let problem = &v["invalid"][0];
    assert!(
        problem["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.yaml")),
        "{problem}"
    );
    assert_eq!(problem["field"], "spec.routing.weight");
    assert!(
        problem["reason"]
            .as_str()
            .is_some_and(|r| r.contains("1000")),
        "{problem}"
    );
    assert!(find(&v, "broken").is_none());

    // Edited → picked up with a new generation.
    write(
        &dirs.regs.join("ocr.yaml"),
        &manifest("ocr", &mcp_a.url(), 40),
    );
    let v = wait_view(&dirs, &base, "the edit is applied", |v| {
        find(v, "ocr").is_some_and(|r| {
            r["status"]["routing"]["weight"] == 40 && r["status"]["observedGeneration"] == 2
        })
    })
    .await;
    assert_eq!(find(&v, "ocr").expect("ocr")["effective_weight"], 40);

    // The CLI over the same API.
    let (ok, out, err) = cli(&["status"], &base, &dirs).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME   ID                     PHASE   PROTOCOL   WEIGHT   P95"),
        "{out}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    // An http probe learns no protocol version.
    assert_eq!(
        &row[..5],
        ["ocr", "ocr_workflow_mcp_001", "Ready", "-", "40"],
        "{out}"
    );
    assert!(
        out.contains("skipped")
            && out.contains("broken.yaml")
            && out.contains("spec.routing.weight"),
        "{out}"
    );
    let (ok, out, err) = cli(
        &["query", "interactions", "--mcp", "ocr_workflow_mcp_001"],
        &base,
        &dirs,
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains("completed")
            && l.contains("ocr_processing")
            && l.contains("50ms")),
        "{out}"
    );
    let (ok, out, _) = cli(
        &["query", "metrics", "--mcp", "ocr_workflow_mcp_001"],
        &base,
        &dirs,
    )
    .await;
    assert!(
        ok && out.contains("interactions      1") && out.contains("success rate      100.0%"),
        "{out}"
    );
    let (ok, _, err) = cli(&["status", "--url", "http://127.0.0.1:9"], &base, &dirs).await;
    assert!(!ok && err.contains("cannot reach the coordinator"), "{err}");
    // The name `status` prints works as well as the ID; a name nobody registered is an error
    // that lists what exists, not an empty table.
    let (ok, out, err) = cli(&["query", "metrics", "--mcp", "ocr"], &base, &dirs).await;
    assert!(ok && out.contains("interactions      1"), "{out}{err}");
    let (ok, out, err) = cli(&["query", "interactions", "--mcp", "nope"], &base, &dirs).await;
    assert!(
        !ok && err.contains("unknown MCP \"nope\"") && err.contains("ocr (ocr_workflow_mcp_001)"),
        "{out}{err}"
    );
    // The answers as data, and grouped.
    let (ok, out, err) = cli(&["status", "-o", "json"], &base, &dirs).await;
    let parsed: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert!(ok && parsed["registrations"].is_array(), "{out}{err}");
    let (ok, out, err) = cli(
        &["query", "interactions", "--mcp", "ocr", "-o", "yaml"],
        &base,
        &dirs,
    )
    .await;
    assert!(ok && out.contains("interaction_id:"), "{out}{err}");
    let (ok, out, err) = cli(
        &[
            "query",
            "metrics",
            "--mcp",
            "ocr",
            "--group-by",
            "request_type",
        ],
        &base,
        &dirs,
    )
    .await;
    assert!(
        ok && out.contains("REQUEST_TYPE") && out.contains("ocr_processing"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(
        &[
            "query", "series", "--mcp", "ocr", "--range", "1h", "--step", "10m",
        ],
        &base,
        &dirs,
    )
    .await;
    assert!(
        ok && out.starts_with("START")
            && out.lines().count() >= 7
            && out.lines().any(|l| l.contains(" 1 ")),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&["completions", "bash"], &base, &dirs).await;
    assert!(
        ok && out.contains("mcp-coordinator") && out.contains("--group-by"),
        "{out}"
    );
    // The default token file is under --data-dir (MCP_COORDINATOR_DATA_DIR).
    let out = tokio::process::Command::new(bin())
        .args(["status", "--url", &base])
        .env("MCP_COORDINATOR_DATA_DIR", &dirs.data)
        .output()
        .await
        .expect("cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `--watch` into a pipe: tables one after another, no terminal escape codes.
    let mut watching = tokio::process::Command::new(bin())
        .args(["status", "--watch", "1", "--url", &base])
        .env("MCP_COORDINATOR_DATA_DIR", &dirs.data)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cli runs");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = watching.start_kill();
    let piped = watching.wait_with_output().await.expect("output").stdout;
    let piped = String::from_utf8_lossy(&piped);
    assert!(
        piped.contains("NAME") && !piped.contains('\u{1b}'),
        "{piped:?}"
    );

    // A second registration, then a restart: both keep their IDs.
    write(
        &dirs.regs.join("second.yaml"),
        &manifest("second", &mcp_b.url(), 100),
    );
    wait_view(&dirs, &base, "second is Ready", |v| {
        find(v, "second").is_some_and(|r| r["phase"] == "Ready")
    })
    .await;
    let _ = process.kill().await;
    let mut process = spawn(&dirs, port);
    let v = wait_view(&dirs, &base, "both Ready after the restart", |v| {
        ["ocr", "second"]
            .iter()
            .all(|n| find(v, n).is_some_and(|r| r["phase"] == "Ready"))
    })
    .await;
    assert_eq!(
        find(&v, "ocr").expect("ocr")["mcp_id"],
        "ocr_workflow_mcp_001"
    );
    assert_eq!(
        find(&v, "second").expect("second")["mcp_id"],
        "second_workflow_mcp_001"
    );
    assert_eq!(
        std::fs::read_to_string(key_file(&dirs, "ocr")).expect("key"),
        key,
        "the key survives too"
    );

    // Removed → retired: gone from the list, key revoked, files removed; re-adding gets a new ID.
    std::fs::remove_file(dirs.regs.join("ocr.yaml")).expect("remove");
    wait_view(&dirs, &base, "ocr is retired", |v| find(v, "ocr").is_none()).await;
    assert!(
        !key_file(&dirs, "ocr").exists() && !dirs.data.join("status/default/ocr.json").exists()
    );
    assert_eq!(
        report(&base, &key).await,
        401,
        "a retired registration's key is revoked"
    );
    write(
        &dirs.regs.join("ocr.yaml"),
        &manifest("ocr", &mcp_a.url(), 100),
    );
    let v = wait_view(&dirs, &base, "ocr is back", |v| {
        find(v, "ocr").is_some_and(|r| !r["mcp_id"].is_null())
    })
    .await;
    assert_eq!(
        find(&v, "ocr").expect("ocr")["mcp_id"],
        "ocr_workflow_mcp_002",
        "IDs are never reused"
    );
    let _ = process.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_mcp_serves_and_reports_like_a_real_one() {
    let dirs = Dirs::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mcp_port = free_port();
    write(
        &dirs.regs.join("example.yaml"),
        &manifest("example", &format!("http://127.0.0.1:{mcp_port}"), 100),
    );
    let _coordinator = spawn(&dirs, port);
    let _mcp = tokio::process::Command::new(bin())
        .args([
            "example-mcp",
            "--name",
            "example",
            "--listen",
            &format!("127.0.0.1:{mcp_port}"),
            "--latency-ms",
            "20",
            "--failure-rate",
            "0.5",
            "--coordinator",
            &base,
        ])
        .arg("--key-file")
        .arg(key_file(&dirs, "example"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("example MCP starts");
    wait_view(&dirs, &base, "example is Ready", |v| {
        find(v, "example").is_some_and(|r| r["phase"] == "Ready")
    })
    .await;
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..40 {
        let r = http_client()
            .post(format!("http://127.0.0.1:{mcp_port}/process"))
            .json(&json!({"request_type": "ocr"}))
            .send()
            .await
            .expect("process");
        match r.status().as_u16() {
            200 => ok += 1,
            500 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        ok > 5 && failed > 5,
        "about half fail: {ok} ok, {failed} failed"
    );
    let status: Value = http_client()
        .get(format!("http://127.0.0.1:{mcp_port}/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["served"].as_u64(), Some(40), "{status}");
    assert_eq!(status["reports_dropped"].as_u64(), Some(0), "{status}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, out, _) = cli(
            &["query", "metrics", "--mcp", "example_workflow_mcp_001"],
            &base,
            &dirs,
        )
        .await;
        if out.contains(&format!("failed            {failed}"))
            && out.contains("interactions      40")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reports did not all arrive:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = view(&base, &token(&dirs)).await.expect("view");
    assert!(
        !find(&v, "example").expect("example")["last_seen"].is_null(),
        "heartbeats and reports mark it seen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_version_other_than_the_spec_shows_as_a_condition_with_its_count() {
    let dirs = Dirs::new();
    let mcp = FakeMcp::start().await;
    write(
        &dirs.regs.join("ocr.yaml"),
        &manifest("ocr", &mcp.url(), 100),
    );
    let port = free_port();
    let _child = spawn_with(&dirs, port, &["--routing-interval-seconds", "1"]);
    let base = format!("http://127.0.0.1:{port}");
    wait_view(&dirs, &base, "ocr has an ID", |v| {
        find(v, "ocr").is_some_and(|r| r["mcp_id"].is_string())
    })
    .await;
    let key = std::fs::read_to_string(key_file(&dirs, "ocr")).expect("key");
    let versioned = |version: &str| json!({"request_data": {"request_type": "ocr"}, "metadata": {"mcp_version": version}});
    for version in ["1.0.0", "1.2.0", "1.2.0", "1.3.0"] {
        assert_eq!(post_report(&base, &key, &versioned(version)).await, 202);
    }
    let condition = |v: &Value| -> Option<Value> {
        find(v, "ocr")?["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "VersionMismatch")
            .cloned()
    };
    let seen = wait_view(&dirs, &base, "the VersionMismatch condition", |v| {
        condition(v).is_some_and(|c| c["status"] == "True")
    })
    .await;
    let found = condition(&seen).unwrap();
    assert_eq!(found["reason"], "ReportedVersionDiffers");
    let message = found["message"].as_str().unwrap();
    assert!(
        message.starts_with("3 interactions")
            && message.contains("1.2.0 (2), 1.3.0 (1)")
            && message.contains("spec.version 1.0.0"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_mcp_needs_no_address_and_its_ended_sessions_are_not_missing_heartbeats() {
    let dirs = Dirs::new();
    // A stdio server: its client starts it, so it has no address; it says so.
    write(
        &dirs.regs.join("stdio.yaml"),
        "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: notes\nspec:\n  version: 1.0.0\n  type: tool\n  capabilities: [notes]\n  healthCheck:\n    type: none\n",
    );
    let port = free_port();
    let _child = spawn_with(
        &dirs,
        port,
        &[
            "--heartbeat-interval-seconds",
            "1",
            "--routing-interval-seconds",
            "1",
        ],
    );
    let base = format!("http://127.0.0.1:{port}");
    let v = wait_view(&dirs, &base, "notes is Ready", |v| {
        find(v, "notes").is_some_and(|r| r["phase"] == "Ready")
    })
    .await;
    let notes = find(&v, "notes").expect("notes").clone();
    assert_eq!(notes["effective_weight"], 0, "nowhere to route to: {notes}");
    // One session: it reports and heartbeats, then its process ends.
    let key = std::fs::read_to_string(key_file(&dirs, "notes")).expect("key");
    assert_eq!(report(&base, &key).await, 202);
    let beat = http_client()
        .post(format!("{base}/v1/heartbeat"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(beat.status().as_u16(), 200);
    // Well past three heartbeat intervals later, it is still Ready, with nothing missing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let v = view(&base, &token(&dirs)).await.expect("view");
    let notes = find(&v, "notes").expect("notes");
    assert_eq!(notes["phase"], "Ready", "{notes}");
    assert_eq!(notes["heartbeat_missing"], false, "{notes}");
    // Without `type: none`, no address is a spec problem named in the view.
    write(
        &dirs.regs.join("broken.yaml"),
        "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: nowhere\nspec:\n  version: 1.0.0\n  type: tool\n  capabilities: [notes]\n",
    );
    let v = wait_view(&dirs, &base, "nowhere is skipped", |v| {
        v["invalid"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let skipped = &v["invalid"][0];
    // The spec's own rule (the API server's words, standalone's too) names what to set.
    assert!(
        skipped["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("spec")),
        "{skipped}"
    );
    assert!(
        skipped["reason"]
            .as_str()
            .is_some_and(|r| r.contains("healthCheck.type: none")),
        "{skipped}"
    );
}
