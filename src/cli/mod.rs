//! The command line: one binary, one subcommand per component. Each component owns its flags
//! (`controller::args`, `ingest::args`, `standalone::args`); the client commands' flags are here.
//! Every flag of the components and of the client commands also reads an environment variable,
//! by one rule: `--data-dir` reads `MCP_COORDINATOR_DATA_DIR`.

use std::net::SocketAddr;

use clap::{Arg, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod copy_store;

use crate::controller::args::ControllerArgs;
use crate::ingest::args::IngestArgs;
use crate::standalone::args::StandaloneArgs;

/// Coordinates MCP (Model Context Protocol) servers on Kubernetes.
#[derive(Parser)]
#[command(name = "mcp-coordinator", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], global = true)]
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
    /// Check that endpoints are ready (`GET <url>/readyz`); exits non-zero when one is not. The
    /// chart's `helm test` runs it against both containers.
    Ready(ReadyArgs),
    /// Copy the interaction log of an embedded (SQLite) store into ClickHouse: once, when a
    /// release moves to ClickHouse. Running it again copies nothing twice.
    CopyStore(copy_store::CopyStoreArgs),
    /// Print a shell completion script: `source <(mcp-coordinator completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
pub struct ReadyArgs {
    /// Base URL of an endpoint: the controller's metrics port or the ingest API. Repeat for
    /// several.
    #[arg(long = "url", required = true)]
    pub urls: Vec<String>,
    /// PEM file of the CA that signed the ingest server's certificate (with TLS).
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Also check that the store behind this ingest server is reachable and writable
    /// (`GET /v1/store`, with the reader token in --token-file).
    #[arg(long, requires = "token_file")]
    pub store_url: Option<String>,
    /// File holding a reader token, for --store-url.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

/// Flags that only make sense on a command line (what to query, how to refresh).
const COMMAND_LINE_ONLY: &[&str] = &[
    "mcp", "limit", "range", "step", "watch", "output", "group-by", "help", "version",
];
/// Subcommands whose flags read no environment (a demo program, not a component).
const WITHOUT_ENVIRONMENT: &[&str] = &["example-mcp"];

/// The command line, with every flag's environment variable, the flags of the long subcommands
/// under headings, and standalone mode without the Kubernetes-only flags.
pub fn command() -> clap::Command {
    with_environment(Cli::command()).mut_subcommands(|sub| {
        let standalone = sub.get_name() == "standalone";
        sub.mut_args(|arg| {
            let Some(long) = arg.get_long().map(str::to_string) else {
                return arg;
            };
            let arg = match heading(&long) {
                Some(h) if arg.get_help_heading().is_none() => arg.help_heading(h),
                _ => arg,
            };
            arg.hide(standalone && KUBERNETES_ONLY.contains(&long.as_str()))
        })
    })
}

/// Flags of the ingest server that only mean something in a cluster: standalone mode hides them.
const KUBERNETES_ONLY: &[&str] = &[
    "keys-from-secrets",
    "namespace",
    "reader-tokens-namespace",
    "routes-from-registrations",
    "routing-table-file",
    "registrar-kube-token-file",
];

/// The `--help` heading a flag of the ingest server's (and standalone mode's) goes under.
fn heading(long: &str) -> Option<&'static str> {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| long.starts_with(p));
    Some(if starts(&["clickhouse-"]) {
        "ClickHouse"
    } else if starts(&["gateway-", "caller-tokens"]) {
        "MCP gateway"
    } else if starts(&["tls-"]) {
        "TLS"
    } else if starts(&[
        "spool-",
        "batch-",
        "flush-",
        "drain-",
        "retention-",
        "max-interaction",
    ]) {
        "Spool, store and retention"
    } else if starts(&["max-", "header-timeout", "idle-timeout", "body-timeout"]) {
        "Limits"
    } else if starts(&["registrar-", "registration-"]) {
        "Self-registration"
    } else if starts(&[
        "keys-",
        "admin-tokens",
        "reader-tokens",
        "privacy-key",
        "encryption-keys",
        "require-signatures",
        "key-rotation",
    ]) {
        "Keys, tokens and privacy"
    } else {
        return None;
    })
}

/// Parses the process's arguments (exits with clap's message and code on bad ones).
pub fn parse() -> Cli {
    Cli::from_arg_matches(&command().get_matches()).unwrap_or_else(|e| e.exit())
}

/// The environment variable a flag reads: `MCP_COORDINATOR_` and the flag's long name.
pub fn environment_variable(long: &str) -> String {
    format!(
        "MCP_COORDINATOR_{}",
        long.to_ascii_uppercase().replace('-', "_")
    )
}

fn with_environment(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg: Arg| {
            let Some(long) = arg.get_long() else {
                return arg;
            };
            if COMMAND_LINE_ONLY.contains(&long) {
                return arg;
            }
            let variable = environment_variable(long);
            arg.env(variable)
        })
        .mut_subcommands(|sub| {
            if WITHOUT_ENVIRONMENT.contains(&sub.get_name()) {
                sub
            } else {
                with_environment(sub)
            }
        })
}

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The coordinator's HTTP API (standalone or ingest).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// A reader or admin token (prefer --token-file or the environment variable).
    #[arg(long, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token (default: <data-dir>/admin.token, which standalone writes).
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
    /// Standalone mode's data directory, where the default token file is.
    #[arg(long, default_value = "mcp-coordinator-data")]
    pub data_dir: std::path::PathBuf,
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
        let path = self
            .token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin.token"));
        std::fs::read_to_string(&path)
            .map(|t| t.trim().to_string())
            .map_err(|source| NoToken {
                path: path.display().to_string(),
                source,
            })
    }
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// How to print the answer.
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
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
        /// The MCP's ID, or its registration's name as `status` prints it.
        #[arg(long)]
        mcp: String,
        /// How many interactions, newest first (at most 1,000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// How to print the answer.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An MCP's metrics over a range.
    Metrics {
        /// The MCP's ID, or its registration's name as `status` prints it.
        #[arg(long)]
        mcp: String,
        /// e.g. 15m, 1h, 24h, 7d.
        #[arg(long, default_value = "1h")]
        range: String,
        /// Also per value of `request_type`, `adapter_used`, `region` or `environment`.
        #[arg(long)]
        group_by: Option<String>,
        /// How to print the answer.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An MCP's metrics over time, one row per step (`GET /v1/mcps/{id}/metrics/series`).
    Series {
        /// The MCP's ID, or its registration's name as `status` prints it.
        #[arg(long)]
        mcp: String,
        /// e.g. 1h, 24h, 7d.
        #[arg(long, default_value = "1h")]
        range: String,
        /// Bucket width in whole minutes, e.g. 5m (about 60 points when unset).
        #[arg(long)]
        step: Option<String>,
        /// One series per value of `request_type`, `adapter_used`, `region` or `environment`.
        #[arg(long)]
        group_by: Option<String>,
        /// How to print the answer.
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// How a command prints what the API answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

impl Output {
    /// The answer as JSON or YAML text, or `None` for a table (which each command draws).
    pub fn render(self, answer: &serde_json::Value) -> Option<String> {
        match self {
            Output::Table => None,
            Output::Json => Some(format!(
                "{}\n",
                serde_json::to_string_pretty(answer).unwrap_or_default()
            )),
            Output::Yaml => Some(serde_saphyr::to_string(answer).unwrap_or_default()),
        }
    }
}

#[derive(clap::Args)]
pub struct ExampleMcpArgs {
    /// The MCP's name, as its registration's (the MCP it reports for).
    #[arg(long)]
    pub name: String,
    /// Where it serves /health, /process, /status and MCP at /mcp (port 0: any free port).
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
    /// File with a registrar token: the MCP registers itself when it starts (instead of --key-file).
    #[arg(long, conflicts_with = "key_file")]
    pub registrar_token_file: Option<std::path::PathBuf>,
    /// Seconds between heartbeats to the coordinator.
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
            registrar_token: None,
            heartbeat: std::time::Duration::from_secs(self.heartbeat_seconds.max(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(path: &[&str], flag: &str) -> Option<String> {
        let mut command = command();
        command.build();
        let mut at = &command;
        for name in path {
            at = at.find_subcommand(name).expect("subcommand exists");
        }
        let arg = at
            .get_arguments()
            .find(|a| a.get_long() == Some(flag))
            .expect("flag exists");
        arg.get_env().map(|v| v.to_string_lossy().into_owned())
    }

    #[test]
    fn every_component_flag_reads_its_environment_variable() {
        let expected = |v: &str| Some(v.to_string());
        assert_eq!(
            env_of(&["ingest"], "clickhouse-password"),
            expected("MCP_COORDINATOR_CLICKHOUSE_PASSWORD")
        );
        assert_eq!(
            env_of(&["standalone"], "routing-window"),
            expected("MCP_COORDINATOR_ROUTING_WINDOW")
        );
        assert_eq!(
            env_of(&["controller"], "leader-elect"),
            expected("MCP_COORDINATOR_LEADER_ELECT")
        );
        assert_eq!(
            env_of(&["query", "metrics"], "token-file"),
            expected("MCP_COORDINATOR_TOKEN_FILE")
        );
        assert_eq!(
            env_of(&["controller"], "log-format"),
            expected("MCP_COORDINATOR_LOG_FORMAT")
        );
        // The long name, also where the field is named otherwise (one rule, no exceptions).
        assert_eq!(env_of(&["ready"], "url"), expected("MCP_COORDINATOR_URL"));
        assert_eq!(
            env_of(&["ingest"], "clickhouse-setting"),
            expected("MCP_COORDINATOR_CLICKHOUSE_SETTING")
        );
        assert_eq!(env_of(&["query", "metrics"], "mcp"), None);
        assert_eq!(env_of(&["example-mcp"], "listen"), None);
    }

    #[test]
    fn every_flag_says_what_it_does_and_standalone_hides_what_needs_a_cluster() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let named = arg.get_long().is_some();
                if named
                    && arg.get_help().is_none()
                    && !["help", "version"].contains(&arg.get_id().as_str())
                {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or_default()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&command(), "mcp-coordinator", &mut missing);
        assert!(missing.is_empty(), "flags without help: {missing:?}");
        let standalone = command()
            .find_subcommand("standalone")
            .cloned()
            .expect("standalone");
        let shown: Vec<&str> = standalone
            .get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .collect();
        assert!(
            !shown.contains(&"keys-from-secrets") && shown.contains(&"clickhouse-url"),
            "{shown:?}"
        );
        let clickhouse = standalone
            .get_arguments()
            .find(|a| a.get_long() == Some("clickhouse-url"))
            .expect("flag");
        assert_eq!(clickhouse.get_help_heading(), Some("ClickHouse"));
    }

    #[test]
    fn the_environment_sets_a_flag_and_the_command_line_wins() {
        let parse = |args: &[&str]| {
            let matches = command().try_get_matches_from(args).expect("parses");
            Cli::from_arg_matches(&matches).expect("matches")
        };
        // SAFETY of the test: the variable is unique to this test.
        std::env::set_var("MCP_COORDINATOR_SPOOL_SEGMENT_BYTES", "8192");
        let Command::Ingest(from_env) = parse(&["mcp-coordinator", "ingest"]).command else {
            panic!("ingest");
        };
        let Command::Ingest(from_flag) =
            parse(&["mcp-coordinator", "ingest", "--spool-segment-bytes", "4096"]).command
        else {
            panic!("ingest");
        };
        std::env::remove_var("MCP_COORDINATOR_SPOOL_SEGMENT_BYTES");
        assert_eq!(from_env.spool_segment_bytes, 8192);
        assert_eq!(from_flag.spool_segment_bytes, 4096);
    }
}
