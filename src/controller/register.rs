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
use crate::telemetry::spans;

/// What a mode provides to the registration step.
pub trait Ports {
    type Error: std::fmt::Display;

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
    let span = spans::Op::start(spans::SpanKind::Internal, || {
        let attributes = vec![
            spans::Attribute::new("k8s.namespace.name", reg.namespace().unwrap_or_default()),
            spans::Attribute::new("mcp_coordinator.registration", reg.name_any()),
        ];
        ("reconcile MCPRegistration".to_string(), attributes)
    });
    let result = span.within(register_one(reg, step, ports)).await;
    match &result {
        Ok(done) => {
            span.set(|| spans::Attribute::new("mcp_coordinator.status_written", done.written));
            span.end(None);
        }
        Err(e) => span.end(Some(("reconcile_error", e.to_string()))),
    }
    result
}

async fn register_one<P: Ports>(
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
    } else if reg.spec.health_check.probe_type == crate::crd::ProbeType::None {
        // Nothing to probe: healthy once registered.
        step.prober.remove(&key);
        Some(crate::controller::health::HealthTracker::unprobed())
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::api::ObjectMeta;

    use super::*;
    use crate::crd::Phase;

    /// The ports as a test sees them: which IDs and keys were asked for, which probe targets, and
    /// each status written. A port can be made to fail.
    #[derive(Default)]
    struct FakePorts {
        ids_asked: Vec<String>,
        keys_asked: Vec<String>,
        targets_asked: usize,
        written: Vec<MCPRegistrationStatus>,
        /// Probe headers that cannot be loaded (`healthCheck.headersFromSecret` missing).
        headers_missing: bool,
        /// The ID ledger is unreachable.
        ledger_down: bool,
    }

    impl Ports for FakePorts {
        type Error = String;

        async fn mcp_id(&mut self, _: &MCPRegistration, prefix: &str) -> Result<String, String> {
            if self.ledger_down {
                return Err("the ledger is unreachable".into());
            }
            self.ids_asked.push(prefix.to_string());
            Ok(format!("{prefix}_001"))
        }

        async fn ensure_key(
            &mut self,
            reg: &MCPRegistration,
            mcp_id: &str,
        ) -> Result<String, String> {
            self.keys_asked.push(mcp_id.to_string());
            Ok(format!("{}-mcp-key", reg.name_any()))
        }

        async fn probe_target(
            &mut self,
            reg: &MCPRegistration,
            namespace: &str,
        ) -> Result<ProbeTarget, String> {
            self.targets_asked += 1;
            let mut target = ProbeTarget::of(&reg.spec, namespace);
            if self.headers_missing {
                target.setup_error = Some("Secret probe-auth not found".into());
            }
            Ok(target)
        }

        fn observed(&self, _: &str) -> Option<Observed> {
            None
        }

        async fn write_status(
            &mut self,
            _: &MCPRegistration,
            _: Option<&MCPRegistrationStatus>,
            desired: &MCPRegistrationStatus,
        ) -> Result<(), String> {
            self.written.push(desired.clone());
            Ok(())
        }
    }

    /// What every step shares, for a test: a real prober (its probes go nowhere reachable).
    struct Shared {
        prober: Arc<Prober>,
        reporting: ReportingSettings,
        metrics: Arc<Metrics>,
        probes: ProbePolicy,
    }

    impl Shared {
        fn new() -> Self {
            let metrics = Arc::new(Metrics::new().unwrap());
            let _ = rustls::crypto::ring::default_provider().install_default();
            let probes = ProbePolicy::default();
            let client = super::super::probe::client(&probes).unwrap();
            let (prober, _changes) = Prober::new(client, 4, metrics.clone());
            Self {
                prober,
                reporting: ReportingSettings {
                    interaction_log_endpoint: "http://ingest.test:8081".into(),
                    heartbeat_interval_seconds: 30,
                    data_report_interval_seconds: 10,
                },
                metrics,
                probes,
            }
        }

        fn step(&self) -> Step<'_> {
            Step {
                prober: &self.prober,
                reporting: &self.reporting,
                metrics: &self.metrics,
                probes: &self.probes,
            }
        }
    }

    fn registration(name: &str, generation: i64, spec: serde_json::Value) -> MCPRegistration {
        let mut full = serde_json::json!({
            "version": "1.0.0",
            "type": "workflow",
            "capabilities": ["text_extraction"],
            "endpoint": {"url": "http://127.0.0.1:9"},
            "healthCheck": {"intervalSeconds": 7, "timeoutSeconds": 1},
        });
        for (field, value) in spec.as_object().unwrap() {
            full[field] = value.clone();
        }
        let mut reg = MCPRegistration::new(name, serde_json::from_value(full).unwrap());
        reg.metadata = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            generation: Some(generation),
            uid: Some(format!("uid-{name}")),
            ..ObjectMeta::default()
        };
        reg
    }

    fn condition<'a>(
        status: &'a MCPRegistrationStatus,
        type_: &str,
    ) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[tokio::test]
    async fn a_valid_registration_gets_its_id_and_key_and_a_steady_one_is_not_rewritten() {
        let shared = Shared::new();
        let mut ports = FakePorts::default();
        let mut reg = registration("ocr", 1, serde_json::json!({}));
        let first = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert_eq!(ports.ids_asked, ["ocr_workflow"]);
        assert_eq!(ports.keys_asked, ["ocr_workflow_001"]);
        assert!(first.written && !first.invalid);
        let status = &first.status;
        assert_eq!(status.mcp_id.as_deref(), Some("ocr_workflow_001"));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.phase, Phase::Pending, "no probe has answered yet");
        let config = status.coordinator_config.as_ref().unwrap();
        assert_eq!(config.api_key_secret_ref.name, "ocr-mcp-key");
        assert_eq!(
            config.interaction_log_endpoint,
            "http://ingest.test:8081/api/interactions"
        );
        assert_eq!(condition(status, "Registered").status, "True");

        // The same registration with the status it was given: nothing to write.
        reg.status = Some(first.status.clone());
        let again = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert!(
            !again.written,
            "a steady registration's status is not rewritten"
        );
        assert_eq!(ports.written.len(), 1);

        // An edit is followed by observedGeneration.
        reg.metadata.generation = Some(2);
        let edited = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert!(edited.written);
        assert_eq!(edited.status.observed_generation, Some(2));
    }

    /// One step for a new registration `name` whose spec says `coordinator_version`.
    async fn register_requiring(name: &str, coordinator_version: &str) -> (Registered, FakePorts) {
        let shared = Shared::new();
        let mut ports = FakePorts::default();
        let spec =
            serde_json::json!({"compatibility": {"coordinatorVersion": coordinator_version}});
        let reg = registration(name, 1, spec);
        let done = register(&reg, &shared.step(), &mut ports).await.unwrap();
        (done, ports)
    }

    #[tokio::test]
    async fn an_invalid_spec_spends_no_id_is_not_probed_and_names_the_field() {
        let (done, ports) = register_requiring("bad", ">>1").await;
        assert!(done.invalid && done.written);
        assert!(ports.ids_asked.is_empty() && ports.keys_asked.is_empty());
        assert_eq!(ports.targets_asked, 0);
        assert_eq!(done.status.phase, Phase::Invalid);
        assert_eq!(
            done.status.mcp_id, None,
            "no ID is spent on an invalid registration"
        );
        let ready = condition(&done.status, "Ready");
        assert!(
            ready
                .message
                .contains("spec.compatibility.coordinatorVersion"),
            "{}",
            ready.message
        );
    }

    #[tokio::test]
    async fn an_incompatible_coordinator_keeps_the_id_and_is_not_probed() {
        let (done, ports) = register_requiring("future", ">=9").await;
        assert_eq!(done.status.phase, Phase::Incompatible);
        assert_eq!(ports.targets_asked, 0, "an incompatible MCP is not probed");
        assert_eq!(done.status.mcp_id.as_deref(), Some("future_workflow_001"));
        let compatible = condition(&done.status, "Compatible");
        assert_eq!(compatible.status, "False");
        assert!(compatible.message.contains(">=9"));
    }

    #[tokio::test]
    async fn a_target_that_cannot_be_probed_yet_is_looked_at_again_at_its_interval() {
        let shared = Shared::new();
        // Probe headers that could not be loaded.
        let mut ports = FakePorts {
            headers_missing: true,
            ..FakePorts::default()
        };
        let reg = registration("auth", 1, serde_json::json!({}));
        let done = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert_eq!(done.recheck_after, Some(Duration::from_secs(7)));
        // A target the policy refuses (a cloud metadata address).
        let mut ports = FakePorts::default();
        let reg = registration(
            "metadata",
            1,
            serde_json::json!({"endpoint": {"url": "http://169.254.169.254"}}),
        );
        let done = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert_eq!(done.recheck_after, Some(Duration::from_secs(7)));
        let key = ObjectRef::from(&reg);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let error = loop {
            let error = shared.prober.snapshot(&key).and_then(|h| h.last_error);
            if let Some(error) = error {
                break error;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the refusal was never reported"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(error.contains("link-local"), "{error}");
        let probed = register(&reg, &shared.step(), &mut ports).await.unwrap();
        assert_ne!(probed.status.phase, Phase::Ready);
        let health = probed.status.health.unwrap();
        assert!(health.last_error.unwrap().contains("link-local"));
    }

    #[tokio::test]
    async fn a_port_that_fails_fails_the_step_and_writes_nothing() {
        let shared = Shared::new();
        let mut ports = FakePorts {
            ledger_down: true,
            ..FakePorts::default()
        };
        let reg = registration("ocr", 1, serde_json::json!({}));
        let failed = register(&reg, &shared.step(), &mut ports)
            .await
            .unwrap_err();
        assert_eq!(failed, "the ledger is unreachable");
        assert!(ports.written.is_empty() && ports.keys_asked.is_empty());
    }
}
