//! API keys from the Secrets the controller owns, and reader tokens from labelled Secrets: watched,
//! so a new MCP can report as soon as its Secret exists, a rotated key replaces the old one, and a
//! deleted registration's key stops working. Only digests reach memory (see [`KeyRing`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};

use super::credentials::{Accepted, Credentials, Seen};
use super::keys::{KeyRing, ReaderTokens, MIN_SECRET_BYTES};
use crate::crd::{MCPRegistration, CREDENTIALS_LABEL, READER_TOKEN_LABEL};
use crate::privacy::SensitiveMcps;
use crate::store::retention::RetentionDays;

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

/// Keeps `keys`, `retention` and `sensitive` in step with the credentials Secrets the controller
/// owns (see `credentials` for what counts), watching those Secrets and the registrations.
pub async fn watch(
    client: Client,
    namespace: Option<String>,
    keys: Arc<KeyRing>,
    retention: Arc<RetentionDays>,
    sensitive: Arc<SensitiveMcps>,
) {
    let (secrets, registrations): (Api<Secret>, Api<MCPRegistration>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let selector = format!("{CREDENTIALS_LABEL}=true");
    let secret_events = watcher::watcher(secrets, watcher::Config::default().labels(&selector))
        .default_backoff()
        .map(|event| Change::Secret(Box::new(event)));
    let registration_events = watcher::watcher(registrations, watcher::Config::default())
        .default_backoff()
        .map(|event| Change::Registration(Box::new(event)));
    let mut events = futures::stream::select(secret_events, registration_events).boxed();
    let mut known = Credentials::default();
    let mut applied: BTreeMap<String, Accepted> = BTreeMap::new();
    while let Some(change) = events.next().await {
        match change {
            Change::Secret(event) => match *event {
                Ok(event) => see_secret(&mut known, &event),
                Err(e) => {
                    tracing::warn!(error = %e, "watching credentials Secrets failed; retrying with backoff");
                    continue;
                }
            },
            Change::Registration(event) => match *event {
                Ok(event) => see_registration(&mut known, &event),
                Err(e) => {
                    tracing::warn!(error = %e, "watching registrations failed; retrying with backoff");
                    continue;
                }
            },
        }
        let desired = known.accepted();
        if desired != applied {
            apply(&applied, &desired, &keys, &retention, &sensitive);
            tracing::info!(
                count = desired.len(),
                "MCP keys from the controller's Secrets"
            );
            applied = desired;
        }
    }
}

enum Change {
    // Boxed: the events are large, and the stream holds one of either kind at a time.
    Secret(Box<Result<Event<Secret>, watcher::Error>>),
    Registration(Box<Result<Event<MCPRegistration>, watcher::Error>>),
}

fn see_secret(known: &mut Credentials, event: &Event<Secret>) {
    known.see(match event {
        Event::Init => Seen::SecretsRelist,
        Event::InitApply(s) => Seen::RelistedSecret(s),
        Event::InitDone => Seen::SecretsRelistDone,
        Event::Apply(s) => Seen::Secret(s),
        Event::Delete(s) => Seen::SecretDeleted(s),
    })
}

fn see_registration(known: &mut Credentials, event: &Event<MCPRegistration>) {
    known.see(match event {
        Event::Init => Seen::RegistrationsRelist,
        Event::InitApply(r) => Seen::RelistedRegistration(r),
        Event::InitDone => Seen::RegistrationsRelistDone,
        Event::Apply(r) => Seen::Registration(r),
        Event::Delete(r) => Seen::RegistrationDeleted(r),
    })
}

/// Brings the key ring, retention days and sensitive MCPs from `before` to `after`.
fn apply(
    before: &BTreeMap<String, Accepted>,
    after: &BTreeMap<String, Accepted>,
    keys: &KeyRing,
    retention: &RetentionDays,
    sensitive: &SensitiveMcps,
) {
    for (mcp_id, accepted) in after {
        if before.get(mcp_id) == Some(accepted) {
            continue;
        }
        keys.set(mcp_id, &accepted.key);
        match accepted.retention_days {
            Some(days) => retention.set(mcp_id, days),
            None => retention.remove(mcp_id),
        }
        sensitive.set(mcp_id, accepted.sensitive);
    }
    for mcp_id in before.keys().filter(|id| !after.contains_key(*id)) {
        keys.remove(mcp_id);
        retention.remove(mcp_id);
        sensitive.set(mcp_id, false);
    }
}

/// Keeps `readers` in step with the reader token Secrets (label `mcp.coordinator.dev/reader-token=true`).
pub async fn watch_reader_tokens(client: Client, namespace: String, readers: Arc<ReaderTokens>) {
    let id = |s: &Secret| Some(secret_name(s));
    let selector = format!("{READER_TOKEN_LABEL}=true");
    watch_labelled(
        client,
        Some(namespace),
        &selector,
        reader_token,
        id,
        readers.ring(),
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
