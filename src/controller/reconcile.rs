//! One reconcile in a cluster: the finalizer, the registration step (`register`) over Kubernetes
//! ports, and cleanup on deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::error::{Error, Result};
use super::ids::{id_prefix, prefix_of_id};
use super::keys::{self, KeyAction};
use super::probe::ProbeTarget;
use super::register::{register, Ports, Step};
use super::{Context, MANAGER};
use crate::crd::{MCPRegistration, MCPRegistrationStatus, Phase, FINALIZER, PROBE_HEADERS_LABEL};
use crate::routing::weights::Observed;

pub(super) async fn reconcile(reg: Arc<MCPRegistration>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.inc();
    let timer = ctx.metrics.reconcile_duration.start_timer();
    let key = ObjectRef::from(reg.as_ref());
    let result = reconcile_one(&reg, &ctx, &key).await;
    timer.observe_duration();
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

async fn reconcile_one(
    reg: &MCPRegistration,
    ctx: &Context,
    key: &ObjectRef<MCPRegistration>,
) -> Result<Action> {
    let namespace = reg
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(reg.name_any()))?;
    let uid = reg.uid().ok_or_else(|| Error::MissingUid(reg.name_any()))?;
    let api: Api<MCPRegistration> = Api::namespaced(ctx.client.clone(), &namespace);

    if reg.metadata.deletion_timestamp.is_some() {
        return cleanup(reg, ctx, key, &api, &namespace, &uid).await;
    }
    if !reg.finalizers().iter().any(|f| f == FINALIZER) {
        add_finalizer(&api, reg).await?;
        // The patch produces a watch event, which brings the object back with the finalizer.
        return Ok(Action::await_change());
    }

    let mut ports = KubePorts {
        ctx,
        uid: &uid,
        namespace: &namespace,
        api: &api,
    };
    let step = Step {
        prober: &ctx.prober,
        reporting: &ctx.settings.reporting,
        metrics: &ctx.metrics,
        probes: &ctx.settings.probe_policy,
    };
    let done = register(reg, &step, &mut ports).await?;
    if done.invalid {
        // Nothing will change until the user edits the spec: no retries.
        return Ok(Action::await_change());
    }
    // Re-read a missing headers Secret at the probe interval; it may be created later.
    let requeue = done
        .recheck_after
        .map_or(ctx.settings.resync, |r| r.min(ctx.settings.resync));
    Ok(Action::requeue(requeue))
}

/// The registration step's ports in a cluster: the ID ledger, key Secrets, probe-header Secrets,
/// the performance board, and status by server-side apply (with Events for transitions).
struct KubePorts<'a> {
    ctx: &'a Context,
    uid: &'a str,
    namespace: &'a str,
    api: &'a Api<MCPRegistration>,
}

impl Ports for KubePorts<'_> {
    type Error = Error;

    async fn mcp_id(&mut self, reg: &MCPRegistration, prefix: &str) -> Result<String> {
        let known = reg.status.as_ref().and_then(|s| s.mcp_id.as_deref());
        self.ctx.ids.id_for(self.uid, prefix, known).await
    }

    async fn ensure_key(&mut self, reg: &MCPRegistration, mcp_id: &str) -> Result<String> {
        ensure_key(self.ctx, reg, self.namespace, mcp_id).await
    }

    async fn probe_target(
        &mut self,
        reg: &MCPRegistration,
        namespace: &str,
    ) -> Result<ProbeTarget> {
        probe_target(self.ctx, reg, namespace).await
    }

    fn observed(&self, mcp_id: &str) -> Option<Observed> {
        self.ctx.performance.get(mcp_id)
    }

    async fn write_status(
        &mut self,
        reg: &MCPRegistration,
        previous: Option<&MCPRegistrationStatus>,
        desired: &MCPRegistrationStatus,
    ) -> Result<()> {
        publish_transitions(self.ctx, reg, previous, desired).await;
        let patch = json!({
            "apiVersion": MCPRegistration::api_version(&()),
            "kind": MCPRegistration::kind(&()),
            "status": desired,
        });
        self.api
            .patch_status(
                &reg.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
        let weight = |s: Option<&MCPRegistrationStatus>| {
            s.and_then(|s| s.routing.as_ref())
                .map(|r| r.effective_weight)
        };
        if weight(previous) != weight(Some(desired)) {
            self.ctx.table_changed.notify_one();
        }
        Ok(())
    }
}

