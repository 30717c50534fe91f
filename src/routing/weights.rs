//! Effective routing weights from health and logged performance.
//!
//! For an MCP that is Ready (Degraded MCPs get half, others 0):
//!
//! `effective = base × success² × √clamp(peer_p95 / own_p95, 0.25, 2)`, capped at 1000,
//!
//! where `peer_p95` is the median p95 processing time of the MCPs sharing a capability with it,
//! and `success` is the success rate of its finished interactions smoothed by a prior worth
//! [`PRIOR_INTERACTIONS`] interactions at 95 %: one failure among few does not take an MCP out
//! of routing (1 of 1 failed keeps 75 % of the weight), many do. Failures a report marks as the
//! caller's (`error_code` starting `CALLER_`, such as the gateway's `CALLER_INVALID_PARAMS` for
//! JSON-RPC -32602) are not the MCP's and count neither way.
//! The square punishes failures hard (90 % success keeps 81 % of the weight); the square root
//! keeps latency from dominating (twice as slow as peers keeps 71 %, twice as fast gets 141 %).
//! Without data a factor is 1. Hysteresis: a new value replaces the previous one only when it
//! differs by at least 10 % (and at least 5), so small noise does not rewrite status; a change to
//! or from 0 always goes through.

use std::collections::BTreeMap;

/// What is known about one MCP when weights are computed.
#[derive(Debug, Clone, PartialEq)]
pub struct McpPerformance {
    pub mcp_id: String,
    pub capabilities: Vec<String>,
    /// `spec.routing.weight`.
    pub base_weight: u32,
    /// Health: 1.0 Ready, 0.5 Degraded, 0.0 otherwise.
    pub health_factor: f64,
    /// Of finished interactions in the window; `None` without data.
    pub success_rate: Option<f64>,
    /// How many finished interactions `success_rate` is of.
    pub finished: u64,
    /// Seconds; `None` without data.
    pub p95_processing_time: Option<f64>,
    /// The weight currently in status, for hysteresis.
    pub previous: Option<u32>,
}

/// The weight to publish and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub effective_weight: u32,
    pub reason: String,
}

const MAX_WEIGHT: f64 = 1000.0;

/// How many interactions the prior is worth, and the success rate it assumes.
pub const PRIOR_INTERACTIONS: f64 = 10.0;
pub const PRIOR_SUCCESS: f64 = 0.95;

/// Error codes of the caller's mistakes (invalid arguments, a tool refusing its input) start so.
pub const CALLER_FAULT_PREFIX: &str = "CALLER_";

/// The log's name for a JSON-RPC error code, wherever the code was seen (the gateway's answers,
/// an MCP's spans): invalid parameters are the caller's fault, not the MCP's.
pub fn jsonrpc_error_name(code: i64) -> String {
    match code {
        -32700 => "PARSE_ERROR".into(),
        -32600 => "INVALID_REQUEST".into(),
        -32601 => "METHOD_NOT_FOUND".into(),
        -32602 => format!("{CALLER_FAULT_PREFIX}INVALID_PARAMS"),
        -32603 => "INTERNAL_ERROR".into(),
        other => format!("JSONRPC_{}", other.unsigned_abs()),
    }
}

/// Whether an error code says the caller was at fault, not the MCP.
pub fn is_caller_fault(error_code: &str) -> bool {
    error_code.starts_with(CALLER_FAULT_PREFIX)
}

/// What the log says of one MCP's finished interactions, as routing counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measured {
    /// Finished interactions that count (caller faults left out).
    pub finished: u64,
    /// Of those, the share that succeeded; `None` without any.
    pub success_rate: Option<f64>,
    /// Seconds.
    pub p95_processing_time: Option<f64>,
}

