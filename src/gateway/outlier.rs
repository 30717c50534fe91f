//! Failover and outlier ejection, decided without I/O: which failures a call may be retried
//! after, and when an MCP that keeps failing is taken out of the rotation (and for how long).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Why one attempt got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused or failed before the request was written.
    Connect(String),
    /// The MCP (or its proxy) answered 502, 503 or 504: it did not take the call.
    Unavailable(u16),
    /// No response headers within the MCP's call timeout.
    Timeout,
    /// The MCP was at `maxConcurrentRequests` at the gateway.
    Saturated,
    /// The request was sent and then the exchange broke, or the MCP answered something that is
    /// not MCP (another status, an unreadable body).
    Broken(String),
}

impl Failure {
    /// An error status without a JSON-RPC answer: 502–504 mean the MCP did not take the call,
    /// anything else that it may have.
    pub fn of_status(status: u16) -> Failure {
        match status {
            502..=504 => Failure::Unavailable(status),
            400..=499 => Failure::Broken(format!("the MCP refused the request with HTTP {status}")),
            _ => Failure::Broken(format!("the MCP answered HTTP {status}")),
        }
    }

    /// Whether the MCP may have received (and acted on) the call.
    pub fn may_have_reached(&self) -> bool {
        matches!(self, Failure::Timeout | Failure::Broken(_))
    }

    /// Whether the next candidate may take the call.
    pub fn may_fail_over(&self, idempotent: bool) -> bool {
        idempotent || !self.may_have_reached()
    }

    /// Whether this counts against the MCP's health (being busy does not).
    pub fn counts_against(&self) -> bool {
        !matches!(self, Failure::Saturated)
    }

    /// Label for metrics and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Unavailable(_) => "unavailable",
            Failure::Timeout => "timeout",
            Failure::Saturated => "saturated",
            Failure::Broken(_) => "broken",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "could not connect: {e}"),
            Failure::Unavailable(s) => write!(f, "answered HTTP {s}"),
            Failure::Timeout => write!(f, "no answer within its call timeout"),
            Failure::Saturated => write!(f, "at maxConcurrentRequests"),
            Failure::Broken(e) => write!(f, "{e}"),
        }
    }
}

/// When MCPs are ejected and for how long.
#[derive(Debug, Clone, Copy)]
pub struct EjectionPolicy {
    /// Consecutive failures that eject an MCP.
    pub consecutive_failures: u32,
    /// The first ejection's length; each further one (while it keeps failing) doubles it.
    pub base: Duration,
    pub max: Duration,
}

impl Default for EjectionPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Health {
    consecutive_failures: u32,
    /// Ejections in a row without a success in between.
    ejections: u32,
    ejected_until: f64,
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Fine,
    /// Ejected for this long.
    Ejected(Duration),
}

/// Each MCP's recent failures, on a clock in seconds.
#[derive(Debug, Default)]
pub struct Outliers {
    policy: EjectionPolicy,
    health: Mutex<HashMap<String, Health>>,
}

impl Outliers {
    pub fn new(policy: EjectionPolicy) -> Self {
        Self {
            policy,
            health: Mutex::default(),
        }
    }

    pub fn is_ejected(&self, mcp_id: &str, now: f64) -> bool {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(mcp_id)
            .is_some_and(|h| h.ejected_until > now)
    }

    /// MCPs ejected now.
    pub fn ejected(&self, now: f64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, h)| h.ejected_until > now)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// The MCPs ejected now: each with the seconds left of its cool-down and how many times in a
    /// row it was ejected.
    pub fn ejections(&self, now: f64) -> Vec<(String, f64, u32)> {
        let mut out: Vec<(String, f64, u32)> = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, h)| h.ejected_until > now)
            .map(|(id, h)| (id.clone(), h.ejected_until - now, h.ejections))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn success(&self, mcp_id: &str) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health.remove(mcp_id);
    }

    /// A failure that counts against the MCP; ejects it after enough in a row.
    pub fn failure(&self, mcp_id: &str, now: f64) -> Verdict {
        let mut all = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        let h = all.entry(mcp_id.to_string()).or_default();
        if h.ejected_until > now {
            return Verdict::Fine;
        }
        h.consecutive_failures += 1;
        if h.consecutive_failures < self.policy.consecutive_failures {
            return Verdict::Fine;
        }
        let factor = 2u32.saturating_pow(h.ejections.min(16));
        let length = self.policy.base.saturating_mul(factor).min(self.policy.max);
        h.ejections += 1;
        // After a cool-down one failure is enough to eject it again, for longer.
        h.consecutive_failures = self.policy.consecutive_failures - 1;
        h.ejected_until = now + length.as_secs_f64();
        Verdict::Ejected(length)
    }

    /// Forgets MCPs that are gone.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_that_cannot_have_reached_the_mcp_fail_over_unless_idempotent() {
        assert!(Failure::Connect("refused".into()).may_fail_over(false));
        assert!(Failure::Unavailable(503).may_fail_over(false));
        assert!(Failure::Saturated.may_fail_over(false));
        assert!(!Failure::Timeout.may_fail_over(false));
        assert!(!Failure::Broken("reset".into()).may_fail_over(false));
        assert!(Failure::Broken("reset".into()).may_fail_over(true));
        assert!(!Failure::Saturated.counts_against());
        assert_eq!(Failure::of_status(503), Failure::Unavailable(503));
        assert!(
            !Failure::of_status(500).may_fail_over(false),
            "a 500 may have run it"
        );
    }

    #[test]
    fn consecutive_failures_eject_for_a_cool_down_that_grows_while_it_keeps_failing() {
        let o = Outliers::new(EjectionPolicy::default());
        assert_eq!(o.failure("a", 0.0), Verdict::Fine);
        assert_eq!(o.failure("a", 0.1), Verdict::Fine);
        assert_eq!(
            o.failure("a", 0.2),
            Verdict::Ejected(Duration::from_secs(5))
        );
        assert!(o.is_ejected("a", 1.0));
        assert_eq!(o.ejected(1.0), ["a"]);
        assert_eq!(o.ejections(1.0), [("a".to_string(), 4.2, 1)]);
        assert_eq!(
            o.failure("a", 1.0),
            Verdict::Fine,
            "failures while ejected do not count"
        );
        assert!(!o.is_ejected("a", 5.3));
        assert_eq!(
            o.failure("a", 6.0),
            Verdict::Ejected(Duration::from_secs(10))
        );
        assert_eq!(
            o.failure("a", 17.0),
            Verdict::Ejected(Duration::from_secs(20))
        );
        o.success("a");
        assert_eq!(
            o.failure("a", 40.0),
            Verdict::Fine,
            "a success starts it over"
        );
    }

    #[test]
    fn the_cool_down_is_capped() {
        let o = Outliers::new(EjectionPolicy {
            consecutive_failures: 1,
            base: Duration::from_secs(100),
            max: Duration::from_secs(300),
        });
        let mut now = 0.0;
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            if let Verdict::Ejected(d) = o.failure("a", now) {
                last = d;
                now += d.as_secs_f64() + 1.0;
            }
        }
        assert_eq!(last, Duration::from_secs(300));
    }
}
