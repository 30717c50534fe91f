use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use mcp_coordinator::controller::{
    self, routing::RoutingSettings, status::ReportingSettings, Settings,
};
use mcp_coordinator::{crd, metrics::Metrics, server};

/// Coordinates MCP (Model Context Protocol) servers on Kubernetes.
#[derive(Parser)]
#[command(name = "mcp-coordinator", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, env = "MCP_COORDINATOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile MCPRegistrations: IDs, API keys, health, status.
    Controller(Box<ControllerArgs>),
    /// Receive interaction reports from MCPs, spool them durably, store and query them.
    Ingest(Box<IngestArgs>),
    /// Print the MCPRegistration CustomResourceDefinition as YAML.
    Crdgen,
    /// Everything without Kubernetes: registrations from a directory of manifests, health checks,
    /// IDs, keys, routing and the ingest server with the embedded store, in one process.
    Standalone(Box<StandaloneArgs>),
    /// Print the registrations as a table (standalone mode's GET /v1/registrations).
    Status(StatusArgs),
    /// Query the interaction log: `query interactions --mcp ID` or `query metrics --mcp ID`.
    Query(QueryArgs),
    /// A small example MCP that serves /health, /process and /status and reports its interactions.
    ExampleMcp(ExampleMcpArgs),
}

/// Settings the controller and standalone mode share.
#[derive(clap::Args)]
struct RegistryArgs {
    /// Heartbeat interval MCPs are told to use.
    #[arg(
        long,
        env = "MCP_COORDINATOR_HEARTBEAT_INTERVAL_SECONDS",
        default_value_t = 30
    )]
    heartbeat_interval_seconds: u32,
    /// Interaction report interval MCPs are told to use.
    #[arg(
        long,
        env = "MCP_COORDINATOR_DATA_REPORT_INTERVAL_SECONDS",
        default_value_t = 60
    )]
    data_report_interval_seconds: u32,
    /// Health probes in flight at once, across all MCPs.
    #[arg(long, env = "MCP_COORDINATOR_PROBE_CONCURRENCY", default_value_t = 64)]
    probe_concurrency: usize,
    /// How often recent performance is read and weights recomputed.
    #[arg(long, env = "MCP_COORDINATOR_ROUTING_INTERVAL_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    routing_interval_seconds: u64,
    /// The window weights are computed over (e.g. 5m, 15m, 1h).
    #[arg(long, env = "MCP_COORDINATOR_ROUTING_WINDOW", default_value = "15m")]
    routing_window: String,
}

#[derive(clap::Args)]
struct StandaloneArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Directory of MCPRegistration manifests (*.yaml, *.yml); watched for changes.
    #[arg(long, env = "MCP_COORDINATOR_REGISTRATIONS")]
    registrations: std::path::PathBuf,
    /// How often the directory is checked for added, edited and removed manifests.
    #[arg(long, env = "MCP_COORDINATOR_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// Told to MCPs in status; default: this server's own address.
    #[arg(long, env = "MCP_COORDINATOR_INTERACTION_LOG_ENDPOINT")]
    interaction_log_endpoint: Option<String>,
    #[command(flatten)]
    ingest: IngestArgs,
}

#[derive(clap::Args)]
struct ClientArgs {
    /// The coordinator's HTTP API (standalone or ingest).
    #[arg(
        long,
        env = "MCP_COORDINATOR_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    url: String,
    /// A reader or admin token (prefer --token-file or the environment variable).
    #[arg(long, env = "MCP_COORDINATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the token; standalone writes one to <data-dir>/admin.token.
    #[arg(
        long,
        env = "MCP_COORDINATOR_TOKEN_FILE",
        default_value = "mcp-coordinator-data/admin.token"
    )]
    token_file: std::path::PathBuf,
}

impl ClientArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        Ok(std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("no token: give --token, MCP_COORDINATOR_TOKEN or a readable --token-file (tried {})", self.token_file.display()))?
            .trim()
            .to_string())
    }
}

#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Refresh every this many seconds until interrupted.
    #[arg(long)]
    watch: Option<u64>,
}

#[derive(clap::Args)]
struct QueryArgs {
    #[command(subcommand)]
    what: QueryWhat,
}

