//! An ingest server assembled from its flags: keys and tokens, privacy and sealing keys, the
//! router's table source, the store, TLS. `mcp-coordinator ingest` and standalone mode both start
//! from here, and so can tests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::args::IngestArgs;
use super::registrar::kubernetes::KubernetesRegistrations;
use super::registrar::{Registrar, RegistrarTokens};
use super::routes::RoutesError;
use super::state::Limits;
use super::tls::TlsError;
use super::IngestConfig;
use crate::pipeline::SpoolConfig;
use crate::privacy::seal::{SealError, Sealer};
use crate::privacy::{PrivacyKeyError, Pseudonymizer, SensitiveMcps};
use crate::routing::router::Router;
use crate::store::clickhouse::LazyClickHouseStore;
use crate::store::retention::RetentionDays;
use crate::store::sqlite::SqliteStore;
use crate::store::{InteractionStore, StoreError};
use crate::trust::callers::CallerTokens;
use crate::trust::keys::{AuthFileError, KeyRing, ReaderTokens};

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tokens(#[from] AuthFileError),
    #[error("--gateway-oauth-file: {0}")]
    OAuth(#[from] crate::trust::oauth::OAuthConfigError),
    #[error(transparent)]
    Sealing(#[from] SealError),
    #[error(transparent)]
    Privacy(#[from] PrivacyKeyError),
    #[error("{flag} needs Kubernetes access: set KUBECONFIG or run inside a cluster ({source})")]
    Kubernetes {
        flag: &'static str,
        source: kube::Error,
    },
    #[error(transparent)]
    Routes(#[from] RoutesError),
    #[error("cannot open the embedded store {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither")]
    TlsPair,
}

/// Which command the server runs in: the defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `mcp-coordinator ingest`: listens on every interface; warns when nobody can report or read.
    Ingest,
    /// Standalone mode: listens on loopback; its registry supplies keys and tokens.
    Standalone,
}

/// Everything an ingest server needs, built from its flags.
pub struct IngestParts {
    pub config: IngestConfig,
    pub store: Arc<dyn InteractionStore>,
    /// Which store, for the log.
    pub store_name: String,
    pub keys: Arc<KeyRing>,
    pub readers: Arc<ReaderTokens>,
    pub retention_days: Arc<RetentionDays>,
    /// Registrar tokens from `--registrar-tokens-file`, if given.
    pub registrar_tokens: Option<Arc<RegistrarTokens>>,
}

impl IngestParts {
    /// Starts the store's background jobs: retention (every `--retention-interval-seconds`, at
    /// least a minute) and upkeep such as ClickHouse rollups (every minute).
    pub fn start_store_jobs(&self, args: &IngestArgs) {
        tokio::spawn(crate::store::retention::run(
            self.store.clone(),
            self.retention_days.clone(),
            args.retention_days,
            Duration::from_secs(args.retention_interval_seconds.max(60)),
        ));
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = store.maintain().await {
                    tracing::warn!(error = %e, "store upkeep (rollups) failed; retrying in a minute");
                }
            }
        });
    }
}

