//! Talking to one MCP server over streamable HTTP, either generation: a message posted with the
//! headers its generation needs, an answer read whole or handed on as a stream (bounded), the
//! generation asked with `server/discover` and the `initialize` handshake it falls back to.
//! Time limits are the caller's: every step here is a future it can wrap in a timeout.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::wire::{
    Message, SseReader, LATEST_HANDSHAKE, METHOD_HEADER, MODERN_VERSION, NAME_HEADER,
    PROTOCOL_VERSION_HEADER, SESSION_HEADER,
};

/// Why an exchange with a server did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The connection was refused or failed before the request was written.
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("no answer in time")]
    Timeout,
    /// An HTTP status without a JSON-RPC answer.
    #[error("the server answered HTTP {0} without a JSON-RPC answer")]
    Status(u16),
    /// The request was sent and the exchange broke, or the answer is not MCP.
    #[error("{0}")]
    Broken(String),
    /// The server answered with a JSON-RPC error.
    #[error("the server answered error {code}: {message}")]
    Rpc { code: i64, message: String },
}

/// How a request is sent: with the 2026-07-28 revision's headers, or within a handshake-era
/// session (whose ID the server may not have given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Modern,
    Handshake {
        version: String,
        session: Option<String>,
    },
}

/// A server's answer to one request.
pub enum Answer {
    /// One JSON body (a notification's 202 is `Null`), and its size in bytes.
    Json(Value, usize),
    /// A stream of server-sent events (notifications, then the response).
    Stream(reqwest::Response),
}

/// One server, as a client reaches it.
#[derive(Clone, Copy)]
pub struct Server<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a reqwest::Url,
    /// Sent with every request (credentials from a Secret).
    pub headers: &'a BTreeMap<String, String>,
    /// The largest JSON answer, or one event of a stream, taken from the server.
    pub max_answer_bytes: usize,
}

