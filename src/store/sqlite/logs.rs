//! The audit log, heartbeats and retention of the embedded store.

use std::collections::HashMap;

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::params;

use super::{unavailable, SqliteStore};
use crate::store::{AuditEntry, AuditLog, Heartbeats, StoreError, Upkeep};

impl AuditLog for SqliteStore {
    fn record_access<'a>(&'a self, entry: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
        let e = entry.clone();
        self.blocking(move |conn| {
            conn.execute(
                "INSERT INTO audit_log (at_ms, who, role, mcp_id, query, since_ms, until_ms, rows) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![e.at_ms, e.who, e.role, e.mcp_id, e.query, e.since_ms, e.until_ms, e.rows as i64],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .boxed()
    }

    fn audit_log(&self, limit: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare("SELECT at_ms, who, role, mcp_id, query, since_ms, until_ms, rows FROM audit_log ORDER BY at_ms DESC, rowid DESC LIMIT ?1")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map(params![limit as i64], |r| {
                    Ok(AuditEntry {
                        at_ms: r.get(0)?,
                        who: r.get(1)?,
                        role: r.get(2)?,
                        mcp_id: r.get(3)?,
                        query: r.get(4)?,
                        since_ms: r.get(5)?,
                        until_ms: r.get(6)?,
                        rows: r.get::<_, i64>(7)?.max(0) as u64,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .boxed()
    }
}

impl Heartbeats for SqliteStore {
    fn record_heartbeats<'a>(
        &'a self,
        beats: &'a [(String, i64)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let beats = beats.to_vec();
        self.blocking(move |conn| {
            let tx = conn.transaction().map_err(unavailable)?;
            for (mcp_id, at_ms) in &beats {
                tx.prepare_cached(
                    "INSERT INTO heartbeats (mcp_id, at_ms) VALUES (?1, ?2)
                     ON CONFLICT (mcp_id) DO UPDATE SET at_ms = max(at_ms, excluded.at_ms)",
                )
                .and_then(|mut s| s.execute(params![mcp_id, at_ms]))
                .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .boxed()
    }

    fn heartbeats(&self) -> BoxFuture<'_, Result<HashMap<String, i64>, StoreError>> {
        self.blocking(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT mcp_id, at_ms FROM heartbeats")
                .map_err(unavailable)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(unavailable)?;
            rows.collect::<Result<HashMap<_, _>, _>>()
                .map_err(unavailable)
        })
        .boxed()
    }
}

impl Upkeep for SqliteStore {
    fn expire<'a>(
        &'a self,
        expiry: &'a crate::store::retention::Expiry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let e = expiry.clone();
        self.blocking(move |conn| {
            let mut values: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(e.cutoff_ms)];
            let filter = match &e.mcp_id {
                Some(id) => {
                    values.push(Box::new(id.clone()));
                    "mcp_id = ?2".to_string()
                }
                None if e.except.is_empty() => "1".to_string(),
                None => {
                    let marks: Vec<String> =
                        (0..e.except.len()).map(|i| format!("?{}", i + 2)).collect();
                    values.extend(
                        e.except
                            .iter()
                            .map(|x| Box::new(x.clone()) as Box<dyn rusqlite::ToSql>),
                    );
                    format!("mcp_id NOT IN ({})", marks.join(", "))
                }
            };
            // By when the coordinator last heard of it: a client's timestamp (year 2999, say) must
            // not keep an interaction forever.
            let sql = format!("DELETE FROM interactions WHERE last_received_ms < ?1 AND {filter}");
            let refs: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
            conn.execute(&sql, refs.as_slice()).map_err(unavailable)?;
            // An event received before the oldest interaction still kept belongs to none that is
            // kept, so remembering it is no longer needed to keep replays out.
            conn.execute(
                "DELETE FROM applied_events WHERE received_ms < min(?1, coalesce((SELECT min(first_received_ms) FROM interactions), ?1))",
                params![e.cutoff_ms],
            )
            .map(drop)
            .map_err(unavailable)
        })
        .boxed()
    }
}
