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
use super::protocol::Message;
pub use crate::mcp::client::Answer;
use crate::mcp::client::{ExchangeError, Mode, Server};

/// How an MCP speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Generation {
    Modern,
    Legacy,
}

impl From<ExchangeError> for Failure {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Connect(cause) => Failure::Connect(cause),
            ExchangeError::Timeout => Failure::Timeout,
            ExchangeError::Status(status) => Failure::of_status(status),
            ExchangeError::Broken(why) => Failure::Broken(format!("the MCP: {why}")),
            rpc @ ExchangeError::Rpc { .. } => Failure::Broken(rpc.to_string()),
        }
    }
}

type SessionKey = (String, String);

pub struct Upstream {
    http: reqwest::Client,
    generations: Mutex<HashMap<String, Generation>>,
    sessions: Mutex<HashMap<SessionKey, Arc<OnceCell<Mode>>>>,
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

    fn server<'a>(&'a self, backend: &'a Backend) -> Server<'a> {
        Server {
            http: &self.http,
            url: &backend.url,
            headers: &backend.headers,
            max_answer_bytes: self.max_answer_bytes,
        }
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
        if self.generation(backend, timeout).await? == Generation::Modern {
            return self.post(backend, message, &Mode::Modern, timeout).await;
        }
        for attempt in 0..2 {
            let session = self.session(backend, owner, timeout).await?;
            match self.post(backend, message, &session, timeout).await {
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
    pub async fn answer_of(
        &self,
        backend: &Backend,
        answer: Answer,
        id: &Value,
    ) -> Result<Value, Failure> {
        Ok(self.server(backend).answer_of(answer, id).await?)
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
        let reply = tokio::time::timeout(timeout, self.answer_of(backend, answer, &id))
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
        let closing: Vec<(String, Mode)> = {
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
        for (mcp_id, mode) in closing {
            if let Some(backend) = backends(&mcp_id) {
                let server = self.server(&backend);
                let _ = tokio::time::timeout(Duration::from_secs(5), server.close(&mode)).await;
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
        let discovered = tokio::time::timeout(timeout, self.server(backend).discover())
            .await
            .map_err(|_| Failure::Timeout)??;
        let generation = match discovered {
            Some(_) => Generation::Modern,
            None => Generation::Legacy,
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
    ) -> Result<Mode, Failure> {
        let cell = self
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((owner.to_string(), backend.mcp_id.clone()))
            .or_default()
            .clone();
        let session = cell
            .get_or_try_init(|| async {
                let server = self.server(backend);
                let handshake = server.initialize("mcp-coordinator-gateway");
                match tokio::time::timeout(timeout, handshake).await {
                    Err(_) => Err(Failure::Timeout),
                    Ok(Err(ExchangeError::Rpc { code, message })) => Err(Failure::Broken(format!(
                        "the MCP refused initialize: {code} {message}"
                    ))),
                    Ok(other) => Ok(other?.0),
                }
            })
            .await?;
        Ok(session.clone())
    }

    async fn post(
        &self,
        backend: &Backend,
        message: &Message,
        mode: &Mode,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let started = tokio::time::Instant::now();
        let server = self.server(backend);
        let response = tokio::time::timeout(timeout, server.post(message, mode))
            .await
            .map_err(|_| Failure::Timeout)??;
        let status = response.status().as_u16();
        let in_session = matches!(mode, Mode::Handshake { .. });
        if matches!(status, 502..=504) || (status == 404 && in_session) {
            return Err(Failure::Unavailable(status));
        }
        // A JSON body must arrive within what is left of the timeout too (a stream is bounded
        // by whoever reads it).
        tokio::time::timeout_at(started + timeout, server.read(response))
            .await
            .map_err(|_| Failure::Timeout)?
            .map_err(Failure::from)
    }
}
