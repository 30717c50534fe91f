//! What the router learns from reports, per MCP and per request type: a peak-EWMA latency and
//! discounted successes and failures, published for lock-free reads by decisions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Tuning of the learned model, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct RouterConfig {
    /// How fast fast responses pull a latency estimate down.
    pub latency_decay: f64,
    /// How fast old successes and failures are forgotten.
    pub outcome_decay: f64,
    /// How fast an estimate without fresh reports drifts back to the tier's typical latency.
    pub recovery: f64,
    /// An interaction that reported a start but no end for this long no longer counts as in flight.
    pub in_flight_expiry: f64,
    /// Started interactions remembered per MCP, at most: starts are reports from outside, and
    /// without an end each is kept for [`Self::in_flight_expiry`], so at thousands of reports a
    /// second the memory would grow by gigabytes. Starts past this many count as in flight only
    /// once some end or expire.
    pub max_tracked_starts: usize,
    /// Reports of one request type an MCP needs before that type's statistics are used.
    pub min_type_reports: f64,
    /// Members drawn (by weight) and compared per decision. Two is the classic power of two
    /// choices; three keeps the worst pair of a tier from splitting a tenth of its traffic
    /// (see the routing simulation) while still spreading load when in-flight counts lag.
    pub choices: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            latency_decay: 5.0,
            outcome_decay: 30.0,
            recovery: 20.0,
            in_flight_expiry: 600.0,
            max_tracked_starts: 10_000,
            min_type_reports: 5.0,
            choices: 3,
        }
    }
}

/// What the router learned about one MCP (or one request type on it).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Learned {
    /// Peak-EWMA of processing time in seconds; `None` before the first report.
    pub(super) latency: Option<f64>,
    pub(super) latency_at: f64,
    pub(super) successes: f64,
    pub(super) failures: f64,
    pub(super) outcomes_at: f64,
}

impl Learned {
    pub(super) fn observe(
        &mut self,
        ok: bool,
        latency: Option<f64>,
        now: f64,
        config: &RouterConfig,
    ) {
        let keep = (-(now - self.outcomes_at).max(0.0) / config.outcome_decay).exp();
        self.successes *= keep;
        self.failures *= keep;
        if ok {
            self.successes += 1.0;
        } else {
            self.failures += 1.0;
        }
        self.outcomes_at = now;
        if let Some(rtt) = latency.filter(|t| t.is_finite() && *t >= 0.0) {
            self.latency = Some(match self.latency {
                Some(previous) if rtt <= previous => {
                    let keep = (-(now - self.latency_at).max(0.0) / config.latency_decay).exp();
                    previous * keep + rtt * (1.0 - keep)
                }
                _ => rtt,
            });
            self.latency_at = now;
        }
    }

    pub(super) fn reports(&self, now: f64, config: &RouterConfig) -> f64 {
        let (successes, failures) = self.outcomes(now, config);
        successes + failures
    }

    /// (successes, failures) discounted to `now`.
    pub(super) fn outcomes(&self, now: f64, config: &RouterConfig) -> (f64, f64) {
        let keep = (-(now - self.outcomes_at).max(0.0) / config.outcome_decay).exp();
        (self.successes * keep, self.failures * keep)
    }

    pub(super) fn latency(&self, now: f64, typical: f64, config: &RouterConfig) -> Option<f64> {
        self.latency.map(|l| {
            let keep = (-(now - self.latency_at).max(0.0) / config.recovery).exp();
            l * keep + typical * (1.0 - keep)
        })
    }
}

/// Request types with statistics of their own, per MCP.
pub(super) const MAX_REQUEST_TYPES: usize = 64;

#[derive(Debug, Default)]
pub(super) struct LearnedSet {
    pub(super) overall: Learned,
    pub(super) by_type: HashMap<String, Learned>,
}

/// A copy of an MCP's overall [`Learned`] that decisions read without a lock. Fields are
/// published one by one, so a reader may mix two consecutive observations: harmless for a
/// heuristic, and it keeps concurrent decisions off any shared lock.
#[derive(Debug, Default)]
pub(super) struct Published {
    latency: AtomicU64,
    has_latency: AtomicBool,
    latency_at: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    outcomes_at: AtomicU64,
}

