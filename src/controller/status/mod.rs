//! The status a registration should have, computed from what the controller observed. Pure: no I/O,
//! no clock (the caller passes `now`), so every decision here is unit-tested.

pub mod conditions;
mod routing;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::health::{HealthTracker, Verdict};
use crate::crd::validate::FieldProblem;
use crate::crd::SECRET_KEY;
use crate::crd::{
    CoordinatorConfig, Discovered, MCPRegistrationSpec, MCPRegistrationStatus, Phase, SecretKeyRef,
};
use crate::routing::weights::Observed;
pub use conditions::{version_check, version_mismatch, VersionCheck};
pub use routing::routing_status;
use routing::same_routing;

/// Where MCPs report and how often; the same for every registration of this controller.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportingSettings {
    pub interaction_log_endpoint: String,
    pub heartbeat_interval_seconds: u32,
    pub data_report_interval_seconds: u32,
}

/// The coordinator version against the registration's `compatibility.coordinatorVersion`.
#[derive(Debug, Clone, PartialEq)]
pub enum Compatibility {
    NoConstraint,
    InRange { required: String },
    OutOfRange { required: String, actual: String },
}

pub fn check_compatibility(spec: &MCPRegistrationSpec, actual: &str) -> Compatibility {
    let Some(required) = spec
        .compatibility
        .as_ref()
        .map(|c| c.coordinator_version.clone())
    else {
        return Compatibility::NoConstraint;
    };
    // An unparsable range never gets here: validation turns it into phase Invalid first.
    let fits = match (
        semver::VersionReq::parse(&required),
        semver::Version::parse(actual),
    ) {
        (Ok(req), Ok(version)) => req.matches(&version),
        _ => false,
    };
    if fits {
        Compatibility::InRange { required }
    } else {
        Compatibility::OutOfRange {
            required,
            actual: actual.to_string(),
        }
    }
}

/// What the controller found out about one registration in this reconcile.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub generation: Option<i64>,
    pub mcp_id: Option<&'a str>,
    pub key_secret: Option<&'a str>,
    pub problems: &'a [FieldProblem],
    pub compatibility: Compatibility,
    pub health: Option<&'a HealthTracker>,
    /// Logged performance, once the controller fetched some.
    pub observed: Option<&'a Observed>,
}

pub fn phase_of(obs: &Observation<'_>) -> Phase {
    if !obs.problems.is_empty() {
        return Phase::Invalid;
    }
    if matches!(obs.compatibility, Compatibility::OutOfRange { .. }) {
        return Phase::Incompatible;
    }
    if obs.mcp_id.is_none() {
        return Phase::Pending;
    }
    match obs.health.map(|h| h.verdict) {
        None | Some(Verdict::Unknown) => Phase::Pending,
        Some(Verdict::Healthy) if conditions::call_failed(obs) => Phase::Degraded,
        Some(Verdict::Healthy) => Phase::Ready,
        Some(Verdict::Refused) => Phase::Degraded,
        Some(Verdict::Unhealthy) => Phase::Unavailable,
    }
}

