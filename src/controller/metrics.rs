//! Prometheus metrics of the controller. Names follow Prometheus conventions (`_total` counters,
//! base units in seconds).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;

use prometheus::{
    Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

use super::health::ProbeOutcome;
use crate::crd::{MCPRegistration, MCPRegistrationStatus, Phase};
use crate::telemetry::{Series, SECONDS_BUCKETS};

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: IntCounter,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: Histogram,
    pub registrations: IntGaugeVec,
    pub probe_duration: HistogramVec,
    pub mcp_up: IntGaugeVec,
    pub effective_weight: IntGaugeVec,
    pub routing_refreshes: IntCounterVec,
    pub leader: IntGauge,
    /// Each registration's phase, counted into `registrations`.
    phases: Mutex<HashMap<ObjectRef<MCPRegistration>, Phase>>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let series = Series::default();
        let metrics = Self {
            reconciles: series.counter(
                "mcp_coordinator_reconciles_total",
                "Reconciles of MCPRegistrations started.",
            )?,
            reconcile_errors: series.counters(
                "mcp_coordinator_reconcile_errors_total",
                "Reconciles that failed, by kind of error.",
                &["kind"],
            )?,
            reconcile_duration: series.histogram(
                "mcp_coordinator_reconcile_duration_seconds",
                "Time one reconcile of an MCPRegistration took.",
                &SECONDS_BUCKETS[..11],
            )?,
            registrations: series.gauges(
                "mcp_coordinator_registrations",
                "MCPRegistrations by phase.",
                &["phase"],
            )?,
            probe_duration: series.histograms(
                "mcp_coordinator_probe_duration_seconds",
                "Health probe duration, by probe type and result.",
                SECONDS_BUCKETS,
                &["type", "result"],
            )?,
            mcp_up: series.gauges(
                "mcp_up",
                "1 when the MCP's health checks pass (Ready), 0 otherwise.",
                &["mcp_id"],
            )?,
            effective_weight: series.gauges(
                "mcp_coordinator_effective_weight",
                "The routing weight in each MCP's status (0 when not routable).",
                &["mcp_id"],
            )?,
            routing_refreshes: series.counters(
                "mcp_coordinator_routing_refreshes_total",
                "Fetches of performance from the ingest server, by result (ok, error).",
                &["result"],
            )?,
            leader: series.gauge(
                "mcp_coordinator_leader",
                "1 while this controller instance holds the leader Lease and reconciles.",
            )?,
            registry: series.registry,
            phases: Mutex::default(),
        };
        for result in ["ok", "error"] {
            metrics.routing_refreshes.with_label_values(&[result]);
        }
        for phase in Phase::ALL {
            metrics
                .registrations
                .with_label_values(&[phase.as_str()])
                .set(0);
        }
        Ok(metrics)
    }

    /// A registration's phase, and its MCP's `mcp_up` and effective weight.
    pub fn record_registration(
        &self,
        key: ObjectRef<MCPRegistration>,
        mcp_id: Option<&str>,
        status: &MCPRegistrationStatus,
    ) {
        self.set_phase(key, Some(status.phase));
        if let Some(id) = mcp_id {
            self.mcp_up
                .with_label_values(&[id])
                .set(i64::from(status.phase == Phase::Ready));
            let weight = status.routing.as_ref().map_or(0, |r| r.effective_weight);
            self.effective_weight
                .with_label_values(&[id])
                .set(i64::from(weight));
        }
    }

    /// Drops a registration that is gone, and its MCP's series.
    pub fn forget_registration(&self, key: &ObjectRef<MCPRegistration>, mcp_id: Option<&str>) {
        self.set_phase(key.clone(), None);
        if let Some(id) = mcp_id {
            let _ = self.mcp_up.remove_label_values(&[id]);
            let _ = self.effective_weight.remove_label_values(&[id]);
        }
    }

    /// Moves the registration between phase counts: constant work per call, whatever the fleet.
    fn set_phase(&self, key: ObjectRef<MCPRegistration>, phase: Option<Phase>) {
        // The lock spans the gauge updates, so concurrent moves never leave a count off by one.
        let mut phases = self.phases.lock().unwrap_or_else(PoisonError::into_inner);
        let before = match phase {
            Some(p) => phases.insert(key, p),
            None => phases.remove(&key),
        };
        if before == phase {
            return;
        }
        if let Some(old) = before {
            self.registrations.with_label_values(&[old.as_str()]).dec();
        }
        if let Some(new) = phase {
            self.registrations.with_label_values(&[new.as_str()]).inc();
        }
    }

    pub fn observe_probe(&self, kind: &str, outcome: &ProbeOutcome, latency: Duration) {
        let result = match outcome {
            ProbeOutcome::Up { .. } => "up",
            ProbeOutcome::Refused { .. } => "refused",
            ProbeOutcome::Down { .. } => "down",
        };
        self.probe_duration
            .with_label_values(&[kind, result])
            .observe(latency.as_secs_f64());
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        crate::telemetry::render(&self.registry)
    }
}