impl Published {
    pub(super) fn store(&self, l: &Learned) {
        let put = |a: &AtomicU64, v: f64| a.store(v.to_bits(), Ordering::Relaxed);
        put(&self.latency, l.latency.unwrap_or(0.0));
        put(&self.latency_at, l.latency_at);
        put(&self.successes, l.successes);
        put(&self.failures, l.failures);
        put(&self.outcomes_at, l.outcomes_at);
        self.has_latency
            .store(l.latency.is_some(), Ordering::Release);
    }
    pub(super) fn load(&self) -> Learned {
        let get = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        Learned {
            latency: self
                .has_latency
                .load(Ordering::Acquire)
                .then(|| get(&self.latency)),
            latency_at: get(&self.latency_at),
            successes: get(&self.successes),
            failures: get(&self.failures),
            outcomes_at: get(&self.outcomes_at),
        }
    }
}

/// Live statistics of one MCP; survives table updates.
#[derive(Debug, Default)]
pub(super) struct McpStats {
    pub(super) in_flight: AtomicU32,
    pub(super) published: Published,
    /// Whether any request type has statistics (saves the lock for MCPs without).
    pub(super) typed: AtomicBool,
    /// Started interactions: id → (start time, request type); at most
    /// [`RouterConfig::max_tracked_starts`].
    pub(super) started: Mutex<HashMap<String, (f64, Option<String>)>>,
    /// Whether the warning that `started` is full was logged since it last had room.
    pub(super) starts_full_warned: AtomicBool,
    pub(super) learned: Mutex<LearnedSet>,
}

/// How an interaction ended, as its MCP reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub success: bool,
    /// Processing time in seconds, when reported.
    pub processing_time: Option<f64>,
}

impl McpStats {
    /// Remembers a start; answers true when this start found the table full for the first time
    /// since it last had room (the caller warns once, not at every report).
    pub(super) fn start(
        &self,
        interaction_id: &str,
        request_type: Option<&str>,
        now: f64,
        config: &RouterConfig,
    ) -> bool {
        let mut started = self.started();
        if started.len() >= config.max_tracked_starts && !started.contains_key(interaction_id) {
            return !self.starts_full_warned.swap(true, Ordering::Relaxed);
        }
        self.starts_full_warned.store(false, Ordering::Relaxed);
        if started
            .insert(
                interaction_id.to_string(),
                (now, request_type.map(str::to_string)),
            )
            .is_none()
        {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        false
    }

    pub(super) fn finish(
        &self,
        interaction_id: &str,
        request_type: Option<&str>,
        outcome: Outcome,
        now: f64,
        config: &RouterConfig,
    ) {
        let start = self.started().remove(interaction_id);
        if start.is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let latency = outcome
            .processing_time
            .or_else(|| start.as_ref().map(|(t, _)| (now - t).max(0.0)));
        let request_type = request_type
            .map(str::to_string)
            .or_else(|| start.and_then(|(_, t)| t));
        let mut learned = self.learned();
        learned
            .overall
            .observe(outcome.success, latency, now, config);
        self.published.store(&learned.overall);
        if let Some(t) = request_type {
            // Request types come from reports: past a bound, new ones count only overall.
            let known = learned.by_type.contains_key(&t);
            if known || learned.by_type.len() < MAX_REQUEST_TYPES {
                learned.by_type.entry(t).or_default().observe(
                    outcome.success,
                    latency,
                    now,
                    config,
                );
                self.typed.store(true, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn expire_started_before(&self, cutoff: f64) {
        let mut started = self.started();
        let before = started.len();
        started.retain(|_, (t, _)| *t >= cutoff);
        let expired = (before - started.len()) as u32;
        if expired > 0 {
            self.in_flight.fetch_sub(expired, Ordering::Relaxed);
        }
    }

    pub(super) fn learned(&self) -> std::sync::MutexGuard<'_, LearnedSet> {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner)
    }
    pub(super) fn started(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (f64, Option<String>)>> {
        self.started.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The median of the latency estimates that exist (0.1 s when none does): where an estimate
/// without fresh reports drifts to, and what an MCP without reports is assumed to take.
pub(super) fn typical_latency(views: &[Learned]) -> f64 {
    let mut known: Vec<f64> = views.iter().filter_map(|l| l.latency).collect();
    if known.is_empty() {
        return 0.1;
    }
    known.sort_by(f64::total_cmp);
    known[known.len() / 2]
}
