//! Each condition of a registration's status, judged by its own pure function from what the
//! controller observed. [`Judged::into_condition`] turns a judgement into a Kubernetes
//! `Condition`, keeping its `lastTransitionTime` while its status stays the same (so a steady
//! registration's status does not change, and its write does not trigger another reconcile).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::{Compatibility, Observation};
use crate::controller::health::{HealthTracker, Learned, Verdict};
use crate::controller::probe::learn::breaking_changes;
use crate::crd::{MCPRegistrationStatus, Phase, SECRET_KEY};

/// Whether the functional probe's last answer was not the expected one.
pub fn call_failed(obs: &Observation<'_>) -> bool {
    obs.health
        .and_then(|h| h.learned.as_ref())
        .is_some_and(|l| l.call_failure().is_some())
}

/// One condition as judged: its type, whether it holds, a reason (CamelCase) and a message a
/// user can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Judged {
    fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }

    /// The condition, its `lastTransitionTime` kept from `previous` while its status is the same.
    pub fn into_condition(
        self,
        previous: &[Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Condition {
        let status = if self.status { "True" } else { "False" }.to_string();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == self.type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: self.type_.to_string(),
            status,
            reason: self.reason.to_string(),
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

/// The spec's problems as one line.
fn problems_text(obs: &Observation<'_>) -> String {
    obs.problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Registered`: the spec is valid and the MCP has its ID and key.
pub fn registered(obs: &Observation<'_>) -> Judged {
    match (obs.problems.is_empty(), obs.mcp_id, obs.key_secret) {
        (false, _, _) => Judged::new(
            "Registered",
            false,
            "InvalidSpec",
            format!("fix the spec: {}", problems_text(obs)),
        ),
        (true, Some(id), Some(secret)) => Judged::new(
            "Registered",
            true,
            "IdAssigned",
            format!("MCP ID {id}; API key in Secret {secret} (key {SECRET_KEY})"),
        ),
        (true, _, _) => Judged::new(
            "Registered",
            false,
            "Registering",
            "assigning an MCP ID and API key",
        ),
    }
}

/// `Compatible`: this coordinator's version is in `spec.compatibility.coordinatorVersion`.
pub fn compatible(compatibility: &Compatibility) -> Judged {
    match compatibility {
        Compatibility::NoConstraint => Judged::new(
            "Compatible",
            true,
            "NoConstraint",
            "no coordinatorVersion range given",
        ),
        Compatibility::InRange { required } => Judged::new(
            "Compatible",
            true,
            "VersionInRange",
            format!("coordinator {} satisfies {required}", crate::COORDINATOR_VERSION),
        ),
        Compatibility::OutOfRange { required, actual } => Judged::new(
            "Compatible",
            false,
            "VersionOutOfRange",
            format!("coordinator {actual} does not satisfy spec.compatibility.coordinatorVersion {required:?}; widen the range or run a matching coordinator"),
        ),
    }
}

/// `Healthy`: what the probes say (nothing is probed while the spec is invalid or incompatible).
pub fn healthy(phase: Phase, health: Option<&HealthTracker>) -> Judged {
    let error = health
        .and_then(|h| h.last_error.clone())
        .unwrap_or_default();
    match (phase, health.map(|h| h.verdict)) {
        (Phase::Invalid | Phase::Incompatible, _) => Judged::new(
            "Healthy",
            false,
            "NotProbed",
            "not probed until the registration is valid and compatible",
        ),
        (_, Some(Verdict::Healthy)) if health.is_some_and(|h| h.last_probe.is_none()) => {
            Judged::new(
                "Healthy",
                true,
                "NothingToProbe",
                "healthCheck.type none: no address to probe; judged by what it reports",
            )
        }
        (_, Some(Verdict::Healthy)) => {
            Judged::new("Healthy", true, "ProbeSucceeded", "health probes succeed")
        }
        (_, Some(Verdict::Refused)) => Judged::new("Healthy", false, "ProbeRefused", error),
        (_, Some(Verdict::Unhealthy)) => Judged::new(
            "Healthy",
            false,
            "ProbeFailed",
            format!(
                "{} consecutive probes failed: {error}",
                health.map(|h| h.consecutive_failures).unwrap_or(0)
            ),
        ),
        (_, Some(Verdict::Unknown) | None) => Judged::new(
            "Healthy",
            false,
            "AwaitingProbes",
            "waiting for enough probes to decide",
        ),
    }
}

/// `HeartbeatMissing`, once the MCP has sent a heartbeat (one that never did is judged by its
/// probes alone).
pub fn heartbeats(last_ms: Option<i64>, missing: bool, interval_seconds: u32) -> Option<Judged> {
    let last = last_ms?;
    Some(if missing {
        Judged::new(
            "HeartbeatMissing",
            true,
            "HeartbeatsMissed",
            format!(
                "no heartbeat since {} (more than 3 intervals of {interval_seconds} s); routed at half weight until the next one",
                crate::interaction::format_ms(last),
            ),
        )
    } else {
        Judged::new(
            "HeartbeatMissing",
            false,
            "HeartbeatsArriving",
            "heartbeats arrive on time",
        )
    })
}

/// `VersionMismatch`, once interactions reported a version (see [`version_check`]).
pub fn versions(spec_version: &str, reported: &BTreeMap<String, u64>) -> Option<Judged> {
    let check = version_check(spec_version, reported)?;
    Some(Judged::new(
        "VersionMismatch",
        check.mismatched > 0,
        check.reason,
        check.message,
    ))
}

/// `GatewayEjected`, while the gateway keeps the MCP out of its rotation after consecutive
/// failures (absent otherwise).
pub fn gateway_ejected(ejected: Option<(i64, u32)>, now_ms: i64) -> Option<Judged> {
    let (until_ms, in_a_row) = ejected.filter(|(until, _)| *until > now_ms)?;
    Some(Judged::new(
        "GatewayEjected",
        true,
        "ConsecutiveFailures",
        format!(
            "the gateway sends it no calls until {} after consecutive failures (ejection {in_a_row} in a row; each doubles the cool-down)",
            crate::interaction::format_ms(until_ms)
        ),
    ))
}

/// `FunctionalProbe`, when `healthCheck.call` is declared and an `mcp` probe made the call.
pub fn functional(health: Option<&HealthTracker>) -> Option<Judged> {
    let verdict = health?.learned.as_ref()?.call.as_ref()?;
    Some(match verdict {
        Ok(()) => Judged::new(
            "FunctionalProbe",
            true,
            "AnswerAsExpected",
            "healthCheck.call answers as expected",
        ),
        Err(difference) => Judged::new(
            "FunctionalProbe",
            false,
            "UnexpectedAnswer",
            format!("healthCheck.call: {difference}; routed at half weight"),
        ),
    })
}

/// `ToolSchemaChanged`: whether the server's current version changed a tool's `inputSchema` in
/// a way that breaks callers (see [`crate::controller::probe::learn::breaking_changes`]),
/// compared with the tools status held before. It stays True while the server reports the same
/// version and the spec is unchanged (editing the spec, as when bumping `spec.version`,
/// acknowledges it). Absent until a probe has listed the tools.
pub fn tool_schemas(
    previous: Option<&MCPRegistrationStatus>,
    learned: Option<&Learned>,
    generation: Option<i64>,
) -> Option<Judged> {
    let previous_tools = previous.map(|p| p.tools.as_slice()).unwrap_or_default();
    let changes = match learned {
        Some(l) if !previous_tools.is_empty() => breaking_changes(previous_tools, &l.tools),
        _ => Vec::new(),
    };
    let version = learned
        .and_then(|l| l.server.version.clone())
        .unwrap_or_else(|| "of unknown version".into());
    if !changes.is_empty() {
        return Some(Judged::new(
            "ToolSchemaChanged",
            true,
            "IncompatibleChange",
            format!(
                "server {version} changed tools incompatibly: {}; update the callers, then edit the registration (e.g. spec.version) to acknowledge",
                changes.join("; ")
            ),
        ));
    }
    let same_version = learned.is_none_or(|l| {
        previous
            .and_then(|p| p.server_info.as_ref())
            .map(|s| &s.version)
            == Some(&l.server.version)
    });
    let kept = previous
        .into_iter()
        .flat_map(|p| p.conditions.iter())
        .find(|c| c.type_ == "ToolSchemaChanged" && c.status == "True")
        .filter(|c| same_version && c.observed_generation == generation);
    if let Some(kept) = kept {
        return Some(Judged::new(
            "ToolSchemaChanged",
            true,
            "IncompatibleChange",
            kept.message.clone(),
        ));
    }
    (learned.is_some() || !previous_tools.is_empty()).then(|| {
        Judged::new(
            "ToolSchemaChanged",
            false,
            "Compatible",
            "no tool's inputSchema changed in a way that breaks callers",
        )
    })
}

/// `Ready`: the phase, explained.
pub fn ready(phase: Phase, obs: &Observation<'_>, heartbeat_missing: bool) -> Judged {
    let (reason, message) = match phase {
        Phase::Degraded if heartbeat_missing => (
            "HeartbeatMissing",
            "health probes pass but heartbeats stopped; routed at half weight".into(),
        ),
        Phase::Degraded if call_failed(obs) => (
            "UnexpectedAnswer",
            "reachable, but healthCheck.call answers other than expected; routed at half weight"
                .into(),
        ),
        Phase::Ready => (
            "Ready",
            "registered, compatible and healthy; receiving traffic".into(),
        ),
        Phase::Invalid => (
            "InvalidSpec",
            format!("fix the spec: {}", problems_text(obs)),
        ),
        Phase::Incompatible => (
            "Incompatible",
            "the coordinator version is outside spec.compatibility.coordinatorVersion".into(),
        ),
        Phase::Pending if obs.mcp_id.is_none() => ("Registering", "assigning an MCP ID".into()),
        Phase::Pending => (
            "AwaitingProbes",
            "waiting for the first health probes".into(),
        ),
        Phase::Degraded => (
            "ProbeRefused",
            "reachable but refusing health probes; routed at half weight".into(),
        ),
        Phase::Unavailable => (
            "Unhealthy",
            "health probes fail; no traffic is routed to it".into(),
        ),
    };
    Judged::new("Ready", phase == Phase::Ready, reason, message)
}

/// What the versions an MCP's interactions reported say about `spec.version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionCheck {
    /// Interactions that reported another version.
    pub mismatched: u64,
    pub reason: &'static str,
    pub message: String,
}

/// The most versions a `VersionMismatch` message names.
const MAX_LISTED: usize = 10;

/// Compares the reported versions with `spec.version` (`v1.0.0` and `1.0.0` are one version);
/// `None` when no interaction reported one. Pure.
pub fn version_check(spec_version: &str, reported: &BTreeMap<String, u64>) -> Option<VersionCheck> {
    if reported.is_empty() {
        return None;
    }
    let same = |v: &str| v.trim_start_matches('v') == spec_version.trim_start_matches('v');
    let others: Vec<(&String, &u64)> = reported.iter().filter(|(v, _)| !same(v)).collect();
    let mismatched: u64 = others.iter().map(|(_, n)| **n).sum();
    if others.is_empty() {
        return Some(VersionCheck {
            mismatched: 0,
            reason: "VersionsMatch",
            message: format!("interactions report spec.version {spec_version}"),
        });
    }
    // The most reported first, at most MAX_LISTED: a client choosing its versions cannot grow
    // the condition (and with it the registration's status) without bound.
    let mut ranked = others.clone();
    ranked.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let mut listed: Vec<String> = ranked
        .iter()
        .take(MAX_LISTED)
        .map(|(v, n)| format!("{} ({n})", v.chars().take(64).collect::<String>()))
        .collect();
    if ranked.len() > MAX_LISTED {
        let rest = &ranked[MAX_LISTED..];
        let count: u64 = rest.iter().map(|(_, n)| **n).sum();
        listed.push(format!("{} more versions ({count})", rest.len()));
    }
    Some(VersionCheck {
        mismatched,
        reason: "ReportedVersionDiffers",
        message: format!(
            "{mismatched} interactions in the routing window reported mcp_version {}, not spec.version {spec_version}: update spec.version, or the MCP",
            listed.join(", ")
        ),
    })
}

/// Whether the reported versions differ from `spec.version` (see [`version_check`]). Pure.
pub fn version_mismatch(spec_version: &str, reported: &BTreeMap<String, u64>) -> bool {
    version_check(spec_version, reported).is_some_and(|c| c.mismatched > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::validate::FieldProblem;

    #[test]
    fn thousands_of_reported_versions_make_a_short_message() {
        // Issue 34, attack 6: 3,000 distinct versions once made a 644 KB condition message.
        let reported: BTreeMap<String, u64> = (0..3000)
            .map(|i| (format!("9.{i}.0-{}", "x".repeat(200)), 1 + (i % 7) as u64))
            .collect();
        let check = version_check("1.0.0", &reported).expect("a check");
        assert!(check.message.len() < 2_000, "{} bytes", check.message.len());
        assert!(
            check.message.contains("2990 more versions"),
            "{}",
            check.message
        );
        assert_eq!(check.mismatched, reported.values().sum::<u64>());
    }

    #[test]
    fn an_ejection_is_a_condition_only_while_it_lasts() {
        assert!(gateway_ejected(None, 1_000).is_none());
        assert!(gateway_ejected(Some((900, 1)), 1_000).is_none(), "over");
        let j = gateway_ejected(Some((61_000, 2)), 1_000).expect("ejected");
        let c = j.into_condition(
            &[],
            Some(1),
            jiff::Timestamp::from_millisecond(1_000).unwrap(),
        );
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("GatewayEjected", "True", "ConsecutiveFailures")
        );
        assert!(
            c.message.contains("1970-01-01T00:01:01") && c.message.contains("ejection 2 in a row"),
            "{}",
            c.message
        );
    }

    fn observation<'a>(
        problems: &'a [FieldProblem],
        mcp_id: Option<&'a str>,
        key_secret: Option<&'a str>,
    ) -> Observation<'a> {
        Observation {
            generation: Some(3),
            mcp_id,
            key_secret,
            problems,
            compatibility: Compatibility::NoConstraint,
            health: None,
            observed: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let first = Judged::new("Healthy", true, "ProbeSucceeded", "ok").into_condition(
            &[],
            Some(1),
            at(100),
        );
        assert_eq!(first.last_transition_time, Time(at(100)));
        assert_eq!(first.observed_generation, Some(1));
        let same = Judged::new("Healthy", true, "ProbeSucceeded", "still ok").into_condition(
            std::slice::from_ref(&first),
            Some(2),
            at(200),
        );
        assert_eq!(
            same.last_transition_time,
            Time(at(100)),
            "same status, same time"
        );
        assert_eq!(same.message, "still ok");
        let flipped = Judged::new("Healthy", false, "ProbeFailed", "down").into_condition(
            std::slice::from_ref(&same),
            Some(2),
            at(300),
        );
        assert_eq!(flipped.last_transition_time, Time(at(300)));
        assert_eq!(flipped.status, "False");
    }

    #[test]
    fn registered_names_the_problems_or_the_secret_holding_the_key() {
        let problems = [FieldProblem {
            field: "spec.version",
            message: "\"x\" is not a semantic version".into(),
        }];
        let invalid = registered(&observation(&problems, None, None));
        assert_eq!((invalid.status, invalid.reason), (false, "InvalidSpec"));
        assert!(
            invalid.message.contains("spec.version"),
            "{}",
            invalid.message
        );
        let done = registered(&observation(
            &[],
            Some("ocr_workflow_001"),
            Some("ocr-mcp-key"),
        ));
        assert_eq!((done.status, done.reason), (true, "IdAssigned"));
        assert!(
            done.message.contains("ocr_workflow_001")
                && done.message.contains("Secret ocr-mcp-key")
        );
        let pending = registered(&observation(&[], Some("ocr_workflow_001"), None));
        assert_eq!((pending.status, pending.reason), (false, "Registering"));
    }

    #[test]
    fn an_incompatible_coordinator_says_which_range_to_widen() {
        let judged = compatible(&Compatibility::OutOfRange {
            required: ">=9".into(),
            actual: "0.1.0".into(),
        });
        assert!(!judged.status);
        assert!(judged.message.contains("\">=9\"") && judged.message.contains("0.1.0"));
        assert!(compatible(&Compatibility::NoConstraint).status);
    }

    #[test]
    fn heartbeats_are_judged_only_once_an_mcp_sent_one() {
        assert_eq!(heartbeats(None, false, 30), None);
        let late = heartbeats(Some(0), true, 30).unwrap();
        assert_eq!((late.status, late.reason), (true, "HeartbeatsMissed"));
        assert!(
            late.message.contains("1970-01-01T00:00:00"),
            "{}",
            late.message
        );
        assert!(!heartbeats(Some(0), false, 30).unwrap().status);
    }

    #[test]
    fn versions_are_judged_only_once_reported() {
        assert_eq!(versions("1.0.0", &BTreeMap::new()), None);
        let same = versions("1.0.0", &BTreeMap::from([("v1.0.0".to_string(), 4)])).unwrap();
        assert!(!same.status);
        let other = versions("1.0.0", &BTreeMap::from([("2.0.0".to_string(), 4)])).unwrap();
        assert_eq!(
            (other.status, other.reason),
            (true, "ReportedVersionDiffers")
        );
    }

    #[test]
    fn ready_explains_every_phase() {
        let registered = observation(&[], Some("id"), Some("s"));
        let unregistered = observation(&[], None, None);
        let cases = [
            (Phase::Ready, &registered, false, true, "Ready"),
            (
                Phase::Degraded,
                &registered,
                true,
                false,
                "HeartbeatMissing",
            ),
            (Phase::Degraded, &registered, false, false, "ProbeRefused"),
            (Phase::Pending, &unregistered, false, false, "Registering"),
            (Phase::Pending, &registered, false, false, "AwaitingProbes"),
            (Phase::Unavailable, &registered, false, false, "Unhealthy"),
            (
                Phase::Incompatible,
                &registered,
                false,
                false,
                "Incompatible",
            ),
            (Phase::Invalid, &registered, false, false, "InvalidSpec"),
        ];
        for (phase, obs, missing, status, reason) in cases {
            let judged = ready(phase, obs, missing);
            assert_eq!(
                (judged.status, judged.reason),
                (status, reason),
                "{phase:?}"
            );
            assert!(!judged.message.is_empty());
        }
    }

    #[test]
    fn nothing_is_probed_while_the_spec_is_invalid_or_incompatible() {
        for phase in [Phase::Invalid, Phase::Incompatible] {
            assert_eq!(healthy(phase, None).reason, "NotProbed");
        }
        assert_eq!(healthy(Phase::Pending, None).reason, "AwaitingProbes");
    }
}
