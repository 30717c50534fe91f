use futures::future::BoxFuture;
use futures::FutureExt;

use super::*;
use crate::interaction::{EventKind, Fields, InteractionEvent};
use crate::pipeline::spool::{Spool, SpoolConfig};
use crate::store::{EventInsert, GatheredInsert, StoreError};
use crate::telemetry::Series;
use crate::test_dir::TestDir;

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

impl EventSink for Recording {
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
                    FirstInsert::Fails => return Err(StoreError::Unavailable("restarting".into())),
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
}

/// A spool in a fresh directory named for the test (`tag`), its segments `segment_bytes` long.
fn spool_in(tag: &str, segment_bytes: u64) -> (TestDir, Spool, SpoolReader) {
    let dir = TestDir::new(&format!("shipper-{tag}"));
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
        PipelineMetrics::new(&Series::default()).unwrap(),
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
    let events: Vec<InteractionEvent> = (0..8).map(|i| start_event(format!("i{i}"), i)).collect();
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
}
