//! One registration step, the same in both modes: spec checks → ID → key → compatibility → probe
//! → observation → status → metrics. What differs — where IDs and keys are kept, where probe
//! headers come from, where status is written — comes through [`Ports`]: the controller answers
//! from Kubernetes (`reconcile`), standalone mode from its data directory.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;

use super::ids::id_prefix;
use super::metrics::Metrics;
use super::probe::{ProbePolicy, ProbeTarget};
use super::prober::Prober;
use super::status::{self, Compatibility, Observation, ReportingSettings};
use crate::crd::validate::validate_spec;
use crate::crd::{MCPRegistration, MCPRegistrationStatus};
use crate::routing::weights::Observed;

/// What a mode provides to the registration step.
pub trait Ports {
    type Error;

    /// The registration's MCP ID, built on `prefix`: stable, never reused.
    fn mcp_id(
        &mut self,
        reg: &MCPRegistration,
        prefix: &str,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// Makes sure the MCP has a working API key; answers the name of the Secret it is in.
    fn ensure_key(
        &mut self,
        reg: &MCPRegistration,
        mcp_id: &str,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;

    /// Where and how to probe, with the probe headers this mode can find.
    fn probe_target(
        &mut self,
        reg: &MCPRegistration,
        namespace: &str,
    ) -> impl Future<Output = Result<ProbeTarget, Self::Error>> + Send;

    /// The MCP's logged performance, once some was read.
    fn observed(&self, mcp_id: &str) -> Option<Observed>;

    /// Records a status that changed meaningfully since `previous`.
    fn write_status(
        &mut self,
        reg: &MCPRegistration,
        previous: Option<&MCPRegistrationStatus>,
        desired: &MCPRegistrationStatus,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What every step shares.
pub struct Step<'a> {
    pub prober: &'a Prober,
    pub reporting: &'a ReportingSettings,
    pub metrics: &'a Metrics,
    /// Where probes may not go (a target there is refused in status).
    pub probes: &'a ProbePolicy,
}

/// What one step decided.
#[derive(Debug)]
pub struct Registered {
    pub status: MCPRegistrationStatus,
    /// The status was written (it changed meaningfully).
    pub written: bool,
    /// The spec is invalid: nothing changes until it is edited.
    pub invalid: bool,
    /// Look again this soon (the probe headers could not be loaded yet).
    pub recheck_after: Option<Duration>,
}

/// Brings one registration's status, metrics and probe in line with its spec.
pub async fn register<P: Ports>(
    reg: &MCPRegistration,
    step: &Step<'_>,
    ports: &mut P,
) -> Result<Registered, P::Error> {
    let key = ObjectRef::from(reg);
    let namespace = reg.namespace().unwrap_or_default();
    let previous = reg.status.as_ref();
    let generation = reg.metadata.generation;
    let problems = validate_spec(&reg.spec);
    if !problems.is_empty() {
        step.prober.remove(&key);
        let obs = Observation {
            generation,
            mcp_id: previous.and_then(|s| s.mcp_id.as_deref()),
            key_secret: None,
            problems: &problems,
            compatibility: Compatibility::NoConstraint,
            health: None,
            observed: None,
        };
        let mut done = settle(reg, &key, &obs, step, ports).await?;
        done.invalid = true;
        return Ok(done);
    }

    let prefix = id_prefix(&reg.name_any(), &reg.spec.mcp_type);
    let mcp_id = ports.mcp_id(reg, &prefix).await?;
    let secret = ports.ensure_key(reg, &mcp_id).await?;

    let compatibility = status::check_compatibility(&reg.spec, crate::COORDINATOR_VERSION);
    let mut recheck_after = None;
    let health = if matches!(compatibility, Compatibility::OutOfRange { .. }) {
        step.prober.remove(&key);
        None
    } else {
        let mut target = ports.probe_target(reg, &namespace).await?;
        if target.setup_error.is_none() {
            target.setup_error = step.probes.refusal(&target.url);
        }
        if target.setup_error.is_some() {
            recheck_after = Some(target.interval);
        }
        step.prober
            .ensure(key.clone(), target, reg.spec.health_check.clone());
        step.prober.snapshot(&key)
    };

    let observed = ports.observed(&mcp_id);
    let obs = Observation {
        generation,
        mcp_id: Some(&mcp_id),
        key_secret: Some(&secret),
        problems: &[],
        compatibility,
        health: health.as_ref(),
        observed: observed.as_ref(),
    };
    let mut done = settle(reg, &key, &obs, step, ports).await?;
    done.recheck_after = recheck_after;
    Ok(done)
}

/// Turns an observation into status and metrics; writes the status when it changed.
async fn settle<P: Ports>(
    reg: &MCPRegistration,
    key: &ObjectRef<MCPRegistration>,
    obs: &Observation<'_>,
    step: &Step<'_>,
    ports: &mut P,
) -> Result<Registered, P::Error> {
    let previous = reg.status.as_ref();
    let desired =
        status::desired_status(&reg.spec, previous, obs, step.reporting, Timestamp::now());
    // Metrics first: anyone who sees the new status must also see it in /metrics.
    step.metrics
        .record_registration(key.clone(), obs.mcp_id, &desired);
    let written = status::meaningful_change(previous, &desired);
    if written {
        ports.write_status(reg, previous, &desired).await?;
    }
    Ok(Registered {
        status: desired,
        written,
        invalid: false,
        recheck_after: None,
    })
}
