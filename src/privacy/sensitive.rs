//! Interactions a report marked sensitive, remembered so that the later reports of the same
//! interaction (progress, complete, error), which need not repeat the marking, are sealed too.
//! Bounded in count and age; kept in this process's memory.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

/// How many sensitive interactions are remembered at most.
pub const REMEMBERED: usize = 100_000;
/// How long one is remembered after its marking, in milliseconds (a day).
pub const REMEMBERED_MS: i64 = 86_400_000;

#[derive(Default)]
pub struct SensitiveInteractions(Mutex<Remembered>);

#[derive(Default)]
struct Remembered {
    known: HashSet<(String, String)>,
    /// In the order they were marked: (when, mcp, interaction).
    order: VecDeque<(i64, String, String)>,
}

impl SensitiveInteractions {
    /// Remembers that `interaction_id` of `mcp_id` is sensitive, as of `now_ms`.
    pub fn mark(&self, mcp_id: &str, interaction_id: &str, now_ms: i64) {
        let mut r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.forget_before(now_ms - REMEMBERED_MS);
        let key = (mcp_id.to_string(), interaction_id.to_string());
        if r.known.insert(key) {
            r.order
                .push_back((now_ms, mcp_id.to_string(), interaction_id.to_string()));
        }
        while r.order.len() > REMEMBERED {
            r.pop_oldest();
        }
    }

    pub fn contains(&self, mcp_id: &str, interaction_id: &str) -> bool {
        let r = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        r.known
            .contains(&(mcp_id.to_string(), interaction_id.to_string()))
    }
}

impl Remembered {
    fn forget_before(&mut self, cutoff_ms: i64) {
        while self.order.front().is_some_and(|(at, _, _)| *at < cutoff_ms) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, mcp, interaction)) = self.order.pop_front() {
            self.known.remove(&(mcp, interaction));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_interactions_are_remembered_within_their_bounds() {
        let s = SensitiveInteractions::default();
        s.mark("m", "i1", 0);
        assert!(s.contains("m", "i1"));
        assert!(!s.contains("other", "i1"), "per MCP");
        s.mark("m", "i2", REMEMBERED_MS + 1);
        assert!(!s.contains("m", "i1"), "forgotten after a day");
        for n in 0..REMEMBERED + 10 {
            s.mark("m", &n.to_string(), REMEMBERED_MS + 2);
        }
        assert!(!s.contains("m", "0"), "the oldest give way");
        assert!(s.contains("m", &(REMEMBERED + 9).to_string()));
    }
}