#[derive(Subcommand)]
enum QueryWhat {
    /// An MCP's recent interactions, newest first.
    Interactions {
        #[arg(long)]
        mcp: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An MCP's metrics over a range.
    Metrics {
        #[arg(long)]
        mcp: String,
        /// e.g. 15m, 1h, 24h, 7d.
        #[arg(long, default_value = "1h")]
        range: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(clap::Args)]
struct ExampleMcpArgs {
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Median processing time of /process.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Share of /process requests that fail, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    /// The coordinator's URL to report interactions to.
    #[arg(long)]
    coordinator: Option<String>,
    /// File with this MCP's API key (standalone writes <data-dir>/keys/<namespace>/<name>-mcp-key).
    #[arg(long)]
    key_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 10)]
    heartbeat_seconds: u64,
}

#[derive(clap::Args)]
struct IngestArgs {
    /// Address of the API, /metrics, /healthz and /readyz [default: 0.0.0.0:8081 for ingest,
    /// 127.0.0.1:8081 for standalone].
    #[arg(long, env = "MCP_COORDINATOR_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the spool and the embedded store (interactions.db).
    #[arg(
        long,
        env = "MCP_COORDINATOR_DATA_DIR",
        default_value = "mcp-coordinator-data"
    )]
    data_dir: std::path::PathBuf,
    /// YAML map of mcp_id: API key, for running without Kubernetes.
    #[arg(long, env = "MCP_COORDINATOR_KEYS_FILE")]
    keys_file: Option<std::path::PathBuf>,
    /// Also take MCP API keys (the controller's credentials Secrets) and reader tokens (Secrets
    /// labelled mcp.coordinator.dev/reader-token=true, key `token`) from Kubernetes.
    #[arg(long, env = "MCP_COORDINATOR_KEYS_FROM_SECRETS")]
    keys_from_secrets: bool,
    /// With --keys-from-secrets or --routes-from-configmaps: watch only this namespace (default:
    /// all namespaces).
    #[arg(long, env = "MCP_COORDINATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Answer GET /v1/route from the controller's mcp-routing-table ConfigMaps.
    #[arg(long, env = "MCP_COORDINATOR_ROUTES_FROM_CONFIGMAPS")]
    routes_from_configmaps: bool,
    /// Answer GET /v1/route from this routing-table JSON file (reloaded when it changes).
    #[arg(
        long,
        env = "MCP_COORDINATOR_ROUTING_TABLE_FILE",
        conflicts_with = "routes_from_configmaps"
    )]
    routing_table_file: Option<std::path::PathBuf>,
    /// Key (≥ 32 bytes) for user pseudonyms (HMAC-SHA256 of request_data.user_id). Default:
    /// <data-dir>/privacy.key, created on first start; give every replica the same key.
    #[arg(long, env = "MCP_COORDINATOR_PRIVACY_KEY_FILE")]
    privacy_key_file: Option<std::path::PathBuf>,
    /// Keep interactions this many days, unless the MCP's privacy.retentionDays says otherwise.
    #[arg(long, env = "MCP_COORDINATOR_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    retention_days: u32,
    /// How often expired interactions are removed.
    #[arg(
        long,
        env = "MCP_COORDINATOR_RETENTION_INTERVAL_SECONDS",
        default_value_t = 3600
    )]
    retention_interval_seconds: u64,
    /// YAML `active: <id>`, `keys: {<id>: <64 hex digits>}`: AES-256-GCM keys for sensitive fields.
    /// Removing a key erases everything it sealed. Default: <data-dir>/encryption-keys.yaml, created.
    #[arg(long, env = "MCP_COORDINATOR_ENCRYPTION_KEYS_FILE")]
    encryption_keys_file: Option<std::path::PathBuf>,
    /// PEM certificate chain: serve HTTPS (TLS 1.3 only) instead of HTTP.
    #[arg(long, env = "MCP_COORDINATOR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "MCP_COORDINATOR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// After a key is rotated, the previous key keeps working this long.
    #[arg(
        long,
        env = "MCP_COORDINATOR_KEY_ROTATION_GRACE_SECONDS",
        default_value_t = 300
    )]
    key_rotation_grace_seconds: u64,
    /// Which requests must carry X-MCP-Timestamp/X-MCP-Signature (see the README).
    #[arg(
        long,
        env = "MCP_COORDINATOR_REQUIRE_SIGNATURES",
        value_enum,
        default_value = "batch"
    )]
    require_signatures: mcp_coordinator::ingest::signing::SigningPolicy,
    /// YAML map of admin name: token; admins may query everything.
    #[arg(long, env = "MCP_COORDINATOR_ADMIN_TOKENS_FILE")]
    admin_tokens_file: Option<std::path::PathBuf>,
    /// YAML map of reader name: token; these tokens may query history and metrics.
    #[arg(long, env = "MCP_COORDINATOR_READER_TOKENS_FILE")]
    reader_tokens_file: Option<std::path::PathBuf>,
    /// Largest single report body, in bytes.
    #[arg(long, env = "MCP_COORDINATOR_MAX_BODY_BYTES", default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Largest batch body, in bytes.
    #[arg(long, env = "MCP_COORDINATOR_MAX_BATCH_BYTES", default_value_t = 16 << 20)]
    max_batch_bytes: usize,
    /// Refuse reports (429) while this many spooled bytes wait for the store.
    #[arg(long, env = "MCP_COORDINATOR_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    spool_max_bytes: u64,
    /// Size at which the spool starts a new segment file.
    #[arg(long, env = "MCP_COORDINATOR_SPOOL_SEGMENT_BYTES", default_value_t = 16 << 20)]
    spool_segment_bytes: u64,
    /// Events per store insert.
    #[arg(long, env = "MCP_COORDINATOR_BATCH_MAX", default_value_t = 5000)]
    batch_max: usize,
    /// A partial batch is shipped after at most this many milliseconds.
    #[arg(
        long,
        env = "MCP_COORDINATOR_FLUSH_INTERVAL_MS",
        default_value_t = 1000
    )]
    flush_interval_ms: u64,
    /// On shutdown, keep shipping spooled events this long.
    #[arg(
        long,
        env = "MCP_COORDINATOR_DRAIN_TIMEOUT_SECONDS",
        default_value_t = 20
    )]
    drain_timeout_seconds: u64,
    /// ClickHouse HTTP URL (e.g. http://clickhouse:8123); without it the embedded SQLite store is used.
    #[arg(long, env = "MCP_COORDINATOR_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    /// ClickHouse database (created if missing).
    #[arg(
        long,
        env = "MCP_COORDINATOR_CLICKHOUSE_DATABASE",
        default_value = "mcp_coordinator"
    )]
    clickhouse_database: String,
    #[arg(long, env = "MCP_COORDINATOR_CLICKHOUSE_USER")]
    clickhouse_user: Option<String>,
    /// Prefer the environment variable to keep the password out of process listings.
    #[arg(
        long,
        env = "MCP_COORDINATOR_CLICKHOUSE_PASSWORD",
        hide_env_values = true
    )]
    clickhouse_password: Option<String>,
}

