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

fn replica(place: &Place, identity: &str) -> RunningController {
    let mut s = place.settings();
    s.leader_election = Some(LeaderElection {
        lease_name: "mcp-coordinator-leader".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(3),
    });
    start_controller_on(place.client(), s)
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
    let leases: Api<Lease> = Api::namespaced(place.client(), &place.state_namespace);
    leases
        .get_opt("mcp-coordinator-leader")
        .await
        .expect("get lease")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// A leader, a standby, a graceful hand-over, a leader that dies.
async fn only_the_leader_reconciles_and_a_standby_takes_over(place: Place) {
    let mcp = FakeMcp::start().await;
    let first = replica(&place, "replica-a");
    wait_until("replica-a leads", Duration::from_secs(10), || {
        first.metrics.leader.get() == 1
    })
    .await;
    let second = replica(&place, "replica-b");
    let api: Api<MCPRegistration> = place.api();
    api.create(
        &PostParams::default(),
        &place.registration("ocr", &mcp.url(), ""),
    )
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
    let place = Place::fake().await;
    let server = place.fake_server().expect("the test API server");
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

common::on_both_servers!(only_the_leader_reconciles_and_a_standby_takes_over);
