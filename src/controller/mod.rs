//! The MCPRegistration controller: watches registrations (and the key Secrets it owns), and
//! reconciles each into an ID, a key, a health verdict and a status.

pub mod args;
pub mod error;
pub mod events;
pub mod health;
pub mod ids;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod ops;
pub mod probe;
pub mod prober;
pub mod readings;
mod reconcile;
pub mod register;
pub mod routing;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::crd::{MCPRegistration, CREDENTIALS_LABEL};
pub use error::{Error, Result};
use ids::IdLedger;
use metrics::Metrics;
use prober::Prober;
use status::ReportingSettings;

/// Field manager for status writes and the reporting controller name in Events.
pub const MANAGER: &str = "mcp-coordinator";

/// How the controller runs; every field comes from a command-line flag.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Namespace of the controller's own state (the MCP ID ledger).
    pub state_namespace: String,
    pub id_ledger_name: String,
    pub reporting: ReportingSettings,
    pub probe_concurrency: usize,
    pub reconcile_concurrency: u16,
    /// How often a registration is reconciled without any change, as a safety net.
    pub resync: Duration,
    /// Name this instance reports Events as (its pod name in a cluster).
    pub instance: Option<String>,
    pub routing: routing::RoutingSettings,
    /// Where probes may not go (link-local addresses, the API server).
    pub probe_policy: probe::ProbePolicy,
    /// Elect a leader among replicas on a Lease in the state namespace; `None` runs as the only one.
    pub leader_election: Option<leader::LeaderElection>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the health-probe HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("lost the leader Lease {0} (could not renew it in time); exiting so that only one replica writes")]
    LeadershipLost(String),
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub ids: IdLedger,
    pub prober: Arc<Prober>,
    pub events: events::Events,
    pub metrics: Arc<Metrics>,
    /// Logged performance by MCP ID, refreshed by the routing loop.
    pub performance: routing::PerformanceBoard,
    /// Nudges the routing-table writer after a status change.
    pub table_changed: tokio::sync::Notify,
    failures: Mutex<HashMap<ObjectRef<MCPRegistration>, u32>>,
}