#[derive(clap::Args)]
struct ControllerArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "MCP_COORDINATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Namespace of the controller's own state (the MCP ID ledger ConfigMap).
    #[arg(
        long,
        env = "MCP_COORDINATOR_STATE_NAMESPACE",
        default_value = "mcp-coordinator"
    )]
    state_namespace: String,
    /// Name of the MCP ID ledger ConfigMap.
    #[arg(
        long,
        env = "MCP_COORDINATOR_ID_LEDGER",
        default_value = "mcp-coordinator-ids"
    )]
    id_ledger: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(
        long,
        env = "MCP_COORDINATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: SocketAddr,
    /// Where MCPs report interactions (written to each registration's status.coordinatorConfig).
    #[arg(
        long,
        env = "MCP_COORDINATOR_INTERACTION_LOG_ENDPOINT",
        default_value = "http://mcp-coordinator-ingest.mcp-coordinator.svc:8081"
    )]
    interaction_log_endpoint: String,
    /// Reconciles in flight at once (0: unbounded).
    #[arg(
        long,
        env = "MCP_COORDINATOR_RECONCILE_CONCURRENCY",
        default_value_t = 16
    )]
    reconcile_concurrency: u16,
    /// Reconcile every registration at least this often, in seconds.
    #[arg(long, env = "MCP_COORDINATOR_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Name this instance reports Events as (set to the pod name by the chart).
    #[arg(long, env = "MCP_COORDINATOR_INSTANCE")]
    instance: Option<String>,
    /// Run as one of several replicas: only the holder of the leader Lease (in --state-namespace)
    /// reconciles; the others wait and take over when it stops renewing.
    #[arg(long, env = "MCP_COORDINATOR_LEADER_ELECT")]
    leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "MCP_COORDINATOR_LEADER_LEASE_NAME",
        default_value = "mcp-coordinator-leader"
    )]
    leader_lease_name: String,
    /// A standby takes over this long after the leader last renewed.
    #[arg(long, env = "MCP_COORDINATOR_LEADER_LEASE_DURATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    leader_lease_duration_seconds: u64,
    /// Base URL the controller reads performance from (GET /v1/metrics). Default: the
    /// --interaction-log-endpoint.
    #[arg(long, env = "MCP_COORDINATOR_INGEST_URL")]
    ingest_url: Option<String>,
    /// File holding a reader token of the ingest server; without it weights follow health only.
    #[arg(long, env = "MCP_COORDINATOR_INGEST_TOKEN_FILE")]
    ingest_token_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    match cli.command {
        Command::Crdgen => {
            print!(
                "{}",
                crd::crd_yaml().context("could not render the CRD as YAML")?
            );
            Ok(())
        }
        Command::Controller(args) => run_controller(*args).await,
        Command::Ingest(args) => run_ingest(*args).await,
        Command::Standalone(args) => run_standalone(*args).await,
        Command::Status(args) => run_status(args).await,
        Command::Query(args) => run_query(args).await,
        Command::ExampleMcp(args) => run_example_mcp(args).await,
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,rmcp=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration found: set KUBECONFIG or run inside a cluster")?;
    let metrics = Arc::new(Metrics::new().context("could not register metrics")?);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let ops = tokio::spawn(server::serve_ops(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        shutdown(stop_rx.clone()),
    ));
    mcp_coordinator::store::TimeRange::parse(&args.registry.routing_window, 0)
        .map_err(|problem| anyhow::anyhow!("--routing-window: {problem}"))?;
    let ingest_token = match &args.ingest_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read --ingest-token-file {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let settings = Settings {
        namespace: args.namespace,
        state_namespace: args.state_namespace,
        id_ledger_name: args.id_ledger,
        reporting: ReportingSettings {
            interaction_log_endpoint: args.interaction_log_endpoint,
            heartbeat_interval_seconds: args.registry.heartbeat_interval_seconds,
            data_report_interval_seconds: args.registry.data_report_interval_seconds,
        },
        probe_concurrency: args.registry.probe_concurrency,
        reconcile_concurrency: args.reconcile_concurrency,
        resync: Duration::from_secs(args.resync_seconds.max(1)),
        leader_election: args
            .leader_elect
            .then(|| controller::leader::LeaderElection {
                lease_name: args.leader_lease_name.clone(),
                identity: args
                    .instance
                    .clone()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| format!("mcp-coordinator-{}", std::process::id())),
                lease_duration: Duration::from_secs(args.leader_lease_duration_seconds),
            }),
        instance: args.instance,
        routing: RoutingSettings {
            interval: Duration::from_secs(args.registry.routing_interval_seconds),
            window: args.registry.routing_window,
            ingest_url: args.ingest_url,
            ingest_token,
        },
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
    });
    tracing::info!(
        version = mcp_coordinator::COORDINATOR_VERSION,
        "starting controller"
    );
    let controller = controller::run(client, settings, metrics, ready, shutdown(stop_rx));
    let (ops_result, controller_result) = tokio::join!(ops, controller);
    controller_result.context("controller failed to start")?;
    ops_result
        .context("ops server task failed")?
        .with_context(|| format!("could not serve metrics on {}", args.metrics_addr))?;
    Ok(())
}

