//! The SQL of the ClickHouse store: the tables, and the SELECTs that merge an interaction's events
//! and aggregate metrics on the server. It runs on 18.16 and on current servers.

use crate::interaction::{Fields, FIELDS};

pub(super) const TABLE: &str = "interaction_events";
pub(super) const AUDIT_TABLE: &str = "audit_log";
/// Each MCP's heartbeats; merges keep the latest per MCP.
pub(super) const HEARTBEAT_TABLE: &str = "mcp_heartbeats";

/// How the events table is laid out: a partition per day of receive time, so a window reads the
/// partitions of its days and retention drops whole days; inside them sorted by MCP and receive
/// time, so a window reads only the granules of its time. Replaying an event repeats its
/// `received_ms`, so the sort key still makes replays one row.
pub const LAYOUT: &str = "PARTITION BY event_date ORDER BY (mcp_id, received_ms, event_id)";

/// The DDL of the events table for a server of `version`, named `table`.
pub fn create_table_sql(database: &str, version: (u32, u32)) -> String {
    create_events_table_sql(database, TABLE, version)
}

/// The events table's DDL under another name (a migration builds the new layout beside the old).
pub fn create_events_table_sql(database: &str, table: &str, version: (u32, u32)) -> String {
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
    for field in FIELDS {
        columns.push(format!(
            "{} {}",
            field.name,
            field_column_type(field, version)
        ));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{table} ({}) ENGINE = ReplacingMergeTree {LAYOUT}",
        columns.join(", ")
    )
}

/// The column type of `field` on a server of `version`.
pub fn field_column_type(field: &crate::interaction::FieldSpec, version: (u32, u32)) -> String {
    let ty = field.column_type;
    if version.0 >= 20 && field.low_cardinality {
        format!("LowCardinality(Nullable({ty}))")
    } else {
        format!("Nullable({ty})")
    }
}

/// The DDL of the audit log (the same on every version).
pub fn create_audit_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{AUDIT_TABLE} (at_ms Int64, at_date Date, who String, role String, mcp_id String, query String, since_ms Nullable(Int64), until_ms Nullable(Int64), rows UInt64) ENGINE = MergeTree PARTITION BY toYYYYMM(at_date) ORDER BY at_ms"
    )
}

/// The DDL of the heartbeat table (the same on every version).
pub fn create_heartbeat_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{HEARTBEAT_TABLE} (mcp_id String, at_ms Int64) ENGINE = ReplacingMergeTree(at_ms) ORDER BY mcp_id"
    )
}

/// [`merged_sql`] with each interaction's progress notes (`timeline`: (received_ms, progress,
/// message, event_id, details) of its progress events, oldest first), as history answers them. A report a
/// client sent twice is two rows with one event_id: the reader keeps the first.
pub fn merged_with_timeline_sql(database: &str, filter: &str) -> String {
    // The notes' columns under other names: 18.16 would read `progress` inside an aggregate as
    // the merged field of that alias, qualified or not.
    let events = format!(
        "(SELECT *, progress AS note_progress, progress_message AS note_message, progress_details AS note_details FROM {database}.{TABLE} WHERE {filter})"
    );
    let notes = "kind = 'progress' AND (isNotNull(note_progress) OR isNotNull(note_message) OR isNotNull(note_details))";
    format!(
        "SELECT {}, arraySort(x -> tupleElement(x, 1), groupArrayIf((received_ms, note_progress, note_message, event_id, note_details), {notes})) AS timeline \
         FROM {events} GROUP BY mcp_id, interaction_id",
        merged_columns().join(", ")
    )
}

/// The SELECT that merges events into interactions, for events matching `filter`.
pub fn merged_sql(database: &str, filter: &str) -> String {
    format!(
        "SELECT {} FROM {database}.{TABLE} WHERE {filter} GROUP BY mcp_id, interaction_id",
        merged_columns().join(", ")
    )
}

/// What [`merged_sql`] selects: an interaction's identity, receive times and merged fields.
fn merged_columns() -> Vec<String> {
    let mut columns = vec![
        "mcp_id".to_string(),
        "interaction_id".to_string(),
        "min(received_ms) AS first_received_ms".to_string(),
        "max(received_ms) AS last_received_ms".to_string(),
    ];
    columns.extend(Fields::merged_sql());
    columns
}

/// How far outside a time window the events of its interactions may have been received: a
/// report of the same interaction that came later (its completion), or a client clock that is off.
pub const DEFAULT_MAX_INTERACTION_MS: i64 = 15 * 60 * 1000;

/// The receive times `[from, to)` to read for interactions filed in `[since, until)` (open where
/// `None`), widened by `slack_ms` on both sides.
pub fn received_bounds(
    since: Option<i64>,
    until: Option<i64>,
    slack_ms: i64,
) -> (Option<i64>, Option<i64>) {
    (
        since.map(|s| s.saturating_sub(slack_ms)),
        until.map(|u| u.saturating_add(slack_ms)),
    )
}

/// The UTC day of `ms`, as ClickHouse compares it with a `Date` column (whose range ends in 2105).
pub fn day_of_ms(ms: i64) -> String {
    const LAST_DAY_MS: i64 = 4_291_660_800_000; // 2105-12-31T00:00:00Z
    match jiff::Timestamp::from_millisecond(ms.clamp(0, LAST_DAY_MS)) {
        Ok(ts) => ts.strftime("%Y-%m-%d").to_string(),
        Err(_) => "1970-01-01".to_string(),
    }
}

/// The time an interaction is filed under, over merged rows (see `store::interaction_time_ms`).
pub const TIME: &str = "coalesce(timestamp_ms, start_time_ms, first_received_ms)";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_widen_by_the_slack_and_stay_open_where_asked() {
        assert_eq!(
            received_bounds(Some(10_000), Some(20_000), 1_000),
            (Some(9_000), Some(21_000))
        );
        assert_eq!(received_bounds(None, Some(5), 1), (None, Some(6)));
        assert_eq!(
            received_bounds(Some(i64::MIN), Some(i64::MAX), 1_000),
            (Some(i64::MIN), Some(i64::MAX))
        );
    }

    #[test]
    fn days_are_utc_dates_and_out_of_range_times_clamp() {
        assert_eq!(day_of_ms(0), "1970-01-01");
        assert_eq!(day_of_ms(1_764_633_599_999), "2025-12-01");
        assert_eq!(day_of_ms(1_764_633_600_000), "2025-12-02");
        assert_eq!(day_of_ms(i64::MIN), "1970-01-01");
        assert_eq!(day_of_ms(i64::MAX), "2105-12-31");
        assert_eq!(day_of_ms(4_891_660_800_000), "2105-12-31");
    }
}
