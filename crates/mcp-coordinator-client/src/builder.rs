//! Settings of a client, and the client they build with its sender running.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::{sender, Client, ClientError, Key, Shared, MAX_BATCH_ITEMS};

/// Settings of a [`Client`]; [`Client::builder`] starts one.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    pub(crate) url: String,
    pub(crate) key: Key,
    pub(crate) sign: bool,
    pub(crate) queue: usize,
    pub(crate) max_attempts: u32,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) report_every: Duration,
    pub(crate) batch: usize,
    pub(crate) timeout: Duration,
}

impl ClientBuilder {
    /// Sign every request (`X-MCP-Timestamp`, `X-MCP-Signature`), as `--require-signatures
    /// writes` demands.
    pub fn sign_requests(mut self, sign: bool) -> Self {
        self.sign = sign;
        self
    }
    /// At most this many reports wait to be sent (default 10,000).
    pub fn queue(mut self, reports: usize) -> Self {
        self.queue = reports.max(1);
        self
    }
    /// Attempts per report before it is dropped (default 8).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// Send a heartbeat this often (use `status.coordinatorConfig.heartbeatIntervalSeconds`).
    pub fn heartbeat_every(mut self, every: Duration) -> Self {
        self.heartbeat = Some(every.max(Duration::from_millis(100)));
        self
    }
    /// Send queued reports this often (the registration's `data_report_interval`), or sooner
    /// once 100 wait or [`Client::flush`] asks; zero (the default) sends each as it comes.
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }
    /// At most this many queued reports go in one signed batch request (default 100; 1 sends
    /// each on its own). A lone report always goes on its own, at once.
    pub fn batch_reports(mut self, most: usize) -> Self {
        self.batch = most.clamp(1, MAX_BATCH_ITEMS);
        self
    }
    /// How long one request may take (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The client, with its sender task running on the current Tokio runtime.
    pub fn build(self) -> Result<Client, ClientError> {
        if !self.url.starts_with("http://") && !self.url.starts_with("https://") {
            return Err(ClientError::BadUrl(self.url));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClientError::NoRuntime)?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: self.url.clone(),
                source,
            })?;
        let (sender, receiver) = mpsc::channel(self.queue);
        let shared = Arc::new(Shared {
            http,
            base: sender::api_base(&self.url),
            key_source: self.key,
            key: Mutex::new(None),
            sign: self.sign,
            max_attempts: self.max_attempts,
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            idle: Notify::new(),
            send_now: Notify::new(),
            batch: self.batch,
        });
        runtime.spawn(sender::send_loop(
            shared.clone(),
            receiver,
            self.heartbeat,
            self.report_every,
        ));
        Ok(Client { shared, sender })
    }
}