/// Builds the parts from the flags; watches of Secrets and ConfigMaps start here.
pub async fn assemble(args: &IngestArgs, mode: Mode) -> Result<IngestParts, AssembleError> {
    std::fs::create_dir_all(&args.data_dir).map_err(|source| AssembleError::DataDir {
        path: args.data_dir.clone(),
        source,
    })?;
    let grace = Duration::from_secs(args.key_rotation_grace_seconds);
    let keys = Arc::new(match &args.keys_file {
        Some(path) => KeyRing::from_file(path, grace)?,
        None => KeyRing::with_grace(grace),
    });
    let retention_days = Arc::new(RetentionDays::default());
    let sensitive_mcps = Arc::new(SensitiveMcps::default());
    let in_data_dir = |flag: &Option<PathBuf>, name: &str| {
        flag.clone().unwrap_or_else(|| args.data_dir.join(name))
    };
    let sealer = Arc::new(Sealer::from_file(
        &in_data_dir(&args.encryption_keys_file, "encryption-keys.yaml"),
        args.encryption_keys_file.is_none(),
    )?);
    let privacy = Pseudonymizer::from_file(
        &in_data_dir(&args.privacy_key_file, "privacy.key"),
        args.privacy_key_file.is_none(),
    )?;
    let readers = match &args.reader_tokens_file {
        Some(path) => ReaderTokens::from_file(path)?,
        None => ReaderTokens::default(),
    };
    if let Some(path) = &args.admin_tokens_file {
        readers.add_admins_from_file(path)?;
    }
    let readers = Arc::new(readers);
    if args.keys_from_secrets {
        let client = kube_client("--keys-from-secrets").await?;
        let ns = args.namespace.clone();
        tokio::spawn(crate::trust::watch::watch(
            client.clone(),
            ns.clone(),
            keys.clone(),
            retention_days.clone(),
            sensitive_mcps.clone(),
        ));
        // Reader tokens grant reads of every MCP: only from the coordinator's own namespace.
        let token_namespace = args
            .reader_tokens_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        tracing::info!(namespace = %token_namespace, "reader tokens from labelled Secrets of this namespace");
        tokio::spawn(crate::trust::watch::watch_reader_tokens(
            client,
            token_namespace,
            readers.clone(),
        ));
    } else if mode == Mode::Ingest {
        if keys.is_empty() {
            tracing::warn!("no API keys configured (--keys-file, --keys-from-secrets): every report will be refused with 401");
        }
        if args.reader_tokens_file.is_none() {
            tracing::warn!("no reader tokens configured (--reader-tokens-file, --keys-from-secrets): queries will be refused");
        }
    }
    let registrar_tokens = match &args.registrar_tokens_file {
        Some(path) => Some(Arc::new(RegistrarTokens::from_file(path)?)),
        None => None,
    };
    let registrar = match (&registrar_tokens, mode) {
        (Some(tokens), Mode::Ingest) => {
            let client = registrar_client(args).await?;
            Some(Arc::new(
                Registrar::new(
                    tokens.clone(),
                    Arc::new(KubernetesRegistrations::new(client)),
                    Duration::from_secs(args.registration_wait_seconds),
                )
                .with_max_per_token(args.registrar_max_registrations as usize),
            ))
        }
        _ => None,
    };
    let router = Arc::new(Router::default());
    let directory = Arc::new(crate::gateway::Directory::default());
    let fleet = Arc::new(super::fleet::Fleet::default());
    if args.routes_from_registrations {
        let client = kube_client("--routes-from-registrations").await?;
        tokio::spawn(super::routes::watch_registrations(
            client,
            args.namespace.clone(),
            router.clone(),
            directory.clone(),
            fleet.clone(),
        ));
    }
    let callers = Arc::new(match &args.caller_tokens_file {
        Some(path) => CallerTokens::from_file(path)?,
        None => CallerTokens::default(),
    });
    if args.keys_from_secrets {
        let client = kube_client("--keys-from-secrets").await?;
        let token_namespace = args
            .reader_tokens_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        tokio::spawn(crate::trust::callers::watch_caller_tokens(
            client,
            token_namespace,
            callers.clone(),
        ));
    }
    let mut gateway = match (args.gateway_listen, mode) {
        (Some(listen), _) => Some(args.gateway(listen)),
        (None, Mode::Standalone) => {
            let mut config = args.gateway(SocketAddr::from(([127, 0, 0, 1], 8082)));
            config.optional = true;
            Some(config)
        }
        (None, Mode::Ingest) => None,
    };
    if let (Some(config), Some(path)) = (gateway.as_mut(), &args.gateway_oauth_file) {
        let settings = crate::trust::oauth::ResourceServer::load(path)?;
        config.oauth = Some(Arc::new(crate::trust::oauth::OAuth::new(settings)?));
    }
    if gateway.as_ref().is_some_and(|g| g.oauth.is_none())
        && mode == Mode::Ingest
        && callers.is_empty()
        && !args.keys_from_secrets
    {
        tracing::warn!("the gateway has no caller tokens (--caller-tokens-file, --keys-from-secrets): every call will be refused with 401");
    }
    if let Some(path) = &args.routing_table_file {
        super::routes::follow_file(path.clone(), router.clone()).await?;
    }
    let (store, store_name) = store(args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(super::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => return Err(AssembleError::TlsPair),
    };
    let host = match mode {
        Mode::Standalone => [127, 0, 0, 1],
        Mode::Ingest => [0, 0, 0, 0],
    };
    let config = IngestConfig {
        listen: args.listen.unwrap_or(SocketAddr::from((host, 8081))),
        spool: SpoolConfig {
            dir: super::default_spool_dir(&args.data_dir),
            segment_bytes: args.spool_segment_bytes.max(4096),
            max_bytes: args.spool_max_bytes,
        },
        limits: Limits {
            single_bytes: args.max_body_bytes,
            batch_bytes: args.max_batch_bytes,
            batch_records: args.max_batch_records as usize,
            header_timeout: Duration::from_secs(args.header_timeout_seconds),
            idle_timeout: Duration::from_secs(args.idle_timeout_seconds),
            max_connections: args.max_connections as usize,
            max_connections_per_ip: args.max_connections_per_ip as usize,
            body_timeout: Duration::from_secs(args.body_timeout_seconds),
            page_bytes: args.max_page_bytes as usize,
            max_concurrent_requests: args.max_concurrent_requests as usize,
        },
        batch_max: args.batch_max.max(1),
        batch_max_bytes: args.batch_max_bytes.max(1),
        flush_interval: Duration::from_millis(args.flush_interval_ms),
        drain_timeout: Duration::from_secs(args.drain_timeout_seconds),
        privacy,
        signing: args.require_signatures,
        tls,
        sealer,
        sensitive_mcps,
        router,
        registrations: None,
        extra_metrics: None,
        heartbeat_save_interval: super::HEARTBEAT_SAVE_INTERVAL,
        registrar,
        gateway,
        directory,
        fleet,
        callers,
    };
    Ok(IngestParts {
        config,
        store,
        store_name,
        keys,
        readers,
        retention_days,
        registrar_tokens,
    })
}

/// The client self-registration uses: the cluster of the ingest server's own configuration, with
/// the registrar's token when `--registrar-kube-token-file` is given.
async fn registrar_client(args: &IngestArgs) -> Result<kube::Client, AssembleError> {
    const FLAG: &str = "--registrar-tokens-file";
    let Some(token_file) = &args.registrar_kube_token_file else {
        return kube_client(FLAG).await;
    };
    let fail = |source: kube::Error| AssembleError::Kubernetes { flag: FLAG, source };
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| fail(kube::Error::InferConfig(e)))?;
    config.auth_info = kube::config::AuthInfo {
        token_file: Some(token_file.display().to_string()),
        ..kube::config::AuthInfo::default()
    };
    kube::Client::try_from(config).map_err(fail)
}

async fn kube_client(flag: &'static str) -> Result<kube::Client, AssembleError> {
    kube::Client::try_default()
        .await
        .map_err(|source| AssembleError::Kubernetes { flag, source })
}

/// ClickHouse with `--clickhouse-url` (connected on first use), else the embedded SQLite store.
fn store(args: &IngestArgs) -> Result<(Arc<dyn InteractionStore>, String), AssembleError> {
    let max_interaction_ms = i64::try_from(args.max_interaction_seconds)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000);
    match args.clickhouse.config(max_interaction_ms) {
        Some(config) => {
            let name = format!(
                "ClickHouse {} database {}",
                config.shown_url(),
                config.database
            );
            Ok((Arc::new(LazyClickHouseStore::new(config)), name))
        }
        None => {
            let path = args.data_dir.join("interactions.db");
            let store = SqliteStore::open(&path).map_err(|source| AssembleError::Store {
                path: path.clone(),
                source,
            })?;
            Ok((Arc::new(store), format!("SQLite {}", path.display())))
        }
    }
}
