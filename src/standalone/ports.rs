//! The registration step's ports in standalone mode: IDs and keys from the registry in the data
//! directory, keys handed straight to the ingest server, status written to a file per
//! registration.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;

use super::manifests::key_of;
use super::registry::{write_private, Registry};
use super::StandaloneError;
use crate::controller::probe::ProbeTarget;
use crate::controller::register::Ports;
use crate::controller::status::ReportingSettings;
use crate::crd::{MCPRegistration, MCPRegistrationStatus, PrivacyLevel};
use crate::routing::weights::Observed;
use crate::store::retention::RetentionDays;
use crate::trust::keys::KeyRing;

/// What each reconcile needs besides the registration.
pub(super) struct Shared {
    pub(super) keys: Arc<KeyRing>,
    pub(super) retention: Arc<RetentionDays>,
    pub(super) sensitive: Arc<crate::privacy::SensitiveMcps>,
    pub(super) reporting: ReportingSettings,
}

pub(super) struct FilePorts<'a> {
    pub(super) registry: &'a mut Registry,
    pub(super) shared: &'a Shared,
    pub(super) performance: &'a HashMap<String, Observed>,
}

impl Ports for FilePorts<'_> {
    type Error = StandaloneError;

    async fn mcp_id(
        &mut self,
        reg: &MCPRegistration,
        prefix: &str,
    ) -> Result<String, StandaloneError> {
        self.registry.id_for(&key_of(reg), prefix)
    }

    async fn ensure_key(
        &mut self,
        reg: &MCPRegistration,
        mcp_id: &str,
    ) -> Result<String, StandaloneError> {
        let (namespace, name) = (reg.namespace().unwrap_or_default(), reg.name_any());
        let api_key = self.registry.key_for(&namespace, &name)?;
        let privacy = &reg.spec.privacy;
        self.shared.keys.set(mcp_id, &api_key);
        self.shared
            .sensitive
            .set(mcp_id, privacy.level == PrivacyLevel::Sensitive);
        self.shared.retention.set(mcp_id, privacy.retention_days);
        Ok(format!("{name}-mcp-key"))
    }

    async fn probe_target(
        &mut self,
        reg: &MCPRegistration,
        namespace: &str,
    ) -> Result<ProbeTarget, StandaloneError> {
        let mut target = ProbeTarget::of(&reg.spec, namespace);
        if reg.spec.health_check.headers_from_secret.is_some() {
            target.setup_error = Some(
                "spec.healthCheck.headersFromSecret needs Kubernetes Secrets, which standalone mode cannot read; remove it".into(),
            );
        }
        Ok(target)
    }

    fn observed(&self, mcp_id: &str) -> Option<Observed> {
        self.performance.get(mcp_id).cloned()
    }

    async fn write_status(
        &mut self,
        reg: &MCPRegistration,
        previous: Option<&MCPRegistrationStatus>,
        desired: &MCPRegistrationStatus,
    ) -> Result<(), StandaloneError> {
        let before = previous.map(|s| s.phase);
        if before != Some(desired.phase) {
            tracing::info!(
                registration = %key_of(reg),
                mcp_id = desired.mcp_id.as_deref().unwrap_or_default(),
                from = before.map_or("new", |p| p.as_str()),
                to = desired.phase.as_str(),
                "phase changed"
            );
        }
        let mut written = reg.clone();
        written.status = Some(desired.clone());
        let file = self
            .registry
            .status_file(&reg.namespace().unwrap_or_default(), &reg.name_any());
        let text = serde_json::to_vec_pretty(&written).map_err(|e| StandaloneError::Registry {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        write_private(&file, &text)
    }
}
