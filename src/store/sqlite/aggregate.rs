//! Metrics aggregated by SQLite itself from the field columns: counts, means, error codes and
//! nearest-rank percentiles are computed in SQL over the window's rows (sorting spills to
//! SQLite's temporary storage), so a read holds one small tally per MCP, never the window's
//! interactions.

use std::collections::BTreeMap;

use rusqlite::{Connection, ToSql};

use super::unavailable;
use crate::store::metrics::{
    bucket_range, nearest_rank, Breakdown, McpMetrics, MetricsCell, Tally, TimeRange, MAX_CELLS,
};
use crate::store::StoreError;

/// The window's interactions with the fields metrics need, and their status as
/// `Interaction::status` decides it (0 in progress, 1 completed, 2 failed).
const WINDOW: &str = "WITH w AS (SELECT mcp_id, {group} AS g, {bucket} AS b, \
     CASE WHEN success = 0 OR error_code IS NOT NULL THEN 2 \
          WHEN success = 1 THEN 1 ELSE 0 END AS status, \
     error_code, processing_time, quality_score, confidence, cpu_usage, memory_usage, gpu_usage \
     FROM interactions WHERE {mcp} time_ms >= ?1 AND time_ms < ?2)";

const PERCENTILES: [f64; 3] = [0.50, 0.95, 0.99];

/// `max(1, ceil(p × n))` in SQL, with the same floating-point product as [`nearest_rank`].
fn rank_sql(p: f64) -> String {
    let x = format!("({p:?} * n)");
    format!("max(1, CAST({x} AS INTEGER) + ({x} > CAST({x} AS INTEGER)))")
}

pub(super) fn metrics(
    conn: &Connection,
    mcp_id: Option<&str>,
    range: TimeRange,
) -> Result<Vec<McpMetrics>, StoreError> {
    let cells = breakdown(conn, mcp_id, range, Breakdown::default())?;
    let mut out: Vec<McpMetrics> = cells.into_iter().map(|c| c.metrics).collect();
    if let Some(id) = mcp_id {
        if out.is_empty() {
            out.push(Tally::default().into_metrics(id.to_string(), range));
        }
    }
    Ok(out)
}

type Key = (String, String, i64);

pub(super) fn breakdown(
    conn: &Connection,
    mcp_id: Option<&str>,
    range: TimeRange,
    by: Breakdown,
) -> Result<Vec<MetricsCell>, StoreError> {
    let group = by
        .group_by
        .map_or("''".to_string(), |d| format!("coalesce({}, '')", d.field()));
    let bucket = by.step_ms.map_or("0".to_string(), |step| {
        format!("(time_ms - ?1) / {}", step.max(1))
    });
    let window = WINDOW
        .replace(
            "{mcp}",
            if mcp_id.is_some() {
                "mcp_id = ?3 AND"
            } else {
                ""
            },
        )
        .replace("{group}", &group)
        .replace("{bucket}", &bucket);
    let mut binds: Vec<&dyn ToSql> = vec![&range.since_ms, &range.until_ms];
    if let Some(id) = &mcp_id {
        binds.push(id);
    }
    let mut tallies: BTreeMap<Key, Tally> = BTreeMap::new();
    let key = |row: &rusqlite::Row<'_>| -> Result<Key, StoreError> {
        Ok((
            row.get(0).map_err(unavailable)?,
            row.get(1).map_err(unavailable)?,
            row.get(2).map_err(unavailable)?,
        ))
    };

    let mut totals = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, g, b, count(*), sum(status = 1), sum(status = 2), avg(quality_score), \
             avg(confidence), avg(cpu_usage), avg(memory_usage), avg(gpu_usage) FROM w GROUP BY mcp_id, g, b \
             LIMIT {}",
            MAX_CELLS + 1
        ))
        .map_err(unavailable)?;
    let mut rows = totals.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let count = |i| row.get::<_, i64>(i).map(|v| v.max(0) as u64);
        let tally = tallies.entry(key(row)?).or_default();
        tally.count = count(3).map_err(unavailable)?;
        tally.completed = count(4).map_err(unavailable)?;
        tally.failed = count(5).map_err(unavailable)?;
        tally.mean_quality_score = row.get(6).map_err(unavailable)?;
        tally.mean_confidence = row.get(7).map_err(unavailable)?;
        tally.mean_cpu_usage = row.get(8).map_err(unavailable)?;
        tally.mean_memory_usage = row.get(9).map_err(unavailable)?;
        tally.mean_gpu_usage = row.get(10).map_err(unavailable)?;
    }
    if tallies.len() > MAX_CELLS {
        return Err(StoreError::TooLarge(MAX_CELLS));
    }

    let mut errors = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, g, b, coalesce(error_code, 'unknown'), count(*) FROM w WHERE status = 2 GROUP BY 1, 2, 3, 4"
        ))
        .map_err(unavailable)?;
    let mut rows = errors.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let code: String = row.get(3).map_err(unavailable)?;
        let n: i64 = row.get(4).map_err(unavailable)?;
        if let Some(tally) = tallies.get_mut(&key(row)?) {
            tally.errors_by_code.insert(code, n.max(0) as u64);
        }
    }

    // Only the rows at the three ranks leave SQLite.
    let at_ranks = PERCENTILES
        .iter()
        .map(|p| format!("rn = {}", rank_sql(*p)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut ranked = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, g, b, rn, n, processing_time FROM (SELECT mcp_id, g, b, processing_time, \
             row_number() OVER (PARTITION BY mcp_id, g, b ORDER BY processing_time) AS rn, \
             count(*) OVER (PARTITION BY mcp_id, g, b) AS n FROM w WHERE processing_time IS NOT NULL) \
             WHERE {at_ranks}"
        ))
        .map_err(unavailable)?;
    let mut rows = ranked.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let rank: i64 = row.get(3).map_err(unavailable)?;
        let n: i64 = row.get(4).map_err(unavailable)?;
        let value: f64 = row.get(5).map_err(unavailable)?;
        let Some(tally) = tallies.get_mut(&key(row)?) else {
            continue;
        };
        let n = usize::try_from(n).unwrap_or(0);
        let rank = usize::try_from(rank).unwrap_or(0);
        for (p, slot) in PERCENTILES
            .iter()
            .zip([&mut tally.p50, &mut tally.p95, &mut tally.p99])
        {
            if nearest_rank(n, *p) == rank {
                *slot = Some(value);
            }
        }
    }

    Ok(tallies
        .into_iter()
        .map(|((mcp_id, group, bucket), tally)| MetricsCell {
            metrics: tally.into_metrics(mcp_id.clone(), bucket_range(range, by.step_ms, bucket)),
            mcp_id,
            group: (!group.is_empty()).then_some(group),
            bucket,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_in_sql_equal_the_nearest_ranks() {
        let conn = Connection::open_in_memory().unwrap();
        for n in [1i64, 2, 3, 7, 19, 20, 99, 100, 101, 1000, 12345] {
            for p in PERCENTILES {
                let rank: i64 = conn
                    .query_row(
                        &format!("SELECT {} FROM (SELECT ?1 AS n)", rank_sql(p)),
                        [n],
                        |r| r.get(0),
                    )
                    .unwrap();
                assert_eq!(rank as usize, nearest_rank(n as usize, p), "n={n} p={p}");
            }
        }
    }
}
