//! The answer of a routed call going back to the client: whole (JSON), or the MCP's event stream
//! relayed event by event, after which the call is recorded.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::call::{Busy, Ctx, Logged, Reply};
use super::directory::Backend;
use super::outlier::Failure;
use super::protocol::{self, code};
use super::upstream::Answer;
use super::Gateway;

impl Gateway {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn answered(
        self: &Arc<Self>,
        ctx: Ctx,
        method: String,
        tool: Option<String>,
        backend: Arc<Backend>,
        answer: Answer,
        busy: Busy,
        logged: Logged,
        sent: Instant,
        key: (String, String),
        id: Value,
    ) -> Reply {
        match answer {
            Answer::Json(reply, size) => {
                drop(busy);
                self.untrack(&key);
                self.finish(
                    &ctx,
                    &method,
                    tool.as_deref(),
                    &backend,
                    &logged,
                    sent,
                    Ok(&reply),
                    size,
                );
                Reply::Json(reply)
            }
            Answer::Stream(response) if !ctx.accepts_stream => {
                let reply = tokio::time::timeout(
                    self.config.total_timeout,
                    self.upstream
                        .answer_of(&backend, Answer::Stream(response), &id),
                )
                .await
                .unwrap_or(Err(Failure::Timeout));
                drop(busy);
                self.untrack(&key);
                // A stream that broke off is the MCP's failure, recorded as such (not as the
                // error answer the client gets).
                let (reply, size) = match &reply {
                    Ok(reply) => (Ok(reply), reply.to_string().len()),
                    Err(f) => (Err(f), 0),
                };
                self.finish(
                    &ctx,
                    &method,
                    tool.as_deref(),
                    &backend,
                    &logged,
                    sent,
                    reply,
                    size,
                );
                let reply = match reply {
                    Ok(reply) => reply.clone(),
                    Err(f) => {
                        protocol::error(id, code::UNAVAILABLE, &format!("{}: {f}", backend.mcp_id))
                    }
                };
                Reply::Json(reply)
            }
            Answer::Stream(response) => {
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                let gateway = self.clone();
                tokio::spawn(async move {
                    let outcome = gateway
                        .relay(response, &id, tx, ctx.modern.then_some(method.as_str()))
                        .await;
                    gateway.untrack(&key);
                    drop(busy);
                    let (reply, size) = match &outcome {
                        Ok((reply, size)) => (Ok(reply), *size),
                        Err(f) => (Err(f), 0),
                    };
                    gateway.finish(
                        &ctx,
                        &method,
                        tool.as_deref(),
                        &backend,
                        &logged,
                        sent,
                        reply,
                        size,
                    );
                });
                Reply::Stream(rx)
            }
        }
    }

    /// Relays a stream's events to the client until the answer; the answer and bytes relayed.
    pub(super) async fn relay(
        &self,
        mut response: reqwest::Response,
        id: &Value,
        tx: tokio::sync::mpsc::Sender<String>,
        modern: Option<&str>,
    ) -> Result<(Value, usize), Failure> {
        let mut reader = protocol::SseReader::default();
        let mut size = 0;
        let deadline = tokio::time::Instant::now() + self.config.total_timeout;
        loop {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .map_err(|_| Failure::Timeout)?;
            let chunk =
                chunk.map_err(|e| Failure::Broken(format!("the MCP's stream broke: {e}")))?;
            let Some(chunk) = chunk else {
                return Err(Failure::Broken(
                    "the MCP's stream ended without an answer".into(),
                ));
            };
            for data in reader
                .feed(&chunk, self.upstream.max_answer_bytes)
                .map_err(Failure::Broken)?
            {
                size += data.len();
                let mut value: Option<Value> = serde_json::from_str(&data).ok();
                let is_answer = value
                    .as_ref()
                    .is_some_and(|v| v.get("id") == Some(id) && v.get("method").is_none());
                let mut data = data;
                if let (true, Some(method), Some(v)) = (is_answer, modern, value.take()) {
                    let fixed = protocol::modern_response(v, true, method);
                    data = fixed.to_string();
                    value = Some(fixed);
                }
                if tx.send(data).await.is_err() {
                    return Err(Failure::Broken("the client went away".into()));
                }
                if is_answer {
                    return value.map(|v| (v, size)).ok_or(Failure::Timeout);
                }
            }
        }
    }
}
