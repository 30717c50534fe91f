//! ClickHouse, through the official `clickhouse` crate over HTTP.
//!
//! Every event is a row of `interaction_events` (a ReplacingMergeTree keyed by event id, so
//! replayed events collapse on merge); queries merge the events of each interaction with
//! `argMaxIf(column, received_ms, isNotNull(column))` — the latest report that set a column wins —
//! so duplicates never change an answer, merged or not. The SQL runs on Debian's ClickHouse 18.16
//! (no DateTime64, no server-side parameters: values are bound client-side and escaped by the
//! crate, rows travel as plain RowBinary) and on current releases, where the schema uses
//! LowCardinality for the low-cardinality columns.

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::{Deserialize, Serialize};

use super::metrics::{self, McpMetrics, TimeRange};
use super::{AuditEntry, HistoryQuery, InteractionStore, StoreError};
use crate::ingest::model::{Fields, Interaction, InteractionEvent};

const TABLE: &str = "interaction_events";
const AUDIT_TABLE: &str = "audit_log";

/// Connection settings (`--clickhouse-*` flags).
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

pub struct ClickHouseStore {
    client: clickhouse::Client,
    database: String,
    /// `major.minor` of the server, as detected at start.
    pub server_version: (u32, u32),
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct EventRow {
    event_id: String,
    mcp_id: String,
    interaction_id: String,
    kind: String,
    received_ms: i64,
    /// Days since the epoch (ClickHouse `Date`), the partition key.
    event_date: u16,
    session_id: Option<String>,
    mcp_type: Option<String>,
    timestamp_ms: Option<i64>,
    user_id: Option<String>,
    request_type: Option<String>,
    input_size: Option<i64>,
    parameters: Option<String>,
    quality_level: Option<String>,
    privacy_level: Option<String>,
    start_time_ms: Option<i64>,
    end_time_ms: Option<i64>,
    processing_time: Option<f64>,
    adapter_used: Option<String>,
    steps_executed: Option<String>,
    cpu_usage: Option<f64>,
    memory_usage: Option<f64>,
    gpu_usage: Option<f64>,
    success: Option<u8>,
    output_size: Option<i64>,
    quality_score: Option<f64>,
    confidence: Option<f64>,
    error_code: Option<String>,
    error_message: Option<String>,
    mcp_version: Option<String>,
    coordinator_version: Option<String>,
    environment: Option<String>,
    region: Option<String>,
}

/// Nullable columns, in table order, with their types on old and new servers.
const COLUMNS: &[(&str, &str, bool)] = &[
    ("session_id", "String", false),
    ("mcp_type", "String", true),
    ("timestamp_ms", "Int64", false),
    ("user_id", "String", false),
    ("request_type", "String", true),
    ("input_size", "Int64", false),
    ("parameters", "String", false),
    ("quality_level", "String", true),
    ("privacy_level", "String", true),
    ("start_time_ms", "Int64", false),
    ("end_time_ms", "Int64", false),
    ("processing_time", "Float64", false),
    ("adapter_used", "String", true),
    ("steps_executed", "String", false),
    ("cpu_usage", "Float64", false),
    ("memory_usage", "Float64", false),
    ("gpu_usage", "Float64", false),
    ("success", "UInt8", false),
    ("output_size", "Int64", false),
    ("quality_score", "Float64", false),
    ("confidence", "Float64", false),
    ("error_code", "String", true),
    ("error_message", "String", false),
    ("mcp_version", "String", true),
    ("coordinator_version", "String", true),
    ("environment", "String", true),
    ("region", "String", true),
];

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MergedRow {
    mcp_id: String,
    interaction_id: String,
    first_received_ms: i64,
    last_received_ms: i64,
    session_id: Option<String>,
    mcp_type: Option<String>,
    timestamp_ms: Option<i64>,
    user_id: Option<String>,
    request_type: Option<String>,
    input_size: Option<i64>,
    parameters: Option<String>,
    quality_level: Option<String>,
    privacy_level: Option<String>,
    start_time_ms: Option<i64>,
    end_time_ms: Option<i64>,
    processing_time: Option<f64>,
    adapter_used: Option<String>,
    steps_executed: Option<String>,
    cpu_usage: Option<f64>,
    memory_usage: Option<f64>,
    gpu_usage: Option<f64>,
    success: Option<u8>,
    output_size: Option<i64>,
    quality_score: Option<f64>,
    confidence: Option<f64>,
    error_code: Option<String>,
    error_message: Option<String>,
    mcp_version: Option<String>,
    coordinator_version: Option<String>,
    environment: Option<String>,
    region: Option<String>,
}

impl From<MergedRow> for Interaction {
    fn from(r: MergedRow) -> Self {
        Interaction {
            interaction_id: r.interaction_id,
            mcp_id: r.mcp_id,
            first_received_ms: r.first_received_ms,
            last_received_ms: r.last_received_ms,
            fields: Fields {
                session_id: r.session_id,
                mcp_type: r.mcp_type,
                timestamp_ms: r.timestamp_ms,
                user_id: r.user_id,
                request_type: r.request_type,
                input_size: r.input_size,
                parameters: r.parameters,
                quality_level: r.quality_level,
                privacy_level: r.privacy_level,
                start_time_ms: r.start_time_ms,
                end_time_ms: r.end_time_ms,
                processing_time: r.processing_time,
                adapter_used: r.adapter_used,
                steps_executed: r.steps_executed,
                cpu_usage: r.cpu_usage,
                memory_usage: r.memory_usage,
                gpu_usage: r.gpu_usage,
                success: r.success.map(|s| s != 0),
                output_size: r.output_size,
                quality_score: r.quality_score,
                confidence: r.confidence,
                error_code: r.error_code,
                error_message: r.error_message,
                mcp_version: r.mcp_version,
                coordinator_version: r.coordinator_version,
                environment: r.environment,
                region: r.region,
            },
        }
    }
}

fn row(e: &InteractionEvent) -> EventRow {
    let f = e.fields.clone();
    EventRow {
        event_id: e.event_id.clone(),
        mcp_id: e.mcp_id.clone(),
        interaction_id: e.interaction_id.clone(),
        kind: e.kind.as_str().to_string(),
        received_ms: e.received_ms,
        event_date: (e.received_ms.div_euclid(86_400_000)).clamp(0, i64::from(u16::MAX)) as u16,
        session_id: f.session_id,
        mcp_type: f.mcp_type,
        timestamp_ms: f.timestamp_ms,
        user_id: f.user_id,
        request_type: f.request_type,
        input_size: f.input_size,
        parameters: f.parameters,
        quality_level: f.quality_level,
        privacy_level: f.privacy_level,
        start_time_ms: f.start_time_ms,
        end_time_ms: f.end_time_ms,
        processing_time: f.processing_time,
        adapter_used: f.adapter_used,
        steps_executed: f.steps_executed,
        cpu_usage: f.cpu_usage,
        memory_usage: f.memory_usage,
        gpu_usage: f.gpu_usage,
        success: f.success.map(u8::from),
        output_size: f.output_size,
        quality_score: f.quality_score,
        confidence: f.confidence,
        error_code: f.error_code,
        error_message: f.error_message,
        mcp_version: f.mcp_version,
        coordinator_version: f.coordinator_version,
        environment: f.environment,
        region: f.region,
    }
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

/// The DDL of the events table for a server of `version`.
pub fn create_table_sql(database: &str, version: (u32, u32)) -> String {
    let modern = version.0 >= 20;
    let low = |ty: &str, low_cardinality: bool| {
        if modern && low_cardinality {
            format!("LowCardinality({ty})")
        } else {
            ty.to_string()
        }
    };
    let mut columns = vec![
        "event_id String".to_string(),
        format!("mcp_id {}", low("String", true)),
        "interaction_id String".to_string(),
        format!("kind {}", low("String", true)),
        "received_ms Int64".to_string(),
        "event_date Date".to_string(),
    ];
    for (name, ty, lc) in COLUMNS {
        let ty = if modern && *lc {
            format!("LowCardinality(Nullable({ty}))")
        } else {
            format!("Nullable({ty})")
        };
        columns.push(format!("{name} {ty}"));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{TABLE} ({}) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(event_date) ORDER BY (mcp_id, interaction_id, event_id)",
        columns.join(", ")
    )
}

/// The DDL of the audit log (the same on every version).
pub fn create_audit_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{AUDIT_TABLE} (at_ms Int64, at_date Date, who String, role String, mcp_id String, query String, since_ms Nullable(Int64), until_ms Nullable(Int64), rows UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(at_date) ORDER BY at_ms"
    )
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct AuditRow {
    at_ms: i64,
    at_date: u16,
    who: String,
    role: String,
    mcp_id: String,
    query: String,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    rows: u64,
}

/// The SELECT that merges events into interactions, for events matching `filter`.
pub fn merged_sql(database: &str, filter: &str) -> String {
    let mut columns = vec![
        "mcp_id".to_string(),
        "interaction_id".to_string(),
        "min(received_ms) AS first_received_ms".to_string(),
        "max(received_ms) AS last_received_ms".to_string(),
    ];
    for (name, _, _) in COLUMNS {
        columns.push(format!(
            "argMaxIf({name}, received_ms, isNotNull({name})) AS {name}"
        ));
    }
    format!(
        "SELECT {} FROM {database}.{TABLE} WHERE {filter} GROUP BY mcp_id, interaction_id",
        columns.join(", ")
    )
}

/// The time an interaction is filed under, over merged rows (see `store::interaction_time_ms`).
pub const TIME: &str = "coalesce(timestamp_ms, start_time_ms, first_received_ms)";

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
        let version: String = client
            .query("SELECT version()")
            .fetch_one()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot reach ClickHouse at {}: {e}", config.url))
            })?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let server_version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        client
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS {}",
                config.database
            ))
            .execute()
            .await
            .map_err(classify)?;
        client
            .query(&create_table_sql(&config.database, server_version))
            .execute()
            .await
            .map_err(classify)?;
        client
            .query(&create_audit_table_sql(&config.database))
            .execute()
            .await
            .map_err(classify)?;
        tracing::info!(url = %config.url, database = %config.database, version = %version, "ClickHouse store ready");
        Ok(Self {
            client: client.with_database(&config.database),
            database: config.database.clone(),
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

    async fn merged(
        &self,
        filter: &str,
        outer: &str,
        binds: Vec<Bind>,
    ) -> Result<Vec<Interaction>, StoreError> {
        let sql = format!(
            "SELECT * FROM ({}) {outer}",
            merged_sql(&self.database, filter)
        );
        let rows: Vec<MergedRow> = self
            .query(&sql, binds)
            .fetch_all()
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().map(Interaction::from).collect())
    }
}

