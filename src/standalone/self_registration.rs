//! Self-registration in standalone mode: a `register_mcp` message becomes a manifest in the
//! registrations directory (`self-registered.<namespace>.<name>.yaml`, so it survives restarts and
//! can be read and deleted like any other), and the loop that owns the registry answers with the
//! ID and key once it has reconciled it. Requests reach the loop through a bounded channel.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::manifests;
use super::registrations::Registrations;
use super::registry::write_private;
use crate::crd::MCPRegistration;
use crate::crd::REGISTERED_BY_ANNOTATION;
use crate::ingest::registrar::{
    other_registrar, quota_refusal, Assigned, Declared, RegistrarError, RegistrationPort,
};

/// The registrar token that made `reg`, if self-registration made it.
fn registered_by(reg: &MCPRegistration) -> Option<&str> {
    reg.metadata
        .annotations
        .as_ref()?
        .get(REGISTERED_BY_ANNOTATION)
        .map(String::as_str)
}

pub(super) enum Command {
    Register {
        declared: Box<Declared>,
        registrar: String,
        cap: usize,
        reply: oneshot::Sender<Result<Assigned, RegistrarError>>,
    },
    Unregister {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Result<(), RegistrarError>>,
    },
}

/// The port the ingest server's registrar uses: a sender into the standalone loop.
pub(super) struct LoopPort {
    pub(super) commands: mpsc::Sender<Command>,
}

fn loop_gone() -> RegistrarError {
    RegistrarError::Unavailable("standalone mode is shutting down".into())
}

impl RegistrationPort for LoopPort {
    fn register<'a>(
        &'a self,
        declared: &'a Declared,
        registrar: &'a str,
        cap: usize,
    ) -> BoxFuture<'a, Result<Assigned, RegistrarError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let command = Command::Register {
                declared: Box::new(declared.clone()),
                registrar: registrar.to_string(),
                cap,
                reply,
            };
            self.commands.send(command).await.map_err(|_| loop_gone())?;
            answer.await.map_err(|_| loop_gone())?
        })
    }

    fn unregister<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), RegistrarError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let command = Command::Unregister {
                namespace: namespace.to_string(),
                name: name.to_string(),
                reply,
            };
            self.commands.send(command).await.map_err(|_| loop_gone())?;
            answer.await.map_err(|_| loop_gone())?
        })
    }
}

/// The manifest file of a self-registered MCP.
pub(super) fn manifest_file(dir: &Path, namespace: &str, name: &str) -> PathBuf {
    dir.join(format!("self-registered.{namespace}.{name}.yaml"))
}

impl Registrations {
    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::Register {
                declared,
                registrar,
                cap,
                reply,
            } => {
                let _ = reply.send(self.self_register(&declared, &registrar, cap).await);
            }
            Command::Unregister {
                namespace,
                name,
                reply,
            } => {
                let _ = reply.send(self.self_unregister(&namespace, &name).await);
            }
        }
    }

    /// One registration declared, and only that one reconciled (issue 34, attack 8: each call
    /// once re-read and reconciled the whole directory, so 200 registrations took 7× longer
    /// each). A name another registrar token made is refused, and so is a new one past `cap`.
    async fn self_register(
        &mut self,
        declared: &Declared,
        registrar: &str,
        cap: usize,
    ) -> Result<Assigned, RegistrarError> {
        let (namespace, name) = (&declared.namespace, &declared.name);
        let key = format!("{namespace}/{name}");
        let file = manifest_file(&self.manifest_dir, namespace, name);
        match self.entries.get(&key) {
            Some(entry) if entry.file != file => {
                return Err(RegistrarError::Conflict(format!(
                    "{key} is already registered by {}; choose another name",
                    entry.file.display()
                )));
            }
            Some(entry) => {
                if let Some(owner) = registered_by(&entry.registration) {
                    if owner != registrar {
                        return Err(other_registrar(&key, owner));
                    }
                }
            }
            None => {
                let held = self
                    .entries
                    .values()
                    .filter(|e| e.registration.metadata.namespace.as_deref() == Some(namespace))
                    .filter(|e| registered_by(&e.registration) == Some(registrar))
                    .count();
                if held >= cap {
                    return Err(quota_refusal(registrar, namespace, cap));
                }
            }
        }
        let object = declared.object(registrar, None);
        let text = serde_json::to_string_pretty(&object)
            .map_err(|e| RegistrarError::Unavailable(e.to_string()))?;
        // The same checks a manifest in the directory gets, before the file exists.
        let (found, problems) = manifests::parse(&file, &text, manifests::schema());
        if let Some(p) = problems.into_iter().next() {
            return Err(RegistrarError::Refused {
                field: p.field,
                problem: p.reason,
            });
        }
        let current = std::fs::read_to_string(&file).ok();
        if current.as_deref() != Some(text.as_str()) {
            write_private(&file, text.as_bytes())
                .map_err(|e| RegistrarError::Unavailable(e.to_string()))?;
        }
        if declared.rotate_key {
            self.registry
                .rotate_key(namespace, name)
                .map_err(|e| RegistrarError::Unavailable(e.to_string()))?;
        }
        self.take_in(found, false);
        self.reconcile([key.clone()]).await;
        // The view (every registration's status) is rendered once the loop has no command
        // waiting, not once per registration.
        self.publish_routes();
        let entry = self.entries.get(&key).ok_or_else(|| {
            RegistrarError::Unavailable(format!("{} was written but not loaded", file.display()))
        })?;
        let status = entry.registration.status.clone().unwrap_or_default();
        let Some(mcp_id) = status.mcp_id.clone() else {
            let why = status
                .conditions
                .iter()
                .find(|c| c.status == "False" || c.type_ == "InvalidSpec")
                .map(|c| c.message.clone())
                .unwrap_or_else(|| "no ID was assigned".into());
            return Err(RegistrarError::Unavailable(why));
        };
        let api_key = self
            .registry
            .key_for(namespace, name)
            .map_err(|e| RegistrarError::Unavailable(e.to_string()))?;
        Ok(Assigned {
            namespace: namespace.clone(),
            name: name.clone(),
            mcp_id,
            api_key,
            status,
        })
    }

    async fn self_unregister(&mut self, namespace: &str, name: &str) -> Result<(), RegistrarError> {
        let key = format!("{namespace}/{name}");
        let Some(entry) = self.entries.get(&key) else {
            return Err(RegistrarError::NotFound(key));
        };
        let self_registered = entry
            .registration
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(REGISTERED_BY_ANNOTATION));
        if entry.file != manifest_file(&self.manifest_dir, namespace, name) || !self_registered {
            return Err(RegistrarError::Conflict(format!(
                "{key} was not made by self-registration; remove {} instead",
                entry.file.display()
            )));
        }
        let file = entry.file.clone();
        std::fs::remove_file(&file).map_err(|e| {
            RegistrarError::Unavailable(format!("cannot remove {}: {e}", file.display()))
        })?;
        self.fingerprint = None;
        self.reload_if_changed();
        self.publish();
        Ok(())
    }
}
