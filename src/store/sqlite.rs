//! The embedded store: SQLite in one file, used when no ClickHouse URL is given.
//!
//! One row per interaction holds its merged fields; `applied_events` remembers which events were
//! merged, so replays from the spool and duplicate deliveries are no-ops.

mod aggregate;
mod checkpoint;
mod columns;
mod events;
mod logs;
mod read;
mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

use super::StoreError;
use crate::interaction::InteractionEvent;

/// The interactions table: the fields are columns (see [`columns`]), after the interaction's own.
fn interactions_schema() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS interactions (
    mcp_id TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    first_received_ms INTEGER NOT NULL,
    last_received_ms INTEGER NOT NULL,
    -- Progress notes (JSON array), absent until the first progress report.
    timeline TEXT,
    {fields},
    PRIMARY KEY (mcp_id, interaction_id)
);
CREATE INDEX IF NOT EXISTS interactions_by_time ON interactions (mcp_id, time_ms);
CREATE INDEX IF NOT EXISTS interactions_time ON interactions (time_ms);
",
        fields = columns::definitions()
    )
}

/// The columns an interaction is read with: [`read_interaction`] takes them in this order.
const INTERACTION_COLUMNS: &str =
    "mcp_id, interaction_id, first_received_ms, last_received_ms, timeline";

const SCHEMA: &str = "
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
-- Without a rowid: one B-tree keyed by the event ID instead of a table and an index beside it.
CREATE TABLE IF NOT EXISTS applied_events (
    event_id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS heartbeats (
    mcp_id TEXT PRIMARY KEY,
    at_ms INTEGER NOT NULL
);
";

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// Where inserts are applied: a thread of lower CPU priority than the request threads.
    writer: writer::Writer,
}

