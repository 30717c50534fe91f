//! Prometheus metrics of the ingest server.

use prometheus::{Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use super::spool::SpoolStats;
use crate::telemetry::{Series, SECONDS_BUCKETS};

pub struct IngestMetrics {
    pub registry: Registry,
    pub received: IntCounterVec,
    pub rejected: IntCounterVec,
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_oldest_age: Gauge,
    pub store_rows: IntCounter,
    pub store_errors: IntCounterVec,
    pub store_insert_seconds: Histogram,
    pub poison: IntCounter,
    pub processing_time: HistogramVec,
    pub route_decisions: IntCounterVec,
}

impl IngestMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let series = Series::default();
        Ok(Self {
            received: series.counters(
                "mcp_ingest_events_received_total",
                "Interaction events accepted, by MCP and event type.",
                &["mcp_id", "event"],
            )?,
            rejected: series.counters(
                "mcp_ingest_requests_rejected_total",
                "Requests refused, by reason.",
                &["reason"],
            )?,
            spool_records: series.gauge(
                "mcp_ingest_spool_records",
                "Events in the spool not yet confirmed by the store.",
            )?,
            spool_bytes: series.gauge(
                "mcp_ingest_spool_bytes",
                "Bytes of spooled events not yet confirmed by the store.",
            )?,
            spool_oldest_age: series.float_gauge(
                "mcp_ingest_spool_oldest_unshipped_age_seconds",
                "Age of the oldest event not yet confirmed by the store (0 when none).",
            )?,
            store_rows: series.counter("mcp_ingest_store_rows_total", "Events the store confirmed.")?,
            store_errors: series.counters(
                "mcp_ingest_store_errors_total",
                "Failed store inserts, by kind (unavailable, rejected).",
                &["kind"],
            )?,
            store_insert_seconds: series.histogram(
                "mcp_ingest_store_insert_duration_seconds",
                "Time one store insert took.",
                SECONDS_BUCKETS,
            )?,
            poison: series.counter(
                "mcp_ingest_poison_events_total",
                "Events the store rejected, set aside.",
            )?,
            processing_time: series.histograms(
                "mcp_ingest_processing_time_seconds",
                "Reported processing time of interactions, by MCP.",
                &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
                &["mcp_id"],
            )?,
            route_decisions: series.counters(
                "mcp_ingest_route_decisions_total",
                "Answers of GET /v1/route, by result (routed, failed_over, unknown_capability, none_ready, saturated).",
                &["result"],
            )?,
            registry: series.registry,
        })
    }

    /// Text exposition, with the spool gauges brought up to date.
    pub fn render(&self, spool: SpoolStats, now_ms: i64) -> String {
        self.spool_records.set(spool.records as i64);
        self.spool_bytes.set(spool.bytes as i64);
        self.spool_oldest_age.set(
            spool
                .oldest_ms
                .map(|ms| ((now_ms - ms) as f64 / 1000.0).max(0.0))
                .unwrap_or(0.0),
        );
        crate::telemetry::render(&self.registry)
    }
}