impl Server<'_> {
    /// Posts `message` with the headers `mode` needs; the response as it came.
    pub async fn post(
        &self,
        message: &Message,
        mode: &Mode,
    ) -> Result<reqwest::Response, ExchangeError> {
        let modern = *mode == Mode::Modern;
        let body = serde_json::to_vec(&message.for_backend(modern)).unwrap_or_default();
        let mut request = self
            .http
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in self.headers {
            request = request.header(k, v);
        }
        match mode {
            Mode::Modern => {
                request = request
                    .header(PROTOCOL_VERSION_HEADER, MODERN_VERSION)
                    .header(METHOD_HEADER, &message.method);
                if let Some(name) = message.target() {
                    request = request.header(NAME_HEADER, name);
                }
            }
            Mode::Handshake { version, session } => {
                request = request.header(PROTOCOL_VERSION_HEADER, version);
                if let Some(id) = session {
                    request = request.header(SESSION_HEADER, id);
                }
            }
        }
        request.body(body).send().await.map_err(|e| {
            if e.is_connect() {
                ExchangeError::Connect(root_cause(&e))
            } else if e.is_timeout() {
                ExchangeError::Timeout
            } else {
                ExchangeError::Broken(format!("the exchange broke: {}", root_cause(&e)))
            }
        })
    }

    /// Reads an answer: a stream is handed on, a JSON body read whole (bounded).
    pub async fn read(&self, mut response: reqwest::Response) -> Result<Answer, ExchangeError> {
        let status = response.status();
        let is_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if status.is_success() && is_stream {
            return Ok(Answer::Stream(response));
        }
        // A notification's answer: nothing to read, whatever the body says.
        if status == reqwest::StatusCode::ACCEPTED {
            return Ok(Answer::Json(Value::Null, 0));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            ExchangeError::Broken(format!("the answer broke off: {}", root_cause(&e)))
        })? {
            if body.len() + chunk.len() > self.max_answer_bytes {
                return Err(ExchangeError::Broken(format!(
                    "the answer exceeds {} bytes",
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
                Err(ExchangeError::Broken("the answer is not JSON-RPC".into()))
            }
            _ => Err(ExchangeError::Status(status.as_u16())),
        }
    }

    /// A request's JSON-RPC response, from a JSON body or the response event of a stream.
    pub async fn answer_of(&self, answer: Answer, id: &Value) -> Result<Value, ExchangeError> {
        let mut response = match answer {
            Answer::Json(v, _) => return Ok(v),
            Answer::Stream(response) => response,
        };
        let mut reader = SseReader::default();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                ExchangeError::Broken(format!("the stream broke: {}", root_cause(&e)))
            })?;
            let Some(chunk) = chunk else {
                return Err(ExchangeError::Broken(
                    "the stream ended without an answer".into(),
                ));
            };
            let events = reader
                .feed(&chunk, self.max_answer_bytes)
                .map_err(ExchangeError::Broken)?;
            for data in events {
                if let Ok(v) = serde_json::from_str::<Value>(&data) {
                    if v.get("id") == Some(id) && v.get("method").is_none() {
                        return Ok(v);
                    }
                }
            }
        }
    }

    /// One request answered whole: its result, or its JSON-RPC error as [`ExchangeError::Rpc`].
    pub async fn request(
        &self,
        method: &str,
        params: Value,
        mode: &Mode,
    ) -> Result<Value, ExchangeError> {
        let id = json!(format!("mcp-coordinator/{method}"));
        let message = Message {
            id: Some(id.clone()),
            method: method.into(),
            params,
        };
        let response = self.post(&message, mode).await?;
        let answer = self.read(response).await?;
        result_of(self.answer_of(answer, &id).await?)
    }

    /// Whether the server speaks 2026-07-28: `server/discover`'s result when it does, `None`
    /// when its answer says it is of the handshake generation (an error, a 4xx, no such method).
    pub async fn discover(&self) -> Result<Option<Value>, ExchangeError> {
        match self
            .request("server/discover", json!({}), &Mode::Modern)
            .await
        {
            Ok(result) if speaks_modern(&result) => Ok(Some(result)),
            Ok(_) => Ok(None),
            Err(ExchangeError::Rpc { .. } | ExchangeError::Broken(_)) => Ok(None),
            Err(ExchangeError::Status(400..=499)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The handshake: `initialize`, then `notifications/initialized` in the session it opened.
    /// The session's mode and `initialize`'s result.
    pub async fn initialize(&self, client: &str) -> Result<(Mode, Value), ExchangeError> {
        let id = json!("mcp-coordinator/initialize");
        let initialize = Message {
            id: Some(id.clone()),
            method: "initialize".into(),
            params: json!({
                "protocolVersion": LATEST_HANDSHAKE,
                "capabilities": {},
                "clientInfo": {"name": client, "version": env!("CARGO_PKG_VERSION")},
            }),
        };
        let unversioned = Mode::Handshake {
            version: LATEST_HANDSHAKE.into(),
            session: None,
        };
        let response = self.post(&initialize, &unversioned).await?;
        let session = response
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let answer = self.read(response).await?;
        let result = result_of(self.answer_of(answer, &id).await?)?;
        let version = result["protocolVersion"]
            .as_str()
            .unwrap_or(LATEST_HANDSHAKE)
            .to_string();
        let mode = Mode::Handshake { version, session };
        let initialized = Message {
            id: None,
            method: "notifications/initialized".into(),
            params: json!({}),
        };
        let response = self.post(&initialized, &mode).await?;
        self.read(response).await?;
        Ok((mode, result))
    }

    /// Ends a handshake-era session (a modern server has none); failures do not matter.
    pub async fn close(&self, mode: &Mode) {
        let Mode::Handshake {
            version,
            session: Some(id),
        } = mode
        else {
            return;
        };
        let mut request = self
            .http
            .delete(self.url.clone())
            .header(SESSION_HEADER, id)
            .header(PROTOCOL_VERSION_HEADER, version);
        for (k, v) in self.headers {
            request = request.header(k, v);
        }
        if let Err(e) = request.send().await {
            tracing::debug!(url = %self.url, error = %e, "closing an MCP session failed");
        }
    }
}

/// Whether a `server/discover` result lists the 2026-07-28 revision.
fn speaks_modern(result: &Value) -> bool {
    result["supportedVersions"]
        .as_array()
        .is_some_and(|v| v.iter().any(|v| v == MODERN_VERSION))
}

/// A JSON-RPC response's result, or its error.
fn result_of(mut response: Value) -> Result<Value, ExchangeError> {
    if let Some(result) = response.get_mut("result") {
        return Ok(result.take());
    }
    let error = &response["error"];
    Err(ExchangeError::Rpc {
        code: error["code"].as_i64().unwrap_or(0),
        message: error["message"]
            .as_str()
            .unwrap_or("no message")
            .chars()
            .take(512)
            .collect(),
    })
}

/// The innermost error of a chain ("connection refused" rather than "error sending request").
pub fn root_cause(e: &dyn std::error::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}