/// Everything an ingest server needs, built from its flags (shared by `ingest` and `standalone`).
struct IngestParts {
    config: mcp_coordinator::ingest::IngestConfig,
    store: Arc<dyn mcp_coordinator::store::InteractionStore>,
    store_name: String,
    keys: Arc<mcp_coordinator::ingest::auth::KeyRing>,
    readers: Arc<mcp_coordinator::ingest::auth::ReaderTokens>,
    retention_days: Arc<mcp_coordinator::store::retention::RetentionDays>,
}

async fn run_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let parts = ingest_parts(&args, false).await?;
    start_retention(&args, &parts);
    let running = mcp_coordinator::ingest::start(
        parts.config,
        parts.store,
        parts.keys,
        parts.readers,
        wait_for_signal(),
    )
    .await?;
    tracing::info!(addr = %running.addr, store = %parts.store_name, "ingest server listening");
    running.done.await.context("ingest server task failed")?;
    Ok(())
}

fn start_retention(args: &IngestArgs, parts: &IngestParts) {
    tokio::spawn(mcp_coordinator::store::retention::run(
        parts.store.clone(),
        parts.retention_days.clone(),
        args.retention_days,
        Duration::from_secs(args.retention_interval_seconds.max(60)),
    ));
}

async fn ingest_parts(args: &IngestArgs, standalone: bool) -> anyhow::Result<IngestParts> {
    use mcp_coordinator::ingest::{self, auth, spool::SpoolConfig, IngestConfig};
    use mcp_coordinator::store::sqlite::SqliteStore;

    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let grace = Duration::from_secs(args.key_rotation_grace_seconds);
    let keys = match &args.keys_file {
        Some(path) => auth::KeyRing::from_file(path, grace)?,
        None => auth::KeyRing::with_grace(grace),
    };
    let keys = Arc::new(keys);
    let retention_days = Arc::new(mcp_coordinator::store::retention::RetentionDays::default());
    let sensitive_mcps = Arc::new(mcp_coordinator::privacy::SensitiveMcps::default());
    let encryption_keys = args
        .encryption_keys_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("encryption-keys.yaml"));
    let sealer = Arc::new(mcp_coordinator::privacy::seal::Sealer::from_file(
        &encryption_keys,
        args.encryption_keys_file.is_none(),
    )?);
    let privacy_key = args
        .privacy_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("privacy.key"));
    let privacy = mcp_coordinator::privacy::Pseudonymizer::from_file(
        &privacy_key,
        args.privacy_key_file.is_none(),
    )?;
    let readers = match &args.reader_tokens_file {
        Some(path) => auth::ReaderTokens::from_file(path)?,
        None => auth::ReaderTokens::default(),
    };
    if let Some(path) = &args.admin_tokens_file {
        readers.add_admins_from_file(path)?;
    }
    let readers = Arc::new(readers);
    if args.keys_from_secrets {
        let client = kube::Client::try_default().await.context(
            "--keys-from-secrets needs Kubernetes access: set KUBECONFIG or run inside a cluster",
        )?;
        let ns = args.namespace.clone();
        tokio::spawn(ingest::secrets::watch(
            client.clone(),
            ns.clone(),
            keys.clone(),
            retention_days.clone(),
            sensitive_mcps.clone(),
        ));
        tokio::spawn(ingest::secrets::watch_reader_tokens(
            client,
            ns,
            readers.clone(),
        ));
    } else if !standalone {
        if keys.is_empty() {
            tracing::warn!("no API keys configured (--keys-file, --keys-from-secrets): every report will be refused with 401");
        }
        if args.reader_tokens_file.is_none() {
            tracing::warn!("no reader tokens configured (--reader-tokens-file, --keys-from-secrets): queries will be refused");
        }
    }
    let router = Arc::new(mcp_coordinator::routing::router::Router::default());
    if args.routes_from_configmaps {
        let client = kube::Client::try_default().await.context(
            "--routes-from-configmaps needs Kubernetes access: set KUBECONFIG or run inside a cluster",
        )?;
        tokio::spawn(ingest::routes::watch_configmaps(
            client,
            args.namespace.clone(),
            router.clone(),
        ));
    }
    if let Some(path) = &args.routing_table_file {
        ingest::routes::follow_file(path.clone(), router.clone()).await?;
    }
    let (store, store_name): (Arc<dyn mcp_coordinator::store::InteractionStore>, String) =
        match &args.clickhouse_url {
            Some(url) => {
                let config = mcp_coordinator::store::clickhouse::ClickHouseConfig {
                    url: url.clone(),
                    database: args.clickhouse_database.clone(),
                    user: args.clickhouse_user.clone(),
                    password: args.clickhouse_password.clone(),
                };
                let name = format!("ClickHouse {url} database {}", config.database);
                let store = mcp_coordinator::store::clickhouse::LazyClickHouseStore::new(config);
                (Arc::new(store), name)
            }
            None => {
                let db = args.data_dir.join("interactions.db");
                let store = SqliteStore::open(&db)
                    .with_context(|| format!("cannot open the embedded store {}", db.display()))?;
                (Arc::new(store), format!("SQLite {}", db.display()))
            }
        };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(ingest::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "--tls-cert and --tls-key go together: give both to serve HTTPS, or neither"
        ),
    };
    let config = IngestConfig {
        listen: args.listen.unwrap_or_else(|| {
            let host = if standalone {
                [127, 0, 0, 1]
            } else {
                [0, 0, 0, 0]
            };
            SocketAddr::from((host, 8081))
        }),
        spool: SpoolConfig {
            dir: ingest::default_spool_dir(&args.data_dir),
            segment_bytes: args.spool_segment_bytes.max(4096),
            max_bytes: args.spool_max_bytes,
        },
        limits: ingest::server::Limits {
            single_bytes: args.max_body_bytes,
            batch_bytes: args.max_batch_bytes,
        },
        batch_max: args.batch_max.max(1),
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
    };
    Ok(IngestParts {
        config,
        store,
        store_name,
        keys,
        readers,
        retention_days,
    })
}

