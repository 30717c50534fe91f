//! The gateway's series, named after OpenTelemetry's MCP semantic conventions
//! (`mcp.client.operation.duration` in seconds, labels from `mcp.method.name`,
//! `gen_ai.tool.name` and `error.type`), plus failovers and ejections.

use prometheus::{HistogramVec, IntCounterVec, IntGaugeVec};

use crate::telemetry::Series;

pub struct GatewayMetrics {
    pub duration: HistogramVec,
    pub failovers: IntCounterVec,
    pub ejections: IntCounterVec,
    pub ejected: IntGaugeVec,
    pub refused: IntCounterVec,
    /// Calls refused by a registration's gateway policy, by registration and rule or limit.
    pub policy_refusals: IntCounterVec,
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

impl GatewayMetrics {
    pub fn new(series: &Series) -> Result<Self, prometheus::Error> {
        Ok(Self {
            duration: series.histograms(
                "mcp_client_operation_duration_seconds",
                "Requests the gateway sent to MCPs, from the client's request to the MCP's whole answer, by mcp.method.name, gen_ai.tool.name (tools/call only), error.type (empty on success) and the MCP that answered.",
                BUCKETS,
                &["mcp_method_name", "gen_ai_tool_name", "error_type", "mcp_id"],
            )?,
            failovers: series.counters(
                "mcp_coordinator_gateway_failovers_total",
                "Calls the gateway sent to the next candidate, by why the previous one failed (connect, unavailable, timeout, saturated, broken).",
                &["reason"],
            )?,
            ejections: series.counters(
                "mcp_coordinator_gateway_ejections_total",
                "Times an MCP was taken out of the gateway's rotation after consecutive failures.",
                &["mcp_id"],
            )?,
            ejected: series.gauges(
                "mcp_coordinator_gateway_ejected",
                "1 while an MCP is out of the gateway's rotation (cooling down after failures).",
                &["mcp_id"],
            )?,
            refused: series.counters(
                "mcp_coordinator_gateway_requests_refused_total",
                "Gateway requests refused before any MCP was asked, by reason.",
                &["reason"],
            )?,
            policy_refusals: series.counters(
                "mcp_coordinator_gateway_policy_refusals_total",
                "Calls refused by a registration's spec.gatewayPolicy, by registration and what refused them (rule:<name> or rate_limit:<name>).",
                &["registration", "refused_by"],
            )?,
        })
    }
}
