//! The write step: a parsed report (or a batch of records) becomes spooled interaction events, as
//! `controller/register.rs` is the registration step. The decisions are pure (`decide.rs`): which
//! MCP a report may speak for, its interaction ID, what privacy does to its fields. The I/O goes
//! through [`AcceptPorts`]: appending to the durable pipeline, and telling the router (and the
//! metrics) what was accepted, which happens only once the append is on disk. Nothing here knows
//! HTTP: the ingest API calls it, and so can any other way in (the gateway).

mod decide;

use futures::future::BoxFuture;

use crate::interaction::{BadReport, EventKind, InteractionEvent, ParsedReport, Record};
use crate::pipeline::SpoolError;
pub use decide::{learn, Protection, Refusal};

/// The step's I/O.
pub trait AcceptPorts: Sync {
    /// Appends events to the spool; returns once they are on disk.
    fn append<'a>(
        &'a self,
        events: &'a [InteractionEvent],
    ) -> BoxFuture<'a, Result<(), SpoolError>>;

    /// Called for each event once it is on disk: the router learns from it, metrics count it.
    fn accepted(&self, event: &InteractionEvent);
}

/// One report as received.
pub struct Report<'a> {
    /// The MCP whose API key the request carried.
    pub key_mcp: &'a str,
    pub kind: EventKind,
    /// The interaction ID in the URL, if the API put one there.
    pub path_id: Option<&'a str>,
    pub parsed: ParsedReport,
    /// Where the report sits in the request body (prefixes field names in refusals).
    pub at: &'a str,
}

/// Protects, spools and announces one report; the event as spooled.
pub async fn accept(
    ports: &dyn AcceptPorts,
    protection: &Protection,
    report: Report<'_>,
    now_ms: i64,
) -> Result<InteractionEvent, Refusal> {
    let event = decide::event_of(protection, report, now_ms)?;
    ports
        .append(std::slice::from_ref(&event))
        .await
        .map_err(Refusal::Spool)?;
    ports.accepted(&event);
    Ok(event)
}

/// What became of one record of a batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordOutcome {
    pub index: usize,
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl RecordOutcome {
    fn accepted(index: usize, interaction_id: &str) -> Self {
        Self {
            index,
            accepted: true,
            interaction_id: Some(interaction_id.to_string()),
            error: None,
            field: None,
        }
    }

    fn refused(index: usize, error: String, field: String) -> Self {
        Self {
            index,
            accepted: false,
            interaction_id: None,
            error: Some(error),
            field: (!field.is_empty()).then_some(field),
        }
    }
}

/// Whole records of one MCP, each accepted or refused on its own; the accepted ones are spooled
/// together. One outcome per record, in order; a spool that cannot take them at all fails the
/// whole batch (nothing of it is acknowledged).
pub async fn accept_batch(
    ports: &dyn AcceptPorts,
    protection: &Protection,
    key_mcp: &str,
    items: Vec<Record>,
    received_ms: i64,
) -> Result<Vec<RecordOutcome>, Refusal> {
    // Sized up front: an event is large enough that growing the list by doubling (and then
    // splitting it in two) showed in the ingest profile.
    let mut events = Vec::with_capacity(items.len());
    let mut indices = Vec::with_capacity(items.len());
    let mut results = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let outcome =
            item.and_then(|parsed| decide::record(protection, key_mcp, parsed, received_ms));
        match outcome {
            Ok(event) => {
                results.push(RecordOutcome::accepted(index, &event.interaction_id));
                indices.push(index);
                events.push(event);
            }
            Err(bad) => results.push(RecordOutcome::refused(index, bad.to_string(), bad.field)),
        }
    }
    let events = spool_batch(ports, indices, events, &mut results).await?;
    for event in &events {
        ports.accepted(event);
    }
    Ok(results)
}

/// Spools the accepted records of a batch (`events`, each at its place in the batch in
/// `indices`); one too large to store is turned into a refusal of that record (in `results`) and
/// the rest are spooled without it.
async fn spool_batch(
    ports: &dyn AcceptPorts,
    mut indices: Vec<usize>,
    mut events: Vec<InteractionEvent>,
    results: &mut [RecordOutcome],
) -> Result<Vec<InteractionEvent>, Refusal> {
    while !events.is_empty() {
        match ports.append(&events).await {
            Ok(()) => break,
            Err(SpoolError::TooLarge { index, size, limit }) => {
                let at = indices.remove(index);
                events.remove(index);
                results[at] = RecordOutcome::refused(at, format!(
                    "the record is {size} bytes once stored (free-form parameters are kept as JSON text, escapes included); at most {limit}"
                ), String::new());
            }
            Err(other) => return Err(Refusal::Spool(other)),
        }
    }
    Ok(events)
}

impl From<BadReport> for Refusal {
    fn from(bad: BadReport) -> Self {
        Refusal::Bad(bad)
    }
}

#[cfg(test)]
mod tests;
