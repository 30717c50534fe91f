//! Prometheus metrics of the ingest server.

use prometheus::{HistogramVec, IntCounterVec, Registry};

use crate::pipeline::{PipelineMetrics, SpoolStats};
use crate::telemetry::Series;

pub struct IngestMetrics {
    pub registry: Registry,
    pub received: IntCounterVec,
    pub rejected: IntCounterVec,
    /// The spool's and the shipper's series.
    pub pipeline: PipelineMetrics,
    pub processing_time: HistogramVec,
    pub route_decisions: IntCounterVec,
    /// OTLP server spans, by MCP and MCP method.
    pub otlp_spans: IntCounterVec,
    /// OTLP spans refused, by reason.
    pub otlp_refused: IntCounterVec,
    /// Every listener's connections.
    pub serve: std::sync::Arc<crate::serve::ServeMetrics>,
    /// The MCP gateway's series.
    pub gateway: std::sync::Arc<crate::gateway::GatewayMetrics>,
}

impl IngestMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let series = Series::default();
        Ok(Self {
            pipeline: PipelineMetrics::new(&series)?,
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
            otlp_spans: series.counters(
                "mcp_ingest_otlp_spans_total",
                "MCP server spans received over OTLP, by MCP and method (tools/call spans are interactions; other methods are only counted).",
                &["mcp_id", "method"],
            )?,
            otlp_refused: series.counters(
                "mcp_ingest_otlp_spans_refused_total",
                "OTLP spans refused, by reason (not_mcp, not_server, no_tool, bad_ids, bad_times, too_long, invalid).",
                &["reason"],
            )?,
            gateway: std::sync::Arc::new(crate::gateway::GatewayMetrics::new(&series)?),
            serve: std::sync::Arc::new(crate::serve::ServeMetrics::new(&series)?),
            registry: series.registry,
        })
    }

    /// Drops the per-MCP series of MCPs `keep` says are gone (their key was removed), so a
    /// coordinator that saw many MCPs come and go does not export them forever.
    pub fn forget_mcps_except(&self, keep: impl Fn(&str) -> bool) {
        use prometheus::core::Collector;
        // Label pairs come back sorted by name; the series are addressed in declared order.
        let mut gone: std::collections::BTreeSet<(String, String)> = Default::default();
        for family in self.received.collect() {
            for metric in family.get_metric() {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                };
                if let (Some(id), Some(event)) = (label("mcp_id"), label("event")) {
                    if !keep(&id) {
                        gone.insert((id, event));
                    }
                }
            }
        }
        for (id, event) in &gone {
            let _ = self.received.remove_label_values(&[id, event]);
            let _ = self.processing_time.remove_label_values(&[id]);
            for method in crate::otlp::map::METHODS.iter().chain(&["other"]) {
                let _ = self.otlp_spans.remove_label_values(&[id.as_str(), method]);
            }
        }
    }

    /// Text exposition, with the spool gauges brought up to date.
    pub fn render(&self, spool: SpoolStats, now_ms: i64) -> String {
        self.render_with(spool, now_ms, None)
    }

    /// [`Self::render`] with the series of another registry (standalone mode adds the
    /// controller's), each family once.
    pub fn render_with(&self, spool: SpoolStats, now_ms: i64, extra: Option<&Registry>) -> String {
        self.pipeline.observe_spool(spool, now_ms);
        match extra {
            Some(extra) => crate::telemetry::render_all(&[&self.registry, extra]),
            None => crate::telemetry::render(&self.registry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_of_mcps_that_are_gone_are_dropped() {
        let m = IngestMetrics::new().unwrap();
        for id in ["kept_mcp_001", "gone_mcp_001"] {
            m.received.with_label_values(&[id, "start"]).inc();
            m.processing_time.with_label_values(&[id]).observe(0.1);
        }
        m.forget_mcps_except(|id| id == "kept_mcp_001");
        let text = m.render(SpoolStats::default(), 0);
        assert!(text.contains("kept_mcp_001"), "{text}");
        assert!(!text.contains("gone_mcp_001"), "{text}");
    }
}