/// Per-MCP aggregates over merged interactions, computed by the server so that only one row per
/// MCP travels. Percentiles are nearest-rank over the sorted processing times, as in
/// [`metrics::percentile`]; status follows [`Interaction::status`].
pub fn metrics_sql(database: &str, filter: &str) -> String {
    let failed = "(ifNull(success, 2) = 0 OR isNotNull(error_code))";
    let completed = "(ifNull(success, 2) = 1 AND isNull(error_code))";
    let pct = |p: &str| {
        format!("if(length(times) = 0, NULL, arrayElement(times, toUInt64(greatest(1, ceil({p} * length(times))))))")
    };
    let mean = |c: &str| format!("avgIf(assumeNotNull({c}), isNotNull({c})) AS mean_{c}");
    format!(
        "SELECT mcp_id, count, completed, failed, {p50} AS p50, {p95} AS p95, {p99} AS p99, error_codes, \
         mean_quality_score, mean_confidence, mean_cpu_usage, mean_memory_usage, mean_gpu_usage FROM (\
         SELECT mcp_id, count() AS count, countIf({completed}) AS completed, countIf({failed}) AS failed, \
         arraySort(groupArrayIf(assumeNotNull(processing_time), isNotNull(processing_time))) AS times, \
         groupArrayIf(ifNull(error_code, 'unknown'), {failed}) AS error_codes, \
         {q}, {c}, {cpu}, {mem}, {gpu} \
         FROM ({merged}) WHERE {TIME} >= ? AND {TIME} < ? GROUP BY mcp_id) ORDER BY mcp_id",
        p50 = pct("0.5"),
        p95 = pct("0.95"),
        p99 = pct("0.99"),
        q = mean("quality_score"),
        c = mean("confidence"),
        cpu = mean("cpu_usage"),
        mem = mean("memory_usage"),
        gpu = mean("gpu_usage"),
        merged = merged_sql(database, filter),
    )
}

