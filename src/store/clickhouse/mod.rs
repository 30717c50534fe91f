//! ClickHouse, through the official `clickhouse` crate over HTTP.
//!
//! Every event is a row of `interaction_events` (a ReplacingMergeTree keyed by event id, so
//! replayed events collapse on merge); queries merge the events of each interaction with
//! `argMaxIf(column, received_ms, isNotNull(column))` — the latest report that set a column wins —
//! so duplicates never change an answer, merged or not. The SQL runs on Debian's ClickHouse 18.16
//! (no DateTime64, no server-side parameters: values are bound client-side and escaped by the
//! crate, rows travel as plain RowBinary) and on current releases, where the schema uses
//! LowCardinality for the low-cardinality columns.

mod events;
mod expire;
mod lazy;
mod logs;
mod migrate;
mod read;
mod rollup;
mod rows;
mod sql;
mod topology;

use super::StoreError;
use crate::interaction::Interaction;
pub use lazy::LazyClickHouseStore;
pub use migrate::KEPT_TABLE;
pub use rollup::{create_rollup_table_sql, roll_sql, ROLLUP_WINDOWS_OVER_MS};
use rows::MergedRow;
pub use sql::{
    create_audit_table_sql, create_table_sql, merged_sql, merged_with_timeline_sql, metrics_sql,
    DEFAULT_MAX_INTERACTION_MS, TIME,
};
use sql::{create_heartbeat_table_sql, AUDIT_TABLE, HEARTBEAT_TABLE, TABLE};
use topology::Topology;

/// Connection settings (`--clickhouse-*` flags).
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Reads of a time window also read events received this long before and after it (see
    /// [`sql::received_bounds`]).
    pub max_interaction_ms: i64,
    /// Long windows read per-minute rollups (always, but for a comparison in the benchmark).
    pub read_rollups: bool,
    /// `--clickhouse-cluster`: replicated tables on every shard of this cluster, behind
    /// Distributed tables.
    pub cluster: Option<String>,
    /// Settings sent with every query (`--clickhouse-setting`).
    pub settings: Vec<(String, String)>,
}

impl ClickHouseConfig {
    /// The URL as it may be logged: a password in it is replaced by `***`.
    pub fn shown_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.url.clone(),
            Err(_) => "<an unparsable URL>".to_string(),
        }
    }
}

pub struct ClickHouseStore {
    client: clickhouse::Client,
    database: String,
    max_interaction_ms: i64,
    read_rollups: bool,
    topology: Topology,
    /// `major.minor` of the server, as detected at start.
    pub server_version: (u32, u32),
}

fn classify(e: clickhouse::error::Error) -> StoreError {
    let text = e.to_string();
    // Server-side parse and type errors will not go away on retry.
    let rejected = [
        "Code: 26,",
        "Code: 27,",
        "Code: 53,",
        "Code: 70,",
        "Code: 117,",
    ]
    .iter()
    .any(|c| text.contains(c));
    if rejected {
        StoreError::Rejected(text)
    } else {
        StoreError::Unavailable(format!("ClickHouse: {text}"))
    }
}

