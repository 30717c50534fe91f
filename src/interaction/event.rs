//! Report events: every report (start, progress, complete, error, or a whole record from a batch)
//! becomes an [`InteractionEvent`]: the interaction it belongs to and the fields it sets. Stores
//! merge the events of one interaction into one row, so start and complete come back as one
//! interaction, and an event delivered twice changes nothing.

use serde::{Deserialize, Serialize};

use super::fields::Fields;

/// Which report an event came from; later stages win when two set the same field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Start,
    Progress,
    Complete,
    Error,
    Record,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Progress => "progress",
            EventKind::Complete => "complete",
            EventKind::Error => "error",
            EventKind::Record => "record",
        }
    }
}

/// One accepted report, as it goes through the spool to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InteractionEvent {
    /// Stable identity of this report: replays and duplicate deliveries carry the same one.
    pub event_id: String,
    pub interaction_id: String,
    pub mcp_id: String,
    pub kind: EventKind,
    /// When the ingest server acknowledged it (epoch ms).
    pub received_ms: i64,
    pub fields: Fields,
}

impl InteractionEvent {
    /// Builds an event whose id is a digest of what it says, so the same report sent twice is
    /// recognisably the same event.
    pub fn new(
        interaction_id: String,
        mcp_id: String,
        kind: EventKind,
        received_ms: i64,
        fields: Fields,
    ) -> Self {
        // The digest of what the report says in its compact form, written into a buffer this
        // thread keeps (this runs for every report).
        thread_local! {
            static CONTENT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let digest = CONTENT.with(|content| {
            let mut content = content.borrow_mut();
            content.clear();
            super::compact::put_content(&interaction_id, &mcp_id, kind, &fields, &mut content);
            fnv1a64(&content)
        });
        let event_id = format!("{}:{}:{:016x}", interaction_id, kind.as_str(), digest);
        Self {
            event_id,
            interaction_id,
            mcp_id,
            kind,
            received_ms,
            fields,
        }
    }
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_reports_have_identical_event_ids() {
        let f = Fields {
            success: Some(true),
            ..Default::default()
        };
        let a = InteractionEvent::new("i".into(), "m".into(), EventKind::Complete, 1, f.clone());
        let b = InteractionEvent::new("i".into(), "m".into(), EventKind::Complete, 2, f);
        assert_eq!(
            a.event_id, b.event_id,
            "receive time is not part of the identity"
        );
        let c = InteractionEvent::new(
            "i".into(),
            "m".into(),
            EventKind::Start,
            1,
            Fields::default(),
        );
        assert_ne!(a.event_id, c.event_id);
    }
}
