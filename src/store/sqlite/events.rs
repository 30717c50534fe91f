//! Writing events: each merged into its interaction's row, in transactions, once (the
//! `applied_events` table makes a replayed event a no-op).

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::{params, Connection, OptionalExtension};

use super::read::read_timeline;
use super::{columns, unavailable, SqliteStore};
use crate::interaction::{timeline, Fields, Interaction, InteractionEvent, ProgressNote};
use crate::store::{interaction_time_ms, EventInsert, EventSink, StoreError};

/// Events applied in one transaction of a streamed insert, at least (the last may hold fewer). A
/// transaction rewrites the index pages it touches, so many small ones cost far more than a few
/// large ones (single reports arrive a few at a time); this many hold a few MiB.
pub(super) const EVENTS_PER_TRANSACTION: usize = 4_096;

/// An insert applied in transactions of [`EVENTS_PER_TRANSACTION`] events as pieces come: pieces
/// come in spool order, and the shipper writes the whole insert again if it fails, which changes
/// nothing for the events already applied.
struct InTransactions<'s> {
    store: &'s SqliteStore,
    pending: Vec<InteractionEvent>,
}

impl EventInsert for InTransactions<'_> {
    fn write<'a>(
        &'a mut self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        async move {
            self.pending.extend_from_slice(events);
            if self.pending.len() >= EVENTS_PER_TRANSACTION {
                let full = std::mem::take(&mut self.pending);
                self.store.apply_on_writer(full).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn end<'a>(self: Box<Self>) -> BoxFuture<'a, Result<(), StoreError>>
    where
        Self: 'a,
    {
        async move {
            if self.pending.is_empty() {
                return Ok(());
            }
            self.store.apply_on_writer(self.pending).await
        }
        .boxed()
    }
}

/// The statements [`apply`] runs for every event, made once.
struct ApplySql {
    find: String,
    update: String,
    insert: String,
}

fn apply_sql() -> &'static ApplySql {
    static SQL: std::sync::OnceLock<ApplySql> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let names = columns::names();
        let marks = |from: usize| {
            (from..from + columns::FIELD_COLUMNS.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let assignments = columns::FIELD_COLUMNS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("{name} = ?{}", i + 6))
            .collect::<Vec<_>>()
            .join(", ");
        ApplySql {
            find: format!(
                "SELECT rowid, first_received_ms, last_received_ms, timeline, {names} FROM interactions WHERE mcp_id = ?1 AND interaction_id = ?2"
            ),
            // An update in place, not a replace: a replace deletes the row and inserts it again,
            // with every index entry.
            update: format!(
                "UPDATE interactions SET time_ms = ?2, first_received_ms = ?3, last_received_ms = ?4, timeline = ?5, {assignments} WHERE rowid = ?1"
            ),
            insert: format!(
                "INSERT INTO interactions (mcp_id, interaction_id, time_ms, first_received_ms, last_received_ms, timeline, {names}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, {})",
                marks(7)
            ),
        }
    })
}

pub(super) fn apply(conn: &mut Connection, events: &[InteractionEvent]) -> Result<(), StoreError> {
    let sql = apply_sql();
    let tx = conn.transaction().map_err(unavailable)?;
    {
        // Each statement looked up once per transaction: looking it up per event (hashing its
        // text) was a twentieth of the writer's time.
        let mut statements = ApplyStatements {
            remember: tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO applied_events (event_id, received_ms) VALUES (?1, ?2)",
                )
                .map_err(unavailable)?,
            find: tx.prepare_cached(&sql.find).map_err(unavailable)?,
            update: tx.prepare_cached(&sql.update).map_err(unavailable)?,
            insert: tx.prepare_cached(&sql.insert).map_err(unavailable)?,
        };
        for event in events {
            statements.apply(event)?;
        }
    }
    tx.commit().map_err(unavailable)
}

struct ApplyStatements<'tx> {
    remember: rusqlite::CachedStatement<'tx>,
    find: rusqlite::CachedStatement<'tx>,
    update: rusqlite::CachedStatement<'tx>,
    insert: rusqlite::CachedStatement<'tx>,
}

impl ApplyStatements<'_> {
    /// Merges `event` into its interaction, unless it was applied before.
    fn apply(&mut self, event: &InteractionEvent) -> Result<(), StoreError> {
        let fresh = self
            .remember
            .execute(params![event.event_id, event.received_ms])
            .map_err(unavailable)?;
        if fresh == 0 {
            return Ok(());
        }
        let existing: Option<(i64, i64, i64, Option<String>, Fields)> = self
            .find
            .query_row(params![event.mcp_id, event.interaction_id], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    columns::read(row, 4)?,
                ))
            })
            .optional()
            .map_err(unavailable)?;
        let (row, mut fields, first, last, mut notes) = match existing {
            Some((row, first, last, timeline, fields)) => (
                Some(row),
                fields,
                first.min(event.received_ms),
                last.max(event.received_ms),
                read_timeline(timeline.as_deref())?,
            ),
            None => (
                None,
                Fields::default(),
                event.received_ms,
                event.received_ms,
                Vec::new(),
            ),
        };
        fields.merge(&event.fields);
        notes.extend(ProgressNote::of(event));
        let merged = Interaction {
            interaction_id: event.interaction_id.clone(),
            mcp_id: event.mcp_id.clone(),
            fields,
            first_received_ms: first,
            last_received_ms: last,
            timeline: timeline(notes),
        };
        let notes = (!merged.timeline.is_empty())
            .then(|| serde_json::to_string(&merged.timeline))
            .transpose()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        let time_ms = interaction_time_ms(&merged);
        let field_values = columns::values(&merged.fields);
        match row {
            Some(row) => {
                let mut values: Vec<&dyn rusqlite::ToSql> =
                    vec![&row, &time_ms, &first, &last, &notes];
                values.extend(field_values);
                self.update.execute(values.as_slice())
            }
            None => {
                let mut values: Vec<&dyn rusqlite::ToSql> = vec![
                    &merged.mcp_id,
                    &merged.interaction_id,
                    &time_ms,
                    &first,
                    &last,
                    &notes,
                ];
                values.extend(field_values);
                self.insert.execute(values.as_slice())
            }
        }
        .map(drop)
        .map_err(unavailable)
    }
}

impl EventSink for SqliteStore {
    fn insert<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.apply_on_writer(events.to_vec()).boxed()
    }

    fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
        async move {
            let insert: Box<dyn EventInsert + '_> = Box::new(InTransactions {
                store: self,
                pending: Vec::new(),
            });
            Ok(insert)
        }
        .boxed()
    }
}
