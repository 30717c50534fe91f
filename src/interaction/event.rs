//! Report events: every report (start, progress, complete, error, or a whole record from a batch)
//! becomes an [`InteractionEvent`]: the interaction it belongs to and the fields it sets. Stores
//! merge the events of one interaction into one row, so start and complete come back as one
//! interaction, and an event delivered twice changes nothing.

use serde::{Deserialize, Serialize};

use super::compact::{put_fields, take_array, take_fields, Compact, Undecodable, FORMAT};
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
    /// The kind's byte in the compact record.
    fn code(self) -> u8 {
        match self {
            EventKind::Start => 0,
            EventKind::Progress => 1,
            EventKind::Complete => 2,
            EventKind::Error => 3,
            EventKind::Record => 4,
        }
    }

    fn of_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => EventKind::Start,
            1 => EventKind::Progress,
            2 => EventKind::Complete,
            3 => EventKind::Error,
            4 => EventKind::Record,
            _ => return None,
        })
    }

    /// The kind a batch item names (`"kind": "start"`, …).
    pub fn named(name: &str) -> Option<Self> {
        [
            EventKind::Start,
            EventKind::Progress,
            EventKind::Complete,
            EventKind::Error,
            EventKind::Record,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }

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
        // thread keeps (this runs for every report). XXH3: FNV-1a, a multiply per byte, was
        // ~1 µs of every event.
        thread_local! {
            static CONTENT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let digest = CONTENT.with(|content| {
            let mut content = content.borrow_mut();
            content.clear();
            content.push(kind.code());
            interaction_id.put(&mut content);
            mcp_id.put(&mut content);
            put_fields(&fields, &mut content);
            twox_hash::XxHash3_64::oneshot(&content)
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

impl InteractionEvent {
    /// Appends the event's compact record (the layout is in `compact.rs`) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(FORMAT);
        out.push(self.kind.code());
        self.received_ms.put(out);
        self.event_id.put(out);
        self.interaction_id.put(out);
        self.mcp_id.put(out);
        put_fields(&self.fields, out);
    }

    /// Reads one record written by [`Self::encode_into`]; every byte must belong to it.
    pub fn decode(bytes: &[u8]) -> Result<Self, Undecodable> {
        let mut input = bytes;
        let cut = |what: &str| Undecodable(format!("{what} is cut short or damaged"));
        match take_array::<1>(&mut input) {
            Some([FORMAT]) => {}
            Some([other]) => return Err(Undecodable(format!("unknown record format {other}"))),
            None => return Err(cut("the record")),
        }
        let kind = take_array::<1>(&mut input)
            .and_then(|[code]| EventKind::of_code(code))
            .ok_or_else(|| cut("the kind"))?;
        let received_ms = i64::take(&mut input).ok_or_else(|| cut("the receive time"))?;
        let event_id = String::take(&mut input).ok_or_else(|| cut("the event ID"))?;
        let interaction_id = String::take(&mut input).ok_or_else(|| cut("the interaction ID"))?;
        let mcp_id = String::take(&mut input).ok_or_else(|| cut("the MCP ID"))?;
        let fields = take_fields(&mut input)?;
        if !input.is_empty() {
            return Err(Undecodable(format!(
                "{} bytes follow the record",
                input.len()
            )));
        }
        Ok(Self {
            event_id,
            interaction_id,
            mcp_id,
            kind,
            received_ms,
            fields,
        })
    }
}

/// FNV-1a: stable across builds and platforms, unlike std's hasher.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
impl InteractionEvent {
    /// The `i`th event of a unit test's stream: the start of interaction `i<i>` of MCP `m`,
    /// received at `i` ms.
    pub(crate) fn numbered(i: usize) -> Self {
        Self::new(
            format!("i{i}"),
            "m".into(),
            EventKind::Start,
            i as i64,
            Fields::default(),
        )
    }
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

    #[test]
    fn records_read_back_as_written_and_damage_is_named() {
        let fields = Fields {
            user_id: Some("ü\"\n".into()),
            processing_time: Some(5.333),
            success: Some(false),
            ..Default::default()
        };
        let event = InteractionEvent::new("i".into(), "m".into(), EventKind::Complete, 42, fields);
        let mut bytes = Vec::new();
        event.encode_into(&mut bytes);
        assert_eq!(InteractionEvent::decode(&bytes), Ok(event));
        for cut in [0, 1, 5, 20, bytes.len() - 1] {
            assert!(
                InteractionEvent::decode(&bytes[..cut]).is_err(),
                "cut at {cut} was read"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let err = InteractionEvent::decode(&longer).unwrap_err();
        assert!(err.to_string().contains("follow the record"), "{err}");
        let err = InteractionEvent::decode(b"{}").unwrap_err();
        assert!(err.to_string().contains("unknown record format"), "{err}");
    }
}
