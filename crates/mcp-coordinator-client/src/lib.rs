//! Reports an MCP server's interactions and heartbeats to mcp-coordinator's ingest API.
//!
//! Reports are queued (bounded) and sent in order by a background task — as they come, or every
//! `data_report_interval` when [`ClientBuilder::report_every`] says so (as a registration's client
//! does) — retried with backoff
//! while the coordinator is unreachable or busy (no answer, 5xx, 429 with `Retry-After`), and
//! dropped after a number of attempts or when a 4xx says they never will be accepted. A full
//! queue drops the new report. Either way [`Stats::dropped`] counts it: the MCP's own work never
//! waits for its reporting. Interaction IDs are made here, so a retried start stays one
//! interaction.

mod builder;
mod reads;
mod registration;
#[cfg(feature = "rmcp")]
pub mod rmcp_server;
mod sender;

use sender::Report;

pub use builder::ClientBuilder;
pub use registration::{register, unregister, McpInfo, Registration};

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

/// Backoff between attempts grows to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Where the MCP's API key comes from.
#[derive(Debug, Clone)]
pub enum Key {
    /// This key.
    Fixed(String),
    /// The key in this file (a mounted Secret), read again whenever the coordinator refuses the
    /// key it holds, so a rotated key is picked up without a restart.
    File(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the coordinator URL must start with http:// or https://, not {0:?}")]
    BadUrl(String),
    #[error("the client needs a Tokio runtime to send from (build it inside one)")]
    NoRuntime,
    #[error("no API key: {0}")]
    NoKey(String),
    #[error("cannot reach the coordinator at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{0:?} is not an ID or range name (letters, digits, '_', '-', '.')")]
    BadValue(String),
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: u16,
        body: String,
    },
}

/// What the client sent and what it had to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub sent: u64,
    pub dropped: u64,
}

/// A batch held for the report interval is sent early once it holds this many reports, and one
/// request carries at most this many by default.
const MAX_BATCH: usize = 100;
/// The most reports, and bytes, one batch request may carry.
const MAX_BATCH_ITEMS: usize = 500;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The path of the seed's envelope endpoint: a URL that ends in it is the API's base URL plus it.
const ENVELOPE_PATH: &str = "/api/interactions";

/// Reports an MCP's interactions; cheap to clone (clones share the queue).
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    sender: mpsc::Sender<Report>,
}

struct Shared {
    http: reqwest::Client,
    base: String,
    key_source: Key,
    key: Mutex<Option<String>>,
    sign: bool,
    max_attempts: u32,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Reports queued or being sent.
    pending: AtomicU64,
    idle: Notify,
    /// Asks the sender to send what it holds now (a flush).
    send_now: Notify,
    /// The most reports one request carries.
    batch: usize,
}

impl Client {
    /// A builder from the environment: `MCP_COORDINATOR_URL` and the key from
    /// `MCP_COORDINATOR_API_KEY`, or from the file `MCP_COORDINATOR_API_KEY_FILE` names (a mounted
    /// key Secret, read again when the coordinator refuses the key it holds).
    pub fn from_env() -> Result<ClientBuilder, ClientError> {
        let url = std::env::var("MCP_COORDINATOR_URL").map_err(|_| {
            ClientError::NoKey("set MCP_COORDINATOR_URL to the coordinator's ingest URL".into())
        })?;
        let key = match (
            std::env::var("MCP_COORDINATOR_API_KEY"),
            std::env::var("MCP_COORDINATOR_API_KEY_FILE"),
        ) {
            (Ok(key), _) if !key.is_empty() => Key::Fixed(key),
            (_, Ok(file)) if !file.is_empty() => Key::File(file.into()),
            _ => {
                return Err(ClientError::NoKey(
                    "set MCP_COORDINATOR_API_KEY (or MCP_COORDINATOR_API_KEY_FILE) to the MCP's key: the `<name>-mcp-key` Secret, key api-key".into(),
                ))
            }
        };
        Ok(Self::builder(url, key))
    }

