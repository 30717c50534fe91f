//! Where the route endpoint's candidates come from: the registrations (every namespace, or one),
//! or a routing-table JSON file (standalone use).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{reflector, WatchStreamExt};
use kube::{Api, Client};

use k8s_openapi::api::core::v1::Secret;

use crate::crd::{MCPRegistration, PROBE_HEADERS_LABEL};
use crate::routing::router::Router;
use crate::routing::table::{build, RoutingTable};

#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read the routing table {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the routing table {origin} is not valid: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },
}

/// Parses a table as the controller writes it.
pub fn parse(text: &str, origin: &str) -> Result<RoutingTable, RoutesError> {
    serde_json::from_str(text).map_err(|source| RoutesError::Parse {
        origin: origin.to_string(),
        source,
    })
}

/// Loads `path` into `router` now, then again whenever the file changes. A broken edit is
/// reported and the previous table stays in use.
pub async fn follow_file(path: PathBuf, router: Arc<Router>) -> Result<(), RoutesError> {
    let load = |path: &PathBuf| -> Result<RoutingTable, RoutesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RoutesError::Read {
            path: path.clone(),
            source,
        })?;
        parse(&text, &path.display().to_string())
    };
    router.install(&load(&path)?);
    let modified = |path: &PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let mut seen: Option<SystemTime> = modified(&path);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = modified(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&path) {
                Ok(table) => {
                    router.install(&table);
                    tracing::info!(path = %path.display(), "routing table reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "keeping the previous routing table"),
            }
        }
    });
    Ok(())
}

/// Keeps `router` in step with the registrations themselves (every namespace, or one): their
/// spec and the routing status the controller writes, the same table it publishes in the
/// `mcp-routing-table` ConfigMaps. The ConfigMaps are not read: anyone who can write a ConfigMap
/// could name one that way, while only the controller writes a registration's status.
///
/// The gateway's directory follows the same registrations, each MCP with the headers of its
/// `healthCheck.headersFromSecret`: a Secret of the registration's namespace that opted in with
/// the label `mcp.coordinator.dev/probe-headers=true`, as the controller's probes require.
pub async fn watch_registrations(
    client: Client,
    namespace: Option<String>,
    router: Arc<Router>,
    directory: Arc<crate::gateway::Directory>,
    fleet: Arc<super::fleet::Fleet>,
) {
    let (registrations, secrets): (Api<MCPRegistration>, Api<Secret>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (store, writer) = reflector::store();
    let (header_secrets, secrets_writer) = reflector::store::<Secret>();
    let registration_events = watcher::watcher(registrations, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .map(|e| e.map(|e| matches!(e, Event::InitApply(_) | Event::Init)));
    let labelled = watcher::Config::default().labels(&format!("{PROBE_HEADERS_LABEL}=true"));
    let secret_events = watcher::watcher(secrets, labelled)
        .default_backoff()
        .reflect(secrets_writer)
        .map(|e| e.map(|e| matches!(e, Event::InitApply(_) | Event::Init)));
    let mut events = futures::stream::select(registration_events.boxed(), secret_events.boxed());
    let mut installed: Option<RoutingTable> = None;
    while let Some(event) = events.next().await {
        match event {
            // Mid-relist: wait for its end (InitDone) before acting on a partial view.
            Ok(true) => {}
            Ok(false) => {
                let registrations = store.state();
                fleet.install(registrations.iter().map(|r| r.as_ref()));
                directory.install(crate::gateway::backends_of(
                    registrations.iter().map(|r| r.as_ref()),
                    |reg| headers_of(&header_secrets, reg),
                ));
                let tables = build(registrations.iter().map(|r| r.as_ref()));
                let merged = RoutingTable::merge(tables.values());
                if installed.as_ref() != Some(&merged) {
                    router.install(&merged);
                    installed = Some(merged);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching registrations (and their header Secrets) for routes failed; retrying with backoff")
            }
        }
    }
}

/// The headers a registration's MCP expects: its `headersFromSecret`'s values, when that Secret
/// opted in (the watch sees only those). Values that are not text are left out.
fn headers_of(
    secrets: &reflector::Store<Secret>,
    reg: &MCPRegistration,
) -> std::collections::BTreeMap<String, String> {
    let (Some(source), Some(namespace)) = (
        &reg.spec.health_check.headers_from_secret,
        reg.metadata.namespace.as_deref(),
    ) else {
        return Default::default();
    };
    let key = reflector::ObjectRef::<Secret>::new(&source.name).within(namespace);
    let Some(secret) = secrets.get(&key) else {
        return Default::default();
    };
    secret
        .data
        .iter()
        .flatten()
        .filter_map(|(name, value)| {
            let text = std::str::from_utf8(&value.0).ok()?;
            Some((
                name.clone(),
                text.trim_end_matches(['\r', '\n']).to_string(),
            ))
        })
        .collect()
}
