//! Moves spooled events to the store: a region of the spool at a time, each streamed into one
//! insert, retrying with backoff while the store is down, setting aside events the store rejects
//! (poison) instead of blocking the rest.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::metrics::IngestMetrics;
use super::spool::{Position, RegionRead, RegionReader, Skipped, SpoolReader};
use crate::interaction::InteractionEvent;
use crate::store::{EventInsert, InteractionStore, StoreError};

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// Events in one insert, at most.
    pub batch_max: usize,
    /// Spool bytes in one insert, at most. An insert is read and written a piece at a time, so
    /// neither bound is held in memory; each ClickHouse insert writes a part (a few files per
    /// column), and fewer, larger parts cost the server far less.
    pub batch_max_bytes: u64,
    /// How long an insert stays open for more events once it has caught up with the spool (a
    /// partial batch is shipped after at most this long).
    pub flush_interval: Duration,
    /// Where rejected events are set aside (NDJSON).
    pub poison_file: PathBuf,
    /// On shutdown, keep trying to empty the spool this long.
    pub drain_timeout: Duration,
}

/// The most events, and spool bytes, read from the spool at once: what the shipper holds in
/// memory per insert, whatever the size of the insert.
const PIECE_EVENTS: usize = 4_096;
const PIECE_BYTES: u64 = 4 << 20;

/// An insert holding this many events (the low end of ClickHouse's advice, 10,000 to 100,000 rows
/// an insert) makes a part worth writing: it ends once the spool has been quiet for [`QUIET`],
/// instead of staying open out the flush interval, so the events of a burst are stored soon after
/// it. Smaller inserts wait out the interval, so sparse events still make few parts.
const PART_WORTH_WRITING: u64 = 10_000;
const QUIET: Duration = Duration::from_millis(20);

/// Once a commit wakes an insert waiting for more events, it lets further commits gather this long
/// before reading: one read of the spool, and one write to the store, for many small commits
/// instead of one each (single reports commit a few events at a time).
const GATHER: Duration = Duration::from_millis(10);

/// When shipping gives up on shutdown: set once, the first time anyone sees the shutdown.
struct Drain {
    timeout: Duration,
    deadline: Mutex<Option<Instant>>,
}

impl Drain {
    fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            deadline: Mutex::new(None),
        }
    }

    fn deadline(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.deadline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the drain clock, unless it runs already.
    fn begin(&self) {
        let mut deadline = self.deadline();
        if deadline.is_none() {
            *deadline = Some(Instant::now() + self.timeout);
        }
    }

    fn begun(&self) -> bool {
        self.deadline().is_some()
    }

    fn passed(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }
}

/// The records of one insert: from where it starts to where the next one does.
#[derive(Debug, Clone, Copy)]
struct Region {
    from: Position,
    until: Position,
    records: u64,
}

/// What an insert read: its region, as the shipper learns it once the insert stops reading.
struct RegionEnd {
    until: Position,
    records: u64,
    bytes: u64,
    /// Damaged spool regions read past.
    skipped: Vec<Skipped>,
}

/// An insert handed to the store, not yet confirmed: committed in spool order once it is.
struct InFlight {
    /// Whether the region was delivered (false only when giving up at the drain deadline).
    insert: JoinHandle<bool>,
    until: Position,
    records: u64,
    bytes: u64,
}

/// What the shipper shares with the inserts it starts.
#[derive(Clone)]
struct Shipping {
    store: Arc<dyn InteractionStore>,
    metrics: Arc<IngestMetrics>,
    config: Arc<ShipperConfig>,
    drain: Arc<Drain>,
    shutdown: watch::Receiver<bool>,
}