#[derive(Debug, clickhouse::Row, Deserialize)]
struct MetricsRow {
    mcp_id: String,
    count: u64,
    completed: u64,
    failed: u64,
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
    error_codes: Vec<String>,
    mean_quality_score: f64,
    mean_confidence: f64,
    mean_cpu_usage: f64,
    mean_memory_usage: f64,
    mean_gpu_usage: f64,
}

impl MetricsRow {
    fn into_metrics(self, range: TimeRange) -> McpMetrics {
        // avg over no rows is NaN in ClickHouse; the API says null.
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut errors_by_code = std::collections::BTreeMap::new();
        for code in self.error_codes {
            *errors_by_code.entry(code).or_insert(0) += 1;
        }
        let finished = self.completed + self.failed;
        McpMetrics {
            mcp_id: self.mcp_id,
            count: self.count,
            completed: self.completed,
            failed: self.failed,
            in_progress: self.count - finished,
            success_rate: (finished > 0).then(|| self.completed as f64 / finished as f64),
            error_rate: (finished > 0).then(|| self.failed as f64 / finished as f64),
            errors_by_code,
            p50_processing_time: self.p50,
            p95_processing_time: self.p95,
            p99_processing_time: self.p99,
            interactions_per_minute: self.count as f64 / range.minutes(),
            mean_quality_score: finite(self.mean_quality_score),
            mean_confidence: finite(self.mean_confidence),
            mean_cpu_usage: finite(self.mean_cpu_usage),
            mean_memory_usage: finite(self.mean_memory_usage),
            mean_gpu_usage: finite(self.mean_gpu_usage),
        }
    }
}

enum Bind {
    Text(String),
    Int(i64),
}

