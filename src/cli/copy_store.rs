//! `mcp-coordinator copy-store`: the interaction log of an embedded (SQLite) store copied into
//! ClickHouse, for a release that moves to ClickHouse (the chart's default from 0.3.0). Run it
//! where the old database is (the ingest container, whose claim keeps `interactions.db`); running
//! it again copies nothing twice.

use std::path::PathBuf;

use crate::store::clickhouse::{ClickHouseConfig, ClickHouseStore, DEFAULT_MAX_INTERACTION_MS};
use crate::store::copy::{copy_all, Copied};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

#[derive(clap::Args)]
pub struct CopyStoreArgs {
    /// The embedded store's database (the ingest server's `<data-dir>/interactions.db`).
    #[arg(long)]
    pub from: PathBuf,
    /// The ClickHouse to copy into, e.g. http://mcp-coordinator-clickhouse:8123.
    #[arg(long)]
    pub clickhouse_url: String,
    /// The database there (created if missing).
    #[arg(long, default_value = "mcp_coordinator")]
    pub clickhouse_database: String,
    /// The ClickHouse user (the chart's is `mcp_coordinator`).
    #[arg(long)]
    pub clickhouse_user: Option<String>,
    /// Prefer the environment variable (the ingest container has it).
    #[arg(long, hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// The ClickHouse cluster the ingest servers use (`--clickhouse-cluster`), if any.
    #[arg(long)]
    pub clickhouse_cluster: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyStoreError {
    #[error("cannot open the embedded store {path}: {source}")]
    From { path: PathBuf, source: StoreError },
    #[error("cannot connect to ClickHouse at {url}: {source}")]
    To { url: String, source: StoreError },
    #[error("the copy stopped (run it again: what was copied is not copied twice): {0}")]
    Copy(StoreError),
}

/// Copies every interaction; `each` hears of every MCP done.
pub async fn run(
    args: &CopyStoreArgs,
    each: impl FnMut(&str, u64),
) -> Result<Copied, CopyStoreError> {
    if !args.from.is_file() {
        return Err(CopyStoreError::From {
            path: args.from.clone(),
            source: StoreError::Rejected("no such file".into()),
        });
    }
    let from = SqliteStore::open(&args.from).map_err(|source| CopyStoreError::From {
        path: args.from.clone(),
        source,
    })?;
    let config = ClickHouseConfig {
        url: args.clickhouse_url.clone(),
        database: args.clickhouse_database.clone(),
        user: args.clickhouse_user.clone(),
        password: args.clickhouse_password.clone(),
        max_interaction_ms: DEFAULT_MAX_INTERACTION_MS,
        read_rollups: true,
        cluster: args.clickhouse_cluster.clone(),
        settings: Vec::new(),
    };
    let to = ClickHouseStore::connect(&config)
        .await
        .map_err(|source| CopyStoreError::To {
            url: config.shown_url(),
            source,
        })?;
    copy_all(&from, &to, each)
        .await
        .map_err(CopyStoreError::Copy)
}
