//! Standalone mode (`mcp-coordinator standalone`): the controller's registry, health, key,
//! status and routing logic and the ingest server in one process, without Kubernetes.
//! Registrations are the same MCPRegistration manifests, read from a directory that is watched;
//! IDs and keys persist under the data directory; status is served at `GET /v1/registrations`
//! and written to a file per registration.

pub mod args;
pub mod manifests;
pub mod registry;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::controller::ids::id_prefix;
use crate::controller::probe::ProbeTarget;
use crate::controller::prober::Prober;
use crate::controller::routing::board;
use crate::controller::status::{self, Compatibility, Observation, ReportingSettings};
use crate::crd::{MCPRegistration, PrivacyLevel};
use crate::ingest::auth::{KeyRing, ReaderTokens};
use crate::ingest::state::RegistrationsView;
use crate::ingest::{IngestConfig, IngestError};
use crate::routing::table::{self, RoutingTable};
use crate::routing::weights::Observed;
use crate::store::retention::RetentionDays;
use crate::store::{InteractionStore, TimeRange};
use manifests::{Manifest, Problem};
use registry::{write_private, Registry};

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error("the registry {path} is unusable: {reason}")]
    Registry { path: PathBuf, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error("cannot build the health-probe HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("could not register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Args(#[from] crate::controller::args::ArgsError),
    #[error("--registrations {0} is not a directory of MCPRegistration manifests")]
    NotADirectory(PathBuf),
    #[error(transparent)]
    Assemble(#[from] crate::ingest::assemble::AssembleError),
    #[error(transparent)]
    Key(#[from] crate::controller::Error),
}

/// Starts standalone mode from its flags; answers with the running server and the store's name.
/// Without admin or reader token files, an admin token is kept in `<data-dir>/admin.token` for
/// `mcp-coordinator status` and queries.
pub async fn run_from_args(
    args: &args::StandaloneArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(RunningStandalone, String), StandaloneError> {
    use crate::ingest::assemble::{assemble, Mode};
    args.registry.check()?;
    if !args.registrations.is_dir() {
        return Err(StandaloneError::NotADirectory(args.registrations.clone()));
    }
    let parts = assemble(&args.ingest, Mode::Standalone).await?;
    if args.ingest.admin_tokens_file.is_none() && args.ingest.reader_tokens_file.is_none() {
        let path = args.ingest.data_dir.join("admin.token");
        let token = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                let token = crate::controller::keys::generate_key()?.replacen("mcpk_", "admin_", 1);
                write_private(&path, token.as_bytes())?;
                token
            }
        };
        parts.readers.add_admin("local", &token);
        tracing::info!(path = %path.display(), "admin token for `mcp-coordinator status` and queries");
    }
    parts.start_retention(&args.ingest);
    let config = StandaloneConfig {
        registrations: args.registrations.clone(),
        data_dir: args.ingest.data_dir.clone(),
        ingest: parts.config,
        store: parts.store,
        keys: parts.keys,
        readers: parts.readers,
        reporting: args
            .registry
            .reporting(args.interaction_log_endpoint.clone().unwrap_or_default()),
        routing_interval: Duration::from_secs(args.registry.routing_interval_seconds),
        routing_window: args.registry.routing_window.clone(),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(100)),
        probe_concurrency: args.registry.probe_concurrency,
        retention: parts.retention_days,
    };
    Ok((start(config, shutdown).await?, parts.store_name))
}

pub struct StandaloneConfig {
    /// Directory of MCPRegistration manifests (`*.yaml`, `*.yml`).
    pub registrations: PathBuf,
    /// IDs, keys (`keys/<namespace>/<name>-mcp-key`), status files (`status/`), the routing table.
    pub data_dir: PathBuf,
    /// The ingest server; its router and registrations view are fed from here.
    pub ingest: IngestConfig,
    pub store: Arc<dyn InteractionStore>,
    pub keys: Arc<KeyRing>,
    pub readers: Arc<ReaderTokens>,
    /// What MCPs are told through status; an empty endpoint means "this ingest server".
    pub reporting: ReportingSettings,
    pub routing_interval: Duration,
    pub routing_window: String,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    pub probe_concurrency: usize,
    pub retention: Arc<RetentionDays>,
}

pub struct RunningStandalone {
    pub addr: std::net::SocketAddr,
    pub done: tokio::task::JoinHandle<()>,
}

struct Entry {
    file: PathBuf,
    registration: MCPRegistration,
}

/// Starts the ingest server and the registry loop; both stop when `shutdown` resolves.
/// What each reconcile needs besides the registration.
struct Shared {
    keys: Arc<KeyRing>,
    retention: Arc<RetentionDays>,
    sensitive: Arc<crate::privacy::SensitiveMcps>,
    reporting: ReportingSettings,
}

pub async fn start(
    config: StandaloneConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningStandalone, StandaloneError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let StandaloneConfig {
        registrations: manifest_dir,
        data_dir,
        ingest: mut ingest_config,
        store,
        keys,
        readers,
        mut reporting,
        routing_interval,
        routing_window,
        poll_interval,
        probe_concurrency,
        retention,
    } = config;
    let metrics = Arc::new(crate::controller::metrics::Metrics::new()?);
    metrics.leader.set(1);
    ingest_config.extra_metrics = Some(metrics.registry.clone());
    let view: Arc<RegistrationsView> =
        Arc::new(RwLock::new(json!({"registrations": [], "invalid": []})));
    ingest_config.registrations = Some(view.clone());
    let router = ingest_config.router.clone();
    let sensitive = ingest_config.sensitive_mcps.clone();
    let scheme = if ingest_config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let ingest_stop = {
        let mut rx = stop_tx.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let running = crate::ingest::start(
        ingest_config,
        store.clone(),
        keys.clone(),
        readers,
        ingest_stop,
    )
    .await?;
    let addr = running.addr;
    if reporting.interaction_log_endpoint.is_empty() {
        reporting.interaction_log_endpoint = format!("{scheme}://{addr}");
    }
    let shared = Shared {
        keys,
        retention,
        sensitive,
        reporting,
    };
    let http = reqwest::Client::builder()
        .user_agent(concat!(
            "mcp-coordinator/",
            env!("CARGO_PKG_VERSION"),
            " health-probe"
        ))
        .build()?;
    let (prober, mut changes) = Prober::new(http, probe_concurrency, metrics.clone());
    let mut state = Registrations {
        manifest_dir,
        data_dir: data_dir.clone(),
        registry: Registry::open(&data_dir)?,
        prober,
        shared,
        store,
        router,
        view,
        metrics,
        routing_interval,
        routing_window,
        entries: BTreeMap::new(),
        invalid: Vec::new(),
        fingerprint: None,
        performance: HashMap::new(),
        routing_due: tokio::time::Instant::now(),
        installed: None,
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let done = tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll_interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                Some(_) = changes.recv() => {}
                _ = stop_rx.wait_for(|s| *s) => break,
            }
            while changes.try_recv().is_ok() {}
            state.reload_if_changed();
            state.refresh_performance_if_due().await;
            state.reconcile_all();
            state.publish();
        }
        let _ = running.done.await;
    });
    Ok(RunningStandalone { addr, done })
}

