//! The interaction's fields as columns of the `interactions` table, one per field of
//! `interaction_fields!`, in its order.
//!
//! Earlier releases kept the fields as one JSON text per row (`fields`): about a kilobyte a row,
//! most of it the field names, written to the WAL with every row and read back with `json_extract`
//! by every metrics query. Such a table is converted once, when the store opens.

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::unavailable;
use crate::interaction::Fields;
use crate::store::StoreError;

/// The SQLite type of a field's column, from the field's Rust type.
const fn declared_type(rust_type: &str) -> &'static str {
    match rust_type.as_bytes() {
        b"f64" => "REAL",
        b"i64" | b"bool" => "INTEGER",
        _ => "TEXT",
    }
}

macro_rules! define_columns {
    ($($name:ident: $ty:ty = $kind:ident @ $section:ident $key:literal | $low:literal;)*) => {
        /// Each field's column and its declared type, in storage order.
        pub(super) const FIELD_COLUMNS: &[(&str, &str)] =
            &[$((stringify!($name), declared_type(stringify!($ty)))),*];

        /// The fields' values, in the order of [`FIELD_COLUMNS`].
        pub(super) fn values(fields: &Fields) -> Vec<&dyn ToSql> {
            vec![$(&fields.$name as &dyn ToSql),*]
        }

        /// The fields from `row`, whose columns from `first` on are [`FIELD_COLUMNS`].
        pub(super) fn read(row: &Row<'_>, first: usize) -> rusqlite::Result<Fields> {
            let mut at = first;
            let mut next = || {
                at += 1;
                at - 1
            };
            Ok(Fields { $($name: row.get(next())?,)* })
        }
    };
}
crate::interaction::interaction_fields!(define_columns);

/// `name1, name2, …`: the field columns, for a SELECT or an INSERT.
pub(super) fn names() -> String {
    FIELD_COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name1 TEXT, name2 REAL, …`: the field columns, for a CREATE TABLE.
pub(super) fn definitions() -> String {
    FIELD_COLUMNS
        .iter()
        .map(|(name, sql_type)| format!("{name} {sql_type}"))
        .collect::<Vec<_>>()
        .join(",\n    ")
}

/// The columns `interactions` has, if the table exists.
fn existing_columns(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('interactions')")
        .map_err(unavailable)?;
    let columns = stmt
        .query_map([], |row| row.get(0))
        .and_then(Iterator::collect)
        .map_err(unavailable)?;
    Ok(columns)
}

/// Converts a table of an earlier release to the one `create` describes: the JSON `fields` of
/// each row into the field columns, and a table without `timeline` gains it. One transaction:
/// either every row is converted or the table is as it was.
pub(super) fn upgrade(conn: &mut Connection, create: &str) -> Result<(), StoreError> {
    let columns = existing_columns(conn)?;
    if !columns.iter().any(|c| c == "fields") {
        return add_new_field_columns(conn, &columns);
    }
    let started = std::time::Instant::now();
    let timeline = if columns.iter().any(|c| c == "timeline") {
        "timeline"
    } else {
        "NULL"
    };
    let extracted = FIELD_COLUMNS
        .iter()
        .map(|(name, _)| format!("json_extract(fields, '$.{name}')"))
        .collect::<Vec<_>>()
        .join(", ");
    let tx = conn.transaction().map_err(unavailable)?;
    // The indexes go with the old table; `create` makes them again for the new one.
    tx.execute_batch(&format!(
        "ALTER TABLE interactions RENAME TO interactions_with_json_fields;
         DROP INDEX IF EXISTS interactions_by_time;
         DROP INDEX IF EXISTS interactions_time;
         {create}
         INSERT INTO interactions (mcp_id, interaction_id, time_ms, first_received_ms, last_received_ms, {names}, timeline)
             SELECT mcp_id, interaction_id, time_ms, first_received_ms, last_received_ms, {extracted}, {timeline}
             FROM interactions_with_json_fields;
         DROP TABLE interactions_with_json_fields;",
        names = names(),
    ))
    .map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot convert the embedded store's interactions to typed columns (the database is unchanged): {e}"
        ))
    })?;
    let rows: i64 = tx
        .query_row("SELECT count(*) FROM interactions", [], |r| r.get(0))
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)?;
    tracing::info!(
        rows,
        seconds = started.elapsed().as_secs_f64(),
        "converted the embedded store's interactions from JSON text to typed columns"
    );
    Ok(())
}

/// Fields are only ever appended to `interaction_fields!`: a table of an earlier release lacks
/// the newest ones, which it gains empty.
fn add_new_field_columns(conn: &Connection, columns: &[String]) -> Result<(), StoreError> {
    if columns.is_empty() {
        return Ok(());
    }
    for (name, sql_type) in FIELD_COLUMNS {
        if !columns.iter().any(|c| c == name) {
            conn.execute_batch(&format!(
                "ALTER TABLE interactions ADD COLUMN {name} {sql_type}"
            ))
            .map_err(unavailable)?;
        }
    }
    Ok(())
}
