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

use std::collections::BTreeMap;

use super::super::metrics::{
    bucket_range, Breakdown, Dimension, McpMetrics, MetricsCell, Tally, TimeRange, MAX_CELLS,
};
use super::super::sketch::{self, Histogram};
use super::rows::RollupRow;
use super::sql::{merged_sql, TIME};
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

impl ClickHouseStore {
    /// Until when minutes are rolled (exclusive), if rolling has begun.
    pub(super) async fn rolled_through(&self) -> Result<Option<i64>, StoreError> {
        let (through, rows): (i64, u64) = self
            .client
            .query(&format!(
                "SELECT max(rolled_through), count() FROM {}.{PROGRESS_TABLE} WHERE name = 'minutes'",
                self.database
            ))
            .fetch_one()
            .await
            .map_err(classify)?;
        Ok((rows > 0).then_some(through))
    }

    /// Rolls the hours whose interactions are complete, continuing from the last run (or, the
    /// first time, from the first day the log holds), then the hours marked for rolling again.
    pub(super) async fn roll_up(&self) -> Result<(), StoreError> {
        let sealed = floor_hour(now_ms() - self.max_interaction_ms - MINUTE_MS);
        let mut from = match self.rolled_through().await? {
            Some(through) => through,
            None => self.first_day_ms().await?.unwrap_or(sealed),
        };
        for _ in 0..MAX_DAYS_PER_RUN {
            if from >= sealed {
                break;
            }
            let to = (from + DAY_MS).min(sealed);
            self.roll(from, to).await?;
            self.record_progress("minutes", to).await?;
            from = to;
        }
        if from >= sealed {
            self.record_progress("minutes", from.max(sealed)).await?;
        }
        self.reroll_marked().await
    }