async fn add_finalizer(api: &Api<MCPRegistration>, reg: &MCPRegistration) -> Result<()> {
    // JSON patch guarded by resourceVersion, so a concurrent finalizer edit is never overwritten.
    let rv = reg.resource_version().unwrap_or_default();
    let add = if reg.metadata.finalizers.is_some() {
        json!({"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER})
    } else {
        json!({"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]})
    };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        add,
    ]))
    .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    api.patch(
        &reg.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await?;
    Ok(())
}

async fn cleanup(
    reg: &MCPRegistration,
    ctx: &Context,
    key: &ObjectRef<MCPRegistration>,
    api: &Api<MCPRegistration>,
    namespace: &str,
    uid: &str,
) -> Result<Action> {
    ctx.prober.remove(key);
    let mcp_id = reg.status.as_ref().and_then(|s| s.mcp_id.as_deref());
    ctx.metrics.forget_registration(key, mcp_id);
    let Some(index) = reg.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    delete_own_key_secret(ctx, reg, namespace, uid).await?;
    let prefix = id_prefix(&reg.name_any(), &reg.spec.mcp_type);
    let issued_under = mcp_id.and_then(prefix_of_id);
    ctx.ids
        .retire(uid, std::iter::once(prefix.as_str()).chain(issued_under))
        .await?;
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
    ]))
    .map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    match api
        .patch(
            &reg.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(registration = %key, "retired MCP ID and released the finalizer");
    Ok(Action::await_change())
}

/// Deletes the registration's key Secret, only if the registration owns it: a Secret of the same
/// name that someone else made is left alone (the garbage collector removes an owned one anyway;
/// deleting it here revokes the key at once).
async fn delete_own_key_secret(
    ctx: &Context,
    reg: &MCPRegistration,
    namespace: &str,
    uid: &str,
) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let name = reg.key_secret_name();
    let Some(secret) = secrets.get_opt(&name).await? else {
        return Ok(());
    };
    if !secret.owner_references().iter().any(|o| o.uid == uid) {
        tracing::warn!(secret = %format!("{namespace}/{name}"), "not deleting a key Secret this registration does not own");
        return Ok(());
    }
    let only_that_one = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match secrets.delete(&name, &only_that_one).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes sure the key Secret exists, carries the right labels and honours rotation requests.
