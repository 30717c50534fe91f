//! ClickHouse, through the official `clickhouse` crate over HTTP.
//!
//! Every event is a row of `interaction_events` (a ReplacingMergeTree keyed by event id, so
//! replayed events collapse on merge); queries merge the events of each interaction with
//! `argMaxIf(column, received_ms, isNotNull(column))` — the latest report that set a column wins —
//! so duplicates never change an answer, merged or not. The SQL runs on Debian's ClickHouse 18.16
//! (no DateTime64, no server-side parameters: values are bound client-side and escaped by the
//! crate, rows travel as plain RowBinary) and on current releases, where the schema uses
//! LowCardinality for the low-cardinality columns.

mod expire;
mod lazy;
mod migrate;
mod rollup;
mod rows;
mod sql;
mod topology;

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::metrics::{self, Breakdown, McpMetrics, MetricsCell, TimeRange};
use super::{
    AuditEntry, AuditLog, EventInsert, EventSink, Heartbeats, HistoryQuery, InteractionReads,
    StoreError, Upkeep, VersionCount,
};
use crate::interaction::{Interaction, InteractionEvent};
pub use lazy::LazyClickHouseStore;
pub use migrate::KEPT_TABLE;
pub use rollup::{create_rollup_table_sql, roll_sql, ROLLUP_WINDOWS_OVER_MS};
use rows::{AuditRow, EventRow, HeartbeatRow, MergedRow, MetricsRow, VersionRow};
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

    async fn merged(
        &self,
        filter: &str,
        outer: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<Interaction>, StoreError> {
        let sql = format!(
            "SELECT * FROM ({}) {outer}",
            merged_with_timeline_sql(&self.database, filter)
        );
        let rows: Vec<MergedRow> = self
            .query(&sql, binds)
            .fetch_all()
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(Interaction::from).collect())
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

/// The spans of receive time history looks back over, newest first, before reading everything.
const HISTORY_SPANS_MS: [i64; 4] = [
    3_600_000,
    24 * 3_600_000,
    7 * 24 * 3_600_000,
    30 * 24 * 3_600_000,
];

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

/// One `INSERT` kept open while events are written into it: the client compresses and sends the
/// rows as they come, and the server writes them as one part when it ends.
struct StreamedInsert<'s> {
    store: &'s ClickHouseStore,
    insert: clickhouse::insert::Insert<EventRow<'static>>,
    /// The receive times of the rows written, oldest and newest (for rollups they arrive late to).
    received: Option<(i64, i64)>,
}

impl ClickHouseStore {
    async fn open_streamed_insert(&self) -> Result<StreamedInsert<'_>, StoreError> {
        let insert = self
            .client
            .insert::<EventRow<'static>>(TABLE)
            .await
            .map_err(classify)?;
        Ok(StreamedInsert {
            store: self,
            insert,
            received: None,
        })
    }
}

impl EventInsert for StreamedInsert<'_> {
    fn write<'a>(
        &'a mut self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            for event in events {
                self.insert
                    .write(&EventRow::of(event))
                    .await
                    .map_err(classify)?;
                let at = event.received_ms;
                self.received = Some(match self.received {
                    None => (at, at),
                    Some((oldest, newest)) => (oldest.min(at), newest.max(at)),
                });
            }
            Ok(())
        }
        .boxed()
    }

    fn end<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), StoreError>>
    where
        Self: 'a,
    {
        async move {
            let Self {
                store,
                insert,
                received,
            } = *self;
            insert.end().await.map_err(classify)?;
            if let Some((oldest, newest)) = received {
                store.mark_late_insert(oldest, newest).await?;
            }
            Ok(())
        }
        .boxed()
    }
}

impl EventSink for ClickHouseStore {
    fn inserts_in_flight(&self) -> usize {
        INSERTS_IN_FLIGHT
    }

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut insert = self.open_streamed_insert().await?;
            insert.write(events).await?;
            Box::new(insert).end().await
        }
        .boxed()
    }

    fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
        async move {
            let insert: Box<dyn EventInsert + '_> = Box::new(self.open_streamed_insert().await?);
            Ok(insert)
        }
        .boxed()
    }
}

