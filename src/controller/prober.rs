//! Runs the probes: every MCP at its health interval, at most `concurrency` at once, shared fairly
//! between namespaces. Probing never happens inside a reconcile, so a slow MCP cannot hold up
//! others; when a probe changes something worth writing, the MCP's reconcile is triggered.
//!
//! One dispatcher task keeps a timetable of when each MCP is due; a probe exists as a task only
//! while it runs, so memory follows the probes in flight, not the fleet. Due probes wait in one
//! queue per namespace and are started round-robin across namespaces, and no namespace holds more
//! than its share of the slots (all of them divided by the namespaces with probes waiting or
//! running): one team's endpoints that never answer cannot starve everyone else's probes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::health::{HealthTracker, ProbeOutcome};
use super::metrics::Metrics;
use super::probe::{probe, ProbeTarget};
use crate::crd::{HealthCheck, MCPRegistration};

type Key = ObjectRef<MCPRegistration>;

/// One version of one MCP's probe plan; a changed target gets a new ticket, which is how a stale
/// timetable entry or a probe that finished after the change is recognised and dropped.
type Ticket = u64;

struct Planned {
    target: ProbeTarget,
    check: HealthCheck,
    ticket: Ticket,
}

/// Which probe runs when. Pure bookkeeping, no I/O: [`Timetable::start_due`] decides, the
/// dispatcher acts.
#[derive(Default)]
struct Timetable {
    planned: HashMap<Key, Planned>,
    by_ticket: HashMap<Ticket, Key>,
    next_ticket: Ticket,
    due: BinaryHeap<Reverse<(Instant, Ticket)>>,
    /// Due probes per namespace, and the namespaces in round-robin order.
    waiting: HashMap<String, VecDeque<Ticket>>,
    rotation: VecDeque<String>,
    running: HashMap<String, usize>,
    running_total: usize,
}

/// A probe the timetable started.
struct Started {
    key: Key,
    ticket: Ticket,
    target: ProbeTarget,
    check: HealthCheck,
}

impl Timetable {
    /// Plans `key`; true when its probing (re)starts (new, or the target or check changed).
    fn plan(&mut self, key: Key, target: ProbeTarget, check: HealthCheck, now: Instant) -> bool {
        if let Some(current) = self.planned.get(&key) {
            if current.target == target && current.check == check {
                return false;
            }
            self.by_ticket.remove(&current.ticket);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.by_ticket.insert(ticket, key.clone());
        self.planned.insert(
            key,
            Planned {
                target,
                check,
                ticket,
            },
        );
        self.due.push(Reverse((now, ticket)));
        true
    }

    fn unplan(&mut self, key: &Key) -> Option<Planned> {
        let planned = self.planned.remove(key)?;
        self.by_ticket.remove(&planned.ticket);
        Some(planned)
    }

    /// A probe of `namespace` finished; its MCP is due again after `interval` if still planned.
    fn finished(&mut self, namespace: &str, ticket: Ticket, at: Instant) {
        self.running_total = self.running_total.saturating_sub(1);
        if let Some(n) = self.running.get_mut(namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(namespace);
            }
        }
        if let Some(planned) = self
            .by_ticket
            .get(&ticket)
            .and_then(|k| self.planned.get(k))
        {
            self.due
                .push(Reverse((at + planned.target.interval, ticket)));
        }
    }

    /// Moves what is due by `now` into the namespaces' queues and starts as many as the slots
    /// and the fair shares allow. Returns the started probes and when the next one falls due.
    fn start_due(&mut self, now: Instant, slots: usize) -> (Vec<Started>, Option<Instant>) {
        while let Some(Reverse((at, ticket))) = self.due.peek().copied() {
            if at > now {
                break;
            }
            self.due.pop();
            let Some(key) = self.by_ticket.get(&ticket) else {
                continue;
            };
            let namespace = key.namespace.clone().unwrap_or_default();
            let queue = self.waiting.entry(namespace.clone()).or_default();
            if queue.is_empty() {
                self.rotation.push_back(namespace);
            }
            queue.push_back(ticket);
        }
        let mut started = Vec::new();
        while self.running_total < slots {
            match self.next_fair(slots) {
                Some(s) => started.push(s),
                None => break,
            }
        }
        (started, self.due.peek().map(|Reverse((at, _))| *at))
    }

