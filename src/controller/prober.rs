//! Runs the probes: one task per MCP, at its health interval, with a global bound on how many probe
//! at once. Probing never happens inside a reconcile, so a slow MCP cannot hold up others; when a
//! probe changes something worth writing, the MCP's reconcile is triggered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::health::HealthTracker;
use super::metrics::Metrics;
use super::probe::{probe, ProbeTarget};
use crate::crd::{HealthCheck, MCPRegistration};

type Key = ObjectRef<MCPRegistration>;

struct Running {
    target: ProbeTarget,
    check: HealthCheck,
    task: JoinHandle<()>,
}

pub struct Prober {
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    running: Mutex<HashMap<Key, Running>>,
    states: Arc<RwLock<HashMap<Key, HealthTracker>>>,
    changed: mpsc::UnboundedSender<Key>,
    metrics: Arc<Metrics>,
}

impl Prober {
    /// A prober allowing `concurrency` probes in flight, and the stream of MCPs whose health changed.
    pub fn new(
        client: reqwest::Client,
        concurrency: usize,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<Key>) {
        let (changed, rx) = mpsc::unbounded_channel();
        let prober = Arc::new(Self {
            client,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            running: Mutex::new(HashMap::new()),
            states: Arc::default(),
            changed,
            metrics,
        });
        (prober, rx)
    }

    /// Probes `key` with `target` from now on; restarts its schedule only when the target changed.
    pub fn ensure(&self, key: Key, target: ProbeTarget, check: HealthCheck) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = running.get(&key) {
            if current.target == target && current.check == check {
                return;
            }
            current.task.abort();
            if current.target.url != target.url || current.target.probe_type != target.probe_type {
                self.write_states().remove(&key);
            }
        }
        let task = tokio::spawn(probe_loop(
            key.clone(),
            target.clone(),
            check.clone(),
            self.client.clone(),
            self.permits.clone(),
            self.states.clone(),
            self.changed.clone(),
            self.metrics.clone(),
        ));
        running.insert(
            key,
            Running {
                target,
                check,
                task,
            },
        );
    }

    /// Stops probing `key` and forgets its health.
    pub fn remove(&self, key: &Key) {
        if let Some(current) = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key)
        {
            current.task.abort();
        }
        self.write_states().remove(key);
    }

    pub fn snapshot(&self, key: &Key) -> Option<HealthTracker> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn write_states(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, HealthTracker>> {
        self.states.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        for (_, r) in self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
        {
            r.task.abort();
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn probe_loop(
    key: Key,
    target: ProbeTarget,
    check: HealthCheck,
    client: reqwest::Client,
    permits: Arc<Semaphore>,
    states: Arc<RwLock<HashMap<Key, HealthTracker>>>,
    changed: mpsc::UnboundedSender<Key>,
    metrics: Arc<Metrics>,
) {
    let kind = match target.probe_type {
        crate::crd::ProbeType::Http => "http",
        crate::crd::ProbeType::Mcp => "mcp",
    };
    loop {
        let outcome = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            probe(&client, &target).await
        };
        let latency = match &outcome {
            super::health::ProbeOutcome::Up { latency, .. }
            | super::health::ProbeOutcome::Refused { latency, .. }
            | super::health::ProbeOutcome::Down { latency, .. } => *latency,
        };
        metrics.observe_probe(kind, &outcome, latency);
        let worth_writing = states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .record(outcome, Timestamp::now(), &check);
        if worth_writing && changed.send(key.clone()).is_err() {
            return;
        }
        tokio::time::sleep(target.interval).await;
    }
}
