//! The ingest server's flags (`mcp-coordinator ingest`, and standalone mode, which takes them all).
//! Every flag also reads `MCP_COORDINATOR_<FLAG>`.

use std::net::SocketAddr;

#[derive(clap::Args)]
pub struct IngestArgs {
    /// Address of the API, /metrics, /healthz and /readyz [default: 0.0.0.0:8081 for ingest,
    /// 127.0.0.1:8081 for standalone].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the spool and the embedded store (interactions.db).
    #[arg(long, default_value = "mcp-coordinator-data")]
    pub data_dir: std::path::PathBuf,
    /// YAML map of mcp_id: API key, for running without Kubernetes.
    #[arg(long)]
    pub keys_file: Option<std::path::PathBuf>,
    /// Also take MCP API keys (the controller's credentials Secrets) and reader tokens (Secrets
    /// labelled mcp.coordinator.dev/reader-token=true, key `token`) from Kubernetes.
    #[arg(long)]
    pub keys_from_secrets: bool,
    /// With --keys-from-secrets or --routes-from-registrations: watch only this namespace (default:
    /// all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// With --keys-from-secrets: take reader tokens only from Secrets of this namespace (default:
    /// the namespace the ingest server runs in).
    #[arg(long)]
    pub reader_tokens_namespace: Option<String>,
    /// Answer GET /v1/route from the registrations and the routing status the controller writes
    /// (what it also publishes as mcp-routing-table ConfigMaps, which are not trusted).
    #[arg(long, alias = "routes-from-configmaps")]
    pub routes_from_registrations: bool,
    /// Answer GET /v1/route from this routing-table JSON file (reloaded when it changes).
    #[arg(long, conflicts_with = "routes_from_registrations")]
    pub routing_table_file: Option<std::path::PathBuf>,
    /// Key (≥ 32 bytes) for user pseudonyms (HMAC-SHA256 of request_data.user_id). Default:
    /// <data-dir>/privacy.key, created on first start; give every replica the same key.
    #[arg(long)]
    pub privacy_key_file: Option<std::path::PathBuf>,
    /// Keep interactions this many days, unless the MCP's privacy.retentionDays says otherwise.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
    /// How often expired interactions are removed.
    #[arg(long, default_value_t = 3600)]
    pub retention_interval_seconds: u64,
    /// YAML `active: <id>`, `keys: {<id>: <64 hex digits>}`: AES-256-GCM keys for sensitive fields.
    /// Removing a key erases everything it sealed. Default: <data-dir>/encryption-keys.yaml, created.
    #[arg(long)]
    pub encryption_keys_file: Option<std::path::PathBuf>,
    /// PEM certificate chain: serve HTTPS (TLS 1.3 only) instead of HTTP.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// After a key is rotated, the previous key keeps working this long.
    #[arg(long, default_value_t = 300)]
    pub key_rotation_grace_seconds: u64,
    /// Which requests must carry X-MCP-Timestamp/X-MCP-Signature (see docs/http-api.md).
    #[arg(long, value_enum, default_value = "batch")]
    pub require_signatures: crate::trust::signing::SigningPolicy,
    /// YAML map of admin name: token; admins may query everything.
    #[arg(long)]
    pub admin_tokens_file: Option<std::path::PathBuf>,
    /// YAML map of reader name: token; these tokens may query history and metrics.
    #[arg(long)]
    pub reader_tokens_file: Option<std::path::PathBuf>,
    /// YAML map of registrar name: {token, namespaces}; these tokens may self-register MCPs
    /// (`register_mcp`) in their namespaces. Self-registration is off without it (in standalone
    /// mode a token for namespace `default` is kept in `<data-dir>/registrar.token` instead).
    #[arg(long)]
    pub registrar_tokens_file: Option<std::path::PathBuf>,
    /// The Kubernetes API token self-registration uses (the registrar ServiceAccount's, which may
    /// create MCPRegistrations in the allowed namespaces); the ingest server's own identity when
    /// absent. Read again on every request, so a rotated token is picked up.
    #[arg(long)]
    pub registrar_kube_token_file: Option<std::path::PathBuf>,
    /// Registrations one registrar token may hold in one namespace; a new one past it is
    /// refused (403) until one is unregistered.
    #[arg(long, default_value_t = crate::ingest::registrar::DEFAULT_MAX_PER_TOKEN as u64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub registrar_max_registrations: u64,
    /// How long `register_mcp` waits for the registration's ID and key before answering 503
    /// (send the same message again: registering is idempotent).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub registration_wait_seconds: u64,
    /// Largest single report body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Largest batch body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub max_batch_bytes: usize,
    /// Records in one batch upload (413 beyond).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch_records: u64,
    /// A TLS handshake, a connection's first bytes, a request's headers and an HTTP/2
    /// connection's first request must each arrive within this many seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub header_timeout_seconds: u64,
    /// A connection with no request in flight is closed after this many seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout_seconds: u64,
    /// Connections open at once, per listener (API, gateway); more are answered 503 and closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Connections open at once from one IP address, per listener; more are answered 429 and
    /// closed. Behind a proxy every client has the proxy's address: raise it there.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_ip: u64,
    /// A request's body must arrive within this many seconds (408 otherwise).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout_seconds: u64,
    /// Bytes of interactions (as JSON) in one history page; a page that reaches them ends early
    /// and its `next_cursor` reads on. A page holds one interaction at least.
    #[arg(long, default_value_t = crate::store::page::DEFAULT_PAGE_BYTES as u64, value_parser = clap::value_parser!(u64).range(4096..=(1 << 30)))]
    pub max_page_bytes: u64,
    /// Requests served at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent_requests: u64,
    /// Refuse reports (429) while this many spooled bytes wait for the store.
    #[arg(long, default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,
    /// Size at which the spool starts a new segment file.
    #[arg(long, default_value_t = 16 << 20)]
    pub spool_segment_bytes: u64,
    /// Events per store insert, at most.
    #[arg(long, default_value_t = crate::pipeline::shipper::DEFAULT_BATCH_MAX)]
    pub batch_max: usize,
    /// Spool bytes per store insert, at most.
    #[arg(long, default_value_t = crate::pipeline::shipper::DEFAULT_BATCH_MAX_BYTES)]
    pub batch_max_bytes: u64,
    /// A partial batch is shipped after at most this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub flush_interval_ms: u64,
    /// On shutdown, keep shipping spooled events this long.
    #[arg(long, default_value_t = 20)]
    pub drain_timeout_seconds: u64,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    /// How long after it started an interaction's last report may arrive (and how far a client's
    /// clock may be off) and still count in time windows: a window's reads cover the events
    /// received this long before and after it, never all history.
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub max_interaction_seconds: u64,
    /// Serve the MCP gateway (MCP over streamable HTTP at /mcp/{namespace}[/{capability}]) on
    /// this address [default: off for ingest, 127.0.0.1:8082 for standalone].
    #[arg(long)]
    pub gateway_listen: Option<SocketAddr>,
    /// YAML map of caller name: {token, namespaces: [...], capabilities: [...]}: who may call
    /// tools through the gateway (with --keys-from-secrets, also Secrets labelled
    /// mcp.coordinator.dev/caller-token=true). Standalone mode keeps one in <data-dir>/caller.token.
    #[arg(long)]
    pub caller_tokens_file: Option<std::path::PathBuf>,
    /// The gateway as an OAuth 2.1 resource server: a YAML file naming its public URL and the
    /// authorization servers whose bearer JWTs it takes (docs/gateway.md). Caller tokens keep
    /// working beside them.
    #[arg(long)]
    pub gateway_oauth_file: Option<std::path::PathBuf>,
    /// How long an MCP may take to begin answering a call through the gateway, unless its
    /// spec.routing.callTimeoutSeconds says otherwise.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub gateway_call_timeout_seconds: u64,
    /// How long one call through the gateway may take in all, failovers included.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub gateway_total_timeout_seconds: u64,
    /// MCPs tried for one call before the gateway gives up.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
    pub gateway_max_attempts: u64,
    /// Largest request body a gateway client may send, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub gateway_max_body_bytes: usize,
    /// Calls one caller may have in flight through the gateway at once (429 beyond).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub gateway_caller_concurrency: u64,
}