/// Runs until `shutdown` turns true and the spool is drained (or the drain timeout passes).
///
/// Each insert reads its own region of the spool a piece at a time and writes each piece into one
/// open store insert, until the batch limits, or until it has caught up with the spool and the
/// flush interval has passed: large inserts, whose size the shipper never holds in memory. The
/// next insert starts as soon as one stops reading, so it reads while the store finishes the one
/// before, and a store that merges by receive time whatever the order rows arrive in takes more
/// than one insert at a time ([`InteractionStore::inserts_in_flight`]). The checkpoint moves in
/// spool order, past a region only once it and every region before it are confirmed.
pub async fn run(
    mut reader: SpoolReader,
    store: Arc<dyn InteractionStore>,
    metrics: Arc<IngestMetrics>,
    config: ShipperConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let most_in_flight = store.inserts_in_flight().max(1);
    let shipping = Shipping {
        store,
        metrics: metrics.clone(),
        config: Arc::new(config.clone()),
        drain: Arc::new(Drain::new(config.drain_timeout)),
        shutdown: shutdown.clone(),
    };
    let drain = shipping.drain.clone();
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    // Where the next insert starts reading: after the last region handed to the store.
    let mut read_from = reader.position();
    // After the spool was idle, the first insert ships what it finds at once; those after it
    // stay open for company up to the flush interval.
    let mut linger = Duration::ZERO;
    loop {
        if *shutdown.borrow() {
            drain.begin();
        }
        while in_flight.len() >= most_in_flight {
            if !settle_oldest(&mut reader, &mut in_flight).await {
                return;
            }
        }
        let (told, mut region_end) = oneshot::channel();
        let insert = shipping.start(reader.region_reader(), read_from, linger, told);
        // Confirm what the store finishes while this insert reads.
        let end = loop {
            tokio::select! {
                biased;
                end = &mut region_end => break end,
                outcome = oldest_outcome(&mut in_flight) => {
                    if !commit_oldest(&mut reader, &mut in_flight, outcome).await {
                        insert.abort();
                        return;
                    }
                }
            }
        };
        let Ok(end) = end else {
            tracing::error!("an insert stopped before reading its region; the shipper stops and the spool keeps every unshipped event");
            abandon(in_flight);
            return;
        };
        for skipped in &end.skipped {
            metrics.poison.inc();
            set_aside_region(&config.poison_file, skipped);
        }
        reader.note_skipped(end.skipped);
        if end.until != read_from {
            in_flight.push_back(InFlight {
                insert,
                until: end.until,
                records: end.records,
                bytes: end.bytes,
            });
            read_from = end.until;
            if end.records > 0 {
                // Events are coming in: the next insert stays open for more of them.
                linger = config.flush_interval;
            }
            continue;
        }
        // Caught up with the spool: confirm what is out before waiting for more.
        while !in_flight.is_empty() {
            if !settle_oldest(&mut reader, &mut in_flight).await {
                return;
            }
        }
        if drain.begun() {
            return;
        }
        linger = Duration::ZERO;
        tokio::select! {
            _ = reader.wait_for_more(read_from, config.flush_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// How an insert out ended.
enum Outcome {
    Delivered,
    /// Given up at the drain deadline, or failed: what is not committed stays in the spool.
    Stopped,
}

/// Waits for the oldest insert out to end; never, when none is out.
async fn oldest_outcome(in_flight: &mut VecDeque<InFlight>) -> Outcome {
    let Some(oldest) = in_flight.front_mut() else {
        return std::future::pending().await;
    };
    match (&mut oldest.insert).await {
        Ok(true) => Outcome::Delivered,
        Ok(false) => Outcome::Stopped,
        Err(e) => {
            tracing::error!(error = %e, "an insert task failed; the shipper stops and the spool keeps every unshipped event");
            Outcome::Stopped
        }
    }
}

/// Waits for the oldest insert out and commits past it; false when shipping must stop.
async fn settle_oldest(reader: &mut SpoolReader, in_flight: &mut VecDeque<InFlight>) -> bool {
    if in_flight.is_empty() {
        return true;
    }
    let outcome = oldest_outcome(in_flight).await;
    commit_oldest(reader, in_flight, outcome).await
}

/// Commits past the oldest insert, which ended with `outcome`; false when shipping must stop (the
/// store was still away when the drain timed out): what is not committed stays in the spool.
async fn commit_oldest(
    reader: &mut SpoolReader,
    in_flight: &mut VecDeque<InFlight>,
    outcome: Outcome,
) -> bool {
    let Some(oldest) = in_flight.pop_front() else {
        return true;
    };
    if matches!(outcome, Outcome::Stopped) {
        abandon(std::mem::take(in_flight));
        return false;
    }
    if let Err(e) = reader
        .commit(oldest.until, oldest.records, oldest.bytes)
        .await
    {
        tracing::error!(error = %e, "cannot record shipping progress; events will be shipped again (harmlessly)");
    }
    true
}

/// Stops the inserts still out; their events stay in the spool and are shipped at the next start.
fn abandon(in_flight: VecDeque<InFlight>) {
    for region in in_flight {
        region.insert.abort();
    }
}

/// Reads up to `max` records or `max_bytes` of spool from `from`, not past `until`, into `list`
/// (on the blocking pool: file I/O), handing the list back.
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
    fn start(
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
                match open.end().await {
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

/// Delivers `batch`; false only when giving up because the drain deadline passed.
async fn ship(
    store: &dyn InteractionStore,
    batch: &[InteractionEvent],
    metrics: &IngestMetrics,
    config: &ShipperConfig,
    drain: &Drain,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        match store.insert(batch).await {
            Ok(()) => {
                metrics
                    .store_insert_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics.store_rows.inc_by(batch.len() as u64);
                return true;
            }
            Err(StoreError::Rejected(why)) if batch.len() > 1 => {
                tracing::warn!(reason = %why, rows = batch.len(), "the store rejected a batch; isolating the bad events");
                for event in batch {
                    if !Box::pin(ship(
                        store,
                        std::slice::from_ref(event),
                        metrics,
                        config,
                        drain,
                        shutdown,
                    ))
                    .await
                    {
                        return false;
                    }
                }
                return true;
            }
            Err(e @ StoreError::TooLarge(_)) => {
                // Inserts never answer this; if one did, retrying would not help either.
                tracing::error!(error = %e, "the store refused a batch");
                return true;
            }
            Err(StoreError::Rejected(why)) => {
                metrics.store_errors.with_label_values(&["rejected"]).inc();
                for event in batch {
                    metrics.poison.inc();
                    tracing::error!(event_id = %event.event_id, mcp_id = %event.mcp_id, reason = %why, file = %config.poison_file.display(), "the store rejected an event; set aside as poison");
                    set_aside(&config.poison_file, event, &why);
                }
                return true;
            }
            Err(StoreError::Unavailable(why)) => {
                metrics
                    .store_errors
                    .with_label_values(&["unavailable"])
                    .inc();
                if *shutdown.borrow() {
                    drain.begin();
                }
                if drain.passed() {
                    tracing::warn!(reason = %why, "store still unavailable at shutdown; unshipped events stay in the spool");
                    return false;
                }
                tracing::warn!(reason = %why, retry_in_ms = backoff.as_millis() as u64, "store unavailable; retrying");
                let mut wake = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = wake.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Keeps the bytes of a damaged spool region in the poison file, for whoever investigates.
fn set_aside_region(path: &PathBuf, skipped: &super::spool::Skipped) {
    use base64::Engine;
    let line = serde_json::json!({
        "reason": format!("damaged spool records: {}", skipped.reason),
        "segment": skipped.at.segment,
        "offset": skipped.at.offset,
        "length": skipped.bytes.len(),
        "bytes_base64": base64::engine::general_purpose::STANDARD.encode(&skipped.bytes),
    })
    .to_string();
    let what = format!(
        "{} damaged bytes of segment {} at {}",
        skipped.bytes.len(),
        skipped.at.segment,
        skipped.at.offset
    );
    append_line(path, &line, &what);
}

fn set_aside(path: &PathBuf, event: &InteractionEvent, why: &str) {
    let line = serde_json::json!({"reason": why, "event": event}).to_string();
    append_line(path, &line, &format!("event {}", event.event_id));
}

/// Appends `line` to the poison file. What it holds stays out of the logs (it may be sensitive);
/// `what` names it there if the file cannot be written.
fn append_line(path: &PathBuf, line: &str, what: &str) {
    let written = super::spool::private_file()
        .append(true)
        .open(path)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_data()
        });
    if let Err(e) = written {
        tracing::error!(error = %e, file = %path.display(), "could not write the poison file; {what} could not be set aside");
    }
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::ingest::spool::{Spool, SpoolConfig};
    use crate::interaction::Interaction;
    use crate::interaction::{EventKind, Fields};
    use crate::store::{
        retention, AuditEntry, Breakdown, GatheredInsert, HistoryQuery, McpMetrics, MetricsCell,
        TimeRange,
    };

    /// What a test store does with its first insert.
    #[derive(Default)]
    enum FirstInsert {
        /// Fails it, as an outage would.
        #[default]
        Fails,
        /// Holds it until `release_first` is notified.
        Held,
    }

    /// Keeps the interaction ids of every insert it confirms.
    #[derive(Default)]
    struct Recording {
        inserted: Mutex<Vec<String>>,
        /// The events of each insert confirmed, in order.
        sizes: Mutex<Vec<usize>>,
        calls: std::sync::atomic::AtomicUsize,
        first: FirstInsert,
        release_first: tokio::sync::Notify,
        /// Inserts the shipper may have out at once (one when zero).
        at_once: usize,
        /// Which opening of an insert (counting from 0) fails, as a store going away would.
        open_fails: Option<usize>,
        opens: std::sync::atomic::AtomicUsize,
    }

    impl Recording {
        /// A store that confirms every insert (its first one is held, but already released).
        fn confirming() -> Self {
            let store = Self {
                first: FirstInsert::Held,
                ..Self::default()
            };
            store.release_first.notify_one();
            store
        }
    }

    fn not_here<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, StoreError>> {
        async { Err(StoreError::Unavailable("not part of this test".into())) }.boxed()
    }

    impl InteractionStore for Recording {
        fn record_access<'a>(&'a self, _: &'a AuditEntry) -> BoxFuture<'a, Result<(), StoreError>> {
            not_here()
        }
        fn expire<'a>(&'a self, _: &'a retention::Expiry) -> BoxFuture<'a, Result<(), StoreError>> {
            not_here()
        }
        fn audit_log(&self, _: usize) -> BoxFuture<'_, Result<Vec<AuditEntry>, StoreError>> {
            not_here()
        }
        fn inserts_in_flight(&self) -> usize {
            self.at_once.max(1)
        }
        fn open_insert(&self) -> BoxFuture<'_, Result<Box<dyn EventInsert + '_>, StoreError>> {
            let open = self.opens.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if Some(open) == self.open_fails {
                return async { Err(StoreError::Unavailable("going away".into())) }.boxed();
            }
            async move { Ok(GatheredInsert::open(self)) }.boxed()
        }
        fn insert<'a>(
            &'a self,
            events: &'a [InteractionEvent],
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            async move {
                let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if call == 0 {
                    match self.first {
                        FirstInsert::Fails => {
                            return Err(StoreError::Unavailable("restarting".into()))
                        }
                        FirstInsert::Held => self.release_first.notified().await,
                    }
                }
                let mut inserted = self.inserted.lock().unwrap_or_else(|p| p.into_inner());
                inserted.extend(events.iter().map(|e| e.interaction_id.clone()));
                let mut sizes = self.sizes.lock().unwrap_or_else(|p| p.into_inner());
                sizes.push(events.len());
                Ok(())
            }
            .boxed()
        }
        fn history<'a>(
            &'a self,
            _: &'a HistoryQuery,
        ) -> BoxFuture<'a, Result<Vec<Interaction>, StoreError>> {
            not_here()
        }
        fn record_heartbeats<'a>(
            &'a self,
            _: &'a [(String, i64)],
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            not_here()
        }
        fn heartbeats(
            &self,
        ) -> BoxFuture<'_, Result<std::collections::HashMap<String, i64>, StoreError>> {
            not_here()
        }
        fn reported_versions(
            &self,
            _: TimeRange,
        ) -> BoxFuture<'_, Result<Vec<crate::store::VersionCount>, StoreError>> {
            not_here()
        }
        fn breakdown<'a>(
            &'a self,
            _: Option<&'a str>,
            _: TimeRange,
            _: Breakdown,
        ) -> BoxFuture<'a, Result<Vec<MetricsCell>, StoreError>> {
            not_here()
        }
        fn metrics<'a>(
            &'a self,
            _: Option<&'a str>,
            _: TimeRange,
        ) -> BoxFuture<'a, Result<Vec<McpMetrics>, StoreError>> {
            not_here()
        }
    }

    /// A spool in a fresh directory named for the test (`tag`), its segments `segment_bytes` long.
    fn spool_in(tag: &str, segment_bytes: u64) -> (PathBuf, Spool, SpoolReader) {
        let dir = std::env::temp_dir().join(format!("mcp-shipper-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, reader) = Spool::open(SpoolConfig {
            dir: dir.join("spool"),
            segment_bytes,
            max_bytes: 64 << 20,
        })
        .unwrap();
        (dir, spool, reader)
    }

    fn start_event(interaction_id: String, received_ms: i64) -> InteractionEvent {
        InteractionEvent::new(
            interaction_id,
            "m".into(),
            EventKind::Start,
            received_ms,
            Fields::default(),
        )
    }

    /// The shipper running over `reader` into `store`, shipping batches of at most `batch_max`
    /// events or `batch_max_bytes`, partial ones after `flush_interval`; the sender stops it.
    fn ship_into(
        dir: &std::path::Path,
        reader: SpoolReader,
        store: Arc<Recording>,
        (batch_max, batch_max_bytes, flush_interval): (usize, u64, Duration),
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (stop, shutdown) = watch::channel(false);
        let shipper = tokio::spawn(run(
            reader,
            store,
            Arc::new(IngestMetrics::new().unwrap()),
            ShipperConfig {
                batch_max,
                batch_max_bytes,
                flush_interval,
                poison_file: dir.join("poison.ndjson"),
                drain_timeout: Duration::from_secs(5),
            },
            shutdown,
        ));
        (stop, shipper)
    }

    /// Stops the shipper, waits for it to end, and removes the test's directory.
    async fn stopped(
        stop: watch::Sender<bool>,
        shipper: tokio::task::JoinHandle<()>,
        dir: &std::path::Path,
    ) {
        stop.send(true).unwrap();
        shipper.await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Waits until the spool is empty (everything shipped and committed), failing after `within`.
    async fn spool_emptied(spool: &Spool, within: Duration) {
        let deadline = Instant::now() + within;
        while spool.stats().records > 0 {
            assert!(
                Instant::now() < deadline,
                "not shipped: {:?}",
                spool.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until `store` has confirmed `n` events, failing after 10 s (the tests' flush
    /// intervals are longer, or it is `why` they must come sooner).
    async fn inserted(store: &Recording, n: usize, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.inserted.lock().unwrap().len() < n {
            assert!(
                Instant::now() < deadline,
                "{n} not inserted within 10 s ({why}): {:?}",
                store.sizes.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Full batches are shipped while the next is read ahead: across many segments and an outage,
    /// every event arrives once, in spool order, and the spool ends empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_ahead_ships_every_event_once_and_in_order() {
        let (dir, spool, reader) = spool_in("ahead", 4096);
        let total = 1_050;
        for chunk in (0..total).collect::<Vec<_>>().chunks(70) {
            let events = chunk
                .iter()
                .map(|i| start_event(format!("i{i:05}"), *i as i64))
                .collect::<Vec<_>>();
            spool.append(&events).await.unwrap();
        }
        let store = Arc::new(Recording::default());
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (100, 64 << 10, Duration::from_millis(20)),
        );
        spool_emptied(&spool, Duration::from_secs(30)).await;
        stop.send(true).unwrap();
        shipper.await.unwrap();
        let inserted = store.inserted.lock().unwrap().clone();
        let expected: Vec<String> = (0..total).map(|i| format!("i{i:05}")).collect();
        assert_eq!(inserted, expected);
        assert!(!dir.join("poison.ndjson").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// After an idle spool the first events are shipped at once; the insert after them stays open
    /// for company, across commits, until it is full (long before the 60 s flush interval); an
    /// empty spool is read again as soon as something is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_insert_stays_open_for_more_events_until_it_is_full() {
        let (dir, spool, reader) = spool_in("linger", 1 << 20);
        let event = |i: usize| start_event(format!("i{i:02}"), i as i64);
        let store = Arc::new(Recording::default());
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (10, 1 << 20, Duration::from_secs(60)),
        );
        let shipped = |n: usize| inserted(&store, n, "the flush interval is 60 s");
        let append = |range: std::ops::Range<usize>| {
            let events = range.map(event).collect::<Vec<_>>();
            let spool = &spool;
            async move { spool.append(&events).await.unwrap() }
        };
        // The first insert fails (the store restarts): it is delivered again, from the spool.
        append(0..3).await;
        shipped(3).await;
        for part in [3..5, 5..9, 9..13] {
            append(part).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        shipped(13).await;
        assert_eq!(
            store.sizes.lock().unwrap().clone(),
            [3, 10],
            "three commits in one insert"
        );
        stopped(stop, shipper, &dir).await;
    }

    /// An insert holds far more events than one read of the spool: 10,000 events written in
    /// pieces arrive as one insert, in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_insert_spans_many_reads_of_the_spool() {
        let (dir, spool, reader) = spool_in("region", 1 << 20);
        let total = 10_000;
        let events: Vec<InteractionEvent> = (0..total)
            .map(|i| start_event(format!("i{i:05}"), i as i64))
            .collect();
        spool.append(&events).await.unwrap();
        let store = Arc::new(Recording::confirming());
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (total, 64 << 20, Duration::from_millis(20)),
        );
        spool_emptied(&spool, Duration::from_secs(30)).await;
        stop.send(true).unwrap();
        shipper.await.unwrap();
        assert!(total > PIECE_EVENTS * 2, "more than two reads");
        assert_eq!(store.sizes.lock().unwrap().clone(), [total]);
        let inserted = store.inserted.lock().unwrap().clone();
        assert_eq!(
            inserted,
            events
                .iter()
                .map(|e| e.interaction_id.clone())
                .collect::<Vec<_>>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// An insert that holds a part worth writing ends once the spool goes quiet, not at the end of
    /// the flush interval (60 s here): a burst is stored soon after it, in one insert.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_insert_ends_once_the_spool_goes_quiet() {
        let (dir, spool, reader) = spool_in("quiet", 4 << 20);
        let store = Arc::new(Recording::confirming());
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (100_000, 64 << 20, Duration::from_secs(60)),
        );
        let shipped = |n: usize| inserted(&store, n, "the flush interval is 60 s");
        let burst = PART_WORTH_WRITING as usize;
        let events: Vec<InteractionEvent> = (0..3 + burst)
            .map(|i| start_event(format!("i{i:05}"), i as i64))
            .collect();
        spool.append(&events[..3]).await.unwrap();
        shipped(3).await;
        for piece in events[3..].chunks(burst / 4) {
            spool.append(piece).await.unwrap();
        }
        shipped(3 + burst).await;
        assert_eq!(store.sizes.lock().unwrap().clone(), [3, burst]);
        stopped(stop, shipper, &dir).await;
    }

    /// An insert that fails while it stays open for more events ends there: its events are
    /// written again after a short backoff, not after the 60 s flush interval.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_insert_that_fails_while_open_is_retried_at_once() {
        let (dir, spool, reader) = spool_in("open-fails", 1 << 20);
        let store = Arc::new(Recording {
            open_fails: Some(1),
            ..Recording::confirming()
        });
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (100_000, 64 << 20, Duration::from_secs(60)),
        );
        let events: Vec<InteractionEvent> =
            (0..8).map(|i| start_event(format!("i{i}"), i)).collect();
        spool.append(&events[..3]).await.unwrap();
        inserted(&store, 3, "the first events after an idle spool go at once").await;
        spool.append(&events[3..]).await.unwrap();
        inserted(&store, 8, "the flush interval is 60 s").await;
        assert_eq!(store.sizes.lock().unwrap().clone(), [3, 5]);
        stopped(stop, shipper, &dir).await;
    }

    /// With two inserts out, a later batch confirmed first does not move the checkpoint: the
    /// spool keeps everything from the unconfirmed batch on, and a restart would ship it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_confirmed_early_waits_for_the_one_before_it() {
        let (dir, spool, reader) = spool_in("order", 1 << 20);
        let events: Vec<InteractionEvent> = (0..30)
            .map(|i| start_event(format!("i{i:02}"), i))
            .collect();
        spool.append(&events).await.unwrap();
        let store = Arc::new(Recording {
            first: FirstInsert::Held,
            at_once: 2,
            ..Recording::default()
        });
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (10, 1 << 20, Duration::from_millis(20)),
        );
        inserted(
            &store,
            10,
            "the second batch must go out while the first is held",
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            store.inserted.lock().unwrap().clone(),
            (10..20).map(|i| format!("i{i:02}")).collect::<Vec<_>>(),
            "the second batch went out while the first was held, and no third"
        );
        assert_eq!(
            spool.stats().records,
            30,
            "nothing is committed past an unconfirmed batch"
        );
        store.release_first.notify_one();
        spool_emptied(&spool, Duration::from_secs(10)).await;
        stop.send(true).unwrap();
        shipper.await.unwrap();
        let mut confirmed = store.inserted.lock().unwrap().clone();
        confirmed.sort();
        assert_eq!(
            confirmed,
            events
                .iter()
                .map(|e| e.interaction_id.clone())
                .collect::<Vec<_>>()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
