//! The MCP gateway: MCP over streamable HTTP at `/mcp/{namespace}` and
//! `/mcp/{namespace}/{capability}`, in the request path of every call. A scope's `tools/list`
//! is the union of its Ready MCPs' tools (`catalog`); a `tools/call` goes to the MCP the router
//! picks (the same decision as `GET /v1/route`: tiers, weights, learned latency and success),
//! fails over to the next when the MCP cannot have taken it (`outlier`), and is logged as an
//! interaction through the spool, teaching the router at once (`call`). Prompts and resources
//! are listed and routed the same way.
//!
//! Both protocol generations on both sides (`protocol`): clients of the handshake revisions
//! get a session from `initialize` (`sessions`); clients of 2026-07-28 send `server/discover`
//! and no session. Toward the MCPs (`upstream`), each MCP's generation is asked once, and a
//! handshake-era MCP gets one session per client session (or caller) and MCP.
//!
//! Who may call: a caller token (`trust::callers`), never forwarded; each MCP gets its own
//! headers. Bounds: body bytes, time, calls at once per caller, sessions.

mod access;
mod auth;
mod call;
pub mod catalog;
pub mod directory;
mod edge;
mod http;
mod listing;
pub mod metrics;
pub mod outlier;
pub mod protocol;
mod record;
mod relay;
pub mod sessions;
mod trace;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::pipeline::Spool;
use crate::privacy::Pseudonymizer;
use crate::routing::router::Router;
use crate::trust::callers::CallerTokens;
pub use access::PolicyCell;
pub use directory::{backends_of, Backend, Directory};
pub use http::routes;
pub use metrics::GatewayMetrics;
use outlier::{EjectionPolicy, Outliers};
use sessions::Sessions;
use upstream::Upstream;

/// The gateway's limits and timings (the `--gateway-*` flags).
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// A default address rather than one asked for: when it is taken, the gateway stays off
    /// (with a warning) instead of stopping the server.
    pub optional: bool,
    /// The largest request body a client may send.
    pub max_body_bytes: usize,
    /// The largest answer (or one streamed event) taken from an MCP.
    pub max_answer_bytes: usize,
    /// How long an MCP may take to begin its answer, unless its registration says otherwise.
    pub call_timeout: Duration,
    /// How long one call may take in all, failovers included.
    pub total_timeout: Duration,
    /// MCPs tried for one call.
    pub max_attempts: usize,
    /// Calls one caller may have in flight at once.
    pub caller_concurrency: usize,
    pub max_sessions: usize,
    pub session_idle: Duration,
    /// How long a scope's listing is reused before the MCPs are asked again.
    pub catalog_ttl: Duration,
    pub connect_timeout: Duration,
    pub ejection: EjectionPolicy,
    /// Bearer JWTs of these authorization servers are taken beside caller tokens.
    pub oauth: Option<Arc<crate::trust::oauth::OAuth>>,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            optional: false,
            max_body_bytes: 1 << 20,
            max_answer_bytes: 16 << 20,
            call_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(120),
            max_attempts: 3,
            caller_concurrency: 256,
            max_sessions: 10_000,
            session_idle: Duration::from_secs(1800),
            catalog_ttl: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            ejection: EjectionPolicy::default(),
            oauth: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot build the gateway's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What the gateway's requests share.
pub struct Gateway {
    pub config: GatewayConfig,
    pub directory: Arc<Directory>,
    pub callers: Arc<CallerTokens>,
    router: Arc<Router>,
    spool: Spool,
    privacy: Pseudonymizer,
    metrics: Arc<GatewayMetrics>,
    upstream: Upstream,
    outliers: Outliers,
    sessions: Sessions,
    listings: listing::Listings,
    /// Calls in flight per MCP (held to `maxConcurrentRequests`).
    busy: Mutex<HashMap<String, u32>>,
    /// Calls in flight per caller.
    caller_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Requests in flight by (owner, request ID): where a cancellation goes.
    in_flight: Mutex<HashMap<(String, String), String>>,
    /// The registrations' rate limits (per replica).
    buckets: crate::trust::limits::Buckets,
    /// Where policy refusals are audited.
    audit: Option<PolicyAudit>,
}

