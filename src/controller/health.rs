//! Health verdicts: a pure state machine over probe outcomes, with failure/success thresholds.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::{HealthCheck, HealthStatus, ServerInfo, ToolSchema};

/// What an `mcp` probe learned of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Learned {
    pub server: ServerInfo,
    pub tools: Vec<ToolSchema>,
    /// The functional probe's verdict (`healthCheck.call`): the difference when the answer was
    /// not the expected one; `None` when no call is declared.
    pub call: Option<Result<(), String>>,
}

impl Learned {
    /// Why the functional probe failed, if it did.
    pub fn call_failure(&self) -> Option<&str> {
        match &self.call {
            Some(Err(difference)) => Some(difference),
            _ => None,
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeOutcome {
    Up {
        latency: Duration,
        learned: Option<Learned>,
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
    pub learned: Option<Learned>,
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
            learned: None,
        }
    }
}

impl HealthTracker {
    /// The health of an MCP with nothing to probe (`healthCheck.type: none`): healthy, no probe.
    pub fn unprobed() -> Self {
        Self {
            verdict: Verdict::Healthy,
            ..Self::default()
        }
    }

    /// Applies one outcome; returns true when something a user would care about changed
    /// (verdict, error text, what an `mcp` probe learned): the cue to rewrite status.
    pub fn record(&mut self, outcome: ProbeOutcome, at: Timestamp, check: &HealthCheck) -> bool {
        let before = (self.verdict, self.last_error.clone(), self.learned.clone());
        self.last_probe = Some(at);
        match outcome {
            ProbeOutcome::Up { latency, learned } => {
                self.last_latency = Some(latency);
                self.on_reachable(check);
                self.last_error = None;
                if self.consecutive_successes >= check.success_threshold {
                    self.verdict = Verdict::Healthy;
                }
                if learned.is_some() {
                    self.learned = learned;
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
        before != (self.verdict, self.last_error.clone(), self.learned.clone())
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

    /// A tracker and the check it follows, recording probes as they come.
    struct Probed {
        check: HealthCheck,
        tracker: HealthTracker,
    }

    impl Probed {
        fn new(failure_threshold: u32, success_threshold: u32) -> Self {
            Self {
                check: check(failure_threshold, success_threshold),
                tracker: HealthTracker::default(),
            }
        }

        fn record(&mut self, outcome: ProbeOutcome) -> bool {
            self.tracker.record(outcome, Timestamp::now(), &self.check)
        }
    }

    impl std::ops::Deref for Probed {
        type Target = HealthTracker;
        fn deref(&self) -> &HealthTracker {
            &self.tracker
        }
    }

    fn up() -> ProbeOutcome {
        ProbeOutcome::Up {
            latency: Duration::from_millis(3),
            learned: None,
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
        let mut t = Probed::new(3, 1);
        assert!(t.record(up()));
        assert_eq!(t.verdict, Verdict::Healthy);
        assert!(t.record(down()), "a new error is worth a status write");
        assert_eq!(t.verdict, Verdict::Healthy);
        assert!(!t.record(down()), "the same error again is not");
        assert!(t.record(down()));
        assert_eq!(t.verdict, Verdict::Unhealthy);
        assert_eq!(t.consecutive_failures, 3);
    }

    #[test]
    fn recovery_needs_success_threshold_probes() {
        let mut t = Probed::new(1, 2);
        let steps = [
            (down(), Verdict::Unhealthy),
            (up(), Verdict::Unhealthy),
            (up(), Verdict::Healthy),
        ];
        for (i, (outcome, verdict)) in steps.into_iter().enumerate() {
            t.record(outcome);
            assert_eq!(t.verdict, verdict, "after probe {}", i + 1);
        }
        assert_eq!(t.last_error, None);
    }

    #[test]
    fn a_refusing_server_is_not_down() {
        let mut t = Probed::new(1, 1);
        t.record(ProbeOutcome::Refused {
            latency: Duration::ZERO,
            detail: "401 Unauthorized".into(),
        });
        assert_eq!(t.verdict, Verdict::Refused);
        assert_eq!(t.consecutive_failures, 0);
    }

    #[test]
    fn steady_success_does_not_ask_for_status_writes() {
        let mut t = Probed::new(3, 1);
        t.record(up());
        for _ in 0..10 {
            assert!(!t.record(up()));
        }
        assert_eq!(t.consecutive_successes, 11);
    }
}
