//! A scope's catalog, fetched from its MCPs and kept for `catalog_ttl`: each MCP's list (all
//! pages, bounded) is asked in parallel; an MCP that does not answer keeps its last list, or is
//! left out until it does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::catalog::{merge, Catalog, Kind, Listing};
use super::directory::Backend;
use super::Gateway;

/// Pages asked of one MCP for one list.
const MAX_PAGES: usize = 20;
/// How long one MCP may take to list.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Merged catalogs kept at most (scopes × kinds).
const MAX_SCOPES: usize = 4096;
/// The gateway's own account on handshake-era MCPs, for listings.
const LISTING_OWNER: &str = "gateway";

/// One MCP's list of one kind, and when it was fetched.
type Fetched = (Instant, Arc<Vec<Value>>);
/// A scope's merged catalog, when it was merged, and from which MCPs.
type Merged = (Instant, Vec<String>, Arc<Catalog>);

#[derive(Default)]
pub(super) struct Listings {
    lists: Mutex<HashMap<(String, Kind), Fetched>>,
    merged: Mutex<HashMap<(String, Kind), Merged>>,
}

impl Gateway {
    /// The catalog of `backends` (one scope) for `kind`.
    pub(super) async fn catalog(
        &self,
        scope: &str,
        kind: Kind,
        backends: &[Arc<Backend>],
    ) -> Arc<Catalog> {
        if backends.is_empty() {
            // Nothing to list, and nothing kept: scopes named in URLs are the caller's choice.
            return Arc::new(Catalog::default());
        }
        let ids: Vec<String> = backends.iter().map(|b| b.mcp_id.clone()).collect();
        let ttl = self.config.catalog_ttl;
        if let Some((at, from, catalog)) = self
            .listings
            .merged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(scope.to_string(), kind))
        {
            if at.elapsed() < ttl && *from == ids {
                return catalog.clone();
            }
        }
        let fetched =
            futures::future::join_all(backends.iter().map(|b| self.list_of(b, kind))).await;
        let listings: Vec<Listing> = backends
            .iter()
            .zip(fetched)
            .filter_map(|(b, items)| {
                Some(Listing {
                    mcp_id: b.mcp_id.clone(),
                    registration: b.name.clone(),
                    items: items?.as_ref().clone(),
                })
            })
            .collect();
        let catalog = Arc::new(merge(kind, &listings));
        let mut merged = self
            .listings
            .merged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Bounded: scopes are namespaces and capabilities that have MCPs, but clear it rather
        // than let it grow past what any deployment has.
        if merged.len() >= MAX_SCOPES {
            merged.clear();
        }
        merged.insert(
            (scope.to_string(), kind),
            (Instant::now(), ids, catalog.clone()),
        );
        catalog
    }

    /// One MCP's list: fresh from the cache, or asked now (the stale one if it does not answer).
    async fn list_of(&self, backend: &Backend, kind: Kind) -> Option<Arc<Vec<Value>>> {
        let key = (backend.mcp_id.clone(), kind);
        let cached = self
            .listings
            .lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some((at, items)) = &cached {
            if at.elapsed() < self.config.catalog_ttl {
                return Some(items.clone());
            }
        }
        match self.fetch_list(backend, kind).await {
            Ok(items) => {
                let items = Arc::new(items);
                self.listings
                    .lists
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, (Instant::now(), items.clone()));
                Some(items)
            }
            Err(e) => {
                tracing::debug!(mcp_id = %backend.mcp_id, list = kind.list_method(), error = %e, "listing failed");
                cached.map(|(_, items)| items)
            }
        }
    }

    async fn fetch_list(&self, backend: &Backend, kind: Kind) -> Result<Vec<Value>, String> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = self
                .upstream
                .request(
                    backend,
                    LISTING_OWNER,
                    kind.list_method(),
                    params,
                    LIST_TIMEOUT,
                )
                .await
                .map_err(|f| f.to_string())?;
            if let Some(Value::Array(page)) = result.get(kind.result_key()) {
                items.extend(page.iter().cloned());
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        Ok(items)
    }

    /// Forgets cached lists (a registration changed).
    pub fn forget_listings(&self) {
        self.listings
            .merged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
