//! Moves spooled events to the store: a region of the spool at a time, each streamed into one
//! insert, retrying with backoff while the store is down, setting aside events the store rejects
//! (poison) instead of blocking the rest.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::metrics::PipelineMetrics;
use super::spool::{Position, Skipped, SpoolReader};
use crate::store::EventSink;
use deliver::set_aside_region;

/// Events per store insert, at most: the top of ClickHouse's advice (10,000 to 100,000 rows an
/// insert). Large, because each ClickHouse insert writes a new part (a few files per column),
/// which costs the server far more than the rows in it; the shipper streams an insert a piece at
/// a time, so its size is not held in memory.
pub const DEFAULT_BATCH_MAX: usize = 100_000;
/// Spool bytes per store insert, at most (some 90,000 records of the seed's format).
pub const DEFAULT_BATCH_MAX_BYTES: u64 = 64 << 20;

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
    store: Arc<dyn EventSink>,
    metrics: PipelineMetrics,
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
/// than one insert at a time ([`EventSink::inserts_in_flight`]). The checkpoint moves in
/// spool order, past a region only once it and every region before it are confirmed.
pub async fn run(
    mut reader: SpoolReader,
    store: Arc<dyn EventSink>,
    metrics: PipelineMetrics,
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
mod deliver;
mod region;
#[cfg(test)]
mod tests;