async fn run_standalone(args: StandaloneArgs) -> anyhow::Result<()> {
    use mcp_coordinator::standalone::{self, StandaloneConfig};
    mcp_coordinator::store::TimeRange::parse(&args.registry.routing_window, 0)
        .map_err(|problem| anyhow::anyhow!("--routing-window: {problem}"))?;
    anyhow::ensure!(
        args.registrations.is_dir(),
        "--registrations {} is not a directory of MCPRegistration manifests",
        args.registrations.display()
    );
    let parts = ingest_parts(&args.ingest, true).await?;
    if args.ingest.admin_tokens_file.is_none() && args.ingest.reader_tokens_file.is_none() {
        let path = args.ingest.data_dir.join("admin.token");
        let token = match std::fs::read_to_string(&path) {
            Ok(t) => t.trim().to_string(),
            Err(_) => {
                let token = mcp_coordinator::controller::keys::generate_key()?
                    .replacen("mcpk_", "admin_", 1);
                standalone::registry::write_private(&path, token.as_bytes())?;
                token
            }
        };
        parts.readers.add_admin("local", &token);
        tracing::info!(path = %path.display(), "admin token for `mcp-coordinator status` and queries");
    }
    start_retention(&args.ingest, &parts);
    let config = StandaloneConfig {
        registrations: args.registrations.clone(),
        data_dir: args.ingest.data_dir.clone(),
        ingest: parts.config,
        store: parts.store,
        keys: parts.keys,
        readers: parts.readers,
        reporting: ReportingSettings {
            interaction_log_endpoint: args.interaction_log_endpoint.clone().unwrap_or_default(),
            heartbeat_interval_seconds: args.registry.heartbeat_interval_seconds,
            data_report_interval_seconds: args.registry.data_report_interval_seconds,
        },
        routing_interval: Duration::from_secs(args.registry.routing_interval_seconds),
        routing_window: args.registry.routing_window.clone(),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(100)),
        probe_concurrency: args.registry.probe_concurrency,
        retention: parts.retention_days,
    };
    let running = standalone::start(config, wait_for_signal()).await?;
    tracing::info!(
        addr = %running.addr,
        store = %parts.store_name,
        registrations = %args.registrations.display(),
        "standalone coordinator running"
    );
    running.done.await.context("standalone task failed")?;
    Ok(())
}