/// The writer's page cache, in KiB: the indexes of a few hundred thousand interactions, so that
/// applying a batch does not read back the pages the previous batch wrote.
const CACHE_KIB: u32 = 32 * 1024;

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
        let mut conn = Connection::open(path).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        })?;
        checkpoint::start(path, &mut conn)?;
        Self::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(unavailable)?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        // The spool only forgets what the store confirmed, so a commit must survive power loss.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        conn.pragma_update(None, "cache_size", -i64::from(CACHE_KIB))
            .map_err(unavailable)?;
        let interactions = interactions_schema();
        columns::upgrade(&mut conn, &interactions)?;
        conn.execute_batch(&interactions).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            writer: writer::Writer::start()?,
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

    /// Applies `events` on the writer thread.
    async fn apply_on_writer(&self, mut events: Vec<InteractionEvent>) -> Result<(), StoreError> {
        events.sort_by_key(|e| e.received_ms);
        let conn = self.conn.clone();
        self.writer
            .run(move || {
                let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
                events::apply(&mut conn, &events)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::events::EVENTS_PER_TRANSACTION;
    use super::*;
    use crate::interaction::{EventKind, Fields, Interaction};
    use crate::store::metrics::{self, TimeRange};
    use crate::store::{EventSink, HistoryQuery, InteractionReads, Upkeep};

    /// A varied log: several MCPs, missing and present fields, failures with and without codes,
    /// repeated processing times, interactions outside the window.
    fn varied_events() -> Vec<InteractionEvent> {
        let mut seed = 0x2545_f491_u64;
        let mut next = move |m: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % m
        };
        let mut events = Vec::new();
        for i in 0..2_000 {
            let mcp = format!("m{}", next(4));
            let at = 1_000_000 + next(200_000) as i64;
            let mut fields = Fields {
                timestamp_ms: Some(at),
                ..Default::default()
            };
            match next(5) {
                0 => {}
                1 => fields.success = Some(false),
                2 => fields.error_code = Some(["TIMEOUT", "BAD"][next(2) as usize].into()),
                _ => fields.success = Some(true),
            }
            if next(4) > 0 {
                fields.processing_time = Some(next(40) as f64 / 4.0);
            }
            if next(3) > 0 {
                fields.quality_score = Some(next(100) as f64 / 100.0);
            }
            if next(2) > 0 {
                fields.cpu_usage = Some(next(1000) as f64 / 10.0);
            }
            events.push(InteractionEvent::new(
                format!("i{i}"),
                mcp,
                EventKind::Complete,
                at,
                fields,
            ));
        }
        events
    }

    #[tokio::test]
    async fn metrics_in_sql_equal_metrics_computed_from_the_interactions() {
        let store = SqliteStore::in_memory().unwrap();
        store.insert(&varied_events()).await.unwrap();
        let range = TimeRange {
            since_ms: 1_050_000,
            until_ms: 1_150_000,
        };
        let in_sql = store.metrics(None, range).await.unwrap();
        assert_eq!(in_sql.len(), 4);
        for got in &in_sql {
            let rows = store
                .history(&HistoryQuery {
                    mcp_id: got.mcp_id.clone(),
                    limit: 10_000,
                    since_ms: Some(range.since_ms),
                    until_ms: Some(range.until_ms),
                    ..Default::default()
                })
                .await
                .unwrap();
            let want = metrics::compute(&got.mcp_id, &rows, range);
            let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-9,
                (a, b) => a == b,
            };
            assert!(got.count > 100);
            assert_eq!(
                (got.count, got.completed, got.failed, got.in_progress),
                (want.count, want.completed, want.failed, want.in_progress)
            );
            assert_eq!(got.errors_by_code, want.errors_by_code);
            assert_eq!(
                (
                    got.p50_processing_time,
                    got.p95_processing_time,
                    got.p99_processing_time
                ),
                (
                    want.p50_processing_time,
                    want.p95_processing_time,
                    want.p99_processing_time
                )
            );
            assert!(close(got.mean_quality_score, want.mean_quality_score));
            assert!(close(got.mean_cpu_usage, want.mean_cpu_usage));
            assert_eq!(got.mean_gpu_usage, None);
            assert_eq!(got.success_rate, want.success_rate);
        }
    }

    /// The interactions table as releases before the typed columns made it; the oldest of them
    /// also lacked `timeline`.
    const JSON_FIELDS_SCHEMA: &str = "
CREATE TABLE interactions (
    mcp_id TEXT NOT NULL,
    interaction_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    first_received_ms INTEGER NOT NULL,
    last_received_ms INTEGER NOT NULL,
    fields TEXT NOT NULL,
    timeline TEXT,
    PRIMARY KEY (mcp_id, interaction_id)
);
CREATE INDEX interactions_by_time ON interactions (mcp_id, time_ms);
CREATE INDEX interactions_time ON interactions (time_ms);
";

    fn everything_set() -> Fields {
        Fields {
            session_id: Some("s-1".into()),
            timestamp_ms: Some(1_796_385_600_000),
            user_id: Some("user_7".into()),
            input_size: Some(1_024_000),
            parameters: Some(r#"{"dpi":300,"language":"en"}"#.into()),
            quality_level: Some("high".into()),
            processing_time: Some(5.333),
            steps_executed: Some(r#"["ocr","formatting"]"#.into()),
            cpu_usage: Some(45.2),
            gpu_usage: Some(0.0),
            success: Some(false),
            quality_score: Some(0.95),
            error_code: Some("OCR_TIMEOUT".into()),
            error_message: Some("took \"too\" long".into()),
            mcp_version: Some("1.2.3".into()),
            progress: Some(0.5),
            ..Default::default()
        }
    }

    async fn all_history(store: &SqliteStore, mcp_id: &str) -> Vec<Interaction> {
        store
            .history(&HistoryQuery {
                mcp_id: mcp_id.into(),
                limit: 100,
                since_ms: None,
                until_ms: None,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_database_with_json_fields_is_converted_to_columns_and_keeps_every_value() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(JSON_FIELDS_SCHEMA).unwrap();
        let full = everything_set();
        let timeline = r#"[{"at_ms":3,"progress":0.5,"message":null}]"#;
        for (id, fields, notes) in [
            ("full", &full, Some(timeline)),
            ("empty", &Fields::default(), None),
        ] {
            conn.execute(
                "INSERT INTO interactions VALUES ('m', ?1, 1796385600000, 1, 3, ?2, ?3)",
                params![id, serde_json::to_string(fields).unwrap(), notes],
            )
            .unwrap();
        }
        let store = SqliteStore::init(conn).unwrap();

        let mut found = all_history(&store, "m").await;
        found.sort_by(|a, b| a.interaction_id.cmp(&b.interaction_id));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].interaction_id, "empty");
        assert_eq!(found[0].fields, Fields::default());
        assert_eq!(found[1].fields, full);
        assert_eq!(found[1].timeline.len(), 1);
        assert_eq!(
            (found[1].first_received_ms, found[1].last_received_ms),
            (1, 3)
        );
        // The metrics read the converted columns.
        let range = TimeRange {
            since_ms: 0,
            until_ms: i64::MAX,
        };
        let metrics = store.metrics(Some("m"), range).await.unwrap();
        assert_eq!((metrics[0].count, metrics[0].failed), (2, 1));
        assert_eq!(metrics[0].p50_processing_time, Some(5.333));
        let versions = store.reported_versions(range).await.unwrap();
        assert_eq!(versions.len(), 1);
        assert_eq!(versions[0].version, "1.2.3");
    }

    #[tokio::test]
    async fn a_database_without_the_timeline_is_converted_and_then_takes_progress() {
        let conn = Connection::open_in_memory().unwrap();
        let oldest = JSON_FIELDS_SCHEMA.replace("    timeline TEXT,\n", "");
        assert_ne!(oldest, JSON_FIELDS_SCHEMA, "the test removes the column");
        conn.execute_batch(&oldest).unwrap();
        conn.execute(
            "INSERT INTO interactions VALUES ('m', 'old', 1, 1, 1, '{}')",
            [],
        )
        .unwrap();
        let store = SqliteStore::init(conn).unwrap();
        let progress = Fields {
            progress: Some(0.5),
            ..Default::default()
        };
        store
            .insert(&[InteractionEvent::new(
                "old".into(),
                "m".into(),
                EventKind::Progress,
                2,
                progress,
            )])
            .await
            .unwrap();
        let found = all_history(&store, "m").await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fields.progress, Some(0.5));
        assert_eq!(found[0].timeline.len(), 1);
        assert_eq!(found[0].timeline[0].at_ms, 2);
    }

    #[tokio::test]
    async fn a_table_without_the_newest_field_columns_gains_them() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&interactions_schema()).unwrap();
        let (newest, _) = columns::FIELD_COLUMNS[columns::FIELD_COLUMNS.len() - 1];
        conn.execute_batch(&format!("ALTER TABLE interactions DROP COLUMN {newest}"))
            .unwrap();
        let store = SqliteStore::init(conn).unwrap();
        store
            .insert(&[InteractionEvent::new(
                "i".into(),
                "m".into(),
                EventKind::Record,
                1,
                everything_set(),
            )])
            .await
            .unwrap();
        assert_eq!(all_history(&store, "m").await[0].fields, everything_set());
    }

    #[tokio::test]
    async fn a_file_database_is_converted_once_and_opens_again_as_it_is() {
        let dir = crate::test_dir::TestDir::new("sqlite-convert");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(JSON_FIELDS_SCHEMA).unwrap();
            conn.execute(
                "INSERT INTO interactions VALUES ('m', 'i', 1, 1, 1, ?1, NULL)",
                params![serde_json::to_string(&everything_set()).unwrap()],
            )
            .unwrap();
        }
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            let found = all_history(&store, "m").await;
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].fields, everything_set());
        }
        let conn = Connection::open(&path).unwrap();
        let leftovers: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE '%json%' OR sql LIKE '%fields TEXT%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn retention_forgets_the_replay_guard_of_what_it_removed_only() {
        let store = SqliteStore::in_memory().unwrap();
        let event = |id: &str, at: i64| {
            InteractionEvent::new(
                id.into(),
                "m".into(),
                EventKind::Start,
                at,
                Fields::default(),
            )
        };
        store
            .insert(&[event("old", 1_000), event("kept", 5_000)])
            .await
            .unwrap();
        let expiry = crate::store::retention::Expiry {
            mcp_id: None,
            except: vec![],
            cutoff_ms: 3_000,
        };
        store.expire(&expiry).await.unwrap();
        let guarded = store
            .blocking(|conn| {
                let mut stmt = conn
                    .prepare("SELECT received_ms FROM applied_events ORDER BY received_ms")
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, i64>(0))
                    .map_err(unavailable)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
            })
            .await
            .unwrap();
        assert_eq!(guarded, [5_000]);
        // The kept interaction's events are still guarded: a replay changes nothing.
        store.insert(&[event("kept", 5_000)]).await.unwrap();
        let rows = store
            .history(&HistoryQuery {
                mcp_id: "m".into(),
                limit: 10,
                since_ms: None,
                until_ms: None,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_journal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::test_dir::TestDir::new("sqlite-mode");
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
    }

    /// A streamed insert fed one event at a time (single reports) applies them in transactions of
    /// thousands, not one each: nothing is visible until a transaction's worth has come or the
    /// insert ends, and then all of it is.
    #[tokio::test]
    async fn a_streamed_insert_applies_many_small_pieces_in_one_transaction() {
        let store = SqliteStore::in_memory().unwrap();
        let stored = |store: &SqliteStore| {
            let conn = store.conn.lock().unwrap_or_else(PoisonError::into_inner);
            conn.query_row("SELECT count(*) FROM interactions", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        };
        let event = InteractionEvent::numbered;
        let mut insert = store.open_insert().await.unwrap();
        for i in 0..100 {
            insert.write(&[event(i)]).await.unwrap();
        }
        assert_eq!(stored(&store), 0, "a transaction per piece");
        insert.end().await.unwrap();
        assert_eq!(stored(&store), 100);

        let mut insert = store.open_insert().await.unwrap();
        let many: Vec<InteractionEvent> = (100..100 + EVENTS_PER_TRANSACTION).map(event).collect();
        for piece in many.chunks(1_000) {
            insert.write(piece).await.unwrap();
        }
        assert_eq!(
            stored(&store),
            100 + EVENTS_PER_TRANSACTION as i64,
            "a full transaction is applied before the insert ends"
        );
        insert.end().await.unwrap();
    }

    /// Committed batches reach the database file itself, not only the WAL, once the WAL passes
    /// SQLite's usual threshold: the writer's own checkpoint waits for a WAL of 64 MiB, the
    /// checkpoint thread does not.
    #[tokio::test]
    async fn committed_batches_are_copied_into_the_database_file_off_the_writer() {
        let dir = crate::test_dir::TestDir::new("sqlite-checkpoint");
        let path = dir.join("interactions.db");
        let store = SqliteStore::open(&path).unwrap();
        // Some 8 MiB of rows: past the thread's threshold (1,000 pages), far below the writer's.
        let events: Vec<InteractionEvent> = (0..8_000)
            .map(|i| {
                let fields = Fields {
                    error_message: Some(format!("{i} {}", "x".repeat(1_000))),
                    ..Default::default()
                };
                InteractionEvent::new(format!("i{i}"), "m".into(), EventKind::Error, i, fields)
            })
            .collect();
        for batch in events.chunks(500) {
            store.insert(batch).await.unwrap();
        }
        let in_the_file_alone = || {
            let copy = dir.join("copy.db");
            std::fs::copy(&path, &copy).ok()?;
            let count = Connection::open(&copy)
                .and_then(|c| c.query_row("SELECT count(*) FROM interactions", [], |r| r.get(0)))
                .ok();
            let _ = std::fs::remove_file(&copy);
            count
        };
        // What commits after the thread's last copy added stays in the WAL until the WAL passes
        // the threshold again: under 1,000 pages of 4 KiB, fewer than 4,000 of these rows of over
        // 1,000 bytes each. When the thread last ran depends on the machine's load, so only that
        // many may be missing; without the thread every row would be (the writer copies at 64 MiB).
        let at_least = events.len() as i64 - 4_000;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut copied = 0;
        while copied < at_least && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            copied = in_the_file_alone().unwrap_or(0);
        }
        assert!(
            copied >= at_least,
            "{copied} of {} rows in the database file",
            events.len()
        );
        drop(store);
    }
}