/// Runs one of the store's DDL statements (each idempotent), again when the connection failed
/// rather than the server refusing: a server busy with `ON CLUSTER` DDL may close a pooled
/// connection the next statement was about to use.
async fn execute_ddl(client: &clickhouse::Client, sql: &str) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        match client.query(sql).execute().await {
            Ok(()) => return Ok(()),
            Err(clickhouse::error::Error::Network(e)) if attempt < 2 => {
                attempt += 1;
                tracing::debug!(error = %e, "DDL hit a closed connection; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => return Err(classify(e)),
        }
    }
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

impl ClickHouseStore {
    /// Connects, detects the server version, and creates (or migrates) the schema.
    pub async fn connect(config: &ClickHouseConfig) -> Result<Self, StoreError> {
        if !valid_identifier(&config.database) {
            return Err(StoreError::Rejected(format!(
                "ClickHouse database name {:?} must be letters, digits and '_' (not starting with a digit)",
                config.database
            )));
        }
        let mut client = clickhouse::Client::default()
            .with_url(&config.url)
            .with_validation(false);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        for (name, value) in &config.settings {
            client = client.with_setting(name, value);
        }
        let version: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot reach ClickHouse at {}: {e}",
                    config.shown_url()
                ))
            })?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let server_version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let topology = match &config.cluster {
            Some(name) if !valid_identifier(name) => {
                return Err(StoreError::Rejected(format!(
                    "ClickHouse cluster name {name:?} must be letters, digits and '_' (not starting with a digit)"
                )))
            }
            Some(name) => {
                // An insert into a Distributed table returns once every shard has its rows, so an
                // acknowledged batch is stored, not queued on the server we talk to.
                client = client.with_setting("insert_distributed_sync", "1");
                Topology::Cluster(name.clone())
            }
            None => Topology::Single,
        };
        let db = &config.database;
        let mut ddl = vec![format!(
            "CREATE DATABASE IF NOT EXISTS {db}{}",
            topology.on_cluster()
        )];
        ddl.extend(topology.create_table(
            &create_table_sql(db, server_version),
            db,
            TABLE,
            "cityHash64(mcp_id)",
        ));
        for statement in ddl {
            execute_ddl(&client, &statement).await?;
        }
        if topology == Topology::Single {
            migrate::ensure_layout(&client, db, server_version).await?;
        }
        migrate::add_field_columns(&client, db, &topology, server_version).await?;
        let mut ddl = topology.create_table(
            &rollup::create_rollup_table_sql(db, server_version),
            db,
            rollup::ROLLUP_TABLE,
            "cityHash64(mcp_id)",
        );
        ddl.extend(topology.create_table(
            &rollup::create_progress_table_sql(db),
            db,
            rollup::PROGRESS_TABLE,
            "rand()",
        ));
        ddl.extend(topology.create_table(
            &rollup::create_dirty_table_sql(db),
            db,
            rollup::DIRTY_TABLE,
            "rand()",
        ));
        ddl.extend(topology.create_table(
            &create_audit_table_sql(db),
            db,
            AUDIT_TABLE,
            "cityHash64(mcp_id)",
        ));
        ddl.extend(topology.create_table(
            &create_heartbeat_table_sql(db),
            db,
            HEARTBEAT_TABLE,
            "cityHash64(mcp_id)",
        ));
        for statement in ddl {
            execute_ddl(&client, &statement).await?;
        }
        tracing::info!(url = %config.shown_url(), database = %config.database, version = %version, "ClickHouse store ready");
        Ok(Self {
            client: client.with_database(&config.database),
            database: config.database.clone(),
            max_interaction_ms: config.max_interaction_ms.max(0),
            read_rollups: config.read_rollups,
            topology,
            server_version,
        })
    }

    /// `sql` with its `?` placeholders bound (client-side, escaped by the crate: 18.16 has no
    /// server-side parameters).
    fn query(&self, sql: &str, binds: Vec<Bind>) -> clickhouse::query::Query {
        binds
            .into_iter()
            .fold(self.client.query(sql), |q, b| match b {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            })
    }

    /// One INSERT of `rows` into `table`, confirmed by the server.
    async fn write_rows<R>(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = R>,
    ) -> Result<(), StoreError>
    where
        R: clickhouse::RowOwned + clickhouse::RowWrite,
    {
        let mut insert = self.client.insert::<R>(table).await.map_err(classify)?;
        for row in rows {
            insert.write(&row).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    /// Interactions merged from their events, read as a stream and no further once `budget` is
    /// spent (the rest of the answer is not downloaded).
    async fn merged(
        &self,
        filter: &str,
        outer: &str,
        binds: Vec<Bind>,
        budget: &mut crate::store::PageBudget,
    ) -> Result<Vec<Interaction>, StoreError> {
        let sql = format!(
            "SELECT * FROM ({}) {outer}",
            merged_with_timeline_sql(&self.database, filter)
        );
        let mut rows = self
            .query(&sql, binds)
            .fetch::<MergedRow>()
            .map_err(classify)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().await.map_err(classify)? {
            let interaction = Interaction::from(row);
            if !budget.admit(&interaction) {
                break;
            }
            out.push(interaction);
        }
        Ok(out)
    }
}

#[derive(Clone)]
enum Bind {
    Text(String),
    Int(i64),
}

/// Inserts the shipper may have out at once. Reads merge an interaction's events by receive time,
/// whatever order the rows arrived in, and an insert spends much of its time in the server
/// (writing a new part), so a second one keeps both sides busy.
pub(super) const INSERTS_IN_FLIGHT: usize = 2;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl ClickHouseStore {
    /// The events that can belong to interactions filed in `[since, until)`: a condition on the
    /// receive time, and on the day column that partitions the table, so the server reads only
    /// the partitions and rows of the window (plus the slack) instead of merging all history.
    fn received_filter(&self, since: Option<i64>, until: Option<i64>) -> (String, Vec<Bind>) {
        let (from, to) = sql::received_bounds(since, until, self.max_interaction_ms);
        let mut clauses = Vec::new();
        let mut binds = Vec::new();
        if let Some(from) = from {
            clauses.push("received_ms >= ? AND event_date >= ?");
            binds.push(Bind::Int(from));
            binds.push(Bind::Text(sql::day_of_ms(from)));
        }
        if let Some(to) = to {
            clauses.push("received_ms < ? AND event_date <= ?");
            binds.push(Bind::Int(to));
            binds.push(Bind::Text(sql::day_of_ms(to)));
        }
        if clauses.is_empty() {
            clauses.push("1");
        }
        (clauses.join(" AND "), binds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.into(),
            database: "d".into(),
            user: None,
            password: None,
            max_interaction_ms: DEFAULT_MAX_INTERACTION_MS,
            read_rollups: true,
            cluster: None,
            settings: Vec::new(),
        }
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let shown = config("http://ingest:s3cret@clickhouse:8123").shown_url();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ingest:***@clickhouse"), "{shown}");
        assert_eq!(
            config("http://clickhouse:8123").shown_url(),
            "http://clickhouse:8123"
        );
        assert!(!config("::s3cret").shown_url().contains("s3cret"));
    }
}