/// The whole status a registration should have. Each condition is its own pure function
/// ([`conditions`]); this composes them, the phase and the routing, keeping each condition's
/// `lastTransitionTime` while its status stays the same.
pub fn desired_status(
    spec: &MCPRegistrationSpec,
    previous: Option<&MCPRegistrationStatus>,
    obs: &Observation<'_>,
    reporting: &ReportingSettings,
    now: Timestamp,
) -> MCPRegistrationStatus {
    let last_heartbeat_ms = obs.observed.and_then(|o| o.last_heartbeat_ms);
    // An MCP with nothing to probe lives per session (a stdio server): heartbeats that stop say
    // nothing about it.
    let unprobed = spec.health_check.probe_type == crate::crd::ProbeType::None;
    let missing = !unprobed
        && heartbeat_missing(
            last_heartbeat_ms,
            now.as_millisecond(),
            reporting.heartbeat_interval_seconds,
        );
    let phase = with_heartbeats(phase_of(obs), missing);
    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let learned = obs.health.and_then(|h| h.learned.as_ref());
    let judged = [
        Some(conditions::registered(obs)),
        Some(conditions::compatible(&obs.compatibility)),
        Some(conditions::healthy(phase, obs.health)),
        conditions::heartbeats(
            last_heartbeat_ms.filter(|_| !unprobed),
            missing,
            reporting.heartbeat_interval_seconds,
        ),
        obs.observed
            .and_then(|o| conditions::versions(&spec.version, &o.reported_versions)),
        conditions::gateway_ejected(
            obs.observed.and_then(|o| o.gateway_ejected),
            now.as_millisecond(),
        ),
        conditions::functional(obs.health),
        conditions::tool_schemas(previous, learned, obs.generation),
        Some(conditions::ready(phase, obs, missing)),
    ];
    let conditions = judged
        .into_iter()
        .flatten()
        .map(|j| j.into_condition(previous_conditions, obs.generation, now))
        .collect();

    let probing = matches!(
        phase,
        Phase::Pending | Phase::Ready | Phase::Degraded | Phase::Unavailable
    );
    let health = if probing {
        obs.health.map(HealthTracker::to_status)
    } else {
        None
    };
    let server_info = learned
        .map(|l| l.server.clone())
        .or_else(|| previous.and_then(|p| p.server_info.clone()));
    let tools = learned
        .map(|l| l.tools.clone())
        .or_else(|| previous.map(|p| p.tools.clone()))
        .unwrap_or_default();
    let discovered = server_info.as_ref().map(|s| Discovered {
        server_name: s.name.clone(),
        server_version: s.version.clone(),
        protocol_version: Some(s.protocol_version.clone()),
        tools: tools.iter().map(|t| t.name.clone()).collect(),
    });

    let previous_routing = previous.and_then(|p| p.routing.as_ref());
    let mut routing = routing_status(spec, phase, obs.observed, previous_routing, missing);
    routing.last_updated = match previous_routing {
        Some(p) if same_routing(p, &routing) => p.last_updated.clone(),
        _ => Some(Time(now)),
    };

    MCPRegistrationStatus {
        mcp_id: obs
            .mcp_id
            .map(str::to_string)
            .or_else(|| previous.and_then(|p| p.mcp_id.clone())),
        phase,
        observed_generation: obs.generation,
        conditions,
        health,
        coordinator_config: obs.key_secret.map(|secret| CoordinatorConfig {
            interaction_log_endpoint: envelope_url(&reporting.interaction_log_endpoint),
            api_url: Some(api_url(&reporting.interaction_log_endpoint)),
            heartbeat_interval_seconds: reporting.heartbeat_interval_seconds,
            data_report_interval_seconds: reporting.data_report_interval_seconds,
            api_key_secret_ref: SecretKeyRef {
                name: secret.to_string(),
                key: SECRET_KEY.to_string(),
            },
        }),
        routing: Some(routing),
        server_info,
        tools,
        discovered,
        last_heartbeat: last_heartbeat_ms
            .and_then(|ms| Timestamp::from_millisecond(ms).ok())
            .map(Time)
            .or_else(|| previous.and_then(|p| p.last_heartbeat.clone())),
    }
}

/// The path of the ingest API that takes the seed's report envelope.
pub const ENVELOPE_PATH: &str = "/api/interactions";

/// The ingest API's base URL from the configured endpoint (a base URL, or one that already ends
/// in the envelope's path).
pub fn api_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    base.strip_suffix(ENVELOPE_PATH).unwrap_or(base).to_string()
}

/// The full URL of the seed's envelope, as `interaction_log_endpoint` says it.
pub fn envelope_url(endpoint: &str) -> String {
    format!("{}{ENVELOPE_PATH}", api_url(endpoint))
}

/// Whether an MCP that has sent heartbeats has missed more than three intervals of them. One
/// that never sent any is judged by its probes alone. Pure.
pub fn heartbeat_missing(last_ms: Option<i64>, now_ms: i64, interval_seconds: u32) -> bool {
    last_ms.is_some_and(|last| now_ms - last > 3 * 1000 * i64::from(interval_seconds.max(1)))
}

/// The phase once heartbeats are counted: a Ready MCP whose heartbeats stopped is Degraded
/// (half weight) even while its probes pass. Pure.
pub fn with_heartbeats(phase: Phase, missing: bool) -> Phase {
    if missing && phase == Phase::Ready {
        Phase::Degraded
    } else {
        phase
    }
}

