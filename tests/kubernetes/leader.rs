//! High availability: of two controller replicas only the Lease holder reconciles; the standby
//! takes over when the leader stops (at once, as it hands the Lease over) or dies (when the Lease
//! expires). On the test API server and on a real one (a contract both pass).

use test_support as common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::Api;
use mcp_coordinator::controller::leader::LeaderElection;
use mcp_coordinator::crd::{MCPRegistration, Phase};

/// Where the replicas run: a client of the API server, the namespace of the registrations and
/// the one of the Lease and the ID ledger.
struct Place {
    client: kube::Client,
    namespace: String,
    state_namespace: String,
    api_server_url: String,
}

fn replica(place: &Place, identity: &str) -> RunningController {
    let mut s = settings();
    s.namespace = Some(place.namespace.clone());
    s.state_namespace = place.state_namespace.clone();
    s.probe_policy = s.probe_policy.refusing_api_server(&place.api_server_url);
    s.leader_election = Some(LeaderElection {
        lease_name: "mcp-coordinator-leader".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
    });
    start_controller_on(place.client.clone(), s)
}

async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn holder(place: &Place) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(place.client.clone(), &place.state_namespace);
    leases
        .get_opt("mcp-coordinator-leader")
        .await
        .expect("get lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let server = api_server().await;
    let place = Place {
        client: client(&server),
        namespace: "default".into(),
        state_namespace: STATE_NAMESPACE.into(),
        api_server_url: server.url(),
    };
    hand_over(place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_real_api_server_only_the_leader_reconciles_and_a_standby_takes_over() {
    let cluster = common::cluster::shared();
    let admin = cluster.admin().await;
    common::cluster::install_crd(&admin).await;
    let place = Place {
        namespace: common::cluster::namespace(&admin, "real-leader").await,
        state_namespace: common::cluster::namespace(&admin, "real-leader-state").await,
        client: admin,
        api_server_url: cluster.url.clone(),
    };
    hand_over(place).await;
}

/// The scenario: a leader, a standby, a graceful hand-over, a leader that dies.
async fn hand_over(place: Place) {
    let mcp = FakeMcp::start().await;
    let first = replica(&place, "replica-a");
    wait_until("replica-a leads", Duration::from_secs(10), || {
        first.metrics.leader.get() == 1
    })
    .await;
    let second = replica(&place, "replica-b");
    let api: Api<MCPRegistration> = Api::namespaced(place.client.clone(), &place.namespace);
    let mut reg = registration("ocr", &mcp.url(), "");
    reg.metadata.namespace = Some(place.namespace.clone());
    api.create(&PostParams::default(), &reg)
        .await
        .expect("create");
    wait_for(&api, "ocr", Duration::from_secs(20), "Ready", |r| {
        phase(r) == Some(Phase::Ready)
    })
    .await;
    assert_eq!(holder(&place).await.as_deref(), Some("replica-a"));
    assert_eq!(second.metrics.leader.get(), 0);
    assert_eq!(
        second.metrics.reconciles.get(),
        0,
        "the standby must not reconcile"
    );
    assert!(
        second.ready.load(std::sync::atomic::Ordering::Relaxed),
        "a standby is ready"
    );

    // Graceful stop: the Lease is handed over, the standby leads within a retry period.
    first.stop().await;
    wait_until("replica-b leads", Duration::from_secs(5), || {
        second.metrics.leader.get() == 1
    })
    .await;
    assert_eq!(holder(&place).await.as_deref(), Some("replica-b"));
    mcp.set_healthy(false);
    wait_for(
        &api,
        "ocr",
        Duration::from_secs(20),
        "Unavailable under the new leader",
        |r| phase(r) == Some(Phase::Unavailable),
    )
    .await;
    assert!(second.metrics.reconciles.get() > 0);

    // The leader dies without handing over: a new standby waits for the Lease to expire.
    let third = replica(&place, "replica-c");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(third.metrics.leader.get(), 0, "the Lease is still held");
    let died_at = tokio::time::Instant::now();
    drop(second);
    wait_until("replica-c leads", Duration::from_secs(10), || {
        third.metrics.leader.get() == 1
    })
    .await;
    let waited = died_at.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "took over before the Lease could expire: {waited:?}"
    );
    mcp.set_healthy(true);
    wait_for(
        &api,
        "ocr",
        Duration::from_secs(20),
        "Ready under the third leader",
        |r| phase(r) == Some(Phase::Ready),
    )
    .await;
}

#[tokio::test]
async fn a_leader_that_cannot_renew_in_time_stops_leading() {
    let server = api_server().await;
    let place = Place {
        client: client(&server),
        namespace: "default".into(),
        state_namespace: STATE_NAMESPACE.into(),
        api_server_url: server.url(),
    };
    let leader = replica(&place, "replica-a");
    wait_until("replica-a leads", Duration::from_secs(10), || {
        leader.metrics.leader.get() == 1
    })
    .await;
    // The API server stops answering: renewals hang instead of failing.
    server.store().stall(true);
    wait_until(
        "replica-a stops acting as the leader",
        Duration::from_secs(10),
        || leader.metrics.leader.get() == 0,
    )
    .await;
    server.store().stall(false);
}
