//! `mcp-coordinator copy-store`: the interaction log of an embedded (SQLite) store copied into
//! ClickHouse, for a release that moves to ClickHouse (the chart's default from 0.3.0). Run it
//! where the old database is (the ingest container, whose claim keeps `interactions.db`); running
//! it again copies nothing twice.

use std::path::PathBuf;

use crate::ingest::args::ClickHouseArgs;
use crate::store::clickhouse::{ClickHouseStore, DEFAULT_MAX_INTERACTION_MS};
use crate::store::copy::{copy_all, Copied};
use crate::store::sqlite::SqliteStore;
use crate::store::StoreError;

#[derive(clap::Args)]
pub struct CopyStoreArgs {
    /// The embedded store's database (the ingest server's `<data-dir>/interactions.db`).
    #[arg(long)]
    pub from: PathBuf,
    /// The ClickHouse to copy into: the ingest server's `--clickhouse-*` flags (the URL is
    /// required; in the ingest container, the password is in its environment already).
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyStoreError {
    #[error("--clickhouse-url is required: the ClickHouse to copy into")]
    NoUrl,
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
    let config = args
        .clickhouse
        .config(DEFAULT_MAX_INTERACTION_MS)
        .ok_or(CopyStoreError::NoUrl)?;
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