    /// A client of the ingest API at `url`: its base URL (`status.coordinatorConfig.apiUrl`) or
    /// the seed's `interaction_log_endpoint` (`…/api/interactions`), which comes to the same.
    pub fn builder(url: impl Into<String>, key: Key) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            key,
            sign: false,
            queue: 10_000,
            max_attempts: 8,
            heartbeat: None,
            report_every: Duration::ZERO,
            batch: MAX_BATCH,
            timeout: Duration::from_secs(5),
        }
    }

    /// Reports the start of an interaction of `request_type`; `request_data` adds the seed's
    /// request fields (`input_size`, `parameters`, `user_id`, ...). Answers its ID.
    pub fn start(&self, request_type: &str, request_data: Value) -> String {
        let id = new_interaction_id();
        let mut data = match request_data {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        data.insert("request_type".into(), json!(request_type));
        self.enqueue(
            "/v1/interactions".into(),
            &json!({"interaction_id": id, "request_data": data}),
            "start",
            None,
        );
        id
    }

    /// Reports how far an interaction got (`progress` within 0–1).
    pub fn progress(&self, interaction_id: &str, progress: Option<f64>, message: Option<&str>) {
        let mut body = serde_json::Map::new();
        if let Some(p) = progress {
            body.insert("progress".into(), json!(p.clamp(0.0, 1.0)));
        }
        if let Some(m) = message {
            body.insert("message".into(), json!(m));
        }
        self.enqueue(
            format!("/v1/interactions/{interaction_id}/progress"),
            &Value::Object(body),
            "progress",
            Some(interaction_id),
        );
    }

    /// Reports success with the seed's result fields (`processing_time` in seconds,
    /// `quality_score`, `output_size`, `steps_executed`, ...).
    pub fn complete(&self, interaction_id: &str, fields: Value) {
        let mut body = match fields {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        body.entry("success").or_insert(json!(true));
        self.enqueue(
            format!("/v1/interactions/{interaction_id}/complete"),
            &Value::Object(body),
            "complete",
            Some(interaction_id),
        );
    }

    /// Reports a failure with its code (e.g. `OCR_TIMEOUT`), a message and more fields.
    pub fn fail(&self, interaction_id: &str, error_code: &str, message: &str, fields: Value) {
        let mut body = match fields {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        body.insert("error_code".into(), json!(error_code));
        body.insert("error_message".into(), json!(message));
        self.enqueue(
            format!("/v1/interactions/{interaction_id}/error"),
            &Value::Object(body),
            "error",
            Some(interaction_id),
        );
    }

    /// Sends a heartbeat now (the background task also sends them, with `heartbeat_every`).
    pub async fn heartbeat(&self) -> Result<Value, ClientError> {
        self.shared.post("/v1/heartbeat", b"{}").await
    }

    /// Waits until every queued report was sent or dropped; false if `timeout` passed first.
    pub async fn flush(&self, timeout: Duration) -> bool {
        self.shared.send_now.notify_one();
        let drained = async {
            while self.shared.pending.load(Ordering::SeqCst) > 0 {
                let notified = self.shared.idle.notified();
                if self.shared.pending.load(Ordering::SeqCst) == 0 {
                    break;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained).await.is_ok()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            sent: self.shared.sent.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    fn enqueue(&self, path: String, body: &Value, kind: &'static str, id: Option<&str>) {
        let body = serde_json::to_vec(body).unwrap_or_default();
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let report = Report {
            path,
            body,
            kind,
            id: id.map(str::to_string),
        };
        if self.sender.try_send(report).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.done();
            tracing::warn!("mcp-coordinator report queue full (or closed); a report was dropped");
        }
    }
}

impl Shared {
    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn key(&self) -> Result<String, ClientError> {
        let mut key = self.key.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = key.as_ref() {
            return Ok(k.clone());
        }
        let fresh = match &self.key_source {
            Key::Fixed(k) => k.clone(),
            Key::File(path) => std::fs::read_to_string(path)
                .map_err(|e| ClientError::NoKey(format!("{}: {e}", path.display())))?
                .trim()
                .to_string(),
        };
        if fresh.is_empty() {
            return Err(ClientError::NoKey("the key is empty".into()));
        }
        *key = Some(fresh.clone());
        Ok(fresh)
    }

    async fn post(&self, path: &str, body: &[u8]) -> Result<Value, ClientError> {
        self.post_signed(path, body, self.sign).await
    }

    /// A POST, signed when `signed` (batches always are: the ingest server asks it by default).
    async fn post_signed(
        &self,
        path: &str,
        body: &[u8],
        signed: bool,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let key = self.key()?;
        let mut request = self
            .http
            .post(&url)
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if signed {
            let timestamp = jiff::Timestamp::now().as_second().to_string();
            request = request.header("x-mcp-timestamp", &timestamp).header(
                "x-mcp-signature",
                sign(&key, "POST", path, &timestamp, body),
            );
        }
        self.send(request, url).await
    }

    /// Sends a request to `url` and reads its JSON answer; a refusal carries the body (and its
    /// `Retry-After`), and a 401 makes the key be read again next time (it may have rotated).
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
    ) -> Result<Value, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if status == 401 {
            *self.key.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let body = match retry_after {
            Some(secs) => format!("{text} (retry after {secs} s)"),
            None => text,
        };
        Err(ClientError::Refused { url, status, body })
    }
}

/// An interaction ID in the coordinator's format: `int_YYYYMMDD_HHMMSS_<16 hex digits>`.
pub fn new_interaction_id() -> String {
    let mut random = [0u8; 8];
    // Without randomness the time alone still orders IDs; collisions need the same second.
    let _ = getrandom::fill(&mut random);
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "int_{}_{}",
        now.strftime("%Y%m%d_%H%M%S"),
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The `X-MCP-Signature` of a request: hex HMAC-SHA256, keyed with SHA-256 of the API key, of
/// `METHOD "\n" PATH "\n" TIMESTAMP "\n" hex(SHA-256(body))`.
pub fn sign(api_key: &str, method: &str, path: &str, timestamp: &str, body: &[u8]) -> String {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let message = format!(
        "{method}\n{path}\n{timestamp}\n{}",
        hex(&Sha256::digest(body))
    );
    let key = Sha256::digest(api_key.as_bytes());
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_report_becomes_a_batch_item_with_its_kind_and_interaction() {
        let item = |body: &str, kind, id: Option<&str>| {
            let report = Report {
                path: String::new(),
                body: body.as_bytes().to_vec(),
                kind,
                id: id.map(str::to_string),
            };
            let mut out = Vec::new();
            report.batch_item(&mut out);
            serde_json::from_slice::<Value>(&out).expect("JSON")
        };
        assert_eq!(
            item("{}", "progress", Some("int_1")),
            json!({"kind": "progress", "interaction_id": "int_1"})
        );
        assert_eq!(
            item(r#"{"success":true}"#, "complete", Some("int_\"1")),
            json!({"kind": "complete", "interaction_id": "int_\"1", "success": true})
        );
        assert_eq!(
            item(
                r#"{"interaction_id":"int_2","request_data":{}}"#,
                "start",
                None
            ),
            json!({"kind": "start", "interaction_id": "int_2", "request_data": {}})
        );
    }

    #[test]
    fn interaction_ids_have_the_coordinators_shape() {
        let id = new_interaction_id();
        assert_eq!(
            id.len(),
            "int_20261202_083653_9dd47a65bd1426a2".len(),
            "{id}"
        );
        assert!(id.starts_with("int_20"), "{id}");
        assert_ne!(id, new_interaction_id());
    }

    #[test]
    fn signatures_match_the_python_clients() {
        // The same vector clients/python's sign() gives.
        assert_eq!(
            sign("k", "POST", "/v1/interactions", "1700000000", b"{}"),
            "4157bab5b40bdb30f856a0a5e37935ed481cc198a7baa853f0c171e077f16f02"
        );
    }

    #[test]
    fn a_client_needs_a_runtime_and_a_real_url() {
        let no_runtime = Client::builder("http://x", Key::Fixed("k".into())).build();
        assert!(matches!(no_runtime, Err(ClientError::NoRuntime)));
        let bad = Client::builder("x:8081", Key::Fixed("k".into())).build();
        assert!(matches!(bad, Err(ClientError::BadUrl(_))));
    }
}
