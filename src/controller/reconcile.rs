//! One reconcile: the I/O around the pure decisions in `status`, `ids`, `keys` and `health`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::error::{Error, Result};
use super::ids::id_prefix;
use super::keys::{self, KeyAction};
use super::probe::ProbeTarget;
use super::status::{self, Compatibility, Observation};
use super::{Context, MANAGER};
use crate::crd::validate::validate_spec;
use crate::crd::{MCPRegistration, MCPRegistrationStatus, Phase, FINALIZER};

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

    let previous = reg.status.as_ref();
    let generation = reg.meta().generation;
    let problems = validate_spec(&reg.spec);
    if !problems.is_empty() {
        ctx.prober.remove(key);
        let obs = Observation {
            generation,
            mcp_id: previous.and_then(|s| s.mcp_id.as_deref()),
            key_secret: None,
            problems: &problems,
            compatibility: Compatibility::NoConstraint,
            health: None,
            observed: None,
        };
        settle(ctx, &api, reg, key, &obs).await?;
        // Nothing will change until the user edits the spec: no retries.
        return Ok(Action::await_change());
    }

    let prefix = id_prefix(&reg.name_any(), &reg.spec.mcp_type);
    let mcp_id = ctx
        .ids
        .id_for(&uid, &prefix, previous.and_then(|s| s.mcp_id.as_deref()))
        .await?;
    let secret_name = ensure_key(ctx, reg, &namespace, &mcp_id).await?;

    let compatibility = status::check_compatibility(&reg.spec, crate::COORDINATOR_VERSION);
    let mut requeue = ctx.settings.resync;
    let health = if matches!(compatibility, Compatibility::OutOfRange { .. }) {
        ctx.prober.remove(key);
        None
    } else {
        let target = probe_target(ctx, reg, &namespace).await?;
        if target.setup_error.is_some() {
            // Re-read the headers Secret at the probe interval; it may be created later.
            requeue = requeue.min(target.interval);
        }
        ctx.prober
            .ensure(key.clone(), target, reg.spec.health_check.clone());
        ctx.prober.snapshot(key)
    };

    let observed = ctx.performance.get(&mcp_id);
    let obs = Observation {
        generation,
        mcp_id: Some(&mcp_id),
        key_secret: Some(&secret_name),
        problems: &[],
        compatibility,
        health: health.as_ref(),
        observed: observed.as_ref(),
    };
    settle(ctx, &api, reg, key, &obs).await?;
    Ok(Action::requeue(requeue))
}

/// Turns an observation into status: Events for transitions, a write when it changed, metrics.
async fn settle(
    ctx: &Context,
    api: &Api<MCPRegistration>,
    reg: &MCPRegistration,
    key: &ObjectRef<MCPRegistration>,
    obs: &Observation<'_>,
) -> Result<Phase> {
    let previous = reg.status.as_ref();
    let desired = status::desired_status(
        &reg.spec,
        previous,
        obs,
        &ctx.settings.reporting,
        Timestamp::now(),
    );
    // Metrics first: anyone who sees the new status must also see it in /metrics.
    ctx.set_phase(key.clone(), Some(desired.phase));
    if let Some(id) = obs.mcp_id {
        ctx.metrics
            .mcp_up
            .with_label_values(&[id])
            .set(i64::from(desired.phase == Phase::Ready));
    }
    if let Some(id) = obs.mcp_id {
        let weight = desired.routing.as_ref().map_or(0, |r| r.effective_weight);
        ctx.metrics
            .effective_weight
            .with_label_values(&[id])
            .set(i64::from(weight));
    }
    publish_transitions(ctx, reg, previous, &desired).await;
    write_status(api, reg, previous, &desired).await?;
    let routing_before = previous
        .and_then(|p| p.routing.as_ref())
        .map(|r| r.effective_weight);
    let routing_after = desired.routing.as_ref().map(|r| r.effective_weight);
    if routing_before != routing_after {
        ctx.table_changed.notify_one();
    }
    Ok(desired.phase)
}

async fn write_status(
    api: &Api<MCPRegistration>,
    reg: &MCPRegistration,
    previous: Option<&MCPRegistrationStatus>,
    desired: &MCPRegistrationStatus,
) -> Result<()> {
    if !status::meaningful_change(previous, desired) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": MCPRegistration::api_version(&()),
        "kind": MCPRegistration::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &reg.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
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
    ctx.set_phase(key.clone(), None);
    let Some(index) = reg.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(Action::await_change());
    };
    if let Some(id) = reg.status.as_ref().and_then(|s| s.mcp_id.as_deref()) {
        let _ = ctx.metrics.mcp_up.remove_label_values(&[id]);
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    match secrets
        .delete(&reg.key_secret_name(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    ctx.ids.retire(uid).await?;
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
    if let Err(e) = ctx.recorder.publish(&event, &reg.event_reference()).await {
        tracing::warn!(error = %e, reason, registration = %reg.name_any(), "could not publish event");
    }
}
