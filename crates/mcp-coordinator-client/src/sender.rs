//! The background sender: reports in order, as they come or held for the report interval,
//! retried with backoff; heartbeats on their own interval.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::{ClientError, Report, Shared, ENVELOPE_PATH, MAX_BACKOFF, MAX_BATCH};

/// The ingest API's base URL from what the client was given.
pub(crate) fn api_base(url: &str) -> String {
    let base = url.trim_end_matches('/');
    base.strip_suffix(ENVELOPE_PATH).unwrap_or(base).to_string()
}

/// Sends queued reports in order, and heartbeats on their interval, until every client is gone.
/// With a report interval, reports are held and sent together when it passes (or sooner: a full
/// batch, a flush, the last client gone).
pub(crate) async fn send_loop(
    shared: Arc<Shared>,
    mut reports: mpsc::Receiver<Report>,
    heartbeat: Option<Duration>,
    report_every: Duration,
) {
    let mut beat = heartbeat.map(tokio::time::interval);
    let mut send_tick =
        (!report_every.is_zero()).then(|| tokio::time::interval(report_every.max(MIN_INTERVAL)));
    let mut held: Vec<Report> = Vec::new();
    loop {
        let heartbeat_due = async {
            match beat.as_mut() {
                Some(b) => b.tick().await,
                None => std::future::pending().await,
            }
        };
        let send_due = async {
            match send_tick.as_mut() {
                Some(t) => t.tick().await,
                None => std::future::pending().await,
            }
        };
        let (send_held, gone) = tokio::select! {
            _ = heartbeat_due => {
                if let Err(e) = shared.post("/v1/heartbeat", b"{}").await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
                (false, false)
            }
            _ = send_due => (true, false),
            _ = shared.send_now.notified() => (true, false),
            report = reports.recv() => match report {
                Some(report) if send_tick.is_some() => {
                    held.push(report);
                    (held.len() >= MAX_BATCH, false)
                }
                Some(report) => {
                    deliver(&shared, &report).await;
                    shared.done();
                    (false, false)
                }
                None => (true, true),
            },
        };
        if send_held {
            for report in held.drain(..) {
                deliver(&shared, &report).await;
                shared.done();
            }
        }
        if gone {
            return;
        }
    }
}

/// The shortest report interval honoured.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

async fn deliver(shared: &Shared, report: &Report) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=shared.max_attempts {
        let wait = match shared.post(&report.path, &report.body).await {
            Ok(_) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(ClientError::Refused { status, body, .. })
                if status != 429 && status != 401 && status < 500 =>
            {
                tracing::warn!(path = %report.path, status, body = %body, "the coordinator refused a report; dropped");
                break;
            }
            Err(ClientError::NoKey(why)) => {
                tracing::warn!(reason = %why, "no API key; report dropped");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "report not delivered yet");
                backoff
            }
        };
        if attempt < shared.max_attempts {
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    shared.dropped.fetch_add(1, Ordering::Relaxed);
}
