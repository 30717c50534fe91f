//! The routing part of status: the effective weight from health and logged performance.

use crate::crd::{MCPRegistrationSpec, Phase, RoutingStatus};
use crate::routing::weights::{self, Observed};

/// Routing from health and logged performance (see `routing::weights`): nothing unless Ready or
/// Degraded (half weight). A weight kept by hysteresis keeps its previous reason too, so status
/// is not rewritten for noise.
pub fn routing_status(
    spec: &MCPRegistrationSpec,
    phase: Phase,
    observed: Option<&Observed>,
    previous: Option<&RoutingStatus>,
    heartbeat_missing: bool,
) -> RoutingStatus {
    let weight = spec.routing.weight;
    let health_factor = match phase {
        Phase::Ready => 1.0,
        Phase::Degraded => 0.5,
        _ => 0.0,
    };
    let addressless = spec.endpoint.service.is_none() && spec.endpoint.url.is_none();
    let (effective_weight, reason) = if health_factor == 0.0 {
        (0, format!("{}: not routable", phase.as_str()))
    } else if addressless {
        (
            0,
            "no endpoint (healthCheck.type none): reports only, not routable".to_string(),
        )
    } else {
        let observed = observed.cloned().unwrap_or_default();
        let decision = weights::decide_one(
            &weights::McpPerformance {
                mcp_id: String::new(),
                capabilities: Vec::new(),
                base_weight: weight,
                health_factor,
                success_rate: observed.success_rate,
                finished: observed.finished,
                p95_processing_time: observed.p95_processing_time,
                previous: previous.map(|p| p.effective_weight),
            },
            observed.peer_p95,
        );
        let reason = match previous {
            Some(p)
                if p.effective_weight == decision.effective_weight
                    && p.weight == weight
                    && !p.reason.contains("not routable") =>
            {
                p.reason.clone()
            }
            _ if phase == Phase::Degraded && heartbeat_missing => {
                format!("degraded (heartbeats missing); {}", decision.reason)
            }
            _ if phase == Phase::Degraded => {
                format!("degraded (probe refused); {}", decision.reason)
            }
            _ => decision.reason,
        };
        (decision.effective_weight, reason)
    };
    RoutingStatus {
        priority: spec.routing.priority,
        weight,
        effective_weight,
        max_concurrent_requests: spec.routing.max_concurrent_requests,
        reason,
        last_updated: None,
    }
}

pub(super) fn same_routing(a: &RoutingStatus, b: &RoutingStatus) -> bool {
    (
        a.priority,
        a.weight,
        a.effective_weight,
        a.max_concurrent_requests,
        &a.reason,
    ) == (
        b.priority,
        b.weight,
        b.effective_weight,
        b.max_concurrent_requests,
        &b.reason,
    )
}
