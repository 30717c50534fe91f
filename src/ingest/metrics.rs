//! Prometheus metrics of the ingest server.

use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};

use super::spool::SpoolStats;

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
        let registry = Registry::new();
        let received = IntCounterVec::new(
            Opts::new(
                "mcp_ingest_events_received_total",
                "Interaction events accepted, by MCP and event type.",
            ),
            &["mcp_id", "event"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "mcp_ingest_requests_rejected_total",
                "Requests refused, by reason.",
            ),
            &["reason"],
        )?;
        let spool_records = IntGauge::new(
            "mcp_ingest_spool_records",
            "Events in the spool not yet confirmed by the store.",
        )?;
        let spool_bytes = IntGauge::new(
            "mcp_ingest_spool_bytes",
            "Bytes of spooled events not yet confirmed by the store.",
        )?;
        let spool_oldest_age = Gauge::new(
            "mcp_ingest_spool_oldest_unshipped_age_seconds",
            "Age of the oldest event not yet confirmed by the store (0 when none).",
        )?;
        let store_rows =
            IntCounter::new("mcp_ingest_store_rows_total", "Events the store confirmed.")?;
        let store_errors = IntCounterVec::new(
            Opts::new(
                "mcp_ingest_store_errors_total",
                "Failed store inserts, by kind (unavailable, rejected).",
            ),
            &["kind"],
        )?;
        let store_insert_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "mcp_ingest_store_insert_duration_seconds",
                "Time one store insert took.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let poison = IntCounter::new(
            "mcp_ingest_poison_events_total",
            "Events the store rejected, set aside.",
        )?;
        let processing_time = HistogramVec::new(
            HistogramOpts::new(
                "mcp_ingest_processing_time_seconds",
                "Reported processing time of interactions, by MCP.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["mcp_id"],
        )?;
        let route_decisions = IntCounterVec::new(
            Opts::new(
                "mcp_ingest_route_decisions_total",
                "Answers of GET /v1/route, by result (routed, failed_over, unknown_capability, none_ready, saturated).",
            ),
            &["result"],
        )?;
        registry.register(Box::new(route_decisions.clone()))?;
        registry.register(Box::new(received.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(spool_records.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(spool_oldest_age.clone()))?;
        registry.register(Box::new(store_rows.clone()))?;
        registry.register(Box::new(store_errors.clone()))?;
        registry.register(Box::new(store_insert_seconds.clone()))?;
        registry.register(Box::new(poison.clone()))?;
        registry.register(Box::new(processing_time.clone()))?;
        Ok(Self {
            registry,
            received,
            rejected,
            spool_records,
            spool_bytes,
            spool_oldest_age,
            store_rows,
            store_errors,
            store_insert_seconds,
            poison,
            processing_time,
            route_decisions,
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
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::warn!(error = %e, "could not encode metrics");
        }
        out
    }
}
