//! Standalone mode's flags: the registry's, the directory of manifests, and every ingest flag.

use crate::controller::args::RegistryArgs;
use crate::ingest::args::IngestArgs;

#[derive(clap::Args)]
pub struct StandaloneArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Directory of MCPRegistration manifests (*.yaml, *.yml); watched for changes.
    #[arg(long)]
    pub registrations: std::path::PathBuf,
    /// How often the directory is checked for added, edited and removed manifests.
    #[arg(long, default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// Told to MCPs in status; default: this server's own address.
    #[arg(long)]
    pub interaction_log_endpoint: Option<String>,
    #[command(flatten)]
    pub ingest: IngestArgs,
}
