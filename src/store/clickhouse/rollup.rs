//! Per-minute rollups, so 24 h and 7 d metrics read thousands of rollup rows instead of every event.
//!
//! A minute is rolled once its interactions' events have all been received (the
//! `--max-interaction-seconds` slack after it has passed): the events of its interactions are merged
//! and aggregated per MCP, minute, request type, adapter, region, environment and error code into
//! `interaction_rollups` — counts, per-field sums, and processing times as a log-bucket histogram
//! ([`crate::store::sketch`]). How far rolling has come is kept in `rollup_progress`.
//!
//! Rolls cover whole hours, each roll one generation (`rolled_at`), and reads take, for each hour,
//! only its newest generation. So an hour can be rolled again (events that reached ClickHouse
//! late, from a spool after an outage; two replicas rolling the same hour) without counting
//! anything twice, even where an interaction moved to another group (its error code arrived later).
//! (Generations per hour rather than per minute keep that filter to a few hundred keys for a week:
//! per MCP and minute it took 0.3 s of a 7-day read.)
//!
//! A window longer than [`ROLLUP_WINDOWS_OVER_MS`] reads its whole rolled minutes from rollups and
//! its partial first minute and not yet rolled tail from the events, exactly as shorter windows do.
//! Counts, rates and means are exact; percentiles are within [`sketch::RELATIVE_ERROR`].

mod read;
mod roll;

use std::collections::BTreeMap;

use super::super::metrics::{
    bucket_range, Breakdown, Dimension, McpMetrics, MetricsCell, Tally, TimeRange, MAX_CELLS,
};
use super::super::sketch::{self, Histogram};
use super::rows::RollupRow;
use super::sql::{self, merged_sql, TIME};
use super::{classify, now_ms, Bind, ClickHouseStore, StoreError};

pub(super) const ROLLUP_TABLE: &str = "interaction_rollups";
pub(super) const PROGRESS_TABLE: &str = "rollup_progress";
/// Hours that took late events after they were rolled, to be rolled again by the upkeep loop.
pub(super) const DIRTY_TABLE: &str = "rollup_dirty";
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Windows longer than this read rollups for their whole rolled minutes.
pub const ROLLUP_WINDOWS_OVER_MS: i64 = 3_600_000;
/// A run rolls at most this many days (a backfill after an upgrade continues on the next run).
const MAX_DAYS_PER_RUN: usize = 32;

/// The groups a rollup row is kept per, besides the MCP and the minute.
pub const DIMENSIONS: [&str; 4] = ["request_type", "adapter_used", "region", "environment"];
const MEANS: [&str; 5] = [
    "quality_score",
    "confidence",
    "cpu_usage",
    "memory_usage",
    "gpu_usage",
];

/// The DDL of the rollup table.
pub fn create_rollup_table_sql(database: &str, version: (u32, u32)) -> String {
    let text = if version.0 >= 20 {
        "LowCardinality(String)"
    } else {
        "String"
    };
    let mut columns = vec![
        format!("mcp_id {text}"),
        "minute Int64".to_string(),
        "event_date Date".to_string(),
    ];
    columns.extend(DIMENSIONS.iter().map(|d| format!("{d} {text}")));
    columns.push(format!("error_code {text}"));
    columns.extend([
        "interactions UInt64".to_string(),
        "completed UInt64".to_string(),
        "failed UInt64".to_string(),
        "time_buckets Array(Int16)".to_string(),
        "time_counts Array(UInt64)".to_string(),
    ]);
    for m in MEANS {
        columns.push(format!("{m}_sum Float64"));
        columns.push(format!("{m}_n UInt64"));
    }
    columns.push("rolled_at Int64".to_string());
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{ROLLUP_TABLE} ({}) ENGINE = ReplacingMergeTree(rolled_at) \
         PARTITION BY event_date ORDER BY (mcp_id, minute, {}, error_code)",
        columns.join(", "),
        DIMENSIONS.join(", ")
    )
}

/// The DDL of the table that says how far rolling has come.
pub fn create_progress_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{PROGRESS_TABLE} (name String, rolled_through Int64, at_ms Int64) \
         ENGINE = ReplacingMergeTree(at_ms) ORDER BY name"
    )
}

