//! Self-registration in Kubernetes: the registration is created or updated with the registrar's
//! own identity (a ServiceAccount that may create MCPRegistrations in the allowed namespaces and
//! read their key Secrets, nothing else), and its ID and key are read back once the controller
//! wrote them. A key Secret counts only when the registration owns it and it carries the MCP ID.

use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::message::{registrar_label, Assigned, Declared};
use super::{other_registrar, quota_refusal, RegistrarError, RegistrationPort};
use crate::crd::{
    MCPRegistration, ISSUED_FOR_ANNOTATION, MCP_ID_LABEL, REGISTERED_BY_ANNOTATION,
    REGISTRAR_LABEL, ROTATE_KEY_ANNOTATION, SECRET_KEY,
};

/// The field manager of everything self-registration writes.
pub const FIELD_MANAGER: &str = "mcp-coordinator-registrar";

pub struct KubernetesRegistrations {
    client: Client,
    /// How often the registration is read again while waiting for the controller.
    pub poll: Duration,
}

impl KubernetesRegistrations {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            poll: Duration::from_millis(250),
        }
    }
}

fn unavailable(e: kube::Error) -> RegistrarError {
    match e {
        kube::Error::Api(status) if status.code == 422 || status.code == 400 => {
            RegistrarError::Refused {
                field: "mcp_info".into(),
                problem: status.message,
            }
        }
        kube::Error::Api(status) if status.code == 403 => RegistrarError::Unavailable(format!(
            "the registrar's ServiceAccount may not do this ({}); check the chart's registrar.namespaces",
            status.message
        )),
        other => RegistrarError::Unavailable(other.to_string()),
    }
}

/// Whether self-registration may change `reg`: it made it, and it is not on its way out.
fn ours(reg: &MCPRegistration, key: &str) -> Result<(), RegistrarError> {
    if !reg.annotations().contains_key(REGISTERED_BY_ANNOTATION) {
        return Err(RegistrarError::Conflict(format!(
            "{key} exists and was not made by self-registration; choose another name, or change it with kubectl"
        )));
    }
    if reg.metadata.deletion_timestamp.is_some() {
        return Err(RegistrarError::Conflict(format!(
            "{key} is being deleted; register again in a few seconds"
        )));
    }
    Ok(())
}

