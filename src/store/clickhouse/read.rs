//! Reading interactions (history widening its look-back only while a page is not full), their
//! metrics and the versions MCPs reported.

use futures::future::BoxFuture;
use futures::FutureExt;

use super::rows::{MetricsRow, VersionRow};
use super::sql::{metrics_sql, TABLE, TIME};
use super::{classify, now_ms, sql, Bind, ClickHouseStore, ROLLUP_WINDOWS_OVER_MS};
use crate::store::metrics::{self, Breakdown, McpMetrics, MetricsCell, TimeRange};
use crate::store::{HistoryPage, HistoryQuery, InteractionReads, StoreError, VersionCount};

/// The spans of receive time history looks back over, newest first, before reading everything.
const HISTORY_SPANS_MS: [i64; 4] = [
    3_600_000,
    24 * 3_600_000,
    7 * 24 * 3_600_000,
    30 * 24 * 3_600_000,
];

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

    fn history_page<'a>(
        &'a self,
        q: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<HistoryPage, StoreError>> {
        async move {
            // Newest first: look back over growing spans of receive time and stop as soon as one
            // holds `limit` interactions, so a page of recent history does not read all of it.
            // A cursor ends the window just after it: nothing newer belongs to the page.
            let until = match (&q.after, q.until_ms) {
                (Some(c), Some(u)) => Some(u.min(c.time_ms.saturating_add(1))),
                (Some(c), None) => Some(c.time_ms.saturating_add(1)),
                (None, u) => u,
            };
            let anchor = until.unwrap_or_else(now_ms);
            let spans = HISTORY_SPANS_MS
                .iter()
                .map(|span| Some(anchor.saturating_sub(*span)))
                .filter(|from| q.since_ms.is_none_or(|since| from.is_some_and(|f| f > since)))
                .chain([None]);
            for from in spans {
                let since = from.or(q.since_ms);
                let (received, received_binds) = self.received_filter(since, until);
                let user = if q.user_id.is_some() {
                    " AND user_id = ?"
                } else {
                    ""
                };
                let outer = format!(
                    "WHERE {TIME} >= ? AND {TIME} < ? AND ({TIME} < ? OR ({TIME} = ? AND interaction_id < ?)){user} ORDER BY {TIME} DESC, interaction_id DESC LIMIT {}",
                    q.limit
                );
                let mut binds = vec![Bind::Text(q.mcp_id.clone())];
                binds.extend(received_binds);
                binds.push(Bind::Int(since.unwrap_or(i64::MIN)));
                binds.push(Bind::Int(until.unwrap_or(i64::MAX)));
                let (after_time, after_id) = q
                    .after
                    .as_ref()
                    .map_or((i64::MAX, String::new()), |c| {
                        (c.time_ms, c.interaction_id.clone())
                    });
                binds.extend([
                    Bind::Int(after_time),
                    Bind::Int(after_time),
                    Bind::Text(after_id),
                ]);
                if let Some(user) = &q.user_id {
                    binds.push(Bind::Text(user.clone()));
                }
                let mut budget = crate::store::PageBudget::new(q.max_bytes);
                let rows = self
                    .merged(
                        &format!("mcp_id = ? AND {received}"),
                        &outer,
                        binds,
                        &mut budget,
                    )
                    .await?;
                // A narrowed span answers when it is full (in count or in bytes); otherwise a
                // wider one may hold more.
                if from.is_none() || rows.len() >= q.limit || budget.spent {
                    return Ok(HistoryPage {
                        interactions: rows,
                        full_by_bytes: budget.spent,
                    });
                }
            }
            Ok(HistoryPage::default())
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
