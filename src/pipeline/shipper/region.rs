//! One insert: a region of the spool read a piece at a time and streamed into one open store
//! insert, ending at the batch limits or once it has caught up and the flush interval passed.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::deliver::{insert_span, ship};
use super::{
    Region, RegionEnd, Shipping, GATHER, PART_WORTH_WRITING, PIECE_BYTES, PIECE_EVENTS, QUIET,
};
use crate::interaction::InteractionEvent;
use crate::pipeline::spool::{Position, RegionRead, RegionReader};
use crate::store::{EventInsert, StoreError};
use crate::telemetry::spans;

async fn read_piece(
    spool: &RegionReader,
    (from, until): (Position, Position),
    (max, max_bytes): (usize, u64),
    mut list: Vec<InteractionEvent>,
) -> (Vec<InteractionEvent>, Result<RegionRead, String>) {
    let spool = spool.clone();
    let reading = tokio::task::spawn_blocking(move || {
        let read = spool.read_within(from, until, max, max_bytes, &mut list);
        (list, read)
    });
    match reading.await {
        Ok((list, read)) => (list, read.map_err(|e| e.to_string())),
        Err(e) => (Vec::new(), Err(format!("the spool read stopped: {e}"))),
    }
}

impl Shipping {
    pub(super) fn start(
        &self,
        spool: RegionReader,
        from: Position,
        linger: Duration,
        told: oneshot::Sender<RegionEnd>,
    ) -> JoinHandle<bool> {
        let this = self.clone();
        tokio::spawn(async move { this.ship_region(spool, from, linger, told).await })
    }

    /// Reads a region from `from` and streams it into one insert; tells the shipper the region
    /// once it stops reading, then delivers it. False only when giving up at the drain deadline.
    async fn ship_region(
        &self,
        spool: RegionReader,
        from: Position,
        linger: Duration,
        told: oneshot::Sender<RegionEnd>,
    ) -> bool {
        let config = &self.config;
        let stay_open_until = tokio::time::Instant::now() + linger;
        let mut end = RegionEnd {
            until: from,
            records: 0,
            bytes: 0,
            skipped: Vec::new(),
        };
        let mut list = Vec::new();
        let mut insert: Option<Box<dyn EventInsert + '_>> = None;
        let mut failure: Option<StoreError> = None;
        // The insert's span, from its opening to its end.
        let mut span: Option<spans::Op> = None;
        // Whether the last wait for more was one of `QUIET` (and nothing came since).
        let mut waited_quiet = false;
        loop {
            let room = (
                (config.batch_max as u64)
                    .saturating_sub(end.records)
                    .min(PIECE_EVENTS as u64) as usize,
                config
                    .batch_max_bytes
                    .saturating_sub(end.bytes)
                    .min(PIECE_BYTES),
            );
            let (back, read) = read_piece(&spool, (end.until, Position::END), room, list).await;
            list = back;
            let read = match read {
                Ok(read) => read,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying");
                    if end.until == from {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    break;
                }
            };
            let progressed = read.next != end.until;
            end.until = read.next;
            end.records += list.len() as u64;
            end.bytes += read.bytes;
            end.skipped.extend(read.skipped);
            if !list.is_empty() {
                if insert.is_none() {
                    span = Some(insert_span());
                    match self.store.open_insert().await {
                        Ok(opened) => insert = Some(opened),
                        Err(e) => failure = Some(e),
                    }
                }
                if let Some(open) = insert.as_mut() {
                    if let Err(e) = open.write(&list).await {
                        failure = Some(e);
                        insert = None;
                    }
                }
            }
            // The region ends at a failure: what it holds is written again from the spool, and
            // reading further for an insert that cannot take it would only delay that.
            if failure.is_some()
                || end.records >= config.batch_max as u64
                || end.bytes >= config.batch_max_bytes
            {
                break;
            }
            if progressed {
                waited_quiet = false;
                continue;
            }
            // After an idle spool there is nothing to wait for; after events, more may follow.
            if (end.records == 0 && linger.is_zero()) || *self.shutdown.borrow() {
                break;
            }
            let now = tokio::time::Instant::now();
            let mut wait_until = stay_open_until;
            if end.records >= PART_WORTH_WRITING {
                if waited_quiet {
                    break;
                }
                waited_quiet = true;
                wait_until = wait_until.min(now + QUIET);
            }
            if now >= wait_until {
                break;
            }
            let mut wake = self.shutdown.clone();
            tokio::select! {
                _ = spool.wait_for_more(end.until, wait_until - now) => {
                    let now = tokio::time::Instant::now();
                    if now < wait_until {
                        tokio::time::sleep(GATHER.min(wait_until - now)).await;
                    }
                }
                _ = wake.changed() => {}
            }
        }
        drop(list);
        let region = Region {
            from,
            until: end.until,
            records: end.records,
        };
        // The shipper may be gone (stopping); the region is delivered all the same.
        let _ = told.send(end);
        if region.records == 0 {
            return true;
        }
        if failure.is_none() {
            if let Some(open) = insert.take() {
                let started = Instant::now();
                let ended = open.end().await;
                if let Some(span) = span.take() {
                    span.set(|| {
                        spans::Attribute::new("mcp_coordinator.rows", region.records as i64)
                    });
                    span.end(ended.as_ref().err().map(|e| ("store_error", e.to_string())));
                }
                match ended {
                    Ok(()) => {
                        self.delivered(region.records, started);
                        return true;
                    }
                    Err(e) => failure = Some(e),
                }
            }
        }
        let failure =
            failure.unwrap_or_else(|| StoreError::Unavailable("the insert was not opened".into()));
        self.redeliver(&spool, region, failure).await
    }

