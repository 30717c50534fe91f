//! Retention on ClickHouse, for the events and their rollups alike: whole days are dropped as partitions, and mutations (`ALTER … DELETE`)
//! are left for what a partition drop cannot do: an MCP whose retention is shorter than the
//! default, and days that also hold data of an MCP that keeps its data longer.
//!
//! Both go by the day an event was received (`event_date`, the partition key), never by a
//! timestamp a client sent: a day goes once all of it is past the cutoff, so ClickHouse keeps an
//! event up to a day longer than its retention.

use super::super::retention::Expiry;
use super::sql;
use super::{classify, Bind, ClickHouseStore, StoreError};

impl ClickHouseStore {
    pub(super) async fn expire_days(&self, table: &str, e: &Expiry) -> Result<(), StoreError> {
        // Days strictly before the cutoff's day are wholly expired.
        let cutoff_day = sql::day_of_ms(e.cutoff_ms);
        match &e.mcp_id {
            Some(id) => {
                self.delete_where(
                    table,
                    "mcp_id = ?",
                    vec![Bind::Text(id.clone())],
                    &cutoff_day,
                )
                .await
            }
            None => {
                let kept_days = self.days_holding(table, &e.except, &cutoff_day).await?;
                for (partition_id, day) in self.expired_partitions(table, &cutoff_day).await? {
                    if kept_days.contains(&day) {
                        continue;
                    }
                    let drop = format!(
                        "ALTER TABLE {}.{}{} DROP PARTITION ID '{partition_id}'",
                        self.database,
                        self.topology.local(table),
                        self.topology.on_cluster()
                    );
                    self.client.query(&drop).execute().await.map_err(classify)?;
                    tracing::info!(day, table, "retention dropped a day");
                }
                if kept_days.is_empty() {
                    return Ok(());
                }
                let marks = vec!["?"; e.except.len()].join(", ");
                let binds = e.except.iter().cloned().map(Bind::Text).collect();
                self.delete_where(
                    table,
                    &format!("mcp_id NOT IN ({marks})"),
                    binds,
                    &cutoff_day,
                )
                .await
            }
        }
    }

    /// The active partitions whose every event was received before `cutoff_day`, with their day.
    async fn expired_partitions(
        &self,
        table: &str,
        cutoff_day: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let query = match self.topology.cluster() {
            None => self
                .client
                .query(
                    "SELECT DISTINCT partition_id, toString(max_date) FROM system.parts \
                     WHERE database = ? AND table = ? AND active AND max_date < toDate(?)",
                )
                .bind(&self.database)
                .bind(table),
            // The parts are on the shards: ask the table for its days (the ID of a day's
            // partition is its date as YYYYMMDD).
            Some(_) => self.client.query(&format!(
                "SELECT DISTINCT toString(toYYYYMMDD(event_date)), toString(event_date) FROM {}.{table} \
                 WHERE event_date < toDate(?)",
                self.database
            )),
        };
        query.bind(cutoff_day).fetch_all().await.map_err(classify)
    }

    /// The days before `cutoff_day` that hold events of any of `mcp_ids`.
    async fn days_holding(
        &self,
        table: &str,
        mcp_ids: &[String],
        cutoff_day: &str,
    ) -> Result<Vec<String>, StoreError> {
        if mcp_ids.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; mcp_ids.len()].join(", ");
        let sql = format!(
            "SELECT DISTINCT toString(event_date) FROM {}.{table} WHERE event_date < toDate(?) AND mcp_id IN ({marks})",
            self.database
        );
        let mut binds = vec![Bind::Text(cutoff_day.to_string())];
        binds.extend(mcp_ids.iter().cloned().map(Bind::Text));
        self.query(&sql, binds).fetch_all().await.map_err(classify)
    }

    /// Deletes the events matching `filter` received before `cutoff_day` with a mutation, unless
    /// none match: the cutoff moves a day at a time, so once a day's mutation is applied the runs
    /// of that day queue nothing that would rewrite parts for nothing.
    async fn delete_where(
        &self,
        table: &str,
        filter: &str,
        binds: Vec<Bind>,
        cutoff_day: &str,
    ) -> Result<(), StoreError> {
        let condition = format!("event_date < toDate(?) AND {filter}");
        let mut all_binds = vec![Bind::Text(cutoff_day.to_string())];
        all_binds.extend(binds);
        let matching: u64 = self
            .query(
                &format!(
                    "SELECT count() FROM {}.{table} WHERE {condition}",
                    self.database
                ),
                all_binds.clone(),
            )
            .fetch_one()
            .await
            .map_err(classify)?;
        if matching == 0 {
            return Ok(());
        }
        let delete = format!(
            "ALTER TABLE {}.{}{} DELETE WHERE {condition}",
            self.database,
            self.topology.local(table),
            self.topology.on_cluster()
        );
        self.query(&delete, all_binds)
            .execute()
            .await
            .map_err(classify)
    }
}