impl Measured {
    /// From a metrics row: `completed` and `failed` interactions, the failures by error code.
    pub fn of<'a>(
        completed: u64,
        failed: u64,
        errors_by_code: impl IntoIterator<Item = (&'a String, &'a u64)>,
        p95_processing_time: Option<f64>,
    ) -> Self {
        let caller: u64 = errors_by_code
            .into_iter()
            .filter(|(code, _)| is_caller_fault(code))
            .map(|(_, n)| *n)
            .sum();
        let failed = failed.saturating_sub(caller);
        let finished = completed + failed;
        Self {
            finished,
            success_rate: (finished > 0).then(|| completed as f64 / finished as f64),
            p95_processing_time,
        }
    }
}

/// The success rate of `finished` interactions, smoothed by the prior.
pub fn smoothed_success(rate: f64, finished: u64) -> f64 {
    let n = finished as f64;
    (rate.clamp(0.0, 1.0) * n + PRIOR_SUCCESS * PRIOR_INTERACTIONS) / (n + PRIOR_INTERACTIONS)
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Weights of every MCP, each compared with the MCPs that share a capability with it.
pub fn decide(mcps: &[McpPerformance]) -> BTreeMap<String, Decision> {
    mcps.iter()
        .map(|m| (m.mcp_id.clone(), decide_one(m, peer_p95(m, mcps))))
        .collect()
}

/// The median p95 of the MCPs (itself included) that share a capability with `m`.
pub fn peer_p95(m: &McpPerformance, mcps: &[McpPerformance]) -> Option<f64> {
    median(
        mcps.iter()
            .filter(|o| o.capabilities.iter().any(|c| m.capabilities.contains(c)))
            .filter_map(|o| o.p95_processing_time)
            .filter(|t| t.is_finite() && *t > 0.0)
            .collect(),
    )
}

/// The weight of one MCP, given the median p95 of its peers (see [`peer_p95`]).
pub fn decide_one(m: &McpPerformance, peer_p95: Option<f64>) -> Decision {
    if m.health_factor <= 0.0 {
        return Decision {
            effective_weight: 0,
            reason: "not routable: not Ready".into(),
        };
    }
    let success = m
        .success_rate
        .map(|s| smoothed_success(s, m.finished))
        .unwrap_or(1.0);
    let latency = match (m.p95_processing_time, peer_p95) {
        (Some(own), Some(peers)) if own > 0.0 && own.is_finite() => {
            (peers / own).clamp(0.25, 2.0).sqrt()
        }
        _ => 1.0,
    };
    let raw =
        (f64::from(m.base_weight) * m.health_factor * success * success * latency).min(MAX_WEIGHT);
    let computed = raw.round() as u32;
    let mut because = Vec::new();
    if m.health_factor < 1.0 {
        because.push(format!("health ×{:.2}", m.health_factor));
    }
    match m.success_rate {
        Some(rate) => because.push(format!(
            "success {:.1}% of {} ×{:.2}",
            rate * 100.0,
            m.finished,
            success * success
        )),
        None => because.push("no finished interactions yet".into()),
    }
    if let (Some(own), Some(peers)) = (m.p95_processing_time, peer_p95) {
        because.push(format!(
            "p95 {own:.3} s vs peers {peers:.3} s ×{latency:.2}"
        ));
    }
    let reason = format!("configured {}; {}", m.base_weight, because.join("; "));
    match m.previous {
        Some(prev) if prev > 0 && computed > 0 && computed.abs_diff(prev) < (prev / 10).max(5) => {
            Decision {
                effective_weight: prev,
                reason: format!("{reason} → {computed}, within 10% of {prev}: kept"),
            }
        }
        _ => Decision {
            effective_weight: computed,
            reason: format!("{reason} → {computed}"),
        },
    }
}

/// What the interaction log says about one MCP, as the controller keeps it between fetches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub success_rate: Option<f64>,
    /// How many finished interactions `success_rate` is of.
    pub finished: u64,
    /// Seconds.
    pub p95_processing_time: Option<f64>,
    /// The median p95 of the MCPs sharing a capability with it (see [`peer_p95`]).
    pub peer_p95: Option<f64>,
    /// The MCP's latest heartbeat as the ingest servers stored it, epoch ms.
    pub last_heartbeat_ms: Option<i64>,
    /// The `metadata.mcp_version`s its interactions in the window reported, with how many
    /// reported each.
    pub reported_versions: std::collections::BTreeMap<String, u64>,
    /// Until when the gateway keeps it out of rotation after consecutive failures (epoch ms),
    /// and how many times in a row it was ejected.
    pub gateway_ejected: Option<(i64, u32)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mcp(id: &str, success: Option<f64>, p95: Option<f64>) -> McpPerformance {
        McpPerformance {
            mcp_id: id.into(),
            capabilities: vec!["ocr".into()],
            base_weight: 100,
            health_factor: 1.0,
            success_rate: success,
            finished: 1_000_000,
            p95_processing_time: p95,
            previous: None,
        }
    }

    #[test]
    fn one_failure_among_few_does_not_take_an_mcp_out_of_routing_but_many_do() {
        let one_of_one = McpPerformance {
            finished: 1,
            ..mcp("new", Some(0.0), None)
        };
        let w = decide(&[one_of_one])["new"].effective_weight;
        assert!((70..=80).contains(&w), "{w}");
        let many = McpPerformance {
            finished: 200,
            ..mcp("broken", Some(0.0), None)
        };
        assert!(decide(&[many])["broken"].effective_weight <= 1);
        let good = McpPerformance {
            finished: 10,
            ..mcp("good", Some(1.0), None)
        };
        assert_eq!(
            decide(&[good])["good"].effective_weight,
            95,
            "(10 + 9.5) / 20, squared"
        );
    }

    #[test]
    fn the_callers_mistakes_are_not_the_mcps() {
        let errors: std::collections::BTreeMap<String, u64> = [
            ("CALLER_INVALID_PARAMS".to_string(), 8),
            ("OCR_TIMEOUT".to_string(), 2),
        ]
        .into();
        let m = Measured::of(90, 10, &errors, None);
        assert_eq!(m.finished, 92);
        assert_eq!(m.success_rate, Some(90.0 / 92.0));
        let only_callers = Measured::of(
            0,
            3,
            &[("CALLER_X".to_string(), 3)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
            None,
        );
        assert_eq!(
            (only_callers.finished, only_callers.success_rate),
            (0, None)
        );
    }

    #[test]
    fn failures_and_slowness_cost_weight_relative_to_peers() {
        let d = decide(&[
            mcp("fast", Some(1.0), Some(1.0)),
            mcp("slow", Some(1.0), Some(4.0)),
            mcp("flaky", Some(0.9), Some(2.0)),
        ]);
        // Peer median p95 = 2 s.
        assert_eq!(
            d["fast"].effective_weight, 141,
            "twice as fast as peers: √2"
        );
        assert_eq!(d["slow"].effective_weight, 71, "twice as slow: √½");
        assert_eq!(d["flaky"].effective_weight, 81, "90% success squared");
    }

    #[test]
    fn no_data_means_the_configured_weight_and_not_ready_means_zero() {
        let mut down = mcp("down", Some(1.0), Some(1.0));
        down.health_factor = 0.0;
        let d = decide(&[mcp("new", None, None), down]);
        assert_eq!(d["new"].effective_weight, 100);
        assert_eq!(d["down"].effective_weight, 0);
    }

    #[test]
    fn small_changes_keep_the_previous_weight() {
        let mut m = mcp("a", Some(0.97), None);
        m.previous = Some(100);
        assert_eq!(
            decide(&[m.clone()])["a"].effective_weight,
            100,
            "94 is within 10% of 100"
        );
        m.success_rate = Some(0.8);
        assert_eq!(decide(&[m])["a"].effective_weight, 64);
    }

    #[test]
    fn peers_are_only_mcps_sharing_a_capability() {
        let mut other = mcp("translator", Some(1.0), Some(100.0));
        other.capabilities = vec!["translate".into()];
        let d = decide(&[mcp("ocr", Some(1.0), Some(1.0)), other]);
        assert_eq!(
            d["ocr"].effective_weight, 100,
            "the slow translator is not its peer"
        );
    }
}
