//! Rolling: whole hours merged and aggregated into `interaction_rollups`, each roll a
//! generation; hours that late inserts marked are rolled again.

use super::*;

impl ClickHouseStore {
    /// Until when minutes are rolled (exclusive), if rolling has begun.
    pub(in crate::store::clickhouse) async fn rolled_through(
        &self,
    ) -> Result<Option<i64>, StoreError> {
        let (through, rows): (i64, u64) = self
            .client
            .query(&format!(
                "SELECT max(rolled_through), count() FROM {}.{PROGRESS_TABLE} WHERE name = 'minutes'",
                self.database
            ))
            .fetch_one()
            .await
            .map_err(classify)?;
        Ok((rows > 0).then_some(through))
    }

    /// Rolls the hours whose interactions are complete, continuing from the last run (or, the
    /// first time, from the first day the log holds), then the hours marked for rolling again.
    pub(in crate::store::clickhouse) async fn roll_up(&self) -> Result<(), StoreError> {
        let sealed = floor_hour(now_ms() - self.max_interaction_ms - MINUTE_MS);
        let mut from = match self.rolled_through().await? {
            Some(through) => through,
            None => self.first_day_ms().await?.unwrap_or(sealed),
        };
        for _ in 0..MAX_DAYS_PER_RUN {
            if from >= sealed {
                break;
            }
            let to = (from + DAY_MS).min(sealed);
            self.roll(from, to).await?;
            self.record_progress("minutes", to).await?;
            from = to;
        }
        if from >= sealed {
            self.record_progress("minutes", from.max(sealed)).await?;
        }
        self.reroll_marked().await
    }

    /// After events were inserted: when some were received so long ago that their hours may
    /// already be rolled (a spool catching up after an outage), marks those hours for the upkeep
    /// loop to roll again, once for however many batches touch them. The mark is written before
    /// the insert is confirmed, so a crash cannot lose it.
    pub(in crate::store::clickhouse) async fn mark_late_insert(
        &self,
        oldest_received: i64,
        newest_received: i64,
    ) -> Result<(), StoreError> {
        let slack = self.max_interaction_ms;
        if oldest_received >= now_ms() - slack - 2 * MINUTE_MS {
            return Ok(());
        }
        let Some(through) = self.rolled_through().await? else {
            return Ok(());
        };
        let from = floor_hour(oldest_received.saturating_sub(slack));
        let to = ceil_hour(newest_received.saturating_add(slack)).min(through);
        if from >= to {
            return Ok(());
        }
        let at = now_ms();
        let sql = format!(
            "INSERT INTO {}.{DIRTY_TABLE} (event_date, mcp_id, from_ms, to_ms, at_ms) VALUES (toDate(?), '', ?, ?, ?)",
            self.database
        );
        let binds = vec![
            Bind::Text(super::sql::day_of_ms(at)),
            Bind::Int(from),
            Bind::Int(to),
            Bind::Int(at),
        ];
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    /// Rolls again the hours marked since the last run. Marks of the last minute before it are
    /// read again the next time (rolling twice is harmless), so a mark another replica wrote
    /// just as this run read is not missed.
    async fn reroll_marked(&self) -> Result<(), StoreError> {
        let (done, _): (i64, u64) = self
            .client
            .query(&format!(
                "SELECT max(rolled_through), count() FROM {}.{PROGRESS_TABLE} WHERE name = 'marks'",
                self.database
            ))
            .fetch_one()
            .await
            .map_err(classify)?;
        let started = now_ms();
        let marks: Vec<(i64, i64)> = self
            .query(
                &format!(
                    "SELECT from_ms, to_ms FROM {}.{DIRTY_TABLE} WHERE at_ms >= ? ORDER BY from_ms LIMIT 100000",
                    self.database
                ),
                vec![Bind::Int(done)],
            )
            .fetch_all()
            .await
            .map_err(classify)?;
        for (from, to) in coalesce(marks) {
            let mut at = from;
            while at < to {
                let end = (at + DAY_MS).min(to);
                self.roll(at, end).await?;
                at = end;
            }
        }
        self.record_progress("marks", started - MINUTE_MS).await
    }

    async fn roll(&self, from: i64, to: i64) -> Result<(), StoreError> {
        let (received, mut binds) = self.received_filter(Some(from), Some(to));
        binds.push(Bind::Int(from));
        binds.push(Bind::Int(to));
        let sql = roll_sql(&self.database, &received, generation());
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    async fn record_progress(&self, name: &str, through: i64) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {}.{PROGRESS_TABLE} (name, rolled_through, at_ms) VALUES (?, ?, ?)",
            self.database
        );
        let binds = vec![
            Bind::Text(name.to_string()),
            Bind::Int(through),
            Bind::Int(now_ms()),
        ];
        self.query(&sql, binds).execute().await.map_err(classify)
    }

    /// The start of the first day the events table holds.
    async fn first_day_ms(&self) -> Result<Option<i64>, StoreError> {
        // One server lists its parts; a cluster's are on its shards, so ask the table itself.
        let query = match self.topology.cluster() {
            None => self
                .client
                .query(
                    "SELECT toUInt16(min(min_date)), count() FROM system.parts WHERE database = ? AND table = ? AND active",
                )
                .bind(&self.database)
                .bind(super::sql::TABLE),
            Some(_) => self.client.query(&format!(
                "SELECT toUInt16(min(event_date)), count() FROM {}.{}",
                self.database,
                super::sql::TABLE
            )),
        };
        let (day, rows): (u16, u64) = query.fetch_one().await.map_err(classify)?;
        Ok((rows > 0).then_some(i64::from(day) * DAY_MS))
    }
}
