//! The interaction log's ingest server (`mcp-coordinator ingest`): the HTTP API in front of the
//! durable pipeline (`crate::pipeline`), with key trust from `crate::trust`.

pub mod accept;
pub mod api;
pub mod args;
pub mod assemble;
pub mod fleet;
pub mod metrics;
pub mod registrar;
pub mod routes;
pub mod state;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::pipeline::shipper::{self, DEFAULT_BATCH_MAX, DEFAULT_BATCH_MAX_BYTES};
use crate::pipeline::{Spool, SpoolConfig};
use crate::serve;
use crate::trust::keys::{KeyRing, ReaderTokens};
use crate::trust::signing;
use metrics::IngestMetrics;
use state::{IngestState, Limits, RegistrationsView};

use crate::store::Stores;

/// How often an ingest server writes the heartbeats it received to the store.
pub const HEARTBEAT_SAVE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    pub spool: SpoolConfig,
    pub limits: Limits,
    /// Events per store insert, at most.
    pub batch_max: usize,
    /// Spool bytes per store insert, at most.
    pub batch_max_bytes: u64,
    pub flush_interval: Duration,
    pub drain_timeout: Duration,
    /// Pseudonymizes `request_data.user_id` before anything is spooled.
    pub privacy: crate::privacy::Pseudonymizer,
    /// Which requests must carry a signature.
    pub signing: signing::SigningPolicy,
    /// Seals the free-form fields of sensitive interactions.
    pub sealer: Arc<crate::privacy::seal::Sealer>,
    /// MCPs whose every interaction is sensitive.
    pub sensitive_mcps: Arc<crate::privacy::SensitiveMcps>,
    /// Serve HTTPS (TLS 1.3 only) with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// Answers `GET /v1/route`; learns from every accepted report. Its table is fed from a file
    /// or the routing-table ConfigMaps (see `routes`).
    pub router: Arc<crate::routing::router::Router>,
    /// Standalone mode's registrations, served at `GET /v1/registrations`.
    pub registrations: Option<Arc<RegistrationsView>>,
    /// More series for `/metrics` (standalone mode adds the controller's).
    pub extra_metrics: Option<prometheus::Registry>,
    /// How often heartbeats are written to the store, where every replica reads them.
    pub heartbeat_save_interval: Duration,
    /// Self-registration (`register_mcp`), when registrar tokens are configured.
    pub registrar: Option<Arc<registrar::Registrar>>,
    /// Serve the MCP gateway with this configuration.
    pub gateway: Option<crate::gateway::GatewayConfig>,
    /// The MCPs the gateway may call, fed by whoever owns the registrations.
    pub directory: Arc<crate::gateway::Directory>,
    /// The fleet's protocol versions (`GET /v1/protocols`), fed like the directory.
    pub fleet: Arc<fleet::Fleet>,
    pub callers: Arc<crate::trust::callers::CallerTokens>,
}