    fn delivered(&self, records: u64, ending_started: Instant) {
        self.metrics
            .store_insert_seconds
            .observe(ending_started.elapsed().as_secs_f64());
        self.metrics.store_rows.inc_by(records);
    }

    /// Delivers `region` after its insert failed with `failure`: again from the spool, with
    /// backoff while the store is away; event by event once the store rejects it. False only when
    /// giving up at the drain deadline.
    async fn redeliver(&self, spool: &RegionReader, region: Region, failure: StoreError) -> bool {
        let mut backoff = Duration::from_millis(100);
        let mut failure = failure;
        loop {
            match failure {
                StoreError::Rejected(why) => {
                    tracing::warn!(reason = %why, rows = region.records, "the store rejected an insert; isolating the bad events");
                    return self.isolate(spool, region).await;
                }
                e @ StoreError::TooLarge(_) => {
                    // Inserts never answer this; if one did, retrying would not help either.
                    tracing::error!(error = %e, "the store refused an insert");
                    return true;
                }
                StoreError::Unavailable(why) => {
                    self.metrics
                        .store_errors
                        .with_label_values(&["unavailable"])
                        .inc();
                    if !self.back_off(&why, &mut backoff).await {
                        return false;
                    }
                }
            }
            failure = match self.insert_region(spool, region).await {
                Ok(()) => return true,
                Err(e) => e,
            };
        }
    }

    /// Waits out `backoff` (doubling it) before trying an unavailable store again; false when the
    /// drain deadline has passed instead.
    async fn back_off(&self, why: &str, backoff: &mut Duration) -> bool {
        if *self.shutdown.borrow() {
            self.drain.begin();
        }
        if self.drain.passed() {
            tracing::warn!(reason = %why, "store still unavailable at shutdown; unshipped events stay in the spool");
            return false;
        }
        tracing::warn!(reason = %why, retry_in_ms = backoff.as_millis() as u64, "store unavailable; retrying");
        let mut wake = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(*backoff) => {}
            _ = wake.changed() => {}
        }
        *backoff = (*backoff * 2).min(Duration::from_secs(30));
        true
    }

    /// Streams `region` from the spool into one insert again.
    async fn insert_region(&self, spool: &RegionReader, region: Region) -> Result<(), StoreError> {
        let mut insert = self.store.open_insert().await?;
        let mut at = region.from;
        let mut list = Vec::new();
        while at < region.until {
            let (back, read) =
                read_piece(spool, (at, region.until), (PIECE_EVENTS, PIECE_BYTES), list).await;
            list = back;
            let read = read.map_err(|e| {
                StoreError::Unavailable(format!("the spool could not be read again: {e}"))
            })?;
            if read.next == at {
                break;
            }
            at = read.next;
            insert.write(&list).await?;
        }
        let started = Instant::now();
        insert.end().await?;
        self.delivered(region.records, started);
        Ok(())
    }

    /// Delivers `region` a piece at a time, each alone, setting aside the events the store
    /// rejects. False only when giving up at the drain deadline.
    async fn isolate(&self, spool: &RegionReader, region: Region) -> bool {
        let mut at = region.from;
        let mut list = Vec::new();
        let mut backoff = Duration::from_millis(100);
        while at < region.until {
            let (back, read) =
                read_piece(spool, (at, region.until), (PIECE_EVENTS, PIECE_BYTES), list).await;
            list = back;
            let read = match read {
                Ok(read) if read.next != at => read,
                Ok(_) => break,
                Err(e) => {
                    if !self
                        .back_off(
                            &format!("the spool could not be read again: {e}"),
                            &mut backoff,
                        )
                        .await
                    {
                        return false;
                    }
                    continue;
                }
            };
            at = read.next;
            let delivered = ship(
                &*self.store,
                &list,
                &self.metrics,
                &self.config,
                &self.drain,
                &self.shutdown,
            )
            .await;
            if !delivered {
                return false;
            }
        }
        true
    }
}
