//! The background sender: reports in order, as they come or held for the report interval,
//! retried with backoff; heartbeats on their own interval. What is queued together goes together:
//! a lone report on its own endpoint, several as one signed batch (bounded in count and bytes).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::{ClientError, Shared, ENVELOPE_PATH, MAX_BACKOFF, MAX_BATCH, MAX_BATCH_BYTES};

/// One queued report.
pub(crate) struct Report {
    pub(crate) path: String,
    /// A JSON object.
    pub(crate) body: Vec<u8>,
    /// The report's kind and, unless its body names it, its interaction, for a batch item.
    pub(crate) kind: &'static str,
    pub(crate) id: Option<String>,
}

impl Report {
    /// The report as an item of `POST /v1/interactions:batch`: its body, with its kind and
    /// interaction.
    pub(crate) fn batch_item(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"kind":""#);
        out.extend_from_slice(self.kind.as_bytes());
        out.push(b'"');
        if let Some(id) = &self.id {
            out.extend_from_slice(br#","interaction_id":"#);
            out.extend_from_slice(&serde_json::to_vec(id).unwrap_or_default());
        }
        let rest = self.body.strip_prefix(b"{").unwrap_or(b"}");
        if rest.first() != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(rest);
    }
}

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
                    // Whatever else is queued by now goes with it.
                    held.push(report);
                    while held.len() < shared.batch {
                        match reports.try_recv() {
                            Ok(more) => held.push(more),
                            Err(_) => break,
                        }
                    }
                    (true, false)
                }
                None => (true, true),
            },
        };
        if send_held {
            send_all(&shared, std::mem::take(&mut held)).await;
        }
        if gone {
            return;
        }
    }
}

/// The shortest report interval honoured.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Sends `reports` in order: batches of at most `shared.batch` reports and 1 MiB, a lone report
/// on its own endpoint.
async fn send_all(shared: &Shared, reports: Vec<Report>) {
    let mut rest = reports.as_slice();
    while !rest.is_empty() {
        let mut body = vec![b'['];
        let mut taken = 0;
        for report in rest.iter().take(shared.batch) {
            let before = body.len();
            if taken > 0 {
                body.push(b',');
            }
            report.batch_item(&mut body);
            if taken > 0 && body.len() > MAX_BATCH_BYTES {
                body.truncate(before);
                break;
            }
            taken += 1;
        }
        body.push(b']');
        let (batch, after) = rest.split_at(taken);
        if let [one] = batch {
            deliver(shared, one).await;
        } else {
            deliver_batch(shared, &body, batch.len()).await;
        }
        for _ in batch {
            shared.done();
        }
        rest = after;
    }
}

/// One signed batch of `count` reports: retried whole while the coordinator is away or busy;
/// the items it refuses are counted as dropped.
async fn deliver_batch(shared: &Shared, body: &[u8], count: usize) {
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=shared.max_attempts {
        let wait = match shared
            .post_signed("/v1/interactions:batch", body, true)
            .await
        {
            Ok(answer) => {
                let accepted = answer["accepted"].as_u64().unwrap_or(count as u64);
                shared.sent.fetch_add(accepted, Ordering::Relaxed);
                let refused = (count as u64).saturating_sub(accepted);
                if refused > 0 {
                    tracing::warn!(
                        refused,
                        "the coordinator refused reports of a batch; dropped"
                    );
                    shared.dropped.fetch_add(refused, Ordering::Relaxed);
                }
                return;
            }
            Err(ClientError::Refused { status, body, .. })
                if status != 429 && status != 401 && status < 500 =>
            {
                tracing::warn!(status, body = %body, count, "the coordinator refused a batch of reports; dropped");
                break;
            }
            Err(ClientError::NoKey(why)) => {
                tracing::warn!(reason = %why, count, "no API key; reports dropped");
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, attempt, "batch not delivered yet");
                backoff
            }
        };
        if attempt < shared.max_attempts {
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    shared.dropped.fetch_add(count as u64, Ordering::Relaxed);
}

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
