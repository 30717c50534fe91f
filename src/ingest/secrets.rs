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

use super::auth::{KeyRing, ReaderTokens, MIN_SECRET_BYTES};
use crate::crd::{
    CREDENTIALS_LABEL, MCP_ID_LABEL, PRIVACY_LEVEL_ANNOTATION, READER_TOKEN_LABEL,
    RETENTION_ANNOTATION, SECRET_KEY,
};
use crate::privacy::SensitiveMcps;
use crate::store::retention::RetentionDays;

/// The MCP ID and key a credentials Secret carries, if it is well-formed.
pub fn credentials(secret: &Secret) -> Option<(String, String)> {
    let id = secret.labels().get(MCP_ID_LABEL)?.clone();
    let key = secret.data.as_ref()?.get(SECRET_KEY)?;
    let key = String::from_utf8(key.0.clone()).ok()?;
    (!key.is_empty()).then_some((id, key))
}

/// A reader token Secret's name (`namespace/name`) and token (data key `token`).
pub fn reader_token(secret: &Secret) -> Option<(String, String)> {
    let token = secret.data.as_ref()?.get(READER_TOKEN_KEY)?;
    let token = String::from_utf8(token.0.clone()).ok()?;
    if token.len() < MIN_SECRET_BYTES {
        tracing::warn!(
            secret = %secret_name(secret),
            "ignoring a reader token shorter than {MIN_SECRET_BYTES} bytes"
        );
        return None;
    }
    Some((secret_name(secret), token))
}

fn secret_name(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    )
}

/// Data key of the reader token in a Secret labelled with `READER_TOKEN_LABEL`.
pub const READER_TOKEN_KEY: &str = "token";

/// Keeps `keys` in step with the credentials Secrets (MCP ID → API key), and `retention` with the
/// retention days the controller writes on them.
pub async fn watch(
    client: Client,
    namespace: Option<String>,
    keys: Arc<KeyRing>,
    retention: Arc<RetentionDays>,
    sensitive: Arc<SensitiveMcps>,
) {
    let id = |s: &Secret| s.labels().get(MCP_ID_LABEL).cloned();
    let selector = format!("{CREDENTIALS_LABEL}=true");
    let track_retention = |secret: &Secret, deleted: bool| {
        let Some(mcp_id) = secret.labels().get(MCP_ID_LABEL) else {
            return;
        };
        let days = secret
            .annotations()
            .get(RETENTION_ANNOTATION)
            .and_then(|d| d.parse::<u32>().ok());
        match (deleted, days) {
            (false, Some(days)) => retention.set(mcp_id, days),
            _ => retention.remove(mcp_id),
        }
        let level = secret.annotations().get(PRIVACY_LEVEL_ANNOTATION);
        sensitive.set(
            mcp_id,
            !deleted && level.map(String::as_str) == Some("sensitive"),
        );
    };
    watch_labelled(
        client,
        namespace,
        &selector,
        credentials,
        id,
        &keys,
        track_retention,
    )
    .await
}

/// Keeps `readers` in step with the reader token Secrets (label `mcp.coordinator.dev/reader-token=true`).
pub async fn watch_reader_tokens(
    client: Client,
    namespace: Option<String>,
    readers: Arc<ReaderTokens>,
) {
    let id = |s: &Secret| Some(secret_name(s));
    let selector = format!("{READER_TOKEN_LABEL}=true");
    watch_labelled(
        client,
        namespace,
        &selector,
        reader_token,
        id,
        readers.ring(),
        |_, _| {},
    )
    .await
}

/// Mirrors the labelled Secrets into `ring` until the stream ends (the watcher retries with backoff).
async fn watch_labelled(
    client: Client,
    namespace: Option<String>,
    selector: &str,
    extract: fn(&Secret) -> Option<(String, String)>,
    id_of: impl Fn(&Secret) -> Option<String>,
    ring: &KeyRing,
    on_change: impl Fn(&Secret, bool),
) {
    let api: Api<Secret> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().labels(selector);
    let mut seen_in_relist: HashSet<String> = HashSet::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => seen_in_relist.clear(),
            Ok(Event::InitApply(secret)) | Ok(Event::Apply(secret)) => {
                on_change(&secret, false);
                if let Some((id, key)) = extract(&secret) {
                    ring.set(&id, &key);
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
                    ring.remove(&gone);
                    known.remove(&gone);
                }
                tracing::info!(
                    count = known.len(),
                    selector,
                    "credentials loaded from Secrets"
                );
            }
            Ok(Event::Delete(secret)) => {
                on_change(&secret, true);
                if let Some(id) = id_of(&secret) {
                    ring.remove(&id);
                    known.remove(&id);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching Secrets ({selector}) failed; retrying with backoff")
            }
        }
    }
}
