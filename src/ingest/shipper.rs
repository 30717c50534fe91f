//! Moves spooled events to the store: in batches, retrying with backoff while the store is down,
//! setting aside events the store rejects (poison) instead of blocking the rest.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::metrics::IngestMetrics;
use super::spool::{Position, SpoolReader};
use crate::interaction::InteractionEvent;
use crate::store::{InteractionStore, StoreError};

#[derive(Debug, Clone)]
pub struct ShipperConfig {
    pub batch_max: usize,
    /// A partial batch waits at most this long for company.
    pub flush_interval: Duration,
    /// Where rejected events are set aside (NDJSON).
    pub poison_file: PathBuf,
    /// On shutdown, keep trying to empty the spool this long.
    pub drain_timeout: Duration,
}

/// Runs until `shutdown` turns true and the spool is drained (or the drain timeout passes).
pub async fn run(
    mut reader: SpoolReader,
    store: Arc<dyn InteractionStore>,
    metrics: Arc<IngestMetrics>,
    config: ShipperConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut drain_deadline: Option<Instant> = None;
    // The batch read while the store was taking the one before it.
    let mut ahead: Option<(Vec<InteractionEvent>, Position, u64)> = None;
    loop {
        if drain_deadline.is_none() && *shutdown.borrow() {
            drain_deadline = Some(Instant::now() + config.drain_timeout);
        }
        let (batch, next, bytes) = match ahead.take() {
            Some(read) => read,
            None => match reader.read_batch(config.batch_max) {
                Ok((batch, next)) => (batch, next, reader.last_batch_bytes()),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the spool; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        for skipped in reader.skipped_before(next) {
            metrics.poison.inc();
            set_aside_region(&config.poison_file, &skipped);
        }
        if batch.is_empty() && next != reader.position() {
            // Only damaged records were read past: record that they are behind us.
            if let Err(e) = reader.commit(next, 0, 0) {
                tracing::error!(error = %e, "cannot record shipping progress past damaged records");
            }
            continue;
        }
        if batch.is_empty() {
            if drain_deadline.is_some() {
                return;
            }
            tokio::select! {
                _ = reader.wait_for_more(config.flush_interval) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let full = batch.len() >= config.batch_max;
        let shipping = ship(
            &*store,
            &batch,
            &metrics,
            &config,
            &mut drain_deadline,
            &shutdown,
        );
        let shipped = if full {
            // A full batch means more is waiting: decode the next one on the blocking pool while
            // the store takes this one, instead of leaving the store idle during the read.
            let max = config.batch_max;
            let reading = tokio::task::spawn_blocking(move || {
                let read = reader.read_batch_from(next, max);
                let bytes = reader.last_batch_bytes();
                (reader, read.map(|(batch, next)| (batch, next, bytes)))
            });
            let (shipped, read) = tokio::join!(shipping, reading);
            match read {
                Ok((back, read)) => {
                    reader = back;
                    match read {
                        Ok(read) => ahead = Some(read),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot read the spool ahead; reading again")
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "the spool read ahead failed; the shipper stops and the spool keeps every unshipped event");
                    return;
                }
            }
            shipped
        } else {
            shipping.await
        };
        if !shipped {
            return; // shutting down with the store still away: the spool keeps the rest
        }
        if let Err(e) = reader.commit(next, batch.len() as u64, bytes) {
            tracing::error!(error = %e, "cannot record shipping progress; events will be shipped again (harmlessly)");
        }
        if !full && drain_deadline.is_none() {
            tokio::select! {
                _ = tokio::time::sleep(config.flush_interval) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Delivers `batch`; false only when giving up because the drain deadline passed.
async fn ship(
    store: &dyn InteractionStore,
    batch: &[InteractionEvent],
    metrics: &IngestMetrics,
    config: &ShipperConfig,
    deadline: &mut Option<Instant>,
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
                        deadline,
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
                if deadline.is_none() && *shutdown.borrow() {
                    *deadline = Some(Instant::now() + config.drain_timeout);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
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
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use futures::FutureExt;

    use super::*;
    use crate::ingest::spool::{Spool, SpoolConfig};
    use crate::interaction::Interaction;
    use crate::interaction::{EventKind, Fields};
    use crate::store::{
        retention, AuditEntry, Breakdown, HistoryQuery, McpMetrics, MetricsCell, TimeRange,
    };

    /// Keeps the interaction ids of every insert, and fails the first one as an outage would.
    #[derive(Default)]
    struct Recording {
        inserted: Mutex<Vec<String>>,
        failed_once: Mutex<bool>,
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
        fn insert<'a>(
            &'a self,
            events: &'a [InteractionEvent],
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            async move {
                let mut failed = self.failed_once.lock().unwrap_or_else(|p| p.into_inner());
                if !*failed {
                    *failed = true;
                    return Err(StoreError::Unavailable("restarting".into()));
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

    /// Full batches are shipped while the next is read ahead: across many segments and an outage,
    /// every event arrives once, in spool order, and the spool ends empty.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_ahead_ships_every_event_once_and_in_order() {
        let dir = std::env::temp_dir().join(format!("mcp-shipper-ahead-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (spool, reader) = Spool::open(SpoolConfig {
            dir: dir.join("spool"),
            segment_bytes: 4096,
            max_bytes: 64 << 20,
        })
        .unwrap();
        let total = 1_050;
        for chunk in (0..total).collect::<Vec<_>>().chunks(70) {
            let events = chunk
                .iter()
                .map(|i| {
                    InteractionEvent::new(
                        format!("i{i:05}"),
                        "m".into(),
                        EventKind::Start,
                        *i as i64,
                        Fields::default(),
                    )
                })
                .collect();
            spool.append(events).await.unwrap();
        }
        let store = Arc::new(Recording::default());
        let (stop, shutdown) = watch::channel(false);
        let shipper = tokio::spawn(run(
            reader,
            store.clone(),
            Arc::new(IngestMetrics::new().unwrap()),
            ShipperConfig {
                batch_max: 100,
                flush_interval: Duration::from_millis(20),
                poison_file: dir.join("poison.ndjson"),
                drain_timeout: Duration::from_secs(5),
            },
            shutdown,
        ));
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
}