/// Where the interaction log's ClickHouse is: the ingest server's flags, and `copy-store`'s.
#[derive(clap::Args, Debug, Clone)]
pub struct ClickHouseArgs {
    /// ClickHouse HTTP URL (e.g. http://clickhouse:8123); without it the embedded SQLite store is used.
    #[arg(long = "clickhouse-url", id = "clickhouse_url")]
    pub url: Option<String>,
    /// ClickHouse database (created if missing).
    #[arg(long = "clickhouse-database", default_value = "mcp_coordinator")]
    pub database: String,
    /// ClickHouse user (the server's `default` user when unset).
    #[arg(long = "clickhouse-user")]
    pub user: Option<String>,
    /// Prefer the environment variable to keep the password out of process listings.
    #[arg(long = "clickhouse-password", hide_env_values = true)]
    pub password: Option<String>,
    /// A ClickHouse setting for every query, `NAME=VALUE` (e.g. `max_memory_usage=4000000000`,
    /// `log_queries=1`); repeatable.
    #[arg(long = "clickhouse-setting", value_name = "NAME=VALUE", value_parser = parse_setting)]
    pub settings: Vec<(String, String)>,
    /// A ClickHouse cluster (a `remote_servers` entry of the server, with ZooKeeper and the
    /// `{shard}`/`{replica}` macros): tables are created ON CLUSTER as replicated tables on every
    /// shard, behind Distributed tables sharded by MCP.
    #[arg(long = "clickhouse-cluster", requires = "clickhouse_url")]
    pub cluster: Option<String>,
}