impl InteractionStore for ClickHouseStore {
    fn record_access<'a>(&'a self, e: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut insert = self
                .client
                .insert::<AuditRow>(AUDIT_TABLE)
                .await
                .map_err(classify)?;
            let row = AuditRow {
                at_ms: e.at_ms,
                at_date: e.at_ms.div_euclid(86_400_000).clamp(0, i64::from(u16::MAX)) as u16,
                who: e.who.clone(),
                role: e.role.clone(),
                mcp_id: e.mcp_id.clone(),
                query: e.query.clone(),
                since_ms: e.since_ms,
                until_ms: e.until_ms,
                rows: e.rows,
            };
            insert.write(&row).await.map_err(classify)?;
            insert.end().await.map_err(classify)
        }
        .boxed()
    }

    fn expire<'a>(
        &'a self,
        e: &'a super::retention::Expiry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            // A mutation (ALTER … DELETE, on every supported version) removes the expired events;
            // the server applies it in the background.
            let (filter, binds) = match &e.mcp_id {
                Some(id) => ("mcp_id = ?".to_string(), vec![Bind::Text(id.clone())]),
                None if e.except.is_empty() => ("1".to_string(), vec![]),
                None => (
                    format!("mcp_id NOT IN ({})", vec!["?"; e.except.len()].join(", ")),
                    e.except.iter().cloned().map(Bind::Text).collect(),
                ),
            };
            let sql = format!(
                "ALTER TABLE {}.{TABLE} DELETE WHERE received_ms < {} AND {filter}",
                self.database, e.cutoff_ms
            );
            self.query(&sql, binds).execute().await.map_err(classify)
        }
        .boxed()
    }

    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        async move {
            let sql = format!(
                "SELECT at_ms, at_date, who, role, mcp_id, query, since_ms, until_ms, rows FROM {}.{AUDIT_TABLE} ORDER BY at_ms DESC LIMIT {limit}",
                self.database
            );
            let rows: Vec<AuditRow> = self.client.query(&sql).fetch_all().await.map_err(classify)?;
            Ok(rows
                .into_iter()
                .map(|r| AuditEntry {
                    at_ms: r.at_ms,
                    who: r.who,
                    role: r.role,
                    mcp_id: r.mcp_id,
                    query: r.query,
                    since_ms: r.since_ms,
                    until_ms: r.until_ms,
                    rows: r.rows,
                })
                .collect())
        }
        .boxed()
    }

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            let mut insert = self
                .client
                .insert::<EventRow>(TABLE)
                .await
                .map_err(classify)?;
            for e in events {
                insert.write(&row(e)).await.map_err(classify)?;
            }
            insert.end().await.map_err(classify)
        }
        .boxed()
    }

    fn history<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
        async move {
            let outer = format!("WHERE {TIME} >= ? AND {TIME} < ? ORDER BY {TIME} DESC, interaction_id DESC LIMIT {}", q.limit);
            self.merged(
                "mcp_id = ?",
                &outer,
                vec![
                    Bind::Text(q.mcp_id.clone()),
                    Bind::Int(q.since_ms.unwrap_or(i64::MIN)),
                    Bind::Int(q.until_ms.unwrap_or(i64::MAX)),
                ],
            )
            .await
        }
        .boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        async move {
            let (filter, mut binds) = match mcp_id {
                Some(id) => ("mcp_id = ?", vec![Bind::Text(id.to_string())]),
                None => ("1", vec![]),
            };
            binds.push(Bind::Int(range.since_ms));
            binds.push(Bind::Int(range.until_ms));
            let rows: Vec<MetricsRow> = self
                .query(&metrics_sql(&self.database, filter), binds)
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

/// A ClickHouse store that connects on first use and again after failures, so the ingest server
/// starts (and spools) while ClickHouse is still down.
pub struct LazyClickHouseStore {
    config: ClickHouseConfig,
    store: tokio::sync::OnceCell<ClickHouseStore>,
}

impl LazyClickHouseStore {
    pub fn new(config: ClickHouseConfig) -> Self {
        Self {
            config,
            store: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> Result<&ClickHouseStore, StoreError> {
        self.store
            .get_or_try_init(|| ClickHouseStore::connect(&self.config))
            .await
    }
}

impl InteractionStore for LazyClickHouseStore {
    fn record_access<'a>(&'a self, e: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.record_access(e).await }.boxed()
    }

    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        async move { self.get().await?.audit_log(limit).await }.boxed()
    }

    fn expire<'a>(
        &'a self,
        e: &'a super::retention::Expiry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.expire(e).await }.boxed()
    }

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move { self.get().await?.insert(events).await }.boxed()
    }

    fn history<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
        async move { self.get().await?.history(q).await }.boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        async move { self.get().await?.metrics(mcp_id, range).await }.boxed()
    }
}