/// The DDL of the table of hours to roll again (with `event_date` and `mcp_id`, so retention
/// drops its old days like the others').
pub fn create_dirty_table_sql(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {database}.{DIRTY_TABLE} (event_date Date, mcp_id String, from_ms Int64, to_ms Int64, at_ms Int64) \
         ENGINE = MergeTree PARTITION BY event_date ORDER BY at_ms"
    )
}

/// The rollup columns (`rolled_at` aside), in the order [`partials_sql`]'s `p_` columns name them.
fn rollup_column_names() -> Vec<String> {
    let mut columns = vec!["mcp_id", "minute", "event_date"];
    columns.extend(DIMENSIONS);
    columns.extend([
        "error_code",
        "interactions",
        "completed",
        "failed",
        "time_buckets",
        "time_counts",
    ]);
    let mut out: Vec<String> = columns.into_iter().map(str::to_string).collect();
    for m in MEANS {
        out.push(format!("{m}_sum"));
        out.push(format!("{m}_n"));
    }
    out
}

fn rollup_columns() -> String {
    rollup_column_names().join(", ")
}

/// The `p_` names of [`partials_sql`]'s columns, in rollup column order.
fn partial_columns() -> String {
    rollup_column_names()
        .iter()
        .map(|c| format!("p_{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rollup columns named as [`partial_columns`], so rollup rows and partials line up in a union.
fn rollup_columns_as_partials() -> String {
    rollup_column_names()
        .iter()
        .map(|c| format!("{c} AS p_{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How finely [`partials_sql`] groups: per minute and every dimension (rollup rows), or, for the
/// partial minute and the tail of a read, per MCP and error code and only what the read cuts by.
#[derive(Clone, Copy, PartialEq)]
pub enum Grouping {
    Rollup,
    Read {
        dimension: Option<Dimension>,
        per_minute: bool,
    },
}

/// Partial aggregates, in [`partial_columns`], of the interactions filed in `[?, ?)` among the
/// events matching `filter` (whose binds come first).
pub fn partials_sql(database: &str, filter: &str, grouping: Grouping) -> String {
    format!(
        "SELECT {} FROM ({})",
        partial_columns(),
        partials_with_helpers_sql(database, filter, grouping)
    )
}

fn partials_with_helpers_sql(database: &str, filter: &str, grouping: Grouping) -> String {
    let failed = "(ifNull(success, 2) = 0 OR isNotNull(error_code))";
    let completed = "(ifNull(success, 2) = 1 AND isNull(error_code))";
    let (per_minute, kept): (bool, Vec<&str>) = match grouping {
        Grouping::Rollup => (true, DIMENSIONS.to_vec()),
        Grouping::Read {
            dimension,
            per_minute,
        } => (
            per_minute,
            dimension.map(|d| d.field()).into_iter().collect(),
        ),
    };
    let dims: Vec<String> = DIMENSIONS
        .iter()
        .map(|d| match kept.contains(d) {
            true => format!("ifNull({d}, '') AS p_{d}"),
            false => format!("'' AS p_{d}"),
        })
        .collect();
    let mut group_by = vec!["p_mcp_id".to_string()];
    if per_minute {
        group_by.push("p_minute".into());
    }
    group_by.extend(kept.iter().map(|d| format!("p_{d}")));
    group_by.push("p_error_code".into());
    let minute = match per_minute {
        true => format!("intDiv(p_time, {MINUTE_MS}) * {MINUTE_MS}"),
        false => "toInt64(0)".to_string(),
    };
    let mut sums = Vec::new();
    for m in MEANS {
        sums.push(format!(
            "sumIf(assumeNotNull({m}), isNotNull({m})) AS p_{m}_sum"
        ));
        sums.push(format!("countIf(isNotNull({m})) AS p_{m}_n"));
    }
    format!(
        "SELECT mcp_id AS p_mcp_id, {minute} AS p_minute, \
         toDate(toUInt16(intDiv(p_minute, 86400000))) AS p_event_date, {dims}, \
         if({failed}, ifNull(error_code, 'unknown'), '') AS p_error_code, \
         count() AS p_interactions, countIf({completed}) AS p_completed, countIf({failed}) AS p_failed, \
         sumMap(if(isNull(processing_time), emptyArrayInt16(), [{bucket}]), \
                if(isNull(processing_time), emptyArrayUInt64(), [toUInt64(1)])) AS p_histogram, \
         tupleElement(p_histogram, 1) AS p_time_buckets, tupleElement(p_histogram, 2) AS p_time_counts, {sums} \
         FROM (SELECT *, {TIME} AS p_time FROM ({merged})) WHERE p_time >= ? AND p_time < ? \
         GROUP BY {group_by}",
        dims = dims.join(", "),
        bucket = sketch::bucket_sql("processing_time"),
        sums = sums.join(", "),
        group_by = group_by.join(", "),
        merged = merged_sql(database, filter),
    )
}

/// The INSERT that rolls the interactions filed in `[?, ?)` among the events matching `filter`
/// into rollup rows of generation `generation`.
pub fn roll_sql(database: &str, filter: &str, generation: i64) -> String {
    format!(
        "INSERT INTO {database}.{ROLLUP_TABLE} ({columns}, rolled_at) SELECT *, toInt64({generation}) FROM ({partials})",
        columns = rollup_columns(),
        partials = partials_sql(database, filter, Grouping::Rollup),
    )
}

fn floor_minute(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

fn ceil_minute(ms: i64) -> i64 {
    floor_minute(ms.saturating_add(MINUTE_MS - 1))
}

fn floor_hour(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

fn ceil_hour(ms: i64) -> i64 {
    floor_hour(ms.saturating_add(HOUR_MS - 1))
}

/// A generation for one roll: the time, with random low bits so that two rolls (two replicas)
/// never share one.
fn generation() -> i64 {
    now_ms().saturating_mul(1 << 20) + i64::from(rand::random::<u32>() & 0xF_FFFF)
}

/// The three parts of a window `[since, until)` when minutes up to `rolled_through` are rolled:
/// a partial first minute and an unrolled tail read from events, whole minutes between from
/// rollups. Each part is `(from, to)`; empty parts are `None`.
pub fn split_window(range: TimeRange, rolled_through: Option<i64>) -> [Option<(i64, i64)>; 3] {
    let (since, until) = (range.since_ms, range.until_ms);
    let head_end = ceil_minute(since).min(until);
    let split = rolled_through
        .unwrap_or(i64::MIN)
        .min(floor_minute(until))
        .max(head_end);
    let part = |from: i64, to: i64| (from < to).then_some((from, to));
    [
        part(since, head_end),
        part(head_end, split),
        part(split, until),
    ]
}

/// Overlapping or touching ranges merged, in order.
fn coalesce(mut ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::new();
    for (from, to) in ranges {
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(since_ms: i64, until_ms: i64) -> TimeRange {
        TimeRange { since_ms, until_ms }
    }

    #[test]
    fn marked_hours_are_rolled_once_however_many_batches_mark_them() {
        let h = HOUR_MS;
        assert_eq!(
            coalesce(vec![
                (3 * h, 5 * h),
                (h, 2 * h),
                (2 * h, 3 * h),
                (4 * h, 6 * h),
                (9 * h, 10 * h)
            ]),
            [(h, 6 * h), (9 * h, 10 * h)]
        );
        assert_eq!(coalesce(vec![]), []);
    }

    #[test]
    fn a_window_splits_into_a_partial_minute_rolled_minutes_and_a_tail() {
        let m = MINUTE_MS;
        assert_eq!(
            split_window(range(10 * m + 5, 100 * m + 7), Some(90 * m)),
            [
                Some((10 * m + 5, 11 * m)),
                Some((11 * m, 90 * m)),
                Some((90 * m, 100 * m + 7))
            ]
        );
        // Aligned, and rolled past its end: all rollups but the partial last minute.
        assert_eq!(
            split_window(range(10 * m, 100 * m + 7), Some(500 * m)),
            [None, Some((10 * m, 100 * m)), Some((100 * m, 100 * m + 7))]
        );
        // Nothing rolled: all from events.
        assert_eq!(
            split_window(range(10 * m, 100 * m), None),
            [None, None, Some((10 * m, 100 * m))]
        );
        // Rolled only before the window.
        assert_eq!(
            split_window(range(10 * m, 100 * m), Some(5 * m)),
            [None, None, Some((10 * m, 100 * m))]
        );
        // Inside one minute.
        assert_eq!(
            split_window(range(10 * m + 1, 10 * m + 9), Some(500 * m)),
            [Some((10 * m + 1, 10 * m + 9)), None, None]
        );
    }
}
