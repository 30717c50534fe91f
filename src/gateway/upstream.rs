//! The gateway's side toward the MCPs: one HTTP client, each MCP's protocol generation (asked
//! once with `server/discover`, falling back to `initialize`), and the sessions a handshake-era
//! MCP needs, one per client session (or caller) and MCP, opened on first use and closed with
//! the client's. Failures come back as [`Failure`], which says whether the call may be retried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::OnceCell;

use super::directory::Backend;
use super::outlier::Failure;
use super::protocol::{
    Message, SseReader, LATEST_HANDSHAKE, METHOD_HEADER, MODERN_VERSION, NAME_HEADER,
    PROTOCOL_VERSION_HEADER, SESSION_HEADER,
};

/// How an MCP speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Generation {
    Modern,
    Legacy,
}

/// A handshake-era session with one MCP.
#[derive(Debug, Clone)]
struct Session {
    id: Option<String>,
    version: String,
}

/// An MCP's answer to a request.
pub enum Answer {
    /// One JSON body (a notification's 202 is `Null`), and its size in bytes.
    Json(Value, usize),
    /// A stream of server-sent events (notifications, then the response).
    Stream(reqwest::Response),
}

type SessionKey = (String, String);

pub struct Upstream {
    http: reqwest::Client,
    generations: Mutex<HashMap<String, Generation>>,
    sessions: Mutex<HashMap<SessionKey, Arc<OnceCell<Session>>>>,
    /// The largest JSON answer (or one event of a stream) taken from an MCP.
    pub max_answer_bytes: usize,
}

