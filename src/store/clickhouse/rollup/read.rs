//! Reading long windows: rolled minutes from rollups, the partial first minute and the not yet
//! rolled tail from events, folded into the same cells as shorter windows.

use super::*;

impl ClickHouseStore {
    /// Metrics over a long window: rolled minutes from rollups, the rest from events.
    pub(in crate::store::clickhouse) async fn metrics_from_rollups(
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
    pub(in crate::store::clickhouse) async fn breakdown_from_rollups(
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
