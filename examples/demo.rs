//! `make demo`: the controller without a cluster. Starts the test API server in-process with the
//! CRD installed, three small MCPs on loopback (steady, flaky, behind auth), registers them, and
//! prints what `kubectl get mcpreg` would show as IDs are assigned and health changes.
//! Stops after DEMO_SECONDS (default 40) or on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mcp_coordinator::controller::{self, status::ReportingSettings, Settings};
use mcp_coordinator::crd::MCPRegistration;
use mcp_coordinator::metrics::Metrics;
use warp::Filter;

async fn mcp(healthy: Arc<AtomicBool>, token: Option<&'static str>) -> std::net::SocketAddr {
    let route = warp::path!("health")
        .and(warp::header::optional::<String>("authorization"))
        .map(move |auth: Option<String>| {
            let code = if token.is_some() && auth.as_deref() != token {
                401
            } else if healthy.load(Ordering::Relaxed) {
                200
            } else {
                503
            };
            warp::reply::with_status(
                String::new(),
                warp::http::StatusCode::from_u16(code).unwrap_or_default(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    addr
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let server = FakeApiServer::start()
        .await
        .expect("test API server starts");
    server
        .install_crd(serde_json::to_value(mcp_coordinator::crd::crd()).expect("CRD"))
        .expect("CRD accepted");
    let steady = mcp(Arc::new(AtomicBool::new(true)), None).await;
    let flaky_health = Arc::new(AtomicBool::new(true));
    let flaky = mcp(flaky_health.clone(), None).await;
    let guarded = mcp(Arc::new(AtomicBool::new(true)), Some("Bearer demo")).await;

    let client =
        Client::try_from(kube::Config::new(server.url().parse().expect("url"))).expect("client");
    let settings = Settings {
        namespace: None,
        state_namespace: "mcp-coordinator".into(),
        id_ledger_name: "mcp-coordinator-ids".into(),
        reporting: ReportingSettings {
            interaction_log_endpoint: "http://127.0.0.1:8081".into(),
            heartbeat_interval_seconds: 30,
            data_report_interval_seconds: 60,
        },
        probe_concurrency: 16,
        reconcile_concurrency: 8,
        resync: Duration::from_secs(300),
        instance: Some("demo".into()),
        routing: Default::default(),
        leader_election: None,
    };
    let metrics = Arc::new(Metrics::new().expect("metrics"));
    tokio::spawn(controller::run(
        client.clone(),
        settings,
        metrics,
        Arc::new(AtomicBool::new(false)),
        futures::future::pending(),
    ));

    let api: Api<MCPRegistration> = Api::namespaced(client, "default");
    for (name, kind, addr, weight) in [
        ("ocr", "workflow", steady, 300),
        ("translate", "tool", flaky, 200),
        ("gpt", "adapter", guarded, 100),
    ] {
        let yaml = format!(
            "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  version: 1.0.0\n  type: {kind}\n  capabilities: [demo]\n  endpoint: {{url: 'http://{addr}'}}\n  healthCheck: {{intervalSeconds: 1, timeoutSeconds: 1, failureThreshold: 2}}\n  routing: {{weight: {weight}}}\n"
        );
        let reg: MCPRegistration = serde_saphyr::from_str(&yaml).expect("manifest");
        api.create(&PostParams::default(), &reg)
            .await
            .expect("create registration");
    }
    println!(
        "test API server at {} — three MCPs registered; the 'translate' MCP goes down every 10 s.",
        server.url()
    );

    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let elapsed = started.elapsed().as_secs();
        if elapsed >= seconds {
            break;
        }
        flaky_health.store((elapsed / 10).is_multiple_of(2), Ordering::Relaxed);
        let list = api.list(&ListParams::default()).await.expect("list");
        println!(
            "\n[{elapsed:>3}s] {:<10} {:<24} {:<12} {:>6}  LAST ERROR",
            "NAME", "ID", "PHASE", "WEIGHT"
        );
        for r in list.items {
            let s = r.status.clone().unwrap_or_default();
            let error = s.health.and_then(|h| h.last_error).unwrap_or_default();
            println!(
                "       {:<10} {:<24} {:<12} {:>6}  {}",
                r.name_any(),
                s.mcp_id.unwrap_or_default(),
                s.phase.as_str(),
                s.routing.map(|r| r.effective_weight).unwrap_or(0),
                error.chars().take(70).collect::<String>()
            );
        }
    }
    println!("\ndemo finished");
}
