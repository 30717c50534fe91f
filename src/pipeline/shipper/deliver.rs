//! Delivering a batch: retried with backoff while the store is away, split event by event once
//! the store rejects it, and what it rejects set aside in the poison file.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Drain, ShipperConfig};
use crate::interaction::InteractionEvent;
use crate::pipeline::metrics::PipelineMetrics;
use crate::pipeline::spool::{private_file, Skipped};
use crate::store::{EventSink, StoreError};
use crate::telemetry::spans;

/// The span of one insert into the store.
pub(super) fn insert_span() -> spans::Op {
    spans::Op::start(spans::SpanKind::Client, || {
        let operation = spans::Attribute::new("db.operation.name", "INSERT");
        ("INSERT interaction events".to_string(), vec![operation])
    })
}

/// Delivers `batch`; false only when giving up because the drain deadline passed.
pub(super) async fn ship(
    store: &dyn EventSink,
    batch: &[InteractionEvent],
    metrics: &PipelineMetrics,
    config: &ShipperConfig,
    drain: &Drain,
    shutdown: &watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let span = insert_span();
        span.set(|| spans::Attribute::new("mcp_coordinator.rows", batch.len() as i64));
        let inserted = span.within(store.insert(batch)).await;
        span.end(
            inserted
                .as_ref()
                .err()
                .map(|e| ("store_error", e.to_string())),
        );
        match inserted {
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
pub(super) fn set_aside_region(path: &PathBuf, skipped: &Skipped) {
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
    let written = private_file().append(true).open(path).and_then(|mut f| {
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_data()
    });
    if let Err(e) = written {
        tracing::error!(error = %e, file = %path.display(), "could not write the poison file; {what} could not be set aside");
    }
}