impl InteractionReads for ClickHouseStore {
    fn breakdown<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
        by: Breakdown,
    ) -> BoxFuture<'a, Result<Vec<MetricsCell>, StoreError>> {
        self.breakdown_from_rollups(mcp_id, range, by).boxed()
    }

    fn reported_versions(
        &self,
        range: TimeRange,
    ) -> BoxFuture<'_, Result<Vec<VersionCount>, StoreError>> {
        async move {
            // The events received in the window: a version is what an MCP says while it works.
            let sql = format!(
                "SELECT mcp_id, assumeNotNull(mcp_version) AS version, uniqExact(interaction_id) AS interactions \
                 FROM {TABLE} WHERE received_ms >= ? AND received_ms < ? AND event_date >= ? AND event_date <= ? \
                 AND isNotNull(mcp_version) GROUP BY mcp_id, version ORDER BY mcp_id, version"
            );
            let binds = vec![
                Bind::Int(range.since_ms),
                Bind::Int(range.until_ms),
                Bind::Text(sql::day_of_ms(range.since_ms)),
                Bind::Text(sql::day_of_ms(range.until_ms)),
            ];
            let rows: Vec<VersionRow> = self
                .query(&sql, binds)
                .fetch_all()
                .await
                .map_err(classify)?;
            Ok(rows
                .into_iter()
                .map(|r| VersionCount {
                    mcp_id: r.mcp_id,
                    version: r.version,
                    interactions: r.interactions,
                })
                .collect())
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
        async move {
            // Newest first: look back over growing spans of receive time and stop as soon as one
            // holds `limit` interactions, so a page of recent history does not read all of it.
            let anchor = q.until_ms.unwrap_or_else(now_ms);
            let spans = HISTORY_SPANS_MS
                .iter()
                .map(|span| Some(anchor.saturating_sub(*span)))
                .filter(|from| q.since_ms.is_none_or(|since| from.is_some_and(|f| f > since)))
                .chain([None]);
            for from in spans {
                let since = from.or(q.since_ms);
                let (received, received_binds) = self.received_filter(since, q.until_ms);
                let outer = format!(
                    "WHERE {TIME} >= ? AND {TIME} < ? ORDER BY {TIME} DESC, interaction_id DESC LIMIT {}",
                    q.limit
                );
                let mut binds = vec![Bind::Text(q.mcp_id.clone())];
                binds.extend(received_binds);
                binds.push(Bind::Int(since.unwrap_or(i64::MIN)));
                binds.push(Bind::Int(q.until_ms.unwrap_or(i64::MAX)));
                let rows = self
                    .merged(&format!("mcp_id = ? AND {received}"), &outer, binds)
                    .await?;
                // A narrowed span answers when it is full; otherwise a wider one may hold more.
                if from.is_none() || rows.len() >= q.limit {
                    return Ok(rows);
                }
            }
            Ok(Vec::new())
        }
        .boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        async move {
            if self.read_rollups
                && range.until_ms.saturating_sub(range.since_ms) > ROLLUP_WINDOWS_OVER_MS
            {
                return self.metrics_from_rollups(mcp_id, range).await;
            }
            let (mcp, mut binds) = match mcp_id {
                Some(id) => ("mcp_id = ?", vec![Bind::Text(id.to_string())]),
                None => ("1", vec![]),
            };
            let (received, received_binds) =
                self.received_filter(Some(range.since_ms), Some(range.until_ms));
            binds.extend(received_binds);
            let filter = format!("{mcp} AND {received}");
            binds.push(Bind::Int(range.since_ms));
            binds.push(Bind::Int(range.until_ms));
            let rows: Vec<MetricsRow> = self
                .query(&metrics_sql(&self.database, &filter), binds)
                .fetch_all()
                .await
                .map_err(classify)?;
            let mut out: Vec<McpMetrics> =
                rows.into_iter().map(|r| r.into_metrics(range)).collect();
            if let Some(id) = mcp_id {
                if out.is_empty() {
                    out.push(metrics::compute(id, &[], range));
                }
            }
            Ok(out)
        }
        .boxed()
    }
}

impl AuditLog for ClickHouseStore {
    fn record_access<'a>(&'a self, e: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write_rows(AUDIT_TABLE, [AuditRow::of(e)]).boxed()
    }

    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        async move {
            let sql = format!(
                "SELECT at_ms, at_date, who, role, mcp_id, query, since_ms, until_ms, rows FROM {}.{AUDIT_TABLE} ORDER BY at_ms DESC LIMIT {limit}",
                self.database
            );
            let rows: Vec<AuditRow> = self.client.query(&sql).fetch_all().await.map_err(classify)?;
            Ok(rows.into_iter().map(AuditEntry::from).collect())
        }
        .boxed()
    }
}

impl Heartbeats for ClickHouseStore {
    fn record_heartbeats<'a>(
        &'a self,
        beats: &'a [(String, i64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let rows: Vec<HeartbeatRow> = beats
                .iter()
                .map(|(mcp_id, at_ms)| HeartbeatRow {
                    mcp_id: mcp_id.clone(),
                    at_ms: *at_ms,
                })
                .collect();
            self.write_rows(HEARTBEAT_TABLE, rows).await
        }
        .boxed()
    }

    fn heartbeats(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, StoreError>> {
        async move {
            // max() rather than FINAL: merges may not have run, and 18.16 has no FINAL on
            // Distributed tables.
            let sql = format!(
                "SELECT mcp_id, max(at_ms) AS at_ms FROM {HEARTBEAT_TABLE} GROUP BY mcp_id"
            );
            let rows: Vec<HeartbeatRow> = self
                .client
                .query(&sql)
                .fetch_all()
                .await
                .map_err(classify)?;
            Ok(rows.into_iter().map(|r| (r.mcp_id, r.at_ms)).collect())
        }
        .boxed()
    }
}

impl Upkeep for ClickHouseStore {
    fn expire<'a>(
        &'a self,
        e: &'a super::retention::Expiry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            for table in [TABLE, rollup::ROLLUP_TABLE, rollup::DIRTY_TABLE] {
                self.expire_days(table, e).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn maintain(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.roll_up().boxed()
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