impl ClickHouseArgs {
    /// The store's settings, when `--clickhouse-url` is given.
    pub fn config(
        &self,
        max_interaction_ms: i64,
    ) -> Option<crate::store::clickhouse::ClickHouseConfig> {
        Some(crate::store::clickhouse::ClickHouseConfig {
            url: self.url.clone()?,
            database: self.database.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            max_interaction_ms,
            read_rollups: true,
            cluster: self.cluster.clone(),
            settings: self.settings.clone(),
        })
    }
}

impl IngestArgs {
    /// The gateway's configuration, when it is to be served on `listen`.
    pub fn gateway(&self, listen: SocketAddr) -> crate::gateway::GatewayConfig {
        let mut config = crate::gateway::GatewayConfig::new(listen);
        config.call_timeout = std::time::Duration::from_secs(self.gateway_call_timeout_seconds);
        config.total_timeout = std::time::Duration::from_secs(self.gateway_total_timeout_seconds);
        config.max_attempts = self.gateway_max_attempts as usize;
        config.max_body_bytes = self.gateway_max_body_bytes;
        config.caller_concurrency = self.gateway_caller_concurrency as usize;
        config
    }
}

/// `NAME=VALUE`, the name a ClickHouse setting name.
fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{name:?} is not a setting name (letters, digits and '_')"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clickhouse_settings_are_name_equals_value_with_a_plain_name() {
        assert_eq!(
            parse_setting("max_memory_usage=4000000000"),
            Ok(("max_memory_usage".into(), "4000000000".into()))
        );
        assert_eq!(
            parse_setting("log_comment=a=b"),
            Ok(("log_comment".into(), "a=b".into()))
        );
        for bad in ["novalue", "=1", "a b=1", "x&y=1"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }
}
