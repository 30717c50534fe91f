//! The controller's flags, and those it shares with standalone mode. Every flag also reads
//! `MCP_COORDINATOR_<FLAG>`.

use std::net::SocketAddr;
use std::time::Duration;

use super::routing::RoutingSettings;
use super::status::ReportingSettings;
use super::{leader, Settings};

/// Settings the controller and standalone mode share.
#[derive(clap::Args)]
pub struct RegistryArgs {
    /// Heartbeat interval MCPs are told to use.
    #[arg(long, default_value_t = 30)]
    pub heartbeat_interval_seconds: u32,
    /// How often MCPs are told to send what their client libraries queued (the seed's
    /// `data_report_interval`).
    #[arg(long, default_value_t = 10)]
    pub data_report_interval_seconds: u32,
    /// Health probes in flight at once, across all MCPs.
    #[arg(long, default_value_t = 64)]
    pub probe_concurrency: usize,
    /// Let health probes reach link-local addresses (169.254.0.0/16, fe80::/10), where cloud
    /// metadata services answer; refused by default.
    #[arg(long)]
    pub allow_link_local_probes: bool,
    /// How often recent performance is read and weights recomputed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub routing_interval_seconds: u64,
    /// The window weights are computed over (e.g. 5m, 15m, 1h).
    #[arg(long, default_value = "15m")]
    pub routing_window: String,
}

#[derive(clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Namespace of the controller's own state (the MCP ID ledger ConfigMap).
    #[arg(long, default_value = "mcp-coordinator")]
    pub state_namespace: String,
    /// Name of the MCP ID ledger ConfigMap.
    #[arg(long, default_value = "mcp-coordinator-ids")]
    pub id_ledger: String,
    /// Address of /metrics, /healthz and /readyz. Served with the ingest server's deadlines
    /// (10 s for headers, 60 s idle) and at most 256 connections, 64 from one address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// After SIGTERM, stop within this many seconds even if reconciles, the API server or
    /// clients of the metrics port have not finished.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub shutdown_timeout_seconds: u64,
    /// The ingest API's base URL, where MCPs report interactions. Status tells each MCP this as
    /// `coordinatorConfig.apiUrl` and, with `/api/interactions` (where the seed's envelope
    /// goes), as `interactionLogEndpoint`. A URL that already ends in `/api/interactions` is taken
    /// as that.
    #[arg(
        long,
        default_value = "http://mcp-coordinator-ingest.mcp-coordinator.svc:8081"
    )]
    pub interaction_log_endpoint: String,
    /// Reconciles in flight at once (0: unbounded).
    #[arg(long, default_value_t = 16)]
    pub reconcile_concurrency: u16,
    /// Reconcile every registration at least this often, in seconds.
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// Let health probes reach the Kubernetes API server's own address (refused by default: a
    /// registration could otherwise point the controller's probes, and probe headers, at it).
    #[arg(long)]
    pub allow_api_server_probes: bool,
    /// Name this instance reports Events as (set to the pod name by the chart).
    #[arg(long)]
    pub instance: Option<String>,
    /// Run as one of several replicas: only the holder of the leader Lease (in --state-namespace)
    /// reconciles; the others wait and take over when it stops renewing.
    #[arg(long)]
    pub leader_elect: bool,
    /// Name of the leader Lease.
    #[arg(long, default_value = "mcp-coordinator-leader")]
    pub leader_lease_name: String,
    /// A standby takes over this long after the leader last renewed.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=300))]
    pub leader_lease_duration_seconds: u64,
    /// Base URL the controller reads performance from (GET /v1/metrics). Default: the
    /// --interaction-log-endpoint.
    #[arg(long)]
    pub ingest_url: Option<String>,
    /// File holding a reader token of the ingest server; without it weights follow health only.
    #[arg(long)]
    pub ingest_token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("--routing-window: {0}")]
    RoutingWindow(String),
    #[error("cannot read --ingest-token-file {path}: {source}")]
    IngestToken {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl RegistryArgs {
    /// Refuses a routing window that is not a duration such as 15m.
    pub fn check(&self) -> Result<(), ArgsError> {
        crate::store::TimeRange::parse(&self.routing_window, 0)
            .map(drop)
            .map_err(ArgsError::RoutingWindow)
    }

    /// What MCPs are told through status, with `endpoint` as where to report.
    pub fn reporting(&self, endpoint: String) -> ReportingSettings {
        ReportingSettings {
            interaction_log_endpoint: endpoint,
            heartbeat_interval_seconds: self.heartbeat_interval_seconds,
            data_report_interval_seconds: self.data_report_interval_seconds,
        }
    }
}

impl ControllerArgs {
    /// The controller's settings; reads the ingest reader token when a file is named.
    pub fn settings(&self) -> Result<Settings, ArgsError> {
        self.registry.check()?;
        let ingest_token = match &self.ingest_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|source| ArgsError::IngestToken {
                        path: path.clone(),
                        source,
                    })?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        Ok(Settings {
            namespace: self.namespace.clone(),
            state_namespace: self.state_namespace.clone(),
            id_ledger_name: self.id_ledger.clone(),
            reporting: self
                .registry
                .reporting(self.interaction_log_endpoint.clone()),
            probe_concurrency: self.registry.probe_concurrency,
            probe_policy: crate::controller::probe::ProbePolicy {
                allow_link_local: self.registry.allow_link_local_probes,
                api_server: Vec::new(),
            },
            reconcile_concurrency: self.reconcile_concurrency,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            leader_election: self.leader_elect.then(|| leader::LeaderElection {
                lease_name: self.leader_lease_name.clone(),
                identity: self
                    .instance
                    .clone()
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| format!("mcp-coordinator-{}", std::process::id())),
                lease_duration: Duration::from_secs(self.leader_lease_duration_seconds),
            }),
            instance: self.instance.clone(),
            routing: RoutingSettings {
                interval: Duration::from_secs(self.registry.routing_interval_seconds),
                window: self.registry.routing_window.clone(),
                ingest_url: self.ingest_url.clone(),
                ingest_token,
            },
        })
    }
}