/// The standalone loop's state: the registrations as read and reconciled, and what they feed.
struct Registrations {
    manifest_dir: PathBuf,
    data_dir: PathBuf,
    registry: Registry,
    prober: Arc<Prober>,
    shared: Shared,
    store: Arc<dyn InteractionStore>,
    router: Arc<crate::routing::router::Router>,
    view: Arc<RegistrationsView>,
    /// The controller's series, served on the ingest server's `/metrics`.
    metrics: Arc<crate::controller::metrics::Metrics>,
    routing_interval: Duration,
    routing_window: String,
    entries: BTreeMap<String, Entry>,
    invalid: Vec<Problem>,
    fingerprint: Option<Vec<(PathBuf, Option<std::time::SystemTime>, u64)>>,
    performance: HashMap<String, Observed>,
    routing_due: tokio::time::Instant,
    installed: Option<RoutingTable>,
}

impl Registrations {
    /// Reads the manifests again when the directory changed; new problems are logged once.
    fn reload_if_changed(&mut self) {
        let now = manifests::fingerprint(&self.manifest_dir);
        if self.fingerprint.as_ref() == Some(&now) {
            return;
        }
        self.fingerprint = Some(now);
        let (found, problems) = manifests::load_dir(&self.manifest_dir);
        for p in problems.iter().filter(|p| !self.invalid.contains(p)) {
            tracing::warn!(problem = %p, "skipping an invalid registration");
        }
        self.invalid = problems;
        apply(
            &mut self.entries,
            found,
            &mut self.registry,
            &self.prober,
            &self.shared.keys,
        );
    }