impl Context {
    /// Exponential backoff per object for transient errors: 1 s, 2 s, 4 s … capped at 5 minutes.
    fn backoff(&self, key: &ObjectRef<MCPRegistration>) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300))
    }

    fn succeeded(&self, key: &ObjectRef<MCPRegistration>) {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

/// Runs the controller until `shutdown` resolves. `ready` turns true once the watch cache synced.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), RunError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let leases: Api<Lease> = Api::namespaced(client.clone(), &settings.state_namespace);
    let (lost_tx, mut lost) = tokio::sync::watch::channel(false);
    // Everything started here ends with this function, even when it is cancelled.
    let mut background = tokio::task::JoinSet::new();
    if let Some(election) = &settings.leader_election {
        // A standby is healthy and ready; it just does not reconcile.
        ready.store(true, Ordering::Relaxed);
        metrics.leader.set(0);
        tracing::info!(identity = %election.identity, lease = %election.lease_name, "waiting to become the leader");
        loop {
            let attempt =
                tokio::time::timeout(election.retry_period(), leader::try_lead(&leases, election));
            match attempt.await {
                Ok(Ok(true)) => break,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the leader Lease; retrying"),
                Err(_) => tracing::warn!("reading the leader Lease took too long; retrying"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(election.retry_period()) => {}
            }
        }
        ready.store(false, Ordering::Relaxed);
        metrics.leader.set(1);
        background.spawn(keep_leading(
            leases.clone(),
            election.clone(),
            lost_tx,
            metrics.leader.clone(),
        ));
    } else {
        metrics.leader.set(1);
    }
    let http = probe::client(&settings.probe_policy)?;
    let (prober, health_changes) = Prober::new(http, settings.probe_concurrency, metrics.clone());
    let (registrations, secrets): (Api<MCPRegistration>, Api<Secret>) = match &settings.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let ledger_api: Api<ConfigMap> = Api::namespaced(client.clone(), &settings.state_namespace);
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: settings.instance.clone(),
    };
    let context = Arc::new(Context {
        ids: IdLedger::new(ledger_api, settings.id_ledger_name.clone()),
        events: events::Events::new(client.clone(), reporter),
        client,
        prober,
        metrics,
        performance: routing::PerformanceBoard::default(),
        table_changed: tokio::sync::Notify::new(),
        failures: Mutex::default(),
        settings: settings.clone(),
    });

    let (weight_changed, weight_changes) = tokio::sync::mpsc::unbounded_channel();
    // The watch cache holds every registration: without their `managedFields` (the API server's
    // record of who set which field, kept on every object and never read here). At 10,000
    // registrations on a real API server they were most of the controller's memory.
    let (cache, cache_writer) = kube::runtime::reflector::store();
    let registrations_seen = watcher::watcher(registrations, watcher::Config::default())
        .default_backoff()
        .modify(|reg| kube::ResourceExt::managed_fields_mut(reg).clear())
        .reflect(cache_writer)
        .touched_objects();
    let controller = Controller::for_stream(registrations_seen, cache)
        .owns(
            secrets,
            watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true")),
        )
        .reconcile_on(futures::stream::select(
            UnboundedReceiverStream::new(health_changes),
            UnboundedReceiverStream::new(weight_changes),
        ))
        .with_config(
            kube::runtime::controller::Config::default()
                .concurrency(settings.reconcile_concurrency),
        );
    let store = controller.store();
    background.spawn(routing::refresh_weights(
        context.clone(),
        store.clone(),
        weight_changed,
    ));
    background.spawn(routing::publish_tables(context.clone(), store.clone()));
    background.spawn(async move {
        // The store wakes only its most recent waiter (the controller's own runner also waits on
        // it), so poll again periodically instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    ready.store(true, Ordering::Relaxed);
                    tracing::info!("watch cache synced; controller ready");
                    return;
                }
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
    });
    let lost_seen = lost.clone();
    let leader_gauge = context.metrics.leader.clone();
    let stop_or_lost = async move {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            _ = lost.wait_for(|l| *l) => {}
        }
    };
    controller
        .graceful_shutdown_on(stop_or_lost)
        .run(reconcile::reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "reconciled"),
                Err(kube::runtime::controller::Error::ReconcilerFailed(err, obj)) => {
                    tracing::warn!(object = %obj, error = %err, "reconcile failed; will retry")
                }
                Err(err) => tracing::warn!(error = %err, "controller stream error"),
            }
        })
        .await;
    leader_gauge.set(0);
    background.abort_all();
    if let Some(election) = &settings.leader_election {
        if *lost_seen.borrow() {
            return Err(RunError::LeadershipLost(election.lease_name.clone()));
        }
        leader::release(&leases, election).await;
    }
    Ok(())
}

/// Renews the Lease every retry period; if it cannot for two thirds of the Lease's duration (or
/// someone else holds it), reports the leadership lost before a standby can take it over. The
/// `leader` gauge drops at once: the controller may still be starting, waiting on the same API
/// server, when it learns it.
async fn keep_leading(
    leases: Api<Lease>,
    election: leader::LeaderElection,
    lost: tokio::sync::watch::Sender<bool>,
    leader: prometheus::IntGauge,
) {
    let give_up = |lost: &tokio::sync::watch::Sender<bool>| {
        leader.set(0);
        let _ = lost.send(true);
    };
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(election.retry_period()).await;
        if lost.is_closed() {
            return;
        }
        // A renewal that hangs (an API server that stopped answering) must not keep this
        // replica acting as the leader: each attempt gets one retry period.
        let attempt = tokio::time::timeout(
            election.retry_period(),
            leader::try_lead(&leases, &election),
        );
        match attempt.await {
            Ok(Ok(true)) => renewed = tokio::time::Instant::now(),
            Ok(Ok(false)) => {
                give_up(&lost);
                return;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not renew the leader Lease"),
            Err(_) => tracing::warn!(
                timeout = ?election.retry_period(),
                "renewing the leader Lease took too long"
            ),
        }
        if renewed.elapsed() > election.lease_duration * 2 / 3 {
            give_up(&lost);
            return;
        }
    }
}

fn error_policy(reg: Arc<MCPRegistration>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.kind()])
        .inc();
    Action::requeue(ctx.backoff(&ObjectRef::from(reg.as_ref())))
}
