//! Where the route endpoint's candidates come from: the controller's `mcp-routing-table`
//! ConfigMaps (every namespace, or one), or a JSON file in the same format (standalone use).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{reflector, WatchStreamExt};
use kube::{Api, Client, ResourceExt};

use crate::routing::router::Router;
use crate::routing::table::{RoutingTable, CONFIGMAP_KEY, CONFIGMAP_NAME};

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

/// Keeps `router` in step with the `mcp-routing-table` ConfigMaps, merged across namespaces.
pub async fn watch_configmaps(client: Client, namespace: Option<String>, router: Arc<Router>) {
    let api: Api<ConfigMap> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
    let (store, writer) = reflector::store();
    let mut events = watcher::watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::InitApply(_) | Event::Init) => {}
            Ok(_) => {
                let tables: Vec<RoutingTable> = store
                    .state()
                    .iter()
                    .filter_map(|cm| {
                        let text = cm.data.as_ref()?.get(CONFIGMAP_KEY)?;
                        let origin = format!(
                            "ConfigMap {}/{}",
                            cm.namespace().unwrap_or_default(),
                            cm.name_any()
                        );
                        parse(text, &origin)
                            .inspect_err(|e| tracing::warn!(error = %e, "ignoring a routing table"))
                            .ok()
                    })
                    .collect();
                router.install(&RoutingTable::merge(&tables));
            }
            Err(e) => {
                tracing::warn!(error = %e, "watching routing-table ConfigMaps failed; retrying with backoff")
            }
        }
    }
}
