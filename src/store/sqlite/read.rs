//! Reading interactions, their metrics and the versions MCPs reported.

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::params;

use super::{aggregate, columns, unavailable, SqliteStore, INTERACTION_COLUMNS};
use crate::interaction::{Interaction, ProgressNote};
use crate::store::metrics::{Breakdown, McpMetrics, MetricsCell, TimeRange};
use crate::store::{
    HistoryPage, HistoryQuery, InteractionReads, PageBudget, StoreError, VersionCount,
};

pub(super) fn read_timeline(text: Option<&str>) -> Result<Vec<ProgressNote>, StoreError> {
    text.map_or(Ok(Vec::new()), |t| {
        serde_json::from_str(t).map_err(|e| StoreError::Rejected(e.to_string()))
    })
}

/// Interactions from a query that selects [`INTERACTION_COLUMNS`] and then the field columns.
/// Reads no further once `budget` is spent.
fn read_page(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[&dyn rusqlite::ToSql],
    budget: &mut PageBudget,
) -> Result<Vec<Interaction>, StoreError> {
    let rows = stmt
        .query_map(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Option<String>>(4)?,
                columns::read(row, 5)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (mcp_id, interaction_id, first, last, notes, fields) = row.map_err(unavailable)?;
        let interaction = Interaction {
            interaction_id,
            mcp_id,
            fields,
            first_received_ms: first,
            last_received_ms: last,
            timeline: read_timeline(notes.as_deref())?,
        };
        if !budget.admit(&interaction) {
            break;
        }
        out.push(interaction);
    }
    Ok(out)
}

impl InteractionReads for SqliteStore {
    fn reported_versions(
        &self,
        range: TimeRange,
    ) -> BoxFuture<'_, Result<Vec<VersionCount>, StoreError>> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT mcp_id, mcp_version AS version, count(*) FROM interactions
                     WHERE time_ms >= ?1 AND time_ms < ?2 AND version IS NOT NULL
                     GROUP BY mcp_id, version ORDER BY mcp_id, version",
                )
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![range.since_ms, range.until_ms], |r| {
                    Ok(VersionCount {
                        mcp_id: r.get(0)?,
                        version: r.get(1)?,
                        interactions: r.get::<_, i64>(2)?.max(0) as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .boxed()
    }

    fn history_page<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        let q = query.clone();
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {INTERACTION_COLUMNS}, {} FROM interactions
                     WHERE mcp_id = ?1 AND time_ms >= ?2 AND time_ms < ?3
                       AND (time_ms < ?5 OR (time_ms = ?5 AND interaction_id < ?6))
                       AND (?7 IS NULL OR user_id = ?7)
                     ORDER BY time_ms DESC, interaction_id DESC LIMIT ?4",
                    columns::names()
                ))
                .map_err(unavailable)?;
            let since = q.since_ms.unwrap_or(i64::MIN);
            let until = q.until_ms.unwrap_or(i64::MAX);
            let limit = q.limit as i64;
            let (after_time, after_id) = q
                .after
                .as_ref()
                .map_or((i64::MAX, ""), |c| (c.time_ms, c.interaction_id.as_str()));
            let params: [&dyn rusqlite::ToSql; 7] = [
                &q.mcp_id,
                &since,
                &until,
                &limit,
                &after_time,
                &after_id,
                &q.user_id,
            ];
            let mut budget = PageBudget::new(q.max_bytes);
            let interactions = read_page(&mut stmt, &params, &mut budget)?;
            Ok(HistoryPage {
                interactions,
                full_by_bytes: budget.spent,
            })
        })
        .boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        let mcp = mcp_id.map(str::to_string);
        self.blocking(move |conn| aggregate::metrics(conn, mcp.as_deref(), range))
            .boxed()
    }

    fn breakdown<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
        by: Breakdown,
    ) -> BoxFuture<'a, Result<Vec<MetricsCell>, StoreError>> {
        let mcp = mcp_id.map(str::to_string);
        self.blocking(move |conn| aggregate::breakdown(conn, mcp.as_deref(), range, by))
            .boxed()
    }
}
