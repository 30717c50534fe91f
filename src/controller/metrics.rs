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
    pub protocol_versions: IntGaugeVec,
    pub legacy_features: IntGaugeVec,
    /// Each registration's place in the fleet, counted into `registrations`,
    /// `protocol_versions` and `legacy_features`.
    places: Mutex<HashMap<ObjectRef<MCPRegistration>, Place>>,
}

/// Where a registration counts: its phase, the protocol version it speaks (bounded to the
/// versions this release knows, `other` and `unknown`), what it relies on that 2026-07-28 removed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    phase: Phase,
    protocol: &'static str,
    legacy: Vec<&'static str>,
}

impl Place {
    fn of(status: &MCPRegistrationStatus) -> Self {
        let info = status.server_info.as_ref();
        let protocol = info.map_or("unknown", |i| {
            crate::mcp::wire::known_version(&i.protocol_version).unwrap_or("other")
        });
        let legacy = LEGACY_FEATURES
            .into_iter()
            .filter(|f| info.is_some_and(|i| i.legacy_features.iter().any(|l| l == f)))
            .collect();
        Self {
            phase: status.phase,
            protocol,
            legacy,
        }
    }
}

/// The features `serverInfo.legacyFeatures` can name.
const LEGACY_FEATURES: [&str; 2] = ["sessions", "logging"];

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
            protocol_versions: series.gauges(
                "mcp_coordinator_protocol_versions",
                "MCPRegistrations by the MCP protocol version their server speaks (unknown until an mcp probe learned it; other for a version this release does not know).",
                &["version"],
            )?,
            legacy_features: series.gauges(
                "mcp_coordinator_protocol_legacy_features",
                "MCPRegistrations whose server relies on a feature the 2026-07-28 revision removed or deprecated (sessions, logging).",
                &["feature"],
            )?,
            registry: series.registry,
            places: Mutex::default(),
        };
        for version in crate::mcp::wire::ALL_VERSIONS
            .into_iter()
            .chain(["other", "unknown"])
        {
            metrics
                .protocol_versions
                .with_label_values(&[version])
                .set(0);
        }
        for feature in LEGACY_FEATURES {
            metrics.legacy_features.with_label_values(&[feature]).set(0);
        }
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
        self.place(key, Some(Place::of(status)));
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
        self.place(key.clone(), None);
        if let Some(id) = mcp_id {
            let _ = self.mcp_up.remove_label_values(&[id]);
            let _ = self.effective_weight.remove_label_values(&[id]);
        }
    }

    /// Moves the registration between counts: constant work per call, whatever the fleet.
    fn place(&self, key: ObjectRef<MCPRegistration>, place: Option<Place>) {
        // The lock spans the gauge updates, so concurrent moves never leave a count off by one.
        let mut places = self.places.lock().unwrap_or_else(PoisonError::into_inner);
        let before = match &place {
            Some(p) => places.insert(key, p.clone()),
            None => places.remove(&key),
        };
        if before == place {
            return;
        }
        for (counted, by) in [(before, -1), (place, 1)] {
            let Some(p) = counted else { continue };
            self.registrations
                .with_label_values(&[p.phase.as_str()])
                .add(by);
            self.protocol_versions
                .with_label_values(&[p.protocol])
                .add(by);
            for feature in p.legacy {
                self.legacy_features.with_label_values(&[feature]).add(by);
            }
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