async fn ensure_key(
    ctx: &Context,
    reg: &MCPRegistration,
    namespace: &str,
    mcp_id: &str,
) -> Result<String> {
    let name = reg.key_secret_name();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = secrets.get_opt(&name).await?;
    if let Some(secret) = &existing {
        let ours = secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == reg.meta().uid.as_ref());
        if !ours {
            return Err(Error::ForeignSecret {
                secret: format!("{namespace}/{name}"),
            });
        }
    }
    match keys::key_action(existing.as_ref(), reg, mcp_id) {
        KeyAction::Keep => {}
        KeyAction::Create => {
            let secret = keys::key_secret(reg, mcp_id, Some(keys::generate_key()?));
            secrets.create(&PostParams::default(), &secret).await?;
        }
        KeyAction::Rotate => {
            let mut secret = keys::key_secret(reg, mcp_id, Some(keys::generate_key()?));
            secret.metadata.resource_version = existing.as_ref().and_then(|s| s.resource_version());
            secrets
                .replace(&name, &PostParams::default(), &secret)
                .await?;
            publish(
                ctx,
                reg,
                EventType::Normal,
                "KeyRotated",
                format!("issued a new API key in Secret {name}; the previous key no longer works"),
            )
            .await;
        }
        KeyAction::Relabel => {
            let mut secret = keys::key_secret(reg, mcp_id, None);
            let current = existing.as_ref();
            secret.data = current.and_then(|s| s.data.clone());
            secret.metadata.resource_version = current.and_then(|s| s.resource_version());
            secrets
                .replace(&name, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(name)
}

/// A Secret's values go out as probe headers only when the Secret says so: otherwise a
/// registration could send any Secret of its namespace to an address of its choosing.
fn opted_in(secret: &Secret) -> bool {
    secret.labels().get(PROBE_HEADERS_LABEL).map(String::as_str) == Some("true")
}

/// Where and how to probe, with the probe headers loaded from their Secret.
async fn probe_target(
    ctx: &Context,
    reg: &MCPRegistration,
    namespace: &str,
) -> Result<ProbeTarget> {
    let spec = &reg.spec;
    let mut headers = BTreeMap::new();
    let mut setup_error = None;
    if let Some(source) = &spec.health_check.headers_from_secret {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
        match secrets.get_opt(&source.name).await? {
            None => {
                setup_error = Some(format!(
                    "Secret {namespace}/{} named in spec.healthCheck.headersFromSecret does not exist; create it or remove the reference",
                    source.name
                ))
            }
            Some(secret) if !opted_in(&secret) => {
                setup_error = Some(format!(
                    "Secret {namespace}/{} named in spec.healthCheck.headersFromSecret is not labelled {PROBE_HEADERS_LABEL}=true; label it to let the controller send its values as probe headers",
                    source.name
                ))
            }
            Some(secret) => {
                for (header, value) in secret.data.unwrap_or_default() {
                    match String::from_utf8(value.0) {
                        Ok(v) => {
                            headers.insert(header, v.trim_end_matches(['\r', '\n']).to_string());
                        }
                        Err(_) => {
                            setup_error = Some(format!(
                                "key {header:?} of Secret {namespace}/{} is not UTF-8 text and cannot be sent as a header",
                                source.name
                            ))
                        }
                    }
                }
            }
        }
    }
    Ok(ProbeTarget {
        headers,
        setup_error,
        ..ProbeTarget::of(spec, namespace)
    })
}

/// Events for what changed between the status the object shows and the one about to be written.
async fn publish_transitions(
    ctx: &Context,
    reg: &MCPRegistration,
    previous: Option<&MCPRegistrationStatus>,
    desired: &MCPRegistrationStatus,
) {
    let before = previous.map(|s| s.phase);
    if previous.and_then(|s| s.mcp_id.as_ref()).is_none() {
        if let Some(id) = &desired.mcp_id {
            publish(
                ctx,
                reg,
                EventType::Normal,
                "Registered",
                format!("assigned MCP ID {id}"),
            )
            .await;
        }
    }
    if before == Some(desired.phase) {
        return;
    }
    let condition_message = |t: &str| {
        desired
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.message.clone())
            .unwrap_or_default()
    };
    let unhealthy = || {
        (
            EventType::Warning,
            "BecameUnhealthy",
            condition_message("Healthy"),
        )
    };
    let event = match desired.phase {
        Phase::Ready => Some((
            EventType::Normal,
            "BecameReady",
            "health probes pass; receiving traffic".to_string(),
        )),
        Phase::Unavailable => Some(unhealthy()),
        // A Degraded registration that was never Ready has nothing to fall from.
        Phase::Degraded if before.is_some_and(|b| b != Phase::Pending) => Some(unhealthy()),
        Phase::Incompatible => Some((
            EventType::Warning,
            "Incompatible",
            condition_message("Compatible"),
        )),
        Phase::Invalid => Some((
            EventType::Warning,
            "InvalidSpec",
            condition_message("Ready"),
        )),
        Phase::Degraded | Phase::Pending => None,
    };
    if let Some((type_, reason, note)) = event {
        publish(ctx, reg, type_, reason, note).await;
    }
}

async fn publish(
    ctx: &Context,
    reg: &MCPRegistration,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    ctx.events.publish(reg, &event).await;
}
