//! The MCPRegistration controller: watches registrations (and the key Secrets it owns), and
//! reconciles each into an ID, a key, a health verdict and a status.

pub mod error;
pub mod health;
pub mod ids;
pub mod keys;
pub mod probe;
pub mod prober;
mod reconcile;
pub mod routing;
pub mod status;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::crd::{MCPRegistration, Phase, CREDENTIALS_LABEL};
use crate::metrics::Metrics;
pub use error::{Error, Result};
use ids::IdLedger;
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
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub ids: IdLedger,
    pub prober: Arc<Prober>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// Logged performance by MCP ID, refreshed by the routing loop.
    pub performance: routing::PerformanceBoard,
    /// Nudges the routing-table writer after a status change.
    pub table_changed: tokio::sync::Notify,
    /// False while another replica holds the leader Lease.
    leading: AtomicBool,
    phases: Mutex<HashMap<ObjectRef<MCPRegistration>, Phase>>,
    failures: Mutex<HashMap<ObjectRef<MCPRegistration>, u32>>,
}

impl Context {
    pub fn is_leader(&self) -> bool {
        self.leading.load(Ordering::Relaxed)
    }

    fn set_phase(&self, key: ObjectRef<MCPRegistration>, phase: Option<Phase>) {
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        let mut counts: HashMap<Phase, i64> = Phase::ALL.iter().map(|p| (*p, 0)).collect();
        for p in phases.values() {
            *counts.entry(*p).or_default() += 1;
        }
        for (phase, n) in counts {
            self.metrics
                .registrations
                .with_label_values(&[phase.as_str()])
                .set(n);
        }
    }

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
) -> Result<(), reqwest::Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "mcp-coordinator/",
            env!("CARGO_PKG_VERSION"),
            " health-probe"
        ))
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()?;
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
        recorder: Recorder::new(client.clone(), reporter),
        client,
        prober,
        metrics,
        performance: routing::PerformanceBoard::default(),
        table_changed: tokio::sync::Notify::new(),
        leading: AtomicBool::new(true),
        phases: Mutex::default(),
        failures: Mutex::default(),
        settings: settings.clone(),
    });

    let (weight_changed, weight_changes) = tokio::sync::mpsc::unbounded_channel();
    let controller = Controller::new(registrations, watcher::Config::default())
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
    tokio::spawn(routing::refresh_weights(
        context.clone(),
        store.clone(),
        weight_changed,
    ));
    tokio::spawn(routing::publish_tables(context.clone(), store.clone()));
    tokio::spawn(async move {
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
    controller
        .graceful_shutdown_on(shutdown)
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
    Ok(())
}

fn error_policy(reg: Arc<MCPRegistration>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[error.kind()])
        .inc();
    Action::requeue(ctx.backoff(&ObjectRef::from(reg.as_ref())))
}
