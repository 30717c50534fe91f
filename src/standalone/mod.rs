//! Standalone mode (`mcp-coordinator standalone`): the controller's registry, health, key,
//! status and routing logic and the ingest server in one process, without Kubernetes.
//! Registrations are the same MCPRegistration manifests, read from a directory that is watched;
//! IDs and keys persist under the data directory; status is served at `GET /v1/registrations`
//! and written to a file per registration.

pub mod args;
pub mod manifests;
mod ports;
mod registrations;
pub mod registry;
mod self_registration;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::json;

use crate::controller::metrics::Metrics;
use crate::controller::prober::Prober;
use crate::controller::status::ReportingSettings;
use crate::ingest::assemble::IngestParts;
use crate::ingest::state::RegistrationsView;
use crate::ingest::IngestError;
use ports::Shared;
use registrations::Registrations;
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
    let mut parts = assemble(&args.ingest, Mode::Standalone).await?;
    if args.ingest.admin_tokens_file.is_none() && args.ingest.reader_tokens_file.is_none() {
        let path = args.ingest.data_dir.join("admin.token");
        let token = local_token(&path, "admin_")?;
        parts.readers.add_admin("local", &token);
        tracing::info!(path = %path.display(), "admin token for `mcp-coordinator status` and queries");
    }
    if parts.registrar_tokens.is_none() {
        let path = args.ingest.data_dir.join("registrar.token");
        let token = local_token(&path, "registrar_")?;
        let mut tokens = crate::ingest::registrar::RegistrarTokens::default();
        tokens.add("local", &token, vec!["default".into()]);
        parts.registrar_tokens = Some(Arc::new(tokens));
        tracing::info!(path = %path.display(), "registrar token for self-registration (register_mcp) in namespace default");
    }
    if args.ingest.caller_tokens_file.is_none() {
        let path = args.ingest.data_dir.join("caller.token");
        let token = local_token(&path, "caller_")?;
        parts.config.callers.set(
            "local",
            &token,
            crate::trust::callers::Grant {
                namespaces: vec!["*".into()],
                ..Default::default()
            },
        );
        tracing::info!(path = %path.display(), "caller token for the MCP gateway (every namespace)");
    }
    parts.start_store_jobs(&args.ingest);
    let config = StandaloneConfig {
        registrations: args.registrations.clone(),
        data_dir: args.ingest.data_dir.clone(),
        ingest: parts,
        reporting: args
            .registry
            .reporting(args.interaction_log_endpoint.clone().unwrap_or_default()),
        routing_interval: Duration::from_secs(args.registry.routing_interval_seconds),
        routing_window: args.registry.routing_window.clone(),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(100)),
        probe_concurrency: args.registry.probe_concurrency,
        allow_link_local_probes: args.registry.allow_link_local_probes,
        registration_wait: Duration::from_secs(args.ingest.registration_wait_seconds),
        registrations_per_token: args.ingest.registrar_max_registrations as usize,
    };
    let store_name = config.ingest.store_name.clone();
    Ok((start(config, shutdown).await?, store_name))
}

/// A token kept in `path` (made on first use, readable only by this user), starting with `prefix`.
fn local_token(path: &std::path::Path, prefix: &str) -> Result<String, StandaloneError> {
    match std::fs::read_to_string(path) {
        Ok(t) if t.trim().len() >= crate::trust::keys::MIN_SECRET_BYTES => Ok(t.trim().to_string()),
        _ => {
            let token = crate::controller::keys::generate_key()?.replacen("mcpk_", prefix, 1);
            write_private(path, token.as_bytes())?;
            Ok(token)
        }
    }
}

pub struct StandaloneConfig {
    /// Directory of MCPRegistration manifests (`*.yaml`, `*.yml`).
    pub registrations: PathBuf,
    /// IDs, keys (`keys/<namespace>/<name>-mcp-key`), status files (`status/`), the routing table.
    pub data_dir: PathBuf,
    /// The ingest server, assembled; its router, keys and registrations view are fed from here.
    pub ingest: IngestParts,
    /// What MCPs are told through status; an empty endpoint means "this ingest server".
    pub reporting: ReportingSettings,
    pub routing_interval: Duration,
    pub routing_window: String,
    /// How often the directory is checked for changes.
    pub poll_interval: Duration,
    pub probe_concurrency: usize,
    /// Let probes reach link-local addresses (cloud metadata services live there).
    pub allow_link_local_probes: bool,
    /// How long `register_mcp` waits for the loop to assign an ID and key.
    pub registration_wait: Duration,
    /// Registrations one registrar token may hold in one namespace.
    pub registrations_per_token: usize,
}

