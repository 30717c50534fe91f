//! The pipeline's own Prometheus series: what the spool holds and what the store confirmed.

use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge};

use super::spool::SpoolStats;
use crate::telemetry::{Series, SECONDS_BUCKETS};

/// Series of the spool and the shipper, registered in the registry of the process that runs them.
/// Cheap to clone: every series is shared.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    pub spool_oldest_age: Gauge,
    pub store_rows: IntCounter,
    pub store_errors: IntCounterVec,
    pub store_insert_seconds: Histogram,
    pub poison: IntCounter,
}

impl PipelineMetrics {
    pub fn new(series: &Series) -> Result<Self, prometheus::Error> {
        Ok(Self {
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
            store_rows: series
                .counter("mcp_ingest_store_rows_total", "Events the store confirmed.")?,
            store_errors: series.counters(
                "mcp_ingest_store_errors_total",
                "Failed store inserts, by kind (unavailable, rejected).",
                &["kind"],
            )?,
            store_insert_seconds: series.histogram(
                "mcp_ingest_store_insert_duration_seconds",
                "Time a store insert took to be confirmed once its last events were written.",
                SECONDS_BUCKETS,
            )?,
            poison: series.counter(
                "mcp_ingest_poison_events_total",
                "Events the store rejected, set aside.",
            )?,
        })
    }

    /// Brings the spool gauges up to date (before a scrape renders them).
    pub fn observe_spool(&self, spool: SpoolStats, now_ms: i64) {
        self.spool_records.set(spool.records as i64);
        self.spool_bytes.set(spool.bytes as i64);
        self.spool_oldest_age.set(
            spool
                .oldest_ms
                .map(|ms| ((now_ms - ms) as f64 / 1000.0).max(0.0))
                .unwrap_or(0.0),
        );
    }
}
