//! Moves spooled events to the store: in batches, retrying with backoff while the store is down,
//! setting aside events the store rejects (poison) instead of blocking the rest.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::metrics::IngestMetrics;
use super::spool::SpoolReader;
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
    loop {
        if drain_deadline.is_none() && *shutdown.borrow() {
            drain_deadline = Some(Instant::now() + config.drain_timeout);
        }
        let (batch, next) = match reader.read_batch(config.batch_max) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the spool; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
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
        let bytes = reader.last_batch_bytes();
        if !ship(
            &*store,
            &batch,
            &metrics,
            &config,
            &mut drain_deadline,
            &shutdown,
        )
        .await
        {
            return; // shutting down with the store still away: the spool keeps the rest
        }
        if let Err(e) = reader.commit(next, batch.len() as u64, bytes) {
            tracing::error!(error = %e, "cannot record shipping progress; events will be shipped again (harmlessly)");
        }
        let partial = batch.len() < config.batch_max;
        if partial && drain_deadline.is_none() {
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
