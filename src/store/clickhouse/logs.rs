//! The audit log, heartbeats and upkeep (retention, rollups) on ClickHouse.

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::rows::{AuditRow, HeartbeatRow};
use super::sql::{AUDIT_TABLE, HEARTBEAT_TABLE, TABLE};
use super::{classify, rollup, ClickHouseStore};
use crate::store::{AuditEntry, AuditLog, Heartbeats, StoreError, Upkeep};

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
        e: &'a crate::store::retention::Expiry,
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