    /// After events were inserted: when some were received so long ago that their hours may
    /// already be rolled (a spool catching up after an outage), marks those hours for the upkeep
    /// loop to roll again, once for however many batches touch them. The mark is written before
    /// the insert is confirmed, so a crash cannot lose it.
    pub(super) async fn mark_late_insert(
        &self,
        oldest_received: i64,
        newest_received: i64,
    ) -> Result<(), StoreError> {
        let slack = self.max_interaction_ms;
        if oldest_received >= now_ms() - slack - 2 * MINUTE_MS {
            return Ok(());
        }
        let Some(through) = self.rolled_through().await? else {
            return Ok(());
        };
        let from = floor_hour(oldest_received.saturating_sub(slack));
        let to = ceil_hour(newest_received.saturating_add(slack)).min(through);
        if from >= to {
            return Ok(());
        }
        let at = now_ms();
        let sql = format!(
            "INSERT INTO {}.{DIRTY_TABLE} (event_date, mcp_id, from_ms, to_ms, at_ms) VALUES (toDate(?), '', ?, ?, ?)",
            self.database
        );
        let binds = vec![
            Bind::Text(super::sql::day_of_ms(at)),
            Bind::Int(from),
            Bind::Int(to),
            Bind::Int(at),
        ];
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    /// Rolls again the hours marked since the last run. Marks of the last minute before it are
    /// read again the next time (rolling twice is harmless), so a mark another replica wrote
    /// just as this run read is not missed.
    async fn reroll_marked(&self) -> Result<(), StoreError> {
        let (done, _): (i64, u64) = self
            .client
            .query(&format!(
                "SELECT max(rolled_through), count() FROM {}.{PROGRESS_TABLE} WHERE name = 'marks'",
                self.database
            ))
            .fetch_one()
            .await
            .map_err(classify)?;
        let started = now_ms();
        let marks: Vec<(i64, i64)> = self
            .query(
                &format!(
                    "SELECT from_ms, to_ms FROM {}.{DIRTY_TABLE} WHERE at_ms >= ? ORDER BY from_ms LIMIT 100000",
                    self.database
                ),
                vec![Bind::Int(done)],
            )
            .fetch_all()
            .await
            .map_err(classify)?;
        for (from, to) in coalesce(marks) {
            let mut at = from;
            while at < to {
                let end = (at + DAY_MS).min(to);
                self.roll(at, end).await?;
                at = end;
            }
        }
        self.record_progress("marks", started - MINUTE_MS).await
    }

    async fn roll(&self, from: i64, to: i64) -> Result<(), StoreError> {
        let (received, mut binds) = self.received_filter(Some(from), Some(to));
        binds.push(Bind::Int(from));
        binds.push(Bind::Int(to));
        let sql = roll_sql(&self.database, &received, generation());
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    async fn record_progress(&self, name: &str, through: i64) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {}.{PROGRESS_TABLE} (name, rolled_through, at_ms) VALUES (?, ?, ?)",
            self.database
        );
        let binds = vec![
            Bind::Text(name.to_string()),
            Bind::Int(through),
            Bind::Int(now_ms()),
        ];
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    /// The start of the first day the events table holds.
    async fn first_day_ms(&self) -> Result<Option<i64>, StoreError> {
        // One server lists its parts; a cluster's are on its shards, so ask the table itself.
        let query = match self.topology.cluster() {
            None => self
                .client
                .query(
                    "SELECT toUInt16(min(min_date)), count() FROM system.parts WHERE database = ? AND table = ? AND active",
                )
                .bind(&self.database)
                .bind(super::sql::TABLE),
            Some(_) => self.client.query(&format!(
                "SELECT toUInt16(min(event_date)), count() FROM {}.{}",
                self.database,
                super::sql::TABLE
            )),
        };
        let (day, rows): (u16, u64) = query.fetch_one().await.map_err(classify)?;
        Ok((rows > 0).then_some(i64::from(day) * DAY_MS))
    }

    /// Metrics over a long window: rolled minutes from rollups, the rest from events.
    pub(super) async fn metrics_from_rollups(
        &self,
        mcp_id: Option<&str>,
        range: TimeRange,
    ) -> Result<Vec<McpMetrics>, StoreError> {
        let cells = self
            .breakdown_from_rollups(mcp_id, range, Breakdown::default())
            .await?;
        let mut out: Vec<McpMetrics> = cells.into_iter().map(|c| c.metrics).collect();
        if let (Some(id), true) = (mcp_id, out.is_empty()) {
            out.push(Tally::default().into_metrics(id.to_string(), range));
        }
        Ok(out)
    }

    /// Metrics cut by `by`: rolled minutes from rollups, the rest from events. A series starts at
    /// the whole minute its window starts in, so every bucket holds whole minutes.
    pub(super) async fn breakdown_from_rollups(
        &self,
        mcp_id: Option<&str>,
        range: TimeRange,
        by: Breakdown,
    ) -> Result<Vec<MetricsCell>, StoreError> {
        let range = match by.step_ms {
            Some(_) => TimeRange {
                since_ms: floor_minute(range.since_ms),
                until_ms: range.until_ms,
            },
            None => range,
        };
        let [head, rolled, tail] = split_window(range, self.rolled_through().await?);
        let mcp_filter = match mcp_id {
            Some(_) => "mcp_id = ?",
            None => "1",
        };
        let mcp_bind = || mcp_id.map(|id| Bind::Text(id.to_string()));
        let grouping = Grouping::Read {
            dimension: by.group_by,
            per_minute: by.step_ms.is_some(),
        };
        let mut branches = Vec::new();
        let mut binds = Vec::new();
        for (from, to) in [head, tail].into_iter().flatten() {
            let (received, received_binds) = self.received_filter(Some(from), Some(to));
            binds.extend(mcp_bind());
            binds.extend(received_binds);
            binds.push(Bind::Int(from));
            binds.push(Bind::Int(to));
            branches.push(partials_sql(
                &self.database,
                &format!("{mcp_filter} AND {received}"),
                grouping,
            ));
        }
        if let Some((from, to)) = rolled {
            let bounds = "minute >= ? AND minute < ? AND event_date >= ? AND event_date <= ?";
            let bound_binds = || {
                [
                    Bind::Int(from),
                    Bind::Int(to),
                    Bind::Text(super::sql::day_of_ms(from)),
                    Bind::Text(super::sql::day_of_ms(to)),
                ]
            };
            // The newest generation of each hour.
            branches.push(format!(
                "SELECT {columns} FROM {db}.{ROLLUP_TABLE} WHERE {mcp_filter} AND {bounds} \
                 AND (intDiv(minute, {HOUR_MS}), rolled_at) GLOBAL IN (SELECT intDiv(minute, {HOUR_MS}), max(rolled_at) \
                 FROM {db}.{ROLLUP_TABLE} WHERE {mcp_filter} AND {bounds} GROUP BY intDiv(minute, {HOUR_MS}))",
                columns = rollup_columns_as_partials(),
                db = self.database,
            ));
            binds.extend(mcp_bind());
            binds.extend(bound_binds());
            binds.extend(mcp_bind());
            binds.extend(bound_binds());
        }
        if branches.is_empty() {
            return Ok(Vec::new());
        }
        let group = by
            .group_by
            .map_or("''".to_string(), |d| format!("p_{}", d.field()));
        let bucket = by.step_ms.map_or("toInt64(0)".to_string(), |step| {
            format!("intDiv(p_minute - ({}), {})", range.since_ms, step.max(1))
        });
        let sums: Vec<String> = MEANS
            .iter()
            .map(|m| format!("sum(p_{m}_sum), sum(p_{m}_n)"))
            .collect();
        // Rows are cells × error codes; more than this many cells is refused, not truncated.
        let row_limit = MAX_CELLS * 10 + 1;
        let sql = format!(
            "SELECT p_mcp_id, p_error_code, {group} AS p_group, {bucket} AS p_bucket, sum(p_interactions), \
             sum(p_completed), sum(p_failed), sumMap(p_time_buckets, p_time_counts), {sums} \
             FROM ({union}) GROUP BY p_mcp_id, p_error_code, p_group, p_bucket LIMIT {row_limit}",
            sums = sums.join(", "),
            union = branches.join(" UNION ALL "),
        );
        let rows: Vec<RollupRow> = self
            .query(&sql, binds)
            .fetch_all()
            .await
            .map_err(classify)?;
        if rows.len() >= row_limit {
            return Err(StoreError::TooLarge(MAX_CELLS));
        }
        let cells = fold(rows, range, by.step_ms);
        if cells.len() > MAX_CELLS {
            return Err(StoreError::TooLarge(MAX_CELLS));
        }
        Ok(cells)
    }
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

/// One cell per MCP, group and bucket, from partial rows (one per cell and error code).
fn fold(rows: Vec<RollupRow>, range: TimeRange, step_ms: Option<i64>) -> Vec<MetricsCell> {
    #[derive(Default)]
    struct Acc {
        tally: Tally,
        times: Histogram,
        sums: [f64; 5],
        counts: [u64; 5],
    }
    let mut cells: BTreeMap<(String, String, i64), Acc> = BTreeMap::new();
    for row in rows {
        let key = (row.mcp_id.clone(), row.group.clone(), row.bucket);
        let acc = cells.entry(key).or_default();
        for (i, (sum, n)) in row.means().into_iter().enumerate() {
            acc.sums[i] += sum;
            acc.counts[i] += n;
        }
        acc.tally.count += row.interactions;
        acc.tally.completed += row.completed;
        acc.tally.failed += row.failed;
        if !row.error_code.is_empty() && row.failed > 0 {
            *acc.tally.errors_by_code.entry(row.error_code).or_insert(0) += row.failed;
        }
        for (bucket, count) in row.histogram.0.iter().zip(&row.histogram.1) {
            acc.times.add(*bucket, *count);
        }
    }
    cells
        .into_iter()
        .map(|((mcp_id, group, bucket), mut acc)| {
            let mean = |i: usize| (acc.counts[i] > 0).then(|| acc.sums[i] / acc.counts[i] as f64);
            acc.tally.p50 = acc.times.percentile(0.50);
            acc.tally.p95 = acc.times.percentile(0.95);
            acc.tally.p99 = acc.times.percentile(0.99);
            acc.tally.mean_quality_score = mean(0);
            acc.tally.mean_confidence = mean(1);
            acc.tally.mean_cpu_usage = mean(2);
            acc.tally.mean_memory_usage = mean(3);
            acc.tally.mean_gpu_usage = mean(4);
            MetricsCell {
                metrics: acc
                    .tally
                    .into_metrics(mcp_id.clone(), bucket_range(range, step_ms, bucket)),
                mcp_id,
                group: (!group.is_empty()).then_some(group),
                bucket,
            }
        })
        .collect()
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