impl IngestConfig {
    /// The documented defaults, listening on `listen` with the spool in `spool_dir`, and fresh
    /// random privacy and sealing keys (callers that must keep data readable across restarts
    /// replace them with keys from files, as `mcp-coordinator ingest` does).
    pub fn new(
        listen: SocketAddr,
        spool_dir: PathBuf,
    ) -> Result<Self, crate::privacy::PrivacyKeyError> {
        let mut privacy_key = vec![0u8; crate::privacy::MIN_KEY_BYTES];
        let mut seal_key = [0u8; 32];
        getrandom::fill(&mut privacy_key)
            .and_then(|()| getrandom::fill(&mut seal_key))
            .map_err(|e| crate::privacy::PrivacyKeyError::Randomness(e.to_string()))?;
        Ok(Self {
            listen,
            spool: SpoolConfig {
                dir: spool_dir,
                segment_bytes: 16 << 20,
                max_bytes: 1 << 30,
            },
            limits: Limits::default(),
            batch_max: DEFAULT_BATCH_MAX,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            flush_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(20),
            privacy: crate::privacy::Pseudonymizer::new(privacy_key)?,
            signing: signing::SigningPolicy::Batch,
            sealer: Arc::new(crate::privacy::seal::Sealer::from_keys(
                "k1",
                std::collections::BTreeMap::from([("k1".to_string(), seal_key)]),
            )),
            sensitive_mcps: Arc::default(),
            tls: None,
            router: Arc::default(),
            registrations: None,
            extra_metrics: None,
            heartbeat_save_interval: HEARTBEAT_SAVE_INTERVAL,
            registrar: None,
            gateway: None,
            directory: Arc::default(),
            fleet: Arc::default(),
            callers: Arc::default(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Spool(#[from] crate::pipeline::SpoolError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("could not register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Gateway(#[from] crate::gateway::GatewayError),
}

/// A started ingest server: its address, and the future that runs it to a clean stop.
pub struct RunningIngest {
    pub addr: SocketAddr,
    /// Where the MCP gateway listens, when it runs.
    pub gateway_addr: Option<SocketAddr>,
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    pub metrics: Arc<IngestMetrics>,
    pub done: tokio::task::JoinHandle<()>,
}

/// Opens the spool, starts the shipper and the HTTP server; stops when `shutdown` resolves:
/// readiness turns false, in-flight requests finish, then the shipper drains the spool into the
/// store (for at most `drain_timeout`; what remains stays spooled for the next start).
pub async fn start(
    config: IngestConfig,
    store: impl Into<Stores>,
    keys: Arc<KeyRing>,
    readers: Arc<ReaderTokens>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningIngest, IngestError> {
    let store: Stores = store.into();
    let metrics = Arc::new(IngestMetrics::new()?);
    let (spool, reader) = Spool::open(config.spool.clone())?;
    let state = Arc::new(IngestState::new(
        &config,
        spool,
        store.clone(),
        keys.clone(),
        readers,
        metrics.clone(),
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IngestError::Listen {
            addr: config.listen,
            source,
        })?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shipper = tokio::spawn(shipper::run(
        reader,
        store.events,
        metrics.pipeline.clone(),
        shipper::ShipperConfig {
            batch_max: config.batch_max,
            batch_max_bytes: config.batch_max_bytes,
            flush_interval: config.flush_interval,
            poison_file: config.spool.dir.join("poison.ndjson"),
            drain_timeout: config.drain_timeout,
        },
        stop_rx,
    ));
    let router = config.router.clone();
    let mut router_stop = stop_tx.subscribe();
    let (sweep_metrics, sweep_keys) = (metrics.clone(), keys.clone());
    tokio::spawn(async move {
        // Starts whose end was never reported must not hold capacity forever, and the series of
        // MCPs whose key is gone must not be exported forever.
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    router.expire_in_flight(router.now());
                    sweep_metrics.forget_mcps_except(|id| sweep_keys.knows(id));
                }
                _ = router_stop.changed() => return,
            }
        }
    });
    let heartbeat_saver = tokio::spawn(save_heartbeats(
        state.clone(),
        config.heartbeat_save_interval,
        stop_tx.subscribe(),
    ));
    let server_state = state.clone();
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (gateway_stop_tx, http_stop_rx_gateway) = tokio::sync::watch::channel(false);
    let http_stop = async move {
        let _ = http_stop_rx.await;
    };
    let server = tokio::spawn(serve::serve(
        listener,
        serve_config_of(&config, "api"),
        metrics.serve.clone(),
        api::routes(server_state),
        http_stop,
    ));
    let (gateway_addr, gateway_server) = match &config.gateway {
        Some(gateway_config) => {
            let started = start_gateway(
                &config,
                gateway_config,
                &state,
                &metrics,
                serve_config_of(&config, "gateway"),
                http_stop_rx_gateway,
            )
            .await;
            match started {
                Ok((addr, server)) => (Some(addr), Some(server)),
                Err(IngestError::Listen { addr, source }) if gateway_config.optional => {
                    tracing::warn!(%addr, error = %source, "the MCP gateway's default address is taken; the gateway is off (give --gateway-listen another address)");
                    (None, None)
                }
                Err(e) => return Err(e),
            }
        }
        None => (None, None),
    };
    let gateway = state.gateway.get().cloned();
    let done = tokio::spawn(async move {
        shutdown.await;
        state.ready.store(false, Ordering::Relaxed);
        tracing::info!("ingest shutting down: finishing requests, then draining the spool");
        let _ = http_stop_tx.send(());
        let _ = gateway_stop_tx.send(true);
        let _ = server.await;
        if let Some(gateway) = gateway_server {
            let _ = gateway.await;
        }
        let _ = stop_tx.send(true);
        let _ = shipper.await;
        // Its last write done, nothing touches the store after `done`.
        let _ = heartbeat_saver.await;
        let left = state.spool.stats().records;
        if left > 0 {
            tracing::warn!(
                records = left,
                "events left in the spool; they are shipped at the next start"
            );
        }
    });
    Ok(RunningIngest {
        addr,
        gateway_addr,
        gateway,
        metrics,
        done,
    })
}

/// Writes the heartbeats received since the last tick to the store, in one insert per tick (not
/// one per heartbeat: thousands of MCPs beat every few seconds); what the store refuses is kept
/// for the next tick. A last write on shutdown.
fn serve_config_of(config: &IngestConfig, listener: &'static str) -> serve::ServeConfig {
    let limits = &config.limits;
    serve::ServeConfig {
        listener,
        tls: config.tls.clone(),
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
        grace: config.drain_timeout,
        max_connections: limits.max_connections,
        max_connections_per_ip: limits.max_connections_per_ip,
    }
}

/// Binds and serves the MCP gateway beside the API, on the same spool, router and privacy key.
/// Writes the gateway's policy refusals to the audit log, beside the reads it keeps.
fn policy_audit(state: &Arc<IngestState>) -> crate::gateway::PolicyAudit {
    let audit = state.store.audit.clone();
    Arc::new(move |refusal: crate::gateway::PolicyRefusal| {
        let audit = audit.clone();
        tokio::spawn(async move {
            let entry = crate::store::AuditEntry {
                at_ms: jiff::Timestamp::now().as_millisecond(),
                who: refusal.caller,
                role: "gateway-caller".into(),
                mcp_id: refusal.registration,
                query: format!("gateway_refused {} {}", refusal.tool, refusal.what),
                since_ms: None,
                until_ms: None,
                rows: 0,
            };
            if let Err(e) = audit.record_access(&entry).await {
                tracing::warn!(error = %e, "a gateway policy refusal could not be audited");
            }
        });
    })
}

async fn start_gateway(
    config: &IngestConfig,
    gateway_config: &crate::gateway::GatewayConfig,
    state: &Arc<IngestState>,
    metrics: &Arc<IngestMetrics>,
    serve_config: serve::ServeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), IngestError> {
    use crate::gateway::{Gateway, GatewayParts};
    let listen = gateway_config.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| IngestError::Listen {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| IngestError::Listen {
            addr: listen,
            source,
        })?;
    let gateway = Arc::new(Gateway::new(
        gateway_config.clone(),
        GatewayParts {
            directory: config.directory.clone(),
            callers: config.callers.clone(),
            router: config.router.clone(),
            spool: state.spool.clone(),
            privacy: config.privacy.clone(),
            metrics: metrics.gateway.clone(),
            audit: Some(policy_audit(state)),
        },
    )?);
    crate::gateway::spawn_tidy(&gateway);
    let _ = state.gateway.set(gateway.clone());
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(serve::serve(
        listener,
        serve_config,
        metrics.serve.clone(),
        crate::gateway::routes(gateway),
        stopped,
    ));
    tracing::info!(%addr, "MCP gateway listening (/mcp/{{namespace}}[/{{capability}}])");
    Ok((addr, server))
}

async fn save_heartbeats(
    state: Arc<IngestState>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        let beats = state.take_unsaved_heartbeats();
        if !beats.is_empty() {
            if let Err(e) = state.store.heartbeats.record_heartbeats(&beats).await {
                tracing::warn!(error = %e, mcps = beats.len(), "cannot store heartbeats; retrying");
                state.keep_unsaved_heartbeats(beats);
            }
        }
        if stopping {
            return;
        }
    }
}

/// Default spool location under a data directory.
pub fn default_spool_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("spool")
}