/// A call a registration's gateway policy refused, as the audit log keeps it.
#[derive(Debug, Clone)]
pub struct PolicyRefusal {
    /// The caller, pseudonymized.
    pub caller: String,
    pub registration: String,
    pub tool: String,
    /// `rule:<name>` or `rate_limit:<name>`.
    pub what: String,
}

/// Records a policy refusal (the ingest server writes it to the audit log).
pub type PolicyAudit = Arc<dyn Fn(PolicyRefusal) + Send + Sync>;

/// What the gateway is handed by the server that runs it.
pub struct GatewayParts {
    pub directory: Arc<Directory>,
    pub callers: Arc<CallerTokens>,
    pub router: Arc<Router>,
    pub spool: Spool,
    pub privacy: Pseudonymizer,
    pub metrics: Arc<GatewayMetrics>,
    pub audit: Option<PolicyAudit>,
}

impl Gateway {
    pub fn new(config: GatewayConfig, parts: GatewayParts) -> Result<Self, GatewayError> {
        Ok(Self {
            upstream: Upstream::new(config.connect_timeout, config.max_answer_bytes)?,
            outliers: Outliers::new(config.ejection),
            sessions: Sessions::new(config.max_sessions, config.session_idle),
            listings: listing::Listings::default(),
            directory: parts.directory,
            callers: parts.callers,
            router: parts.router,
            spool: parts.spool,
            privacy: parts.privacy,
            metrics: parts.metrics,
            busy: Mutex::default(),
            caller_slots: Mutex::default(),
            in_flight: Mutex::default(),
            buckets: crate::trust::limits::Buckets::default(),
            audit: parts.audit,
            config,
        })
    }

    /// Ends idle sessions (closing what they hold on the MCPs) and refreshes the ejection gauge;
    /// run every few seconds.
    pub async fn tidy(&self) {
        let changed = self.directory.take_changed();
        if !changed.is_empty() {
            for id in &changed {
                self.upstream.forget(id);
            }
            self.forget_listings();
        }
        for id in self.sessions.expire() {
            self.end_session(&id).await;
        }
        let now = self.router.now();
        self.metrics.ejected.reset();
        for id in self.outliers.ejected(now) {
            self.metrics.ejected.with_label_values(&[&id]).set(1);
        }
        self.outliers.retain(|id| self.directory.get(id).is_some());
    }

    /// The MCPs out of rotation now: ID, until when (epoch ms), ejections in a row.
    pub fn ejections(&self) -> Vec<(String, i64, u32)> {
        let now_ms = now_ms();
        self.outliers
            .ejections(self.router.now())
            .into_iter()
            .map(|(id, left, n)| (id, now_ms + (left * 1000.0) as i64, n))
            .collect()
    }

    async fn end_session(&self, session: &str) {
        let owner = owner_of_session(session);
        self.upstream
            .close_sessions(&owner, |id| self.directory.get(id))
            .await;
    }

    /// The slot for one more call by `caller`, if it has one free.
    fn caller_slot(&self, caller: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = self
            .caller_slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(caller.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.caller_concurrency)))
            .clone();
        semaphore.try_acquire_owned().ok()
    }
}

/// The wall clock, epoch milliseconds (the log's and the ejections' times).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Whose backend sessions a request uses: its client session's, or (sessionless) its caller's.
fn owner_of_session(session: &str) -> String {
    format!("session:{session}")
}

fn owner_of_caller(caller: &str) -> String {
    format!("caller:{caller}")
}

/// Runs [`Gateway::tidy`] every five seconds until the gateway is dropped elsewhere.
pub fn spawn_tidy(gateway: &Arc<Gateway>) {
    let weak = Arc::downgrade(gateway);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let Some(gateway) = weak.upgrade() else {
                return;
            };
            gateway.tidy().await;
        }
    });
}
