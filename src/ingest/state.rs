//! What every request of the ingest API shares: the spool, the store, the keys and tokens, the
//! privacy rules, the router, and what has been heard from each MCP.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

use super::accept::Protection;
use super::metrics::IngestMetrics;
use crate::pipeline::Spool;
use crate::privacy::sensitive::SensitiveInteractions;
use crate::routing::router::Router;
use crate::store::Stores;
use crate::trust::keys::{KeyRing, ReaderTokens};
use crate::trust::signing::Verifier;

/// What one client may hold of the server: bytes, time, and requests at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub single_bytes: usize,
    pub batch_bytes: usize,
    /// Records in one batch.
    pub batch_records: usize,
    /// A TLS handshake, a connection's first bytes, a request's headers and an HTTP/2
    /// connection's first request must each arrive within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Connections open at once, per listener; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections open at once from one address, per listener; more are answered 429.
    pub max_connections_per_ip: usize,
    /// A request's body must arrive within this.
    pub body_timeout: Duration,
    /// Bytes of interactions in one history page; past them the page ends with a cursor.
    pub page_bytes: usize,
    /// Requests served at once; more are answered 503 with `Retry-After`.
    pub max_concurrent_requests: usize,
}

impl Default for Limits {
    /// The documented defaults of `--max-body-bytes`, `--max-batch-bytes`, `--max-batch-records`,
    /// `--header-timeout-seconds`, `--idle-timeout-seconds`, `--max-connections`,
    /// `--max-connections-per-ip`, `--body-timeout-seconds`, `--max-page-bytes` and
    /// `--max-concurrent-requests`.
    fn default() -> Self {
        let serving = crate::serve::ServeConfig::new("api");
        Self {
            idle_timeout: serving.idle_timeout,
            page_bytes: crate::store::page::DEFAULT_PAGE_BYTES,
            max_connections: serving.max_connections,
            max_connections_per_ip: serving.max_connections_per_ip,
            single_bytes: 1 << 20,
            batch_bytes: 16 << 20,
            batch_records: 10_000,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1024,
        }
    }
}

/// What `GET /v1/registrations` answers, kept current by whoever owns the registrations
/// (standalone mode); the ingest server adds when each MCP was last seen.
pub type RegistrationsView = RwLock<Value>;

pub struct IngestState {
    /// The MCP gateway this server runs, once it listens (for `GET /v1/gateway/ejections`).
    pub gateway: std::sync::OnceLock<Arc<crate::gateway::Gateway>>,
    /// The privacy rules every report passes before it is spooled.
    pub protection: Protection,
    pub signing: Verifier,
    pub spool: Spool,
    pub store: Stores,
    pub keys: Arc<KeyRing>,
    pub readers: Arc<ReaderTokens>,
    pub metrics: Arc<IngestMetrics>,
    pub limits: Limits,
    pub router: Arc<Router>,
    pub registrations: Option<Arc<RegistrationsView>>,
    pub fleet: Arc<super::fleet::Fleet>,
    pub registrar: Option<Arc<super::registrar::Registrar>>,
    pub extra_metrics: Option<prometheus::Registry>,
    pub ready: AtomicBool,
    /// One permit per request being served (see `Limits::max_concurrent_requests`).
    pub in_flight: Arc<Semaphore>,
    heartbeats: Mutex<HashMap<String, i64>>,
    /// Heartbeats not yet written to the store, where every replica sees them.
    unsaved_heartbeats: Mutex<HashMap<String, i64>>,
    /// When each MCP last reported anything (a heartbeat or an interaction), epoch ms.
    last_seen: Mutex<HashMap<String, i64>>,
}

impl IngestState {
    pub fn new(
        config: &super::IngestConfig,
        spool: Spool,
        store: Stores,
        keys: Arc<KeyRing>,
        readers: Arc<ReaderTokens>,
        metrics: Arc<IngestMetrics>,
    ) -> Self {
        Self {
            gateway: std::sync::OnceLock::new(),
            protection: Protection {
                pseudonymizer: config.privacy.clone(),
                sealer: config.sealer.clone(),
                sensitive_mcps: config.sensitive_mcps.clone(),
                sensitive_interactions: SensitiveInteractions::default(),
            },
            signing: Verifier::new(config.signing),
            spool,
            store,
            keys,
            readers,
            metrics,
            limits: config.limits,
            router: config.router.clone(),
            registrations: config.registrations.clone(),
            fleet: config.fleet.clone(),
            registrar: config.registrar.clone(),
            extra_metrics: config.extra_metrics.clone(),
            ready: AtomicBool::new(true),
            in_flight: Arc::new(Semaphore::new(config.limits.max_concurrent_requests.max(1))),
            heartbeats: Mutex::default(),
            unsaved_heartbeats: Mutex::default(),
            last_seen: Mutex::default(),
        }
    }

    pub fn saw(&self, mcp_id: &str, at_ms: i64) {
        self.last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(mcp_id.to_string(), at_ms);
    }

    pub fn heartbeat(&self, mcp_id: &str, at_ms: i64) {
        self.heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(mcp_id.to_string(), at_ms);
        self.unsaved_heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(mcp_id.to_string(), at_ms);
        self.saw(mcp_id, at_ms);
    }

    /// The heartbeats received since the last call, for the store; one per MCP, the latest.
    pub fn take_unsaved_heartbeats(&self) -> Vec<(String, i64)> {
        std::mem::take(
            &mut *self
                .unsaved_heartbeats
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
        .into_iter()
        .collect()
    }

    /// Heartbeats the store did not take, kept for the next try (newer ones win).
    pub fn keep_unsaved_heartbeats(&self, beats: Vec<(String, i64)>) {
        let mut unsaved = self
            .unsaved_heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (mcp_id, at_ms) in beats {
            let kept = unsaved.entry(mcp_id).or_insert(at_ms);
            *kept = (*kept).max(at_ms);
        }
    }

    /// The last heartbeat of each MCP, epoch ms.
    pub fn heartbeats(&self) -> HashMap<String, i64> {
        self.heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// When each MCP was last heard from, epoch ms.
    pub fn last_seen(&self) -> HashMap<String, i64> {
        self.last_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
