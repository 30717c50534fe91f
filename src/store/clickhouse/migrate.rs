//! Moving an events table of an earlier layout (partitioned by month, sorted by interaction) to
//! today's [`LAYOUT`](super::sql::LAYOUT), once, when a store connects.
//!
//! ClickHouse cannot change a table's partitioning or sort key in place, so the rows are copied
//! into a table of the new layout, which then takes the old one's name; the old table stays, under
//! another name, until an operator drops it. Rows another replica inserts during the copy land in
//! parts the first pass did not read, and a second pass copies those after the swap. A row copied
//! twice is harmless: reads merge an interaction's events, and the sort key makes them one row.

use super::sql::{self, LAYOUT, TABLE};
use super::topology::Topology;
use super::{classify, StoreError};
use crate::interaction::FIELDS;

/// Adds the columns of fields declared since `database.interaction_events` was created (an
/// earlier release's table lacks them, and inserts name every field). Existing rows read them as
/// NULL: "this event does not say".
pub(super) async fn add_field_columns(
    client: &clickhouse::Client,
    database: &str,
    topology: &Topology,
    version: (u32, u32),
) -> Result<(), StoreError> {
    let mut tables = vec![topology.local(TABLE)];
    if topology.cluster().is_some() {
        tables.push(TABLE.to_string());
    }
    for table in tables {
        let existing: Vec<String> = client
            .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
            .bind(database)
            .bind(&table)
            .fetch_all()
            .await
            .map_err(classify)?;
        for field in FIELDS
            .iter()
            .filter(|f| !existing.iter().any(|c| c == f.name))
        {
            tracing::info!(database, table = %table, column = field.name, "adding the column of a field this release added");
            let sql = format!(
                "ALTER TABLE {database}.{table}{} ADD COLUMN {} {}",
                topology.on_cluster(),
                field.name,
                sql::field_column_type(field, version)
            );
            client.query(&sql).execute().await.map_err(classify)?;
        }
    }
    Ok(())
}

/// Where the old table is kept after the move.
pub const KEPT_TABLE: &str = "interaction_events_month_layout";
const STAGING_TABLE: &str = "interaction_events_relayout";

/// Brings `database.interaction_events` to the current layout if it has an older one.
pub(super) async fn ensure_layout(
    client: &clickhouse::Client,
    database: &str,
    version: (u32, u32),
) -> Result<(), StoreError> {
    if has_current_layout(client, database).await? {
        return Ok(());
    }
    tracing::warn!(
        database,
        "the interaction_events table has the layout of an earlier release; copying it into the \
         day-partitioned layout (once; reads and writes wait until it is done)"
    );
    let run = |sql: String| async move { client.query(&sql).execute().await.map_err(classify) };
    run(sql::create_events_table_sql(
        database,
        STAGING_TABLE,
        version,
    ))
    .await?;
    let columns = shared_columns(client, database).await?;
    // One INSERT per old (monthly) partition: at most 31 days, under the server's limit on
    // partitions written by one INSERT, and memory bounded by a month instead of the whole log.
    let parts: Vec<(String, String)> = client
        .query("SELECT partition, name FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY partition")
        .bind(database)
        .bind(TABLE)
        .fetch_all()
        .await
        .map_err(classify)?;
    let names: Vec<String> = parts.iter().map(|(_, name)| name.clone()).collect();
    for month in parts.chunk_by(|a, b| a.0 == b.0) {
        let month_parts: Vec<String> = month.iter().map(|(_, name)| name.clone()).collect();
        run(format!(
            "INSERT INTO {database}.{STAGING_TABLE} ({columns}) SELECT {columns} FROM {database}.{TABLE} WHERE _part IN ({})",
            quoted_list(&month_parts)
        ))
        .await?;
    }
    let swapped = run(format!(
        "RENAME TABLE {database}.{TABLE} TO {database}.{KEPT_TABLE}, {database}.{STAGING_TABLE} TO {database}.{TABLE}"
    ))
    .await;
    if let Err(e) = swapped {
        // Another replica may have moved the table first; then there is nothing left to do here.
        if has_current_layout(client, database).await? {
            return Ok(());
        }
        return Err(e);
    }
    // What reached the old table after the first pass read its parts.
    let late_filter = if names.is_empty() {
        "1".to_string()
    } else {
        format!("_part NOT IN ({})", quoted_list(&names))
    };
    run(format!(
        "INSERT INTO {database}.{TABLE} ({columns}) SELECT {columns} FROM {database}.{KEPT_TABLE} WHERE {late_filter}"
    ))
    .await?;
    tracing::warn!(
        database,
        kept = KEPT_TABLE,
        "interaction_events now has the day-partitioned layout; the old table is kept as {database}.{KEPT_TABLE}: drop it once you no longer need it"
    );
    Ok(())
}

async fn has_current_layout(
    client: &clickhouse::Client,
    database: &str,
) -> Result<bool, StoreError> {
    let engine: String = client
        .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
        .bind(database)
        .bind(TABLE)
        .fetch_one()
        .await
        .map_err(classify)?;
    Ok(layout_is_current(&engine))
}

/// Whether a table's `engine_full`, as the server prints it, has today's layout.
pub(super) fn layout_is_current(engine_full: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    squeeze(engine_full).contains(&squeeze(LAYOUT))
}

/// The columns both the old table and the new layout have (an old table may lack later fields).
async fn shared_columns(client: &clickhouse::Client, database: &str) -> Result<String, StoreError> {
    let old: Vec<String> = client
        .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
        .bind(database)
        .bind(TABLE)
        .fetch_all()
        .await
        .map_err(classify)?;
    let new: Vec<String> = client
        .query("SELECT name FROM system.columns WHERE database = ? AND table = ?")
        .bind(database)
        .bind(STAGING_TABLE)
        .fetch_all()
        .await
        .map_err(classify)?;
    let shared: Vec<String> = old.into_iter().filter(|c| new.contains(c)).collect();
    Ok(shared.join(", "))
}

fn quoted_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("'{}'", n.replace('\\', "\\\\").replace('\'', "\\'")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_recognised_as_servers_print_it() {
        assert!(layout_is_current(
            "ReplacingMergeTree PARTITION BY event_date ORDER BY (mcp_id, received_ms, event_id) SETTINGS index_granularity = 8192"
        ));
        assert!(!layout_is_current(
            "ReplacingMergeTree PARTITION BY toYYYYMM(event_date) ORDER BY (mcp_id, interaction_id, event_id) SETTINGS index_granularity = 8192"
        ));
    }

    #[test]
    fn part_names_are_quoted_as_string_literals() {
        assert_eq!(
            quoted_list(&["201901_1_1_0".into(), "a'b".into()]),
            "'201901_1_1_0', 'a\\'b'"
        );
    }
}
