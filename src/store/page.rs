//! One page of history, bounded in bytes as well as in count: a store stops reading once the
//! page's interactions pass the byte budget (a page always holds at least one), and the next
//! page starts after a cursor, the page order's position of the last interaction served.

use crate::interaction::Interaction;

/// Bytes of interactions (as JSON) in one page, by default (`--max-page-bytes`).
pub const DEFAULT_PAGE_BYTES: usize = 4 << 20;

/// A position in the page order (newest first: time descending, then interaction ID
/// descending): a page that starts after it holds only interactions older than it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub time_ms: i64,
    pub interaction_id: String,
}

impl Cursor {
    /// Where `interaction` is in the page order.
    pub fn of(interaction: &Interaction) -> Self {
        Self {
            time_ms: super::interaction_time_ms(interaction),
            interaction_id: interaction.interaction_id.clone(),
        }
    }

    /// The text form clients pass back (`{time_ms}:{interaction_id}`).
    pub fn text(&self) -> String {
        format!("{}:{}", self.time_ms, self.interaction_id)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let (time, id) = text
            .split_once(':')
            .ok_or("is not a cursor from next_cursor (expected {time}:{interaction_id})")?;
        let time_ms = time
            .parse()
            .map_err(|_| format!("{time:?} is not a time in milliseconds"))?;
        if id.is_empty() || id.len() > 256 {
            return Err("names no interaction".into());
        }
        Ok(Self {
            time_ms,
            interaction_id: id.to_string(),
        })
    }
}

/// What is left of a page's bytes.
#[derive(Debug)]
pub struct PageBudget {
    left: usize,
    taken: usize,
    /// Whether the page ended because its bytes ran out.
    pub spent: bool,
}

impl PageBudget {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            left: max_bytes,
            taken: 0,
            spent: false,
        }
    }

    /// Whether `interaction` still fits the page (the first always does); once one does not,
    /// the page is over.
    pub fn admit(&mut self, interaction: &Interaction) -> bool {
        if self.spent {
            return false;
        }
        let bytes = serde_json::to_vec(&interaction.to_json()).map_or(0, |v| v.len());
        if bytes > self.left && self.taken > 0 {
            self.spent = true;
            return false;
        }
        self.left = self.left.saturating_sub(bytes);
        self.taken += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_nonsense_is_refused() {
        let cursor = Cursor {
            time_ms: 1_700_000_000_123,
            interaction_id: "int:with:colons".into(),
        };
        assert_eq!(Cursor::parse(&cursor.text()), Ok(cursor));
        assert!(Cursor::parse("yesterday").is_err());
        assert!(Cursor::parse("12:").is_err());
        assert!(Cursor::parse("x:int_1").is_err());
    }

    #[test]
    fn a_page_takes_one_interaction_whatever_its_size_and_stops_at_the_budget() {
        let big = |id: &str| Interaction {
            interaction_id: id.into(),
            mcp_id: "m".into(),
            fields: crate::interaction::Fields {
                error_message: Some("x".repeat(1000)),
                ..Default::default()
            },
            first_received_ms: 0,
            last_received_ms: 0,
            timeline: Vec::new(),
        };
        let mut budget = PageBudget::new(100);
        assert!(budget.admit(&big("a")), "the first always fits");
        assert!(!budget.admit(&big("b")));
        assert!(budget.spent);
        let one = serde_json::to_vec(&big("a").to_json()).unwrap().len();
        let mut budget = PageBudget::new(2 * one + 10);
        assert!(budget.admit(&big("a")) && budget.admit(&big("b")));
        assert!(!budget.admit(&big("c")));
    }
}
