//! Moves spooled events to the store: in batches, retrying with backoff while the store is down,
//! setting aside events the store rejects (poison) instead of blocking the rest.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::IngestMetrics;
use super::spool::{Position, SpoolReader};
use crate::interaction::InteractionEvent;
use crate::store::{InteractionStore, StoreError};

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    pub batch_max: usize,
    /// A batch also ends once its records take this many spool bytes (bounds memory when records
    /// are large: a batch is held in memory while it is read, and while it is inserted).
    pub batch_max_bytes: u64,
    /// A partial batch waits at most this long for company.
    pub flush_interval: Duration,
    /// Where rejected events are set aside (NDJSON).
    pub poison_file: PathBuf,
    /// On shutdown, keep trying to empty the spool this long.
    pub drain_timeout: Duration,
}

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

/// A batch handed to the store, not yet confirmed: committed in spool order once it is.
struct InFlight {
    /// `None` for a read that passed over damaged records only.
    insert: Option<JoinHandle<Shipped>>,
    next: Position,
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

/// What an insert task ends with: whether its batch was delivered (false only when giving up at
/// the drain deadline), and the batch's list, emptied, for the next read to fill.
struct Shipped {
    delivered: bool,
    list: Vec<InteractionEvent>,
}

impl Shipping {
    fn start(&self, mut batch: Vec<InteractionEvent>) -> JoinHandle<Shipped> {
        let this = self.clone();
        tokio::spawn(async move {
            let delivered = ship(
                &*this.store,
                &batch,
                &this.metrics,
                &this.config,
                &this.drain,
                &this.shutdown,
            )
            .await;
            batch.clear();
            Shipped {
                delivered,
                list: batch,
            }
        })
    }
}

/// Runs until `shutdown` turns true and the spool is drained (or the drain timeout passes).
///
/// The next batch is read (on the blocking pool) while the store takes the ones before it, and a
/// store that merges by receive time whatever the order rows arrive in takes more than one insert
/// at a time ([`InteractionStore::inserts_in_flight`]). The checkpoint moves in spool order, past
/// a batch only once it and every batch before it are confirmed.
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
    // Emptied lists of batches the store confirmed, to read the next batches into.
    let mut spare_lists: Vec<Vec<InteractionEvent>> = Vec::new();
    // Where the next read starts: after the last batch handed to the store.
    let mut read_from = reader.position();
    loop {
        if *shutdown.borrow() {
            drain.begin();
        }
        let (max, max_bytes) = (config.batch_max, config.batch_max_bytes);
        let mut batch = spare_lists.pop().unwrap_or_default();
        let reading = tokio::task::spawn_blocking(move || {
            let read = reader.read_batch_within(read_from, max, max_bytes, &mut batch);
            let bytes = reader.last_batch_bytes();
            (reader, read.map(|next| (batch, next, bytes)))
        });
        let (batch, next, bytes) = match reading.await {
            Ok((back, read)) => {
                reader = back;
                match read {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the spool; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "the spool read failed; the shipper stops and the spool keeps every unshipped event");
                abandon(in_flight);
                return;
            }
        };
        for skipped in reader.skipped_between(read_from, next) {
            metrics.poison.inc();
            set_aside_region(&config.poison_file, &skipped);
        }
        let read_anything = next != read_from;
        let full = batch.len() >= config.batch_max || bytes >= config.batch_max_bytes;
        let had_events = !batch.is_empty();
        let batch = if had_events {
            Some(batch)
        } else {
            // Idle: let the lists' memory go.
            spare_lists.clear();
            None
        };
        if read_anything {
            if in_flight.len() >= most_in_flight
                && !settle_oldest(&mut reader, &mut in_flight, &mut spare_lists).await
            {
                return;
            }
            let records = batch.as_ref().map_or(0, |b| b.len() as u64);
            in_flight.push_back(InFlight {
                insert: batch.map(|b| shipping.start(b)),
                next,
                records,
                bytes,
            });
            read_from = next;
            if full || !had_events {
                continue; // more is waiting: read it while the store works
            }
        }
        // Read up to the end of what is durable: confirm what is out before waiting for more.
        while !in_flight.is_empty() {
            if !settle_oldest(&mut reader, &mut in_flight, &mut spare_lists).await {
                return;
            }
        }
        if drain.begun() {
            if !had_events {
                return;
            }
            continue;
        }
        if had_events {
            // A partial batch was shipped: let the next one fill, for the flush interval at most.
            // Waiting out the interval when a full batch is already there would idle the store
            // under load.
            tokio::select! {
                _ = reader.wait_for_batch(
                    config.batch_max as u64,
                    config.batch_max_bytes,
                    config.flush_interval,
                ) => {}
                _ = shutdown.changed() => {}
            }
        } else {
            tokio::select! {
                _ = reader.wait_for_more(read_from, config.flush_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Waits for the oldest batch in flight and commits past it, keeping its emptied list in
/// `spare_lists`; false when shipping must stop (the store was still away when the drain timed
/// out): what is not committed stays in the spool.
async fn settle_oldest(
    reader: &mut SpoolReader,
    in_flight: &mut VecDeque<InFlight>,
    spare_lists: &mut Vec<Vec<InteractionEvent>>,
) -> bool {
    let Some(oldest) = in_flight.pop_front() else {
        return true;
    };
    let shipped = match oldest.insert {
        None => true,
        Some(insert) => match insert.await {
            Ok(Shipped { delivered, list }) => {
                spare_lists.push(list);
                delivered
            }
            Err(e) => {
                tracing::error!(error = %e, "an insert task failed; the shipper stops and the spool keeps every unshipped event");
                false
            }
        },
    };
    if !shipped {
        abandon(std::mem::take(in_flight));
        return false;
    }
    if let Err(e) = reader.commit(oldest.next, oldest.records, oldest.bytes) {
        tracing::error!(error = %e, "cannot record shipping progress; events will be shipped again (harmlessly)");
    }
    true
}

/// Stops the inserts still out; their events stay in the spool and are shipped at the next start.
fn abandon(in_flight: VecDeque<InFlight>) {
    for batch in in_flight {
        if let Some(insert) = batch.insert {
            insert.abort();
        }
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
        retention, AuditEntry, Breakdown, HistoryQuery, McpMetrics, MetricsCell, TimeRange,
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
        calls: std::sync::atomic::AtomicUsize,
        first: FirstInsert,
        release_first: tokio::sync::Notify,
        /// Inserts the shipper may have out at once (one when zero).
        at_once: usize,
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while spool.stats().records > 0 {
            assert!(
                Instant::now() < deadline,
                "not shipped: {:?}",
                spool.stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        shipper.await.unwrap();
        let inserted = store.inserted.lock().unwrap().clone();
        let expected: Vec<String> = (0..total).map(|i| format!("i{i:05}")).collect();
        assert_eq!(inserted, expected);
        assert!(!dir.join("poison.ndjson").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// After a partial batch the shipper waits for the next to fill, but not past a full one; an
    /// empty spool is read again as soon as something is committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_batch_is_shipped_without_waiting_out_the_flush_interval() {
        let (dir, spool, reader) = spool_in("full", 1 << 20);
        let event = |i: usize| start_event(format!("i{i:02}"), i as i64);
        let store = Arc::new(Recording::default());
        let (stop, shipper) = ship_into(
            &dir,
            reader,
            store.clone(),
            (10, 1 << 20, Duration::from_secs(60)),
        );
        let shipped = |n: usize| {
            let store = store.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                while store.inserted.lock().unwrap().len() < n {
                    assert!(
                        Instant::now() < deadline,
                        "{n} not shipped within 10 s (the flush interval is 60 s)"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        };
        spool
            .append(&(0..3).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        shipped(3).await;
        spool
            .append(&(3..13).map(event).collect::<Vec<_>>())
            .await
            .unwrap();
        shipped(13).await;
        stop.send(true).unwrap();
        shipper.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.inserted.lock().unwrap().len() < 10 {
            assert!(Instant::now() < deadline, "the second batch was not sent");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
        while spool.stats().records > 0 {
            assert!(
                Instant::now() < deadline,
                "not shipped: {:?}",
                spool.stats()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
