//! Copying the interaction log from one store to another: what an upgrade from the embedded
//! store to ClickHouse runs once (`mcp-coordinator copy-store`), and may run again. Each
//! interaction becomes the events that rebuild it (one record at its first receipt, one progress
//! event per note of its timeline), whose identities are digests of what they say: a second run
//! inserts nothing new.

use super::{Cursor, EventSink, HistoryQuery, InteractionReads, StoreError, TimeRange};
use crate::interaction::{EventKind, Fields, Interaction, InteractionEvent};

/// Interactions read per page, and events per insert.
const PAGE: usize = 1_000;

/// What a copy did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub mcps: usize,
    pub interactions: u64,
    pub events: u64,
}

/// The events that rebuild `interaction` in a store.
pub fn events_of(interaction: &Interaction) -> Vec<InteractionEvent> {
    let mut events = vec![InteractionEvent::new(
        interaction.interaction_id.clone(),
        interaction.mcp_id.clone(),
        EventKind::Record,
        interaction.first_received_ms,
        interaction.fields.clone(),
    )];
    for note in &interaction.timeline {
        events.push(InteractionEvent::new(
            interaction.interaction_id.clone(),
            interaction.mcp_id.clone(),
            EventKind::Progress,
            note.at_ms,
            Fields {
                progress: note.progress,
                progress_message: note.message.clone(),
                progress_details: note.details.clone(),
                ..Fields::default()
            },
        ));
    }
    events
}

/// Copies every interaction of every MCP in `from` into `to`; `each` hears of every MCP done
/// (its ID and how many interactions it had).
pub async fn copy_all(
    from: &dyn InteractionReads,
    to: &dyn EventSink,
    mut each: impl FnMut(&str, u64),
) -> Result<Copied, StoreError> {
    let always = TimeRange {
        since_ms: i64::MIN / 4,
        until_ms: i64::MAX / 4,
    };
    let mcps: Vec<String> = from
        .metrics(None, always)
        .await?
        .into_iter()
        .map(|m| m.mcp_id)
        .collect();
    let mut copied = Copied {
        mcps: mcps.len(),
        ..Copied::default()
    };
    for mcp_id in mcps {
        let mut after: Option<Cursor> = None;
        let mut of_this = 0u64;
        loop {
            let page = from
                .history_page(&HistoryQuery {
                    mcp_id: mcp_id.clone(),
                    limit: PAGE,
                    after: after.clone(),
                    ..HistoryQuery::default()
                })
                .await?;
            let Some(last) = page.interactions.last() else {
                break;
            };
            after = Some(Cursor::of(last));
            let events: Vec<InteractionEvent> =
                page.interactions.iter().flat_map(events_of).collect();
            for chunk in events.chunks(PAGE) {
                to.insert(chunk).await?;
            }
            of_this += page.interactions.len() as u64;
            copied.events += events.len() as u64;
            if !page.full_by_bytes && page.interactions.len() < PAGE {
                break;
            }
        }
        copied.interactions += of_this;
        each(&mcp_id, of_this);
    }
    Ok(copied)
}