    /// The next probe in round-robin order from a namespace still under its share.
    fn next_fair(&mut self, slots: usize) -> Option<Started> {
        let active = self
            .rotation
            .iter()
            .filter(|ns| !self.running.contains_key(*ns))
            .count()
            + self.running.len();
        let share = (slots / active.max(1)).max(1);
        for _ in 0..self.rotation.len() {
            let namespace = self.rotation.pop_front()?;
            if self.running.get(&namespace).copied().unwrap_or(0) >= share {
                self.rotation.push_back(namespace);
                continue;
            }
            let queue = self.waiting.get_mut(&namespace)?;
            while let Some(ticket) = queue.pop_front() {
                let Some(key) = self.by_ticket.get(&ticket) else {
                    continue; // replanned or removed while waiting
                };
                let Some(planned) = self.planned.get(key) else {
                    continue;
                };
                let started = Started {
                    key: key.clone(),
                    ticket,
                    target: planned.target.clone(),
                    check: planned.check.clone(),
                };
                if queue.is_empty() {
                    self.waiting.remove(&namespace);
                } else {
                    self.rotation.push_back(namespace.clone());
                }
                *self.running.entry(namespace).or_default() += 1;
                self.running_total += 1;
                return Some(started);
            }
            self.waiting.remove(&namespace);
        }
        None
    }
}

struct Shared {
    client: reqwest::Client,
    concurrency: usize,
    timetable: Mutex<Timetable>,
    wake: Notify,
    states: RwLock<HashMap<Key, HealthTracker>>,
    changed: mpsc::UnboundedSender<Key>,
    metrics: Arc<Metrics>,
}

pub struct Prober {
    shared: Arc<Shared>,
    dispatcher: JoinHandle<()>,
}

