//! Metrics aggregated by SQLite itself: counts, means, error codes and nearest-rank percentiles are
//! computed in SQL over the window's rows (sorting spills to SQLite's temporary storage), so a read
//! holds one small tally per MCP, never the window's interactions.

use std::collections::BTreeMap;

use rusqlite::{Connection, ToSql};

use super::unavailable;
use crate::store::metrics::{nearest_rank, McpMetrics, Tally, TimeRange};
use crate::store::StoreError;

/// The window's interactions with the fields metrics need, and their status as
/// `Interaction::status` decides it (0 in progress, 1 completed, 2 failed).
const WINDOW: &str = "WITH w AS (SELECT mcp_id, \
     CASE WHEN json_extract(fields, '$.success') = 0 OR json_extract(fields, '$.error_code') IS NOT NULL THEN 2 \
          WHEN json_extract(fields, '$.success') = 1 THEN 1 ELSE 0 END AS status, \
     json_extract(fields, '$.error_code') AS error_code, \
     json_extract(fields, '$.processing_time') AS processing_time, \
     json_extract(fields, '$.quality_score') AS quality_score, \
     json_extract(fields, '$.confidence') AS confidence, \
     json_extract(fields, '$.cpu_usage') AS cpu_usage, \
     json_extract(fields, '$.memory_usage') AS memory_usage, \
     json_extract(fields, '$.gpu_usage') AS gpu_usage \
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
    let window = WINDOW.replace(
        "{mcp}",
        if mcp_id.is_some() {
            "mcp_id = ?3 AND"
        } else {
            ""
        },
    );
    let mut binds: Vec<&dyn ToSql> = vec![&range.since_ms, &range.until_ms];
    if let Some(id) = &mcp_id {
        binds.push(id);
    }
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    if let Some(id) = mcp_id {
        tallies.insert(id.to_string(), Tally::default());
    }

    let mut totals = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, count(*), sum(status = 1), sum(status = 2), avg(quality_score), \
             avg(confidence), avg(cpu_usage), avg(memory_usage), avg(gpu_usage) FROM w GROUP BY mcp_id"
        ))
        .map_err(unavailable)?;
    let mut rows = totals.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let count = |i| row.get::<_, i64>(i).map(|v| v.max(0) as u64);
        let tally = tallies.entry(row.get(0).map_err(unavailable)?).or_default();
        tally.count = count(1).map_err(unavailable)?;
        tally.completed = count(2).map_err(unavailable)?;
        tally.failed = count(3).map_err(unavailable)?;
        tally.mean_quality_score = row.get(4).map_err(unavailable)?;
        tally.mean_confidence = row.get(5).map_err(unavailable)?;
        tally.mean_cpu_usage = row.get(6).map_err(unavailable)?;
        tally.mean_memory_usage = row.get(7).map_err(unavailable)?;
        tally.mean_gpu_usage = row.get(8).map_err(unavailable)?;
    }

    let mut errors = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, coalesce(error_code, 'unknown'), count(*) FROM w WHERE status = 2 GROUP BY 1, 2"
        ))
        .map_err(unavailable)?;
    let mut rows = errors.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let mcp: String = row.get(0).map_err(unavailable)?;
        let code: String = row.get(1).map_err(unavailable)?;
        let n: i64 = row.get(2).map_err(unavailable)?;
        tallies
            .entry(mcp)
            .or_default()
            .errors_by_code
            .insert(code, n.max(0) as u64);
    }

    // Only the rows at the three ranks leave SQLite.
    let at_ranks = PERCENTILES
        .iter()
        .map(|p| format!("rn = {}", rank_sql(*p)))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut ranked = conn
        .prepare(&format!(
            "{window} SELECT mcp_id, rn, n, processing_time FROM (SELECT mcp_id, processing_time, \
             row_number() OVER (PARTITION BY mcp_id ORDER BY processing_time) AS rn, \
             count(*) OVER (PARTITION BY mcp_id) AS n FROM w WHERE processing_time IS NOT NULL) \
             WHERE {at_ranks}"
        ))
        .map_err(unavailable)?;
    let mut rows = ranked.query(binds.as_slice()).map_err(unavailable)?;
    while let Some(row) = rows.next().map_err(unavailable)? {
        let mcp: String = row.get(0).map_err(unavailable)?;
        let rank: i64 = row.get(1).map_err(unavailable)?;
        let n: i64 = row.get(2).map_err(unavailable)?;
        let value: f64 = row.get(3).map_err(unavailable)?;
        let tally = tallies.entry(mcp).or_default();
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
        .map(|(mcp, tally)| tally.into_metrics(mcp, range))
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
