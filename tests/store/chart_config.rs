//! Issue 37: the ClickHouse settings the chart renders (where it listens, the ingest server's
//! user, its password from the environment, its profile, the `default` user kept inside the pod)
//! start Debian's clickhouse-server 18.16, and the store works through that user. The syntax is
//! common to 18.16 and the chart's current image (`<yandex>` roots, `from_env`).

use std::path::Path;

use mcp_coordinator::interaction::{EventKind, Fields, InteractionEvent};
use mcp_coordinator::store::clickhouse::ClickHouseStore;
use mcp_coordinator::store::{EventSink, HistoryQuery, InteractionReads};
use serde_json::Value;
use test_support::clickhouse::ClickHouseServer;

const PASSWORD: &str = "chart-rendered-password-0123";

/// The chart's ClickHouse ConfigMap, rendered by the real helm: file name → contents.
fn rendered_config() -> serde_json::Map<String, Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tools = root.join(".tools/bin/helm");
    let helm = if tools.exists() { tools } else { "helm".into() };
    let out = std::process::Command::new(helm)
        .args(["template", "t"])
        .arg(root.join("charts/mcp-coordinator"))
        .args(["--show-only", "templates/clickhouse.yaml"])
        .output()
        .expect("helm runs (scripts/install-kube-tools.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for doc in text.split("\n---") {
        let Ok(value) = serde_saphyr::from_str::<Value>(doc) else {
            continue;
        };
        if value["kind"] == "ConfigMap" {
            return value["data"].as_object().unwrap().clone();
        }
    }
    panic!("no ConfigMap in the rendered clickhouse.yaml:\n{text}");
}

async fn query_as(
    server: &ClickHouseServer,
    user: &str,
    password: &str,
    sql: &str,
) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.url())
        .basic_auth(user, Some(password))
        .body(sql.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_charts_clickhouse_settings_start_debians_server_and_the_store_works_through_them() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let files = rendered_config();
    let server = tokio::task::spawn_blocking(move || {
        ClickHouseServer::start_with(
            "chart-config",
            |etc| {
                for (dir, key) in [("config.d", "listen.xml"), ("users.d", "users.xml")] {
                    std::fs::create_dir_all(etc.join(dir)).unwrap();
                    let text = files[key].as_str().unwrap();
                    std::fs::write(etc.join(dir).join("mcp-coordinator.xml"), text).unwrap();
                }
            },
            &[("CLICKHOUSE_MCP_PASSWORD", PASSWORD)],
        )
    })
    .await
    .unwrap();

    // The user the chart makes, with the password from the environment and its profile.
    let (status, setting) = query_as(
        &server,
        "mcp_coordinator",
        PASSWORD,
        "SELECT value FROM system.settings WHERE name = 'max_execution_time'",
    )
    .await;
    assert_eq!((status, setting.trim()), (200, "120"), "{setting}");
    let (status, refused) = query_as(&server, "mcp_coordinator", "wrong", "SELECT 1").await;
    assert_ne!(status, 200, "a wrong password is refused: {refused}");

    // The ingest server's store, through that user: schema, a write, a read.
    let mut config = server.config();
    config.user = Some("mcp_coordinator".into());
    config.password = Some(PASSWORD.into());
    let store = ClickHouseStore::connect(&config)
        .await
        .expect("the store connects as the chart's user");
    let event = InteractionEvent::new(
        "int_chart".into(),
        "chart_mcp_001".into(),
        EventKind::Record,
        1_750_000_000_000,
        Fields {
            success: Some(true),
            ..Default::default()
        },
    );
    store.insert(&[event]).await.unwrap();
    let found = store
        .history(&HistoryQuery {
            mcp_id: "chart_mcp_001".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
}

/// Upgrading a release that ran on the embedded store: `copy-store` brings its log into
/// ClickHouse, the same interactions with the same fields and timelines, and a second run
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_log_copied_into_clickhouse_reads_the_same_and_a_second_copy_changes_nothing() {
    use mcp_coordinator::store::copy::copy_all;
    use mcp_coordinator::store::sqlite::SqliteStore;
    let dir = test_support::TestDir::new("copy-store");
    let from = SqliteStore::open(&dir.path().join("interactions.db")).unwrap();
    let at = 1_750_000_000_000;
    let mut events = Vec::new();
    for (mcp, n) in [("copy_a_mcp_001", 3), ("copy_b_mcp_001", 2)] {
        for i in 0..n {
            let id = format!("int_copy_{mcp}_{i}");
            let event =
                |kind, t, fields| InteractionEvent::new(id.clone(), mcp.into(), kind, t, fields);
            events.push(event(
                EventKind::Start,
                at + i,
                Fields {
                    request_type: Some("ocr".into()),
                    ..Default::default()
                },
            ));
            events.push(event(
                EventKind::Progress,
                at + i + 1,
                Fields {
                    progress: Some(0.5),
                    progress_message: Some("half".into()),
                    ..Default::default()
                },
            ));
            events.push(event(
                EventKind::Complete,
                at + i + 2,
                Fields {
                    success: Some(i % 2 == 0),
                    processing_time: Some(1.5),
                    ..Default::default()
                },
            ));
        }
    }
    from.insert(&events).await.unwrap();
    let server = tokio::task::spawn_blocking(test_support::clickhouse::shared)
        .await
        .unwrap();
    let to = ClickHouseStore::connect(&server.config()).await.unwrap();
    let mut heard = Vec::new();
    let copied = copy_all(&from, &to, |mcp, n| heard.push((mcp.to_string(), n)))
        .await
        .unwrap();
    assert_eq!((copied.mcps, copied.interactions), (2, 5));
    assert_eq!(
        heard,
        [
            ("copy_a_mcp_001".to_string(), 3),
            ("copy_b_mcp_001".to_string(), 2)
        ]
    );
    let again = copy_all(&from, &to, |_, _| {}).await.unwrap();
    assert_eq!(again.interactions, 5);

    // The subcommand the install guide runs in the ingest container, into a database of its own.
    drop(from);
    let database = server.config().database;
    let out = std::process::Command::new(test_support::ingest::bin())
        .args(["copy-store", "--from"])
        .arg(dir.path().join("interactions.db"))
        .args([
            "--clickhouse-url",
            &server.url(),
            "--clickhouse-database",
            &database,
        ])
        .output()
        .expect("copy-store runs");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("copy_a_mcp_001: 3 interactions"), "{said}");
    assert!(
        said.contains("copied 5 interactions (10 events) of 2 MCPs"),
        "{said}"
    );
    let out = std::process::Command::new(test_support::ingest::bin())
        .args(["copy-store", "--from", "/nonexistent/interactions.db"])
        .args(["--clickhouse-url", &server.url()])
        .output()
        .expect("copy-store runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot open the embedded store /nonexistent/interactions.db"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from = SqliteStore::open(&dir.path().join("interactions.db")).unwrap();
    for mcp in ["copy_a_mcp_001", "copy_b_mcp_001"] {
        let q = HistoryQuery {
            mcp_id: mcp.into(),
            ..Default::default()
        };
        let (a, b) = (
            from.history(&q).await.unwrap(),
            to.history(&q).await.unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{mcp}: twice copied, once stored");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.interaction_id, y.interaction_id);
            assert_eq!(x.fields, y.fields, "{}", x.interaction_id);
            assert_eq!(x.timeline, y.timeline, "{}", x.interaction_id);
            assert_eq!(x.first_received_ms, y.first_received_ms);
        }
    }
}