/// Whether `new` differs from `old` in anything but probe timestamps and counters: only then is a
/// status write worth its watch event.
pub fn meaningful_change(old: Option<&MCPRegistrationStatus>, new: &MCPRegistrationStatus) -> bool {
    let Some(old) = old else {
        return true;
    };
    strip_volatile(old.clone()) != strip_volatile(new.clone())
}

fn strip_volatile(mut status: MCPRegistrationStatus) -> MCPRegistrationStatus {
    if let Some(h) = status.health.as_mut() {
        h.last_probe_time = None;
        h.last_latency_ms = None;
        h.consecutive_failures = 0;
        h.consecutive_successes = 0;
    }
    if let Some(r) = status.routing.as_mut() {
        r.last_updated = None;
    }
    // Moves with every heartbeat: written along with other changes, never on its own.
    status.last_heartbeat = None;
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::health::ProbeOutcome;
    use crate::crd::HealthCheck;
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn spec() -> MCPRegistrationSpec {
        serde_saphyr::from_str(
            "version: 1.0.0\ntype: workflow\ncapabilities: [ocr]\nendpoint: {url: 'http://x'}\nrouting: {weight: 300}\n",
        )
        .unwrap()
    }

    fn reporting() -> ReportingSettings {
        ReportingSettings {
            interaction_log_endpoint: "http://ingest:8081".into(),
            heartbeat_interval_seconds: 30,
            data_report_interval_seconds: 60,
        }
    }

    fn tracker(outcomes: &[bool]) -> HealthTracker {
        let mut t = HealthTracker::default();
        let check = HealthCheck {
            failure_threshold: 2,
            ..Default::default()
        };
        for up in outcomes {
            let o = if *up {
                ProbeOutcome::Up {
                    latency: Duration::from_millis(5),
                    learned: None,
                }
            } else {
                ProbeOutcome::Down {
                    latency: Duration::from_millis(5),
                    error: "connection refused".into(),
                }
            };
            t.record(o, Timestamp::now(), &check);
        }
        t
    }

    fn observe<'a>(
        health: Option<&'a HealthTracker>,
        problems: &'a [FieldProblem],
    ) -> Observation<'a> {
        Observation {
            generation: Some(2),
            mcp_id: Some("ocr_workflow_mcp_001"),
            key_secret: Some("ocr-mcp-key"),
            problems,
            compatibility: Compatibility::NoConstraint,
            health,
            observed: None,
        }
    }

    /// The status of a registration seen for the first time.
    fn first_status(obs: &Observation<'_>) -> MCPRegistrationStatus {
        desired_status(&spec(), None, obs, &reporting(), Timestamp::now())
    }

    /// The status that follows `previous` once health is `health`.
    fn status_after(
        previous: &MCPRegistrationStatus,
        health: &HealthTracker,
        now: Timestamp,
    ) -> MCPRegistrationStatus {
        desired_status(
            &spec(),
            Some(previous),
            &observe(Some(health), &[]),
            &reporting(),
            now,
        )
    }

    fn condition_of<'a>(s: &'a MCPRegistrationStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn healthy_registration_is_ready_at_full_weight() {
        let h = tracker(&[true]);
        let s = first_status(&observe(Some(&h), &[]));
        assert_eq!(s.phase, Phase::Ready);
        assert_eq!(s.routing.as_ref().unwrap().effective_weight, 300);
        assert_eq!(condition_of(&s, "Ready").status, "True");
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(
            s.coordinator_config.unwrap().api_key_secret_ref.name,
            "ocr-mcp-key"
        );
    }

    #[test]
    fn unhealthy_registration_gets_no_traffic_and_says_why() {
        let h = tracker(&[true, false, false]);
        let s = first_status(&observe(Some(&h), &[]));
        assert_eq!(s.phase, Phase::Unavailable);
        assert_eq!(s.routing.as_ref().unwrap().effective_weight, 0);
        assert!(condition_of(&s, "Healthy")
            .message
            .contains("connection refused"));
    }

    #[test]
    fn invalid_spec_names_the_field_to_fix() {
        let problems = [FieldProblem {
            field: "spec.endpoint.url",
            message: "must be absolute".into(),
        }];
        let s = first_status(&observe(None, &problems));
        assert_eq!(s.phase, Phase::Invalid);
        assert!(condition_of(&s, "Ready")
            .message
            .contains("spec.endpoint.url: must be absolute"));
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let t0 = Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = Timestamp::from_second(1_700_000_100).unwrap();
        let up = tracker(&[true]);
        let first = desired_status(&spec(), None, &observe(Some(&up), &[]), &reporting(), t0);
        let again = status_after(&first, &up, t1);
        assert_eq!(condition_of(&again, "Ready").last_transition_time, Time(t0));
        assert!(!meaningful_change(Some(&first), &again));
        let down = tracker(&[true, false, false]);
        let flipped = status_after(&again, &down, t1);
        assert_eq!(
            condition_of(&flipped, "Ready").last_transition_time,
            Time(t1)
        );
        assert_eq!(
            condition_of(&flipped, "Registered").last_transition_time,
            Time(t0)
        );
        assert!(meaningful_change(Some(&again), &flipped));
    }

    #[test]
    fn probe_counters_alone_do_not_rewrite_status() {
        let a = tracker(&[true]);
        let b = tracker(&[true, true, true]);
        let now = Timestamp::now();
        let first = desired_status(&spec(), None, &observe(Some(&a), &[]), &reporting(), now);
        let later = status_after(&first, &b, now);
        assert!(!meaningful_change(Some(&first), &later));
    }

    #[test]
    fn out_of_range_coordinator_is_incompatible() {
        let mut s = spec();
        s.compatibility = Some(crate::crd::Compatibility {
            coordinator_version: ">=9.0".into(),
        });
        let compat = check_compatibility(&s, "0.1.0");
        assert!(matches!(compat, Compatibility::OutOfRange { .. }));
        let mut obs = observe(None, &[]);
        obs.compatibility = compat;
        let status = desired_status(&s, None, &obs, &reporting(), Timestamp::now());
        assert_eq!(status.phase, Phase::Incompatible);
        assert_eq!(
            condition_of(&status, "Compatible").reason,
            "VersionOutOfRange"
        );
        assert_eq!(
            check_compatibility(&spec(), "0.1.0"),
            Compatibility::NoConstraint
        );
    }

    #[test]
    fn reported_versions_other_than_the_specs_are_counted_in_a_condition() {
        let versions = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
            pairs.iter().map(|(v, n)| (v.to_string(), *n)).collect()
        };
        assert_eq!(
            version_check("1.0.0", &versions(&[])),
            None,
            "nothing reported, nothing said"
        );
        let same = version_check("1.0.0", &versions(&[("v1.0.0", 5)])).unwrap();
        assert_eq!((same.mismatched, same.reason), (0, "VersionsMatch"));
        let differ = version_check(
            "1.0.0",
            &versions(&[("1.0.0", 5), ("1.1.0", 3), ("2.0.0", 1)]),
        )
        .unwrap();
        assert_eq!(differ.mismatched, 4);
        assert!(
            differ.message.contains("1.1.0 (3), 2.0.0 (1)"),
            "{}",
            differ.message
        );

        let health = tracker(&[true, true, true]);
        let observed = Observed {
            reported_versions: versions(&[("1.1.0", 3)]),
            ..Default::default()
        };
        let obs = Observation {
            observed: Some(&observed),
            ..observe(Some(&health), &[])
        };
        let status = desired_status(&spec(), None, &obs, &reporting(), Timestamp::now());
        let c = condition_of(&status, "VersionMismatch");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "ReportedVersionDiffers")
        );
        assert_eq!(
            status.phase,
            Phase::Ready,
            "a condition to act on, not a reason to stop routing"
        );
    }

    #[test]
    fn an_mcp_whose_heartbeats_stop_is_degraded_at_half_weight_and_recovers_on_the_next() {
        let health = tracker(&[true, true, true]);
        let now = Timestamp::now();
        let now_ms = now.as_millisecond();
        let status_with = |last: Option<i64>, previous: Option<&MCPRegistrationStatus>| {
            let observed = Observed {
                last_heartbeat_ms: last,
                ..Default::default()
            };
            let obs = Observation {
                observed: Some(&observed),
                ..observe(Some(&health), &[])
            };
            desired_status(&spec(), previous, &obs, &reporting(), now)
        };

        // Never heartbeated: probes alone decide, and no heartbeat condition appears.
        let never = status_with(None, None);
        assert_eq!(never.phase, Phase::Ready);
        assert!(never
            .conditions
            .iter()
            .all(|c| c.type_ != "HeartbeatMissing"));
        let full = never.routing.as_ref().unwrap().effective_weight;

        // Heartbeats on time (the last 80 s ago, interval 30 s: within 3 intervals).
        let on_time = status_with(Some(now_ms - 80_000), Some(&never));
        assert_eq!(on_time.phase, Phase::Ready);
        assert_eq!(condition_of(&on_time, "HeartbeatMissing").status, "False");
        assert!(on_time.last_heartbeat.is_some());

        // Missed three intervals while probes pass: Degraded, half weight, and why.
        let missed = status_with(Some(now_ms - 100_000), Some(&on_time));
        assert_eq!(missed.phase, Phase::Degraded);
        assert_eq!(condition_of(&missed, "HeartbeatMissing").status, "True");
        assert_eq!(condition_of(&missed, "Ready").reason, "HeartbeatMissing");
        assert_eq!(condition_of(&missed, "Healthy").status, "True");
        let routing = missed.routing.as_ref().unwrap();
        assert_eq!(routing.effective_weight, full / 2, "{routing:?}");
        assert!(
            routing.reason.contains("heartbeats missing"),
            "{}",
            routing.reason
        );
        assert!(meaningful_change(Some(&on_time), &missed));

        // The next heartbeat brings it back.
        let back = status_with(Some(now_ms - 1_000), Some(&missed));
        assert_eq!(back.phase, Phase::Ready);
        assert_eq!(condition_of(&back, "HeartbeatMissing").status, "False");
        assert_eq!(back.routing.as_ref().unwrap().effective_weight, full);

        // A newer heartbeat alone does not rewrite the status.
        let later = status_with(Some(now_ms - 500), Some(&back));
        assert!(!meaningful_change(Some(&back), &later));
    }

    #[test]
    fn an_mcp_without_an_address_is_ready_unprobed_never_missing_heartbeats_and_not_routed() {
        let spec: MCPRegistrationSpec = serde_saphyr::from_str(
            "version: 1.0.0\ntype: tool\ncapabilities: [ocr]\nhealthCheck: {type: none}\n",
        )
        .unwrap();
        assert!(crate::crd::validate::validate_spec(&spec).is_empty());
        let health = HealthTracker::unprobed();
        // Its last session's heartbeats stopped long ago.
        let observed = Observed {
            last_heartbeat_ms: Some(Timestamp::now().as_millisecond() - 3_600_000),
            ..Default::default()
        };
        let obs = Observation {
            observed: Some(&observed),
            ..observe(Some(&health), &[])
        };
        let s = desired_status(&spec, None, &obs, &reporting(), Timestamp::now());
        assert_eq!(s.phase, Phase::Ready);
        assert!(s.conditions.iter().all(|c| c.type_ != "HeartbeatMissing"));
        assert_eq!(condition_of(&s, "Healthy").reason, "NothingToProbe");
        let routing = s.routing.unwrap();
        assert_eq!(routing.effective_weight, 0);
        assert!(
            routing.reason.contains("not routable"),
            "{}",
            routing.reason
        );
        // Without `type: none`, no address is a mistake the spec is told about.
        let http: MCPRegistrationSpec =
            serde_saphyr::from_str("version: 1.0.0\ntype: tool\ncapabilities: [ocr]\n").unwrap();
        let problems = crate::crd::validate::validate_spec(&http);
        assert!(
            problems.iter().any(|p| p.field == "spec.endpoint" && p.message.contains("healthCheck.type: none")),
            "{problems:?}"
        );
    }

    #[test]
    fn heartbeats_count_as_missing_after_three_intervals() {
        assert!(!heartbeat_missing(None, 1_000_000, 30));
        assert!(!heartbeat_missing(Some(910_000), 1_000_000, 30));
        assert!(heartbeat_missing(Some(909_999), 1_000_000, 30));
        assert_eq!(with_heartbeats(Phase::Ready, true), Phase::Degraded);
        assert_eq!(
            with_heartbeats(Phase::Unavailable, true),
            Phase::Unavailable
        );
        assert_eq!(with_heartbeats(Phase::Ready, false), Phase::Ready);
    }
}