impl Upstream {
    pub fn new(connect_timeout: Duration, max_answer_bytes: usize) -> Result<Self, reqwest::Error> {
        // The HTTP client needs a process-wide TLS provider; the binary installs ring, and so does
        // this when nothing has yet (an embedding program, a benchmark).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            generations: Mutex::default(),
            sessions: Mutex::default(),
            max_answer_bytes,
        })
    }

    /// Sends `message` to `backend` for `owner` (a client session, or a caller), waiting at most
    /// `timeout` for the answer to begin.
    pub async fn send(
        &self,
        backend: &Backend,
        owner: &str,
        message: &Message,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let modern = self.generation(backend, timeout).await? == Generation::Modern;
        if modern {
            return self.post(backend, message, None, true, timeout).await;
        }
        for attempt in 0..2 {
            let session = self.session(backend, owner, timeout).await?;
            match self
                .post(backend, message, Some(&session), false, timeout)
                .await
            {
                // The MCP forgot the session (it restarted): open a new one, once. The call
                // itself was refused, so resending it does nothing twice.
                Err(Failure::Unavailable(404)) if attempt == 0 => {
                    self.forget_session(owner, &backend.mcp_id);
                }
                other => return other,
            }
        }
        Err(Failure::Broken(
            "the MCP refused two new sessions in a row".into(),
        ))
    }

    /// A request's JSON answer, from a JSON body or the response event of a stream.
    pub async fn answer_of(&self, answer: Answer, id: &Value) -> Result<Value, Failure> {
        match answer {
            Answer::Json(v, _) => Ok(v),
            Answer::Stream(mut response) => {
                let mut reader = SseReader::default();
                loop {
                    let chunk = response
                        .chunk()
                        .await
                        .map_err(|e| Failure::Broken(format!("the MCP's stream broke: {e}")))?;
                    let Some(chunk) = chunk else {
                        return Err(Failure::Broken(
                            "the MCP's stream ended without an answer".into(),
                        ));
                    };
                    let events = reader
                        .feed(&chunk, self.max_answer_bytes)
                        .map_err(Failure::Broken)?;
                    for data in events {
                        if let Ok(v) = serde_json::from_str::<Value>(&data) {
                            if v.get("id") == Some(id) && v.get("method").is_none() {
                                return Ok(v);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A request the gateway makes on its own account (a listing), answered whole.
    pub async fn request(
        &self,
        backend: &Backend,
        owner: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, Failure> {
        let id = json!(format!("gw-{method}"));
        let message = Message {
            id: Some(id.clone()),
            method: method.into(),
            params,
        };
        let answer = self.send(backend, owner, &message, timeout).await?;
        let reply = tokio::time::timeout(timeout, self.answer_of(answer, &id))
            .await
            .map_err(|_| Failure::Timeout)??;
        match reply.get("result") {
            Some(result) => Ok(result.clone()),
            None => Err(Failure::Broken(format!(
                "{method} failed: {}",
                reply.get("error").unwrap_or(&Value::Null)
            ))),
        }
    }

    /// Closes the handshake-era sessions `owner` holds (its client session ended).
    pub async fn close_sessions(
        &self,
        owner: &str,
        backends: impl Fn(&str) -> Option<Arc<Backend>>,
    ) {
        let closing: Vec<(String, Session)> = {
            let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            let keys: Vec<SessionKey> = sessions
                .keys()
                .filter(|(o, _)| o == owner)
                .cloned()
                .collect();
            keys.into_iter()
                .filter_map(|key| {
                    let cell = sessions.remove(&key)?;
                    Some((key.1, cell.get()?.clone()))
                })
                .collect()
        };
        for (mcp_id, session) in closing {
            let (Some(backend), Some(id)) = (backends(&mcp_id), session.id) else {
                continue;
            };
            let mut request = self
                .http
                .delete(backend.url.clone())
                .header(SESSION_HEADER, id)
                .header(PROTOCOL_VERSION_HEADER, session.version)
                .timeout(Duration::from_secs(5));
            for (k, v) in &backend.headers {
                request = request.header(k, v);
            }
            if let Err(e) = request.send().await {
                tracing::debug!(mcp_id, error = %e, "closing a backend session failed");
            }
        }
    }

    /// Forgets what was learned about an MCP (its registration changed).
    pub fn forget(&self, mcp_id: &str) {
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(mcp_id);
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, id), _| id != mcp_id);
    }

    fn forget_session(&self, owner: &str, mcp_id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(owner.to_string(), mcp_id.to_string()));
    }

    async fn generation(
        &self,
        backend: &Backend,
        timeout: Duration,
    ) -> Result<Generation, Failure> {
        if let Some(g) = self
            .generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&backend.mcp_id)
        {
            return Ok(g.clone());
        }
        let id = json!("gw-discover");
        let probe = Message {
            id: Some(id.clone()),
            method: "server/discover".into(),
            params: json!({}),
        };
        let generation = match self.post(backend, &probe, None, true, timeout).await {
            Ok(answer) => match self.answer_of(answer, &id).await {
                Ok(reply)
                    if reply["result"]["supportedVersions"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|v| v == MODERN_VERSION)) =>
                {
                    Generation::Modern
                }
                _ => Generation::Legacy,
            },
            Err(Failure::Broken(_) | Failure::Unavailable(400..=499)) => Generation::Legacy,
            Err(other) => return Err(other),
        };
        tracing::debug!(mcp_id = %backend.mcp_id, ?generation, "backend protocol generation");
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(backend.mcp_id.clone(), generation.clone());
        Ok(generation)
    }

    async fn session(
        &self,
        backend: &Backend,
        owner: &str,
        timeout: Duration,
    ) -> Result<Session, Failure> {
        let cell = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((owner.to_string(), backend.mcp_id.clone()))
            .or_default()
            .clone();
        let session = cell
            .get_or_try_init(|| self.open_session(backend, timeout))
            .await?;
        Ok(session.clone())
    }

    async fn open_session(&self, backend: &Backend, timeout: Duration) -> Result<Session, Failure> {
        let id = json!("gw-initialize");
        let initialize = Message {
            id: Some(id.clone()),
            method: "initialize".into(),
            params: json!({
                "protocolVersion": LATEST_HANDSHAKE,
                "capabilities": {},
                "clientInfo": {"name": "mcp-coordinator-gateway", "version": env!("CARGO_PKG_VERSION")},
            }),
        };
        let unversioned = Session {
            id: None,
            version: LATEST_HANDSHAKE.into(),
        };
        let response = self
            .raw_post(backend, &initialize, Some(&unversioned), false, timeout)
            .await?;
        let session_id = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = self.read(response).await?;
        let reply = self.answer_of(answer, &id).await?;
        let version = reply["result"]["protocolVersion"]
            .as_str()
            .unwrap_or(LATEST_HANDSHAKE)
            .to_string();
        if reply.get("result").is_none() {
            return Err(Failure::Broken(format!(
                "the MCP refused initialize: {}",
                reply.get("error").unwrap_or(&Value::Null)
            )));
        }
        let session = Session {
            id: session_id,
            version,
        };
        let initialized = Message {
            id: None,
            method: "notifications/initialized".into(),
            params: json!({}),
        };
        self.post(backend, &initialized, Some(&session), false, timeout)
            .await?;
        Ok(session)
    }

    async fn post(
        &self,
        backend: &Backend,
        message: &Message,
        session: Option<&Session>,
        modern: bool,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let started = tokio::time::Instant::now();
        let response = self
            .raw_post(backend, message, session, modern, timeout)
            .await?;
        // A JSON body must arrive within what is left of the timeout too (a stream is bounded
        // by whoever reads it).
        tokio::time::timeout_at(started + timeout, self.read(response))
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn raw_post(
        &self,
        backend: &Backend,
        message: &Message,
        session: Option<&Session>,
        modern: bool,
        timeout: Duration,
    ) -> Result<reqwest::Response, Failure> {
        let body = serde_json::to_vec(&message.for_backend(modern)).unwrap_or_default();
        let mut request = self
            .http
            .post(backend.url.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in &backend.headers {
            request = request.header(k, v);
        }
        if modern {
            request = request
                .header(PROTOCOL_VERSION_HEADER, MODERN_VERSION)
                .header(METHOD_HEADER, &message.method);
            if let Some(name) = message.target() {
                request = request.header(NAME_HEADER, name);
            }
        } else if let Some(session) = session {
            request = request.header(PROTOCOL_VERSION_HEADER, &session.version);
            if let Some(id) = &session.id {
                request = request.header(SESSION_HEADER, id);
            }
        }
        let response = match tokio::time::timeout(timeout, request.body(body).send()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(Err(e)) if e.is_connect() => return Err(Failure::Connect(root_cause(&e))),
            Ok(Err(e)) if e.is_timeout() => return Err(Failure::Timeout),
            Ok(Err(e)) => {
                return Err(Failure::Broken(format!(
                    "the exchange broke: {}",
                    root_cause(&e)
                )))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status().as_u16();
        if matches!(status, 502..=504) || (status == 404 && session.is_some()) {
            return Err(Failure::Unavailable(status));
        }
        Ok(response)
    }

    /// Reads an answer: a stream is handed on, a JSON body read whole (bounded).
    async fn read(&self, mut response: reqwest::Response) -> Result<Answer, Failure> {
        let status = response.status();
        let is_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status.is_success() && is_stream {
            return Ok(Answer::Stream(response));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::Broken(format!("the MCP's answer broke off: {e}")))?
        {
            if body.len() + chunk.len() > self.max_answer_bytes {
                return Err(Failure::Broken(format!(
                    "the MCP's answer exceeds {} bytes",
                    self.max_answer_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() && status.is_success() {
            return Ok(Answer::Json(Value::Null, 0));
        }
        match serde_json::from_slice::<Value>(&body) {
            // A JSON-RPC answer, even with an error status (a 400 naming the problem).
            Ok(v) if v.get("jsonrpc").is_some() => Ok(Answer::Json(v, body.len())),
            _ if status.is_success() => {
                Err(Failure::Broken("the MCP's answer is not JSON-RPC".into()))
            }
            _ => Err(Failure::of_status(status.as_u16())),
        }
    }
}

fn root_cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
