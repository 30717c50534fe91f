//! The embedded store: SQLite in one file, used when no ClickHouse URL is given.
//!
//! One row per interaction holds its merged fields; `applied_events` remembers which events were
//! merged, so replays from the spool and duplicate deliveries are no-ops.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::{params, Connection, OptionalExtension};

use super::metrics::{self, McpMetrics, TimeRange};
use super::{interaction_time_ms, AuditEntry, HistoryQuery, InteractionStore, StoreError};
use crate::interaction::{Fields, Interaction, InteractionEvent};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS interactions (
    mcp_id TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    first_received_ms INTEGER NOT NULL,
    last_received_ms INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (mcp_id, interaction_id)
);
CREATE INDEX IF NOT EXISTS interactions_by_time ON interactions (mcp_id, time_ms);
CREATE INDEX IF NOT EXISTS interactions_time ON interactions (time_ms);
CREATE TABLE IF NOT EXISTS audit_log (
    at_ms INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    mcp_id TEXT NOT NULL,
    query TEXT NOT NULL,
    since_ms INTEGER,
    until_ms INTEGER,
    rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_log (at_ms);
CREATE TABLE IF NOT EXISTS applied_events (
    event_id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
);
";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // Created readable by its owner only; SQLite gives its WAL files the same mode.
        if !path.exists() {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            if let Err(e) = options.open(path) {
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(StoreError::Unavailable(format!(
                        "cannot create SQLite database {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        let conn = Connection::open(path).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // The spool only forgets what the store confirmed, so a commit must survive power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite worker failed: {e}")))?
    }
}

fn apply(conn: &mut Connection, events: &[InteractionEvent]) -> Result<(), StoreError> {
    let tx = conn.transaction().map_err(unavailable)?;
    for event in events {
        let fresh = tx
            .execute(
                "INSERT OR IGNORE INTO applied_events (event_id, received_ms) VALUES (?1, ?2)",
                params![event.event_id, event.received_ms],
            )
            .map_err(unavailable)?;
        if fresh == 0 {
            continue;
        }
        let existing: Option<(String, i64, i64)> = tx
            .query_row(
                "SELECT fields, first_received_ms, last_received_ms FROM interactions WHERE mcp_id = ?1 AND interaction_id = ?2",
                params![event.mcp_id, event.interaction_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .optional()
            .map_err(unavailable)?;
        let (mut fields, first, last) = match existing {
            Some((text, first, last)) => {
                let fields: Fields =
                    serde_json::from_str(&text).map_err(|e| StoreError::Rejected(e.to_string()))?;
                (
                    fields,
                    first.min(event.received_ms),
                    last.max(event.received_ms),
                )
            }
            None => (Fields::default(), event.received_ms, event.received_ms),
        };
        fields.merge(&event.fields);
        let merged = Interaction {
            interaction_id: event.interaction_id.clone(),
            mcp_id: event.mcp_id.clone(),
            fields,
            first_received_ms: first,
            last_received_ms: last,
        };
        let text = serde_json::to_string(&merged.fields)
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        tx.execute(
            "INSERT OR REPLACE INTO interactions (mcp_id, interaction_id, time_ms, first_received_ms, last_received_ms, fields) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![merged.mcp_id, merged.interaction_id, interaction_time_ms(&merged), first, last, text],
        )
        .map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)
}

fn read_rows(
    stmt: &mut rusqlite::Statement<'_>,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Interaction>, StoreError> {
    let rows = stmt
        .query_map(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })
        .map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        let (mcp_id, interaction_id, first, last, text) = row.map_err(unavailable)?;
        let fields: Fields =
            serde_json::from_str(&text).map_err(|e| StoreError::Rejected(e.to_string()))?;
        out.push(Interaction {
            interaction_id,
            mcp_id,
            fields,
            first_received_ms: first,
            last_received_ms: last,
        });
    }
    Ok(out)
}

impl InteractionStore for SqliteStore {
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

    fn expire<'a>(
        &'a self,
        expiry: &'a super::retention::Expiry,
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
            conn.execute(&sql, refs.as_slice())
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

    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut sorted = events.to_vec();
        sorted.sort_by_key(|e| e.received_ms);
        self.blocking(move |conn| apply(conn, &sorted)).boxed()
    }

    fn history<'a>(
        &'a self,
        query: &'a HistoryQuery,
    ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
        let q = query.clone();
        self.blocking(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT mcp_id, interaction_id, first_received_ms, last_received_ms, fields FROM interactions
                     WHERE mcp_id = ?1 AND time_ms >= ?2 AND time_ms < ?3
                     ORDER BY time_ms DESC, interaction_id DESC LIMIT ?4",
                )
                .map_err(unavailable)?;
            let since = q.since_ms.unwrap_or(i64::MIN);
            let until = q.until_ms.unwrap_or(i64::MAX);
            let limit = q.limit as i64;
            read_rows(&mut stmt, &[&q.mcp_id, &since, &until, &limit])
        })
        .boxed()
    }

    fn metrics<'a>(
        &'a self,
        mcp_id: Option<&'a str>,
        range: TimeRange,
    ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
        let mcp = mcp_id.map(str::to_string);
        self.blocking(move |conn| {
            let rows = match &mcp {
                Some(id) => {
                    let mut stmt = conn
                        .prepare(
                            "SELECT mcp_id, interaction_id, first_received_ms, last_received_ms, fields FROM interactions
                             WHERE mcp_id = ?1 AND time_ms >= ?2 AND time_ms < ?3",
                        )
                        .map_err(unavailable)?;
                    read_rows(&mut stmt, &[id, &range.since_ms, &range.until_ms])?
                }
                None => {
                    let mut stmt = conn
                        .prepare(
                            "SELECT mcp_id, interaction_id, first_received_ms, last_received_ms, fields FROM interactions
                             WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY mcp_id",
                        )
                        .map_err(unavailable)?;
                    read_rows(&mut stmt, &[&range.since_ms, &range.until_ms])?
                }
            };
            let mut by_mcp: std::collections::BTreeMap<String, Vec<Interaction>> = Default::default();
            for row in rows {
                by_mcp.entry(row.mcp_id.clone()).or_default().push(row);
            }
            if let Some(id) = &mcp {
                by_mcp.entry(id.clone()).or_default();
            }
            Ok(by_mcp.iter().map(|(id, rows)| metrics::compute(id, rows, range)).collect())
        })
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_journal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sqlite-mode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = SqliteStore::open(&dir.join("interactions.db")).unwrap();
        let event = InteractionEvent::new(
            "i".into(),
            "m".into(),
            crate::interaction::EventKind::Start,
            1,
            Fields::default(),
        );
        store.insert(&[event]).await.unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