pub struct RunningStandalone {
    pub addr: std::net::SocketAddr,
    /// The MCP gateway's address (clients call `http://<it>/mcp/<namespace>`).
    pub gateway_addr: Option<std::net::SocketAddr>,
    pub done: tokio::task::JoinHandle<()>,
}

/// Starts the ingest server and the registration loop; both stop when `shutdown` resolves.
pub async fn start(
    config: StandaloneConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<RunningStandalone, StandaloneError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let StandaloneConfig {
        registrations: manifest_dir,
        data_dir,
        ingest:
            IngestParts {
                config: mut ingest_config,
                store,
                keys,
                readers,
                retention_days: retention,
                registrar_tokens,
                ..
            },
        mut reporting,
        routing_interval,
        routing_window,
        poll_interval,
        probe_concurrency,
        allow_link_local_probes,
        registration_wait,
        registrations_per_token,
    } = config;
    let metrics = Arc::new(Metrics::new()?);
    metrics.leader.set(1);
    ingest_config.extra_metrics = Some(metrics.registry.clone());
    let view: Arc<RegistrationsView> =
        Arc::new(RwLock::new(json!({"registrations": [], "invalid": []})));
    ingest_config.registrations = Some(view.clone());
    let router = ingest_config.router.clone();
    let directory = ingest_config.directory.clone();
    let fleet = ingest_config.fleet.clone();
    // Self-registration reaches the loop below, which owns the registry, through this channel.
    let (commands_tx, mut commands) = tokio::sync::mpsc::channel(16);
    if let Some(tokens) = registrar_tokens {
        ingest_config.registrar = Some(Arc::new(
            crate::ingest::registrar::Registrar::new(
                tokens,
                Arc::new(self_registration::LoopPort {
                    commands: commands_tx,
                }),
                registration_wait,
            )
            .with_max_per_token(registrations_per_token),
        ));
    }
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
    let gateway_addr = running.gateway_addr;
    if reporting.interaction_log_endpoint.is_empty() {
        reporting.interaction_log_endpoint = format!("{scheme}://{addr}");
    }
    let shared = Shared {
        keys,
        retention,
        sensitive,
        reporting,
    };
    // No API server in standalone mode: only link-local addresses are refused.
    let probe_policy = crate::controller::probe::ProbePolicy {
        allow_link_local: allow_link_local_probes,
        api_server: Vec::new(),
    };
    let http = crate::controller::probe::client(&probe_policy)?;
    let (prober, mut changes) = Prober::new(http, probe_concurrency, metrics.clone());
    let mut state = Registrations {
        manifest_dir,
        data_dir: data_dir.clone(),
        registry: Registry::open(&data_dir)?,
        prober,
        shared,
        store,
        router,
        directory,
        fleet,
        gateway: running.gateway.clone(),
        view,
        metrics,
        routing_interval,
        routing_window,
        probe_policy,
        entries: BTreeMap::new(),
        invalid: Vec::new(),
        fingerprint: None,
        performance: HashMap::new(),
        routing_due: tokio::time::Instant::now(),
        installed: None,
        view_stale: false,
        view_rendered: None,
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let done = tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll_interval);
        loop {
            let mut command_received = None;
            let mut changed = Vec::new();
            let view_due = state.view_due();
            tokio::select! {
                _ = tokio::time::sleep_until(view_due.unwrap_or_else(tokio::time::Instant::now)), if view_due.is_some() => {
                    state.publish_view();
                    continue;
                }
                _ = tick.tick() => {}
                Some(key) = changes.recv() => changed.push(key),
                Some(command) = commands.recv() => command_received = Some(command),
                _ = stop_rx.wait_for(|s| *s) => break,
            }
            if let Some(command) = command_received {
                state.handle(command).await;
                continue;
            }
            state.refresh_performance_if_due().await;
            if changed.is_empty() {
                // The tick: the directory read again and every registration reconciled.
                while changes.try_recv().is_ok() {}
                state.reload_if_changed();
                state.reconcile_all().await;
            } else {
                // A probe changed something: only the registrations it concerns.
                while let Ok(key) = changes.try_recv() {
                    changed.push(key);
                }
                let keys = changed.iter().map(|k| {
                    let namespace = k.namespace.as_deref().unwrap_or("default");
                    format!("{namespace}/{}", k.name)
                });
                state
                    .reconcile(keys.collect::<std::collections::BTreeSet<_>>())
                    .await;
                state.publish_routes();
                continue;
            }
            state.publish();
        }
        let _ = running.done.await;
    });
    Ok(RunningStandalone {
        addr,
        gateway_addr,
        done,
    })
}
