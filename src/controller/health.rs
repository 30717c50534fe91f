//! Health verdicts: a pure state machine over probe outcomes, with failure/success thresholds.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{Discovered, HealthCheck, HealthStatus};

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    Up {
        latency: Duration,
        discovered: Option<Discovered>,
    },
    /// The server answered but refused the probe (401/403/405): reachable, yet the probe cannot
    /// vouch for it. Reported as such rather than as down.
    Refused {
        latency: Duration,
        detail: String,
    },
    Down {
        latency: Duration,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not enough probes yet to pass either threshold.
    Unknown,
    Healthy,
    /// Reachable, but it refuses the probe's method or credentials.
    Refused,
    Unhealthy,
}

/// Everything known about one MCP's health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthTracker {
    pub verdict: Verdict,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    pub last_latency: Option<Duration>,
    pub last_probe: Option<Timestamp>,
    pub discovered: Option<Discovered>,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self {
            verdict: Verdict::Unknown,
            consecutive_successes: 0,
            consecutive_failures: 0,
            last_error: None,
            last_latency: None,
            last_probe: None,
            discovered: None,
        }
    }
}

impl HealthTracker {
    /// Applies one outcome; returns true when something a user would care about changed
    /// (verdict, error text, discovered tools): the cue to rewrite status.
    pub fn record(&mut self, outcome: ProbeOutcome, at: Timestamp, check: &HealthCheck) -> bool {
        let before = (
            self.verdict,
            self.last_error.clone(),
            self.discovered.clone(),
        );
        self.last_probe = Some(at);
        match outcome {
            ProbeOutcome::Up {
                latency,
                discovered,
            } => {
                self.last_latency = Some(latency);
                self.on_reachable(check);
                self.last_error = None;
                if self.consecutive_successes >= check.success_threshold {
                    self.verdict = Verdict::Healthy;
                }
                if discovered.is_some() {
                    self.discovered = discovered;
                }
            }
            ProbeOutcome::Refused { latency, detail } => {
                self.last_latency = Some(latency);
                self.on_reachable(check);
                self.last_error = Some(detail);
                if self.consecutive_successes >= check.success_threshold {
                    self.verdict = Verdict::Refused;
                }
            }
            ProbeOutcome::Down { latency, error } => {
                self.last_latency = Some(latency);
                self.consecutive_successes = 0;
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(error);
                if self.consecutive_failures >= check.failure_threshold {
                    self.verdict = Verdict::Unhealthy;
                }
            }
        }
        before
            != (
                self.verdict,
                self.last_error.clone(),
                self.discovered.clone(),
            )
    }

    fn on_reachable(&mut self, _check: &HealthCheck) {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
    }

    /// The status block for this health state.
    pub fn to_status(&self) -> HealthStatus {
        HealthStatus {
            last_probe_time: self
                .last_probe
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            last_latency_ms: self.last_latency.map(|d| d.as_millis() as u64),
            consecutive_failures: self.consecutive_failures,
            consecutive_successes: self.consecutive_successes,
            last_error: self.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failure_threshold: u32, success_threshold: u32) -> HealthCheck {
        HealthCheck {
            failure_threshold,
            success_threshold,
            ..Default::default()
        }
    }

    fn up() -> ProbeOutcome {
        ProbeOutcome::Up {
            latency: Duration::from_millis(3),
            discovered: None,
        }
    }

    fn down() -> ProbeOutcome {
        ProbeOutcome::Down {
            latency: Duration::from_millis(1),
            error: "connection refused".into(),
        }
    }

    #[test]
    fn failures_below_the_threshold_keep_the_verdict() {
        let c = check(3, 1);
        let mut t = HealthTracker::default();
        let now = Timestamp::now();
        assert!(t.record(up(), now, &c));
        assert_eq!(t.verdict, Verdict::Healthy);
        assert!(
            t.record(down(), now, &c),
            "a new error is worth a status write"
        );
        assert_eq!(t.verdict, Verdict::Healthy);
        assert!(!t.record(down(), now, &c), "the same error again is not");
        assert!(t.record(down(), now, &c));
        assert_eq!(t.verdict, Verdict::Unhealthy);
        assert_eq!(t.consecutive_failures, 3);
    }

    #[test]
    fn recovery_needs_success_threshold_probes() {
        let c = check(1, 2);
        let mut t = HealthTracker::default();
        let now = Timestamp::now();
        t.record(down(), now, &c);
        assert_eq!(t.verdict, Verdict::Unhealthy);
        t.record(up(), now, &c);
        assert_eq!(t.verdict, Verdict::Unhealthy);
        assert!(t.record(up(), now, &c) || t.verdict == Verdict::Healthy);
        assert_eq!(t.verdict, Verdict::Healthy);
        assert_eq!(t.last_error, None);
    }

    #[test]
    fn a_refusing_server_is_not_down() {
        let c = check(1, 1);
        let mut t = HealthTracker::default();
        t.record(
            ProbeOutcome::Refused {
                latency: Duration::ZERO,
                detail: "401 Unauthorized".into(),
            },
            Timestamp::now(),
            &c,
        );
        assert_eq!(t.verdict, Verdict::Refused);
        assert_eq!(t.consecutive_failures, 0);
    }

    #[test]
    fn steady_success_does_not_ask_for_status_writes() {
        let c = check(3, 1);
        let mut t = HealthTracker::default();
        t.record(up(), Timestamp::now(), &c);
        for _ in 0..10 {
            assert!(!t.record(up(), Timestamp::now(), &c));
        }
        assert_eq!(t.consecutive_successes, 11);
    }
}