impl KubernetesRegistrations {
    /// Refuses a new registration past `cap` registrations of `registrar` in its namespace (those
    /// with its label and its annotation: a label alone proves nothing).
    async fn within_cap(
        &self,
        api: &Api<MCPRegistration>,
        declared: &Declared,
        registrar: &str,
        cap: usize,
    ) -> Result<(), RegistrarError> {
        let selector = format!("{REGISTRAR_LABEL}={}", registrar_label(registrar));
        let listed = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(unavailable)?;
        let held = listed
            .items
            .iter()
            .filter(|r| {
                r.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REGISTERED_BY_ANNOTATION))
                    .is_some_and(|owner| owner == registrar)
            })
            .count();
        if held >= cap {
            return Err(quota_refusal(registrar, &declared.namespace, cap));
        }
        Ok(())
    }

    async fn declare(
        &self,
        api: &Api<MCPRegistration>,
        declared: &Declared,
        registrar: &str,
        key: &str,
        cap: usize,
    ) -> Result<(MCPRegistration, Option<String>), RegistrarError> {
        let new_rotation = || jiff::Timestamp::now().as_millisecond().to_string();
        // Two registrations of one name may race: the loser reads again and retries once.
        for attempt in 0..2 {
            let existing = api.get_opt(&declared.name).await.map_err(unavailable)?;
            let result = match existing {
                None => {
                    self.within_cap(api, declared, registrar, cap).await?;
                    let rotation = declared.rotate_key.then(new_rotation);
                    let object = declared.object(registrar, rotation.as_deref());
                    let params = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PostParams::default()
                    };
                    api.create(&params, &object).await.map(|r| (r, rotation))
                }
                Some(mut reg) => {
                    ours(&reg, key)?;
                    if let Some(owner) = reg.annotations().get(REGISTERED_BY_ANNOTATION) {
                        if owner != registrar {
                            return Err(other_registrar(key, owner));
                        }
                    }
                    let rotation = if declared.rotate_key {
                        Some(new_rotation())
                    } else {
                        reg.annotations().get(ROTATE_KEY_ANNOTATION).cloned()
                    };
                    let wanted = declared.object(registrar, rotation.as_deref());
                    let unchanged = reg.spec == wanted.spec
                        && reg.annotations().get(ROTATE_KEY_ANNOTATION) == rotation.as_ref();
                    if unchanged {
                        return Ok((reg, rotation));
                    }
                    reg.spec = wanted.spec;
                    reg.labels_mut()
                        .insert(REGISTRAR_LABEL.into(), registrar_label(registrar));
                    let annotations = reg.annotations_mut();
                    annotations.insert(REGISTERED_BY_ANNOTATION.into(), registrar.into());
                    if let Some(value) = &rotation {
                        annotations.insert(ROTATE_KEY_ANNOTATION.into(), value.clone());
                    }
                    let params = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..PostParams::default()
                    };
                    api.replace(&declared.name, &params, &reg)
                        .await
                        .map(|r| (r, rotation))
                }
            };
            match result {
                Ok(done) => return Ok(done),
                Err(kube::Error::Api(s)) if s.code == 409 && attempt == 0 => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(RegistrarError::Conflict(format!(
            "{key} is being changed by someone else at the same time; register again"
        )))
    }

    /// The ID and key, once the controller has seen this generation and issued the key.
    async fn assigned(
        &self,
        reg: &MCPRegistration,
        rotation: Option<&str>,
        secrets: &Api<Secret>,
    ) -> Result<Option<Assigned>, RegistrarError> {
        let Some(status) = &reg.status else {
            return Ok(None);
        };
        let caught_up = status.observed_generation >= reg.metadata.generation;
        let (Some(mcp_id), Some(config), true) =
            (&status.mcp_id, &status.coordinator_config, caught_up)
        else {
            return Ok(None);
        };
        let Some(secret) = secrets
            .get_opt(&config.api_key_secret_ref.name)
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let owned = secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == reg.metadata.uid.as_ref() && o.controller == Some(true));
        let labelled = secret.labels().get(MCP_ID_LABEL) == Some(mcp_id);
        let issued = rotation.is_none_or(|r| {
            secret
                .annotations()
                .get(ISSUED_FOR_ANNOTATION)
                .map(String::as_str)
                == Some(r)
        });
        if !(owned && labelled && issued) {
            return Ok(None);
        }
        let key = secret
            .data
            .as_ref()
            .and_then(|d| d.get(SECRET_KEY))
            .and_then(|k| String::from_utf8(k.0.clone()).ok());
        Ok(key.map(|api_key| Assigned {
            namespace: reg.namespace().unwrap_or_default(),
            name: reg.name_any(),
            mcp_id: mcp_id.clone(),
            api_key,
            status: status.clone(),
        }))
    }
}

impl RegistrationPort for KubernetesRegistrations {
    fn has_services(&self) -> bool {
        true
    }

    fn register<'a>(
        &'a self,
        declared: &'a Declared,
        registrar: &'a str,
        cap: usize,
    ) -> BoxFuture<'a, Result<Assigned, RegistrarError>> {
        Box::pin(async move {
            let api: Api<MCPRegistration> =
                Api::namespaced(self.client.clone(), &declared.namespace);
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &declared.namespace);
            let key = format!("{}/{}", declared.namespace, declared.name);
            let (mut reg, rotation) = self.declare(&api, declared, registrar, &key, cap).await?;
            let uid = reg.metadata.uid.clone();
            loop {
                if let Some(assigned) = self.assigned(&reg, rotation.as_deref(), &secrets).await? {
                    return Ok(assigned);
                }
                tokio::time::sleep(self.poll).await;
                reg = match api.get_opt(&declared.name).await.map_err(unavailable)? {
                    Some(r) if r.metadata.uid == uid => r,
                    _ => {
                        return Err(RegistrarError::Conflict(format!(
                            "{key} was deleted while it was being registered"
                        )))
                    }
                };
            }
        })
    }

    fn unregister<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>> {
        Box::pin(async move {
            let api: Api<MCPRegistration> = Api::namespaced(self.client.clone(), namespace);
            let key = format!("{namespace}/{name}");
            let Some(reg) = api.get_opt(name).await.map_err(unavailable)? else {
                return Err(RegistrarError::NotFound(key));
            };
            if !reg.annotations().contains_key(REGISTERED_BY_ANNOTATION) {
                return Err(RegistrarError::Conflict(format!(
                    "{key} was not made by self-registration; delete it with kubectl"
                )));
            }
            if reg.metadata.deletion_timestamp.is_some() {
                return Ok(());
            }
            // Only the registration read above: a new one of the same name is not deleted.
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: reg.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(name, &params).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Err(RegistrarError::NotFound(key)),
                Err(e) => Err(unavailable(e)),
            }
        })
    }
}
