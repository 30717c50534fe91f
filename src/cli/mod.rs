//! The command line: one binary, one subcommand per component. Each component owns its flags
//! (`controller::args`, `ingest::args`, `standalone::args`); the client commands' flags are here.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

use crate::controller::args::ControllerArgs;
use crate::ingest::args::IngestArgs;
use crate::standalone::args::StandaloneArgs;

/// Coordinates MCP (Model Context Protocol) servers on Kubernetes.
#[derive(Parser)]
#[command(name = "mcp-coordinator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "MCP_COORDINATOR_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The coordinator's HTTP API (standalone or ingest).
    #[arg(
        long,
        env = "MCP_COORDINATOR_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub url: String,
    /// A reader or admin token (prefer --token-file or the environment variable).
    #[arg(long, env = "MCP_COORDINATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token; standalone writes one to <data-dir>/admin.token.
    #[arg(
        long,
        env = "MCP_COORDINATOR_TOKEN_FILE",
        default_value = "mcp-coordinator-data/admin.token"
    )]
    pub token_file: std::path::PathBuf,
}

/// No token was given and none could be read from the token file.
#[derive(Debug, thiserror::Error)]
#[error("no token: give --token, MCP_COORDINATOR_TOKEN or a readable --token-file (tried {path}): {source}")]
pub struct NoToken {
    pub path: String,
    pub source: std::io::Error,
}

impl ClientArgs {
    pub fn token(&self) -> Result<String, NoToken> {
        if let Some(t) = &self.token {
            return Ok(t.clone());
        }
        std::fs::read_to_string(&self.token_file)
            .map(|t| t.trim().to_string())
            .map_err(|source| NoToken {
                path: self.token_file.display().to_string(),
                source,
            })
    }
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Refresh every this many seconds until interrupted.
    #[arg(long)]
    pub watch: Option<u64>,
}

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(subcommand)]
    pub what: QueryWhat,
}

#[derive(Subcommand)]
pub enum QueryWhat {
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
pub struct ExampleMcpArgs {
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Median processing time of /process.
    #[arg(long, default_value_t = 50)]
    pub latency_ms: u64,
    /// Share of /process requests that fail, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// The coordinator's URL to report interactions to.
    #[arg(long)]
    pub coordinator: Option<String>,
    /// File with this MCP's API key (standalone writes <data-dir>/keys/<namespace>/<name>-mcp-key).
    #[arg(long)]
    pub key_file: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub heartbeat_seconds: u64,
}

/// `--failure-rate` is a share, from 0 to 1.
#[derive(Debug, thiserror::Error)]
#[error("--failure-rate must be between 0 and 1, not {0}")]
pub struct BadFailureRate(pub f64);

impl ExampleMcpArgs {
    pub fn example_mcp(&self) -> Result<crate::example_mcp::ExampleMcp, BadFailureRate> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(BadFailureRate(self.failure_rate));
        }
        Ok(crate::example_mcp::ExampleMcp {
            name: self.name.clone(),
            listen: self.listen,
            latency: std::time::Duration::from_millis(self.latency_ms),
            failure_rate: self.failure_rate,
            coordinator: self.coordinator.clone(),
            key_file: self.key_file.clone(),
            heartbeat: std::time::Duration::from_secs(self.heartbeat_seconds.max(1)),
        })
    }
}