    /// Every routing interval: each MCP's success rate and p95 over the window, with its peers'.
    async fn refresh_performance_if_due(&mut self) {
        if tokio::time::Instant::now() < self.routing_due {
            return;
        }
        self.routing_due = tokio::time::Instant::now() + self.routing_interval;
        let range = match TimeRange::parse(
            &self.routing_window,
            jiff::Timestamp::now().as_millisecond(),
        ) {
            Ok(range) => range,
            Err(e) => return tracing::warn!(error = %e, "bad routing window"),
        };
        match self.store.metrics(None, range).await {
            Ok(rows) => {
                let by_id = rows
                    .into_iter()
                    .map(|m| (m.mcp_id, (m.success_rate, m.p95_processing_time)))
                    .collect();
                let regs: Vec<Arc<MCPRegistration>> = self
                    .entries
                    .values()
                    .map(|e| Arc::new(e.registration.clone()))
                    .collect();
                self.performance = board(&regs, &by_id);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read performance; keeping the last known"),
        }
    }

    fn reconcile_all(&mut self) {
        for (key, entry) in self.entries.iter_mut() {
            if let Err(e) = reconcile(
                key,
                entry,
                &mut self.registry,
                &self.prober,
                &self.shared,
                &self.performance,
            ) {
                tracing::warn!(registration = %key, error = %e, "reconcile failed; retrying");
            }
        }
    }

    /// The routing table (to the router and `routing-table.json`, when it changed) and the view.
    fn publish(&mut self) {
        let tables = table::build(self.entries.values().map(|e| &e.registration));
        let merged = RoutingTable::merge(tables.values());
        if self.installed.as_ref() != Some(&merged) {
            self.router.install(&merged);
            if let Ok(text) = serde_json::to_vec_pretty(&merged) {
                if let Err(e) = write_private(&self.data_dir.join("routing-table.json"), &text) {
                    tracing::warn!(error = %e, "cannot write the routing table file");
                }
            }
            self.installed = Some(merged);
        }
        self.export_metrics();
        *self
            .view
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            render_view(&self.entries, &self.invalid, &self.performance);
    }
}

impl Registrations {
    /// The same series the controller exports: registrations by phase, and per MCP whether it is
    /// up and its effective weight (series of removed MCPs are dropped).
    fn export_metrics(&self) {
        let m = &self.metrics;
        let mut by_phase: HashMap<&str, i64> = crate::crd::Phase::ALL
            .iter()
            .map(|p| (p.as_str(), 0))
            .collect();
        m.mcp_up.reset();
        m.effective_weight.reset();
        for entry in self.entries.values() {
            let Some(status) = &entry.registration.status else {
                continue;
            };
            *by_phase.entry(status.phase.as_str()).or_default() += 1;
            if let Some(id) = &status.mcp_id {
                m.mcp_up
                    .with_label_values(&[id])
                    .set(i64::from(status.phase == crate::crd::Phase::Ready));
                let weight = status.routing.as_ref().map_or(0, |r| r.effective_weight);
                m.effective_weight
                    .with_label_values(&[id])
                    .set(i64::from(weight));
            }
        }
        for (phase, n) in by_phase {
            m.registrations.with_label_values(&[phase]).set(n);
        }
    }
}

/// Brings the entries in line with the manifests: new ones appear, edited ones get a new
/// generation, removed ones are retired (prober stopped, key revoked, files removed).
fn apply(
    entries: &mut BTreeMap<String, Entry>,
    found: Vec<Manifest>,
    registry: &mut Registry,
    prober: &Prober,
    keys: &KeyRing,
) {
    let mut seen = Vec::with_capacity(found.len());
    for manifest in found {
        let key = manifest.key();
        seen.push(key.clone());
        match entries.get_mut(&key) {
            Some(entry) => {
                let spec_changed = entry.registration.spec != manifest.registration.spec;
                let mut next = manifest.registration;
                let generation = entry.registration.metadata.generation.unwrap_or(1);
                next.metadata.generation = Some(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
                next.status = entry.registration.status.take();
                if spec_changed {
                    tracing::info!(registration = %key, file = %manifest.file.display(), "registration changed");
                }
                entry.registration = next;
                entry.file = manifest.file;
            }
            None => {
                let mut registration = manifest.registration;
                registration.metadata.generation = Some(1);
                tracing::info!(registration = %key, file = %manifest.file.display(), "registration found");
                entries.insert(
                    key,
                    Entry {
                        file: manifest.file,
                        registration,
                    },
                );
            }
        }
    }
    let gone: Vec<String> = entries
        .keys()
        .filter(|k| !seen.contains(k))
        .cloned()
        .collect();
    for key in gone {
        let Some(entry) = entries.remove(&key) else {
            continue;
        };
        let reg = &entry.registration;
        let (namespace, name) = (reg.namespace().unwrap_or_default(), reg.name_any());
        prober.remove(&ObjectRef::<MCPRegistration>::new(&name).within(&namespace));
        if let Some(id) = reg.status.as_ref().and_then(|s| s.mcp_id.as_deref()) {
            keys.remove(id);
        }
        if let Err(e) = registry.retire(&namespace, &name) {
            tracing::warn!(registration = %key, error = %e, "could not retire the registration's ID");
        }
        let _ = std::fs::remove_file(registry.status_file(&namespace, &name));
        tracing::info!(registration = %key, "registration removed: retired its ID and revoked its key");
    }
}

/// One registration: ID, key, probe, then the status the controller would write.
fn reconcile(
    key: &str,
    entry: &mut Entry,
    registry: &mut Registry,
    prober: &Prober,
    shared: &Shared,
    performance: &HashMap<String, Observed>,
) -> Result<(), StandaloneError> {
    let reg = &entry.registration;
    let (namespace, name) = (reg.namespace().unwrap_or_default(), reg.name_any());
    let spec = &reg.spec;
    let mcp_id = registry.id_for(key, &id_prefix(&name, &spec.mcp_type))?;
    let api_key = registry.key_for(&namespace, &name)?;
    shared.keys.set(&mcp_id, &api_key);
    shared
        .sensitive
        .set(&mcp_id, spec.privacy.level == PrivacyLevel::Sensitive);
    shared.retention.set(&mcp_id, spec.privacy.retention_days);
    let object = ObjectRef::<MCPRegistration>::new(&name).within(&namespace);
    let compatibility = status::check_compatibility(spec, crate::COORDINATOR_VERSION);
    let health = if matches!(compatibility, Compatibility::OutOfRange { .. }) {
        prober.remove(&object);
        None
    } else {
        let mut target = ProbeTarget::of(spec, &namespace);
        if spec.health_check.headers_from_secret.is_some() {
            target.setup_error = Some(
                "spec.healthCheck.headersFromSecret needs Kubernetes Secrets, which standalone mode cannot read; remove it".into(),
            );
        }
        prober.ensure(object.clone(), target, spec.health_check.clone());
        prober.snapshot(&object)
    };
    let secret = format!("{name}-mcp-key");
    let obs = Observation {
        generation: reg.metadata.generation,
        mcp_id: Some(&mcp_id),
        key_secret: Some(&secret),
        problems: &[],
        compatibility,
        health: health.as_ref(),
        observed: performance.get(&mcp_id),
    };
    let previous = reg.status.as_ref();
    let desired = status::desired_status(spec, previous, &obs, &shared.reporting, Timestamp::now());
    if !status::meaningful_change(previous, &desired) {
        return Ok(());
    }
    let before = previous.map(|s| s.phase);
    if before != Some(desired.phase) {
        tracing::info!(
            registration = %key,
            mcp_id = %mcp_id,
            from = before.map_or("new", |p| p.as_str()),
            to = desired.phase.as_str(),
            "phase changed"
        );
    }
    entry.registration.status = Some(desired);
    let file = registry.status_file(&namespace, &name);
    let text =
        serde_json::to_vec_pretty(&entry.registration).map_err(|e| StandaloneError::Registry {
            path: file.clone(),
            reason: e.to_string(),
        })?;
    write_private(&file, &text)
}

fn render_view(
    entries: &BTreeMap<String, Entry>,
    invalid: &[Problem],
    performance: &HashMap<String, Observed>,
) -> Value {
    let registrations: Vec<Value> = entries
        .values()
        .map(|e| {
            let reg = &e.registration;
            let status = reg.status.as_ref();
            let id = status.and_then(|s| s.mcp_id.clone());
            let observed = id.as_ref().and_then(|id| performance.get(id));
            json!({
                "namespace": reg.namespace(),
                "name": reg.name_any(),
                "file": e.file.display().to_string(),
                "generation": reg.metadata.generation,
                "mcp_id": id,
                "phase": status.map(|s| s.phase.as_str()),
                "effective_weight": status.and_then(|s| s.routing.as_ref()).map(|r| r.effective_weight),
                "success_rate": observed.and_then(|o| o.success_rate),
                "p95_processing_time": observed.and_then(|o| o.p95_processing_time),
                "status": status,
            })
        })
        .collect();
    json!({"registrations": registrations, "invalid": invalid})
}
