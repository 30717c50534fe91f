//! API keys from the Secrets the controller writes: watched with a label selector, so a new MCP can
//! report as soon as its Secret exists, a rotated key replaces the old one, and a deleted
//! registration's key stops working. Only digests reach memory (see [`KeyRing`]).

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::auth::KeyRing;
use crate::controller::keys::SECRET_KEY;
use crate::crd::{CREDENTIALS_LABEL, MCP_ID_LABEL};

/// The MCP ID and key a credentials Secret carries, if it is well-formed.
pub fn credentials(secret: &Secret) -> Option<(String, String)> {
    let id = secret.labels().get(MCP_ID_LABEL)?.clone();
    let key = secret.data.as_ref()?.get(SECRET_KEY)?;
    let key = String::from_utf8(key.0.clone()).ok()?;
    (!key.is_empty()).then_some((id, key))
}

/// Keeps `keys` in step with the credentials Secrets until the stream ends (it retries on errors).
pub async fn watch(client: Client, namespace: Option<String>, keys: Arc<KeyRing>) {
    let api: Api<Secret> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"));
    let mut seen_in_relist: HashSet<String> = HashSet::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => seen_in_relist.clear(),
            Ok(Event::InitApply(secret)) | Ok(Event::Apply(secret)) => {
                if let Some((id, key)) = credentials(&secret) {
                    keys.set(&id, &key);
                    seen_in_relist.insert(id.clone());
                    known.insert(id);
                }
            }
            Ok(Event::InitDone) => {
                for gone in known
                    .difference(&seen_in_relist)
                    .cloned()
                    .collect::<Vec<_>>()
                {
                    keys.remove(&gone);
                    known.remove(&gone);
                }
                tracing::info!(
                    keys = known.len(),
                    "API keys loaded from credentials Secrets"
                );
            }
            Ok(Event::Delete(secret)) => {
                if let Some(id) = secret.labels().get(MCP_ID_LABEL) {
                    keys.remove(id);
                    known.remove(id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching credentials Secrets failed; retrying with backoff")
            }
        }
    }
}