impl Prober {
    /// A prober allowing `concurrency` probes in flight, and the stream of MCPs whose health changed.
    pub fn new(
        client: reqwest::Client,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Key>) {
        let (changed, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client,
            concurrency: concurrency.max(1),
            timetable: Mutex::default(),
            wake: Notify::new(),
            states: RwLock::default(),
            changed,
            metrics,
        });
        let dispatcher = tokio::spawn(dispatch(shared.clone()));
        (Arc::new(Self { shared, dispatcher }), rx)
    }

    /// Probes `key` with `target` from now on; restarts its schedule only when the target changed.
    pub fn ensure(&self, key: Key, target: ProbeTarget, check: HealthCheck) {
        let mut timetable = self.shared.timetable();
        let moved = timetable.planned.get(&key).is_some_and(|current| {
            current.target.url != target.url || current.target.probe_type != target.probe_type
        });
        if timetable.plan(key.clone(), target, check, Instant::now()) {
            if moved {
                self.shared.write_states().remove(&key);
            }
            self.shared.wake.notify_one();
        }
    }

    /// Stops probing `key` and forgets its health.
    pub fn remove(&self, key: &Key) {
        self.shared.timetable().unplan(key);
        self.shared.write_states().remove(key);
    }

    pub fn snapshot(&self, key: &Key) -> Option<HealthTracker> {
        self.shared
            .states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

impl Shared {
    fn timetable(&self) -> MutexGuard<'_, Timetable> {
        self.timetable
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write_states(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, HealthTracker>> {
        self.states.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts due probes until the prober is dropped.
async fn dispatch(shared: Arc<Shared>) {
    loop {
        let (started, next) = shared
            .timetable()
            .start_due(Instant::now(), shared.concurrency);
        for probe in started {
            tokio::spawn(run_probe(shared.clone(), probe));
        }
        let wake = shared.wake.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => wake.await,
        }
    }
}

async fn run_probe(shared: Arc<Shared>, started: Started) {
    let kind = match started.target.probe_type {
        crate::crd::ProbeType::Http => "http",
        crate::crd::ProbeType::Mcp => "mcp",
        crate::crd::ProbeType::None => "none",
    };
    let outcome = probe(&shared.client, &started.target).await;
    let latency = match &outcome {
        ProbeOutcome::Up { latency, .. }
        | ProbeOutcome::Refused { latency, .. }
        | ProbeOutcome::Down { latency, .. } => *latency,
    };
    shared.metrics.observe_probe(kind, &outcome, latency);
    let namespace = started.key.namespace.clone().unwrap_or_default();
    let current = {
        let mut timetable = shared.timetable();
        let current = timetable.by_ticket.contains_key(&started.ticket);
        timetable.finished(&namespace, started.ticket, Instant::now());
        current
    };
    shared.wake.notify_one();
    // A probe of a target that changed or went away while it ran says nothing about the new one.
    if !current {
        return;
    }
    let worth_writing = shared
        .write_states()
        .entry(started.key.clone())
        .or_default()
        .record(outcome, Timestamp::now(), &started.check);
    if worth_writing {
        let _ = shared.changed.send(started.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(namespace: &str, name: &str) -> Key {
        ObjectRef::new(name).within(namespace)
    }

    fn target(name: &str) -> ProbeTarget {
        ProbeTarget {
            probe_type: crate::crd::ProbeType::Http,
            url: format!("http://mcp.invalid/{name}"),
            timeout: Duration::from_secs(5),
            interval: Duration::from_secs(10),
            headers: Default::default(),
            setup_error: None,
            call: None,
        }
    }

    fn namespaces(started: &[Started]) -> Vec<String> {
        started
            .iter()
            .map(|s| s.key.namespace.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn a_namespace_that_never_answers_keeps_at_most_its_share_of_the_slots() {
        let now = Instant::now();
        let mut t = Timetable::default();
        for i in 0..100 {
            let name = format!("hung-{i}");
            t.plan(
                key("slow", &name),
                target(&name),
                HealthCheck::default(),
                now,
            );
        }
        // Alone, the slow namespace may use every slot.
        let (first, _) = t.start_due(now, 8);
        assert_eq!(first.len(), 8);
        // Its probes hang; another team's MCPs fall due. Slots free up only as hung probes time out.
        for i in 0..3 {
            let name = format!("ok-{i}");
            t.plan(
                key("fast", &name),
                target(&name),
                HealthCheck::default(),
                now,
            );
        }
        let mut fast_started = 0;
        for probe in &first[..4] {
            t.finished("slow", probe.ticket, now);
            let (started, _) = t.start_due(now, 8);
            fast_started += namespaces(&started).iter().filter(|n| *n == "fast").count();
            assert!(
                t.running.get("slow").copied().unwrap_or(0) <= 8,
                "the slow namespace never exceeds the pool"
            );
        }
        assert_eq!(
            fast_started, 3,
            "every waiting probe of the other namespace got a slot"
        );
        assert!(
            t.running.get("slow").copied().unwrap_or(0) <= 5,
            "the slow namespace gave up slots beyond its share"
        );
    }

    #[test]
    fn due_probes_start_round_robin_across_namespaces() {
        let now = Instant::now();
        let mut t = Timetable::default();
        for ns in ["a", "b", "c"] {
            for i in 0..4 {
                let name = format!("{ns}-{i}");
                t.plan(key(ns, &name), target(&name), HealthCheck::default(), now);
            }
        }
        let (started, _) = t.start_due(now, 6);
        let mut seen = namespaces(&started);
        seen.sort();
        assert_eq!(seen, ["a", "a", "b", "b", "c", "c"]);
    }

    #[test]
    fn a_finished_probe_is_due_again_after_its_interval_and_a_removed_one_is_not() {
        let now = Instant::now();
        let mut t = Timetable::default();
        t.plan(
            key("a", "kept"),
            target("kept"),
            HealthCheck::default(),
            now,
        );
        t.plan(
            key("a", "gone"),
            target("gone"),
            HealthCheck::default(),
            now,
        );
        let (started, _) = t.start_due(now, 4);
        assert_eq!(started.len(), 2);
        t.unplan(&key("a", "gone"));
        for s in &started {
            t.finished("a", s.ticket, now);
        }
        let (none_yet, next) = t.start_due(now + Duration::from_secs(1), 4);
        assert!(none_yet.is_empty());
        assert_eq!(next, Some(now + Duration::from_secs(10)));
        let (again, _) = t.start_due(now + Duration::from_secs(10), 4);
        assert_eq!(namespaces(&again), ["a"]);
        assert_eq!(again[0].key.name, "kept");
    }

    #[test]
    fn an_unchanged_plan_keeps_its_schedule_and_a_changed_one_restarts() {
        let now = Instant::now();
        let mut t = Timetable::default();
        assert!(t.plan(key("a", "m"), target("m"), HealthCheck::default(), now));
        assert!(!t.plan(key("a", "m"), target("m"), HealthCheck::default(), now));
        let (started, _) = t.start_due(now, 1);
        let old_ticket = started[0].ticket;
        assert!(t.plan(key("a", "m"), target("moved"), HealthCheck::default(), now));
        // The old probe finishing does not schedule the old target again.
        t.finished("a", old_ticket, now);
        let (restarted, _) = t.start_due(now, 4);
        assert_eq!(restarted.len(), 1);
        assert_eq!(restarted[0].target.url, "http://mcp.invalid/moved");
    }
}