async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let token = args.client.token()?;
    loop {
        let view =
            mcp_coordinator::cli::get_json(&args.client.url, "/v1/registrations", &token).await?;
        let table =
            mcp_coordinator::cli::status_table(&view, jiff::Timestamp::now().as_millisecond());
        match args.watch {
            None => {
                print!("{table}");
                return Ok(());
            }
            Some(secs) => {
                print!("\x1b[2J\x1b[H{table}");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs.max(1))) => {}
                    _ = wait_for_signal() => return Ok(()),
                }
            }
        }
    }
}

async fn run_query(args: QueryArgs) -> anyhow::Result<()> {
    use mcp_coordinator::cli;
    let out = match args.what {
        QueryWhat::Interactions { mcp, limit, client } => {
            let path = format!("/v1/mcps/{mcp}/interactions?limit={limit}");
            cli::interactions_table(&cli::get_json(&client.url, &path, &client.token()?).await?)
        }
        QueryWhat::Metrics { mcp, range, client } => {
            let path = format!("/v1/mcps/{mcp}/metrics?range={range}");
            cli::metrics_table(&cli::get_json(&client.url, &path, &client.token()?).await?)
        }
    };
    print!("{out}");
    Ok(())
}

async fn run_example_mcp(args: ExampleMcpArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.failure_rate),
        "--failure-rate must be between 0 and 1"
    );
    let mcp = mcp_coordinator::example_mcp::ExampleMcp {
        name: args.name,
        listen: args.listen,
        latency: Duration::from_millis(args.latency_ms),
        failure_rate: args.failure_rate,
        coordinator: args.coordinator,
        key_file: args.key_file,
        heartbeat: Duration::from_secs(args.heartbeat_seconds.max(1)),
    };
    let (addr, task) = mcp_coordinator::example_mcp::serve(mcp, wait_for_signal())
        .await
        .context("cannot start the example MCP")?;
    tracing::info!(%addr, "example MCP listening");
    task.await.context("example MCP task failed")?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
