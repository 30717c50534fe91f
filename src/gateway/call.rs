//! One routed request (`tools/call`, `prompts/get`, `resources/read`): the router picks among
//! the MCPs offering the name, the call fails over while it safely can, and a `tools/call` is
//! logged as an interaction (spooled without waiting for the fsync) that teaches the router at
//! once.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use serde_json::{json, Value};

use super::catalog::{Kind, Target};
use super::directory::Backend;
use super::outlier::{Failure, Verdict};
use super::protocol::{self, code, Message};
use super::upstream::Answer;
use super::Gateway;
use crate::interaction::{new_interaction_id, EventKind, Fields, InteractionEvent};
use crate::routing::router::Outcome;

/// Who asked, and how the answer must be shaped.
pub(super) struct Ctx {
    pub caller: String,
    /// Whose backend sessions to use.
    pub owner: String,
    pub scope: String,
    pub backends: Vec<Arc<Backend>>,
    pub accepts_stream: bool,
    /// The client speaks 2026-07-28 (results get what that revision requires).
    pub modern: bool,
    pub request_bytes: usize,
}

/// What the client gets back.
pub(super) enum Reply {
    Json(Value),
    /// Events relayed as they come; the last is the answer.
    Stream(tokio::sync::mpsc::Receiver<String>),
}

/// A call in flight on one MCP; frees its place when dropped.
pub(super) struct Busy {
    gateway: Arc<Gateway>,
    mcp_id: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut busy = self
            .gateway
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = busy.get_mut(&self.mcp_id) {
            *n = n.saturating_sub(1);
        }
    }
}

/// What the log says about one call.
struct Logged {
    interaction_id: String,
    started_ms: i64,
    started: Instant,
    attempts: Vec<String>,
}

impl Gateway {
    fn occupy(self: &Arc<Self>, backend: &Backend) -> Option<Busy> {
        let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let n = busy.entry(backend.mcp_id.clone()).or_default();
        if *n >= backend.max_concurrent_requests {
            return None;
        }
        *n += 1;
        Some(Busy {
            gateway: self.clone(),
            mcp_id: backend.mcp_id.clone(),
        })
    }

    pub(super) async fn routed(self: &Arc<Self>, ctx: Ctx, kind: Kind, message: Message) -> Reply {
        let id = message.id.clone().unwrap_or(Value::Null);
        let Some(name) = message.target().map(str::to_string) else {
            return Reply::Json(protocol::error(
                id,
                code::INVALID_PARAMS,
                &format!("{} needs params.{}", message.method, kind.id_key()),
            ));
        };
        let catalog = self.catalog(&ctx.scope, kind, &ctx.backends).await;
        let Some(targets) = catalog.routes.get(&name).cloned() else {
            let (code, what) = match kind {
                Kind::Resources => (
                    code::RESOURCE_NOT_FOUND,
                    "no MCP of this scope lists the resource",
                ),
                _ => (
                    code::INVALID_PARAMS,
                    "no Ready MCP of this scope offers it; the list method names what they offer",
                ),
            };
            return Reply::Json(protocol::error(
                id,
                code,
                &format!("{name:?}: {what} ({})", ctx.scope),
            ));
        };
        let tool = (kind == Kind::Tools).then(|| name.clone());
        let mut logged = Logged {
            interaction_id: new_interaction_id(now_ms()),
            started_ms: now_ms(),
            started: Instant::now(),
            attempts: Vec::new(),
        };
        let deadline = Instant::now() + self.config.total_timeout;
        let mut tried: Vec<String> = Vec::new();
        let mut last: Option<(Arc<Backend>, Failure)> = None;
        while tried.len() < self.config.max_attempts {
            let Some((backend, target)) = self.next_candidate(&targets, &tried, tool.as_deref())
            else {
                break;
            };
            tried.push(backend.mcp_id.clone());
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let Some(busy) = self.occupy(&backend) else {
                logged
                    .attempts
                    .push(format!("{}: {}", backend.mcp_id, Failure::Saturated));
                self.metrics
                    .failovers
                    .with_label_values(&["saturated"])
                    .inc();
                last = Some((backend, Failure::Saturated));
                continue;
            };
            let mut forwarded = message.clone();
            if let Value::Object(p) = &mut forwarded.params {
                p.insert(kind.id_key().into(), Value::String(target.name.clone()));
            }
            let timeout = backend
                .call_timeout
                .unwrap_or(self.config.call_timeout)
                .min(remaining);
            let router_now = self.router.now();
            self.router.started(
                &backend.mcp_id,
                &logged.interaction_id,
                tool.as_deref(),
                router_now,
            );
            let key = self.track(&ctx.owner, &id, &backend.mcp_id);
            let sent = Instant::now();
            let result = self
                .upstream
                .send(&backend, &ctx.owner, &forwarded, timeout)
                .await;
            match result {
                Ok(answer) => {
                    self.outliers.success(&backend.mcp_id);
                    return self
                        .answered(
                            ctx,
                            message.method.clone(),
                            tool,
                            backend,
                            answer,
                            busy,
                            logged,
                            sent,
                            key,
                            id,
                        )
                        .await;
                }
                Err(failure) => {
                    self.untrack(&key);
                    drop(busy);
                    let elapsed = sent.elapsed().as_secs_f64();
                    self.router.finished(
                        &backend.mcp_id,
                        &logged.interaction_id,
                        tool.as_deref(),
                        Outcome {
                            success: false,
                            processing_time: Some(elapsed),
                        },
                        self.router.now(),
                    );
                    logged
                        .attempts
                        .push(format!("{}: {failure}", backend.mcp_id));
                    if failure.counts_against() {
                        if let Verdict::Ejected(length) =
                            self.outliers.failure(&backend.mcp_id, self.router.now())
                        {
                            tracing::warn!(mcp_id = %backend.mcp_id, seconds = length.as_secs(), reason = %failure, "MCP ejected from the gateway's rotation after consecutive failures");
                            self.metrics
                                .ejections
                                .with_label_values(&[&backend.mcp_id])
                                .inc();
                            self.metrics
                                .ejected
                                .with_label_values(&[&backend.mcp_id])
                                .set(1);
                        }
                    }
                    let retry = failure.may_fail_over(
                        tool.as_deref().is_some_and(|t| backend.idempotent(t))
                            || kind != Kind::Tools,
                    );
                    self.metrics
                        .failovers
                        .with_label_values(&[failure.reason()])
                        .inc();
                    last = Some((backend, failure));
                    if !retry {
                        break;
                    }
                }
            }
        }
        let message_text = match &last {
            Some((_, Failure::Saturated))
                if logged
                    .attempts
                    .iter()
                    .all(|a| a.ends_with("maxConcurrentRequests")) =>
            {
                format!("every MCP offering {name:?} is at maxConcurrentRequests; retry shortly")
            }
            Some(_) => format!("no MCP answered {name:?}: {}", logged.attempts.join("; ")),
            None => format!("no MCP offering {name:?} is routable now (all ejected or not Ready)"),
        };
        let error_type = last.as_ref().map_or("unavailable", |(_, f)| f.reason());
        self.metrics
            .duration
            .with_label_values(&[
                &message.method,
                tool.as_deref().unwrap_or(""),
                error_type,
                "",
            ])
            .observe(logged.started.elapsed().as_secs_f64());
        if let (Some((backend, failure)), Some(tool)) = (&last, &tool) {
            let code = match failure {
                Failure::Timeout => "TIMEOUT",
                Failure::Saturated => "SATURATED",
                _ => "UNREACHABLE",
            };
            self.log(
                &ctx,
                backend,
                tool,
                &logged,
                None,
                false,
                Some((code, message_text.clone())),
                0,
            );
        }
        Reply::Json(protocol::error_with(
            id,
            code::UNAVAILABLE,
            &message_text,
            json!({"attempts": logged.attempts}),
        ))
    }

    /// The next MCP to try: the router's choice among those not tried and not ejected (the
    /// ejected ones only when nothing else is left).
    fn next_candidate(
        &self,
        targets: &[Target],
        tried: &[String],
        tool: Option<&str>,
    ) -> Option<(Arc<Backend>, Target)> {
        let now = self.router.now();
        let open: Vec<&Target> = targets
            .iter()
            .filter(|t| !tried.contains(&t.mcp_id))
            .collect();
        let healthy: Vec<&str> = open
            .iter()
            .filter(|t| !self.outliers.is_ejected(&t.mcp_id, now))
            .map(|t| t.mcp_id.as_str())
            .collect();
        let pool: Vec<&str> = if healthy.is_empty() {
            open.iter().map(|t| t.mcp_id.as_str()).collect()
        } else {
            healthy
        };
        if pool.is_empty() {
            return None;
        }
        let chosen = match self
            .router
            .route_among(&pool, "gateway", tool, now, &mut rand::rng())
        {
            Ok(route) => route.mcp_id,
            // Saturated by the router's count: try the first anyway; the gateway's own count decides.
            Err(_) => pool[0].to_string(),
        };
        let target = open.into_iter().find(|t| t.mcp_id == chosen)?.clone();
        Some((self.directory.get(&target.mcp_id)?, target))
    }

    fn track(&self, owner: &str, id: &Value, mcp_id: &str) -> (String, String) {
        let key = (owner.to_string(), id.to_string());
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), mcp_id.to_string());
        key
    }

    fn untrack(&self, key: &(String, String)) {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// The MCP a request of `owner` went to, if it is still in flight.
    pub(super) fn in_flight_on(&self, owner: &str, id: &Value) -> Option<String> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(owner.to_string(), id.to_string()))
            .cloned()
    }

    #[allow(clippy::too_many_arguments)]
    async fn answered(
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
                    self.upstream.answer_of(Answer::Stream(response), &id),
                )
                .await
                .unwrap_or(Err(Failure::Timeout));
                drop(busy);
                self.untrack(&key);
                let reply = match reply {
                    Ok(reply) => reply,
                    Err(f) => {
                        protocol::error(id, code::UNAVAILABLE, &format!("{}: {f}", backend.mcp_id))
                    }
                };
                let size = reply.to_string().len();
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
    async fn relay(
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

    /// Records how a call ended: metrics, the router, the outlier count, and the log.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        ctx: &Ctx,
        method: &str,
        tool: Option<&str>,
        backend: &Backend,
        logged: &Logged,
        sent: Instant,
        reply: Result<&Value, &Failure>,
        size: usize,
    ) {
        let mcp_seconds = sent.elapsed().as_secs_f64();
        let (success, error, caller_fault) = match reply {
            Ok(reply) => judge(reply),
            Err(f) => (
                false,
                Some(("UNREACHABLE".to_string(), f.to_string())),
                false,
            ),
        };
        let error_type = error
            .as_ref()
            .map_or("", |(c, _)| c.as_str())
            .to_ascii_lowercase();
        self.metrics
            .duration
            .with_label_values(&[method, tool.unwrap_or(""), &error_type, &backend.mcp_id])
            .observe(logged.started.elapsed().as_secs_f64());
        self.router.finished(
            &backend.mcp_id,
            &logged.interaction_id,
            tool,
            Outcome {
                success: success || caller_fault,
                processing_time: Some(mcp_seconds),
            },
            self.router.now(),
        );
        if let Some(tool) = tool {
            let error = error.as_ref().map(|(c, m)| (c.as_str(), m.clone()));
            self.log(
                ctx,
                backend,
                tool,
                logged,
                Some(mcp_seconds),
                success,
                error,
                size,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        ctx: &Ctx,
        backend: &Backend,
        tool: &str,
        logged: &Logged,
        mcp_seconds: Option<f64>,
        success: bool,
        error: Option<(&str, String)>,
        output_size: usize,
    ) {
        let end_ms = now_ms();
        let gateway_seconds = logged.started.elapsed().as_secs_f64();
        let mut attempts = logged.attempts.clone();
        if mcp_seconds.is_some() {
            attempts.push(format!("{}: answered", backend.mcp_id));
        }
        let fields = Fields {
            mcp_type: Some(backend.mcp_type.clone()),
            user_id: Some(self.privacy.pseudonym(&ctx.caller)),
            request_type: Some(tool.to_string()),
            input_size: Some(ctx.request_bytes as i64),
            parameters: Some(
                json!({"gateway_seconds": gateway_seconds, "attempts": attempts.len()}).to_string(),
            ),
            start_time_ms: Some(logged.started_ms),
            end_time_ms: Some(end_ms),
            processing_time: Some(mcp_seconds.unwrap_or(gateway_seconds)),
            adapter_used: Some("mcp-gateway".into()),
            steps_executed: Some(serde_json::to_string(&attempts).unwrap_or_default()),
            success: Some(success),
            output_size: Some(output_size as i64),
            error_code: error.as_ref().map(|(c, _)| c.to_string()),
            error_message: error.map(|(_, m)| m.chars().take(1000).collect()),
            mcp_version: Some(backend.version.clone()),
            coordinator_version: Some(crate::COORDINATOR_VERSION.to_string()),
            ..Default::default()
        };
        let event = InteractionEvent::new(
            logged.interaction_id.clone(),
            backend.mcp_id.clone(),
            EventKind::Record,
            end_ms,
            fields,
        );
        let spool = self.spool.clone();
        tokio::spawn(async move {
            if let Err(e) = spool.append(std::slice::from_ref(&event)).await {
                tracing::warn!(error = %e, interaction_id = %event.interaction_id, "a gateway call could not be logged");
            }
        });
    }
}

/// Whether an answer is a success, its error (code and message), and whether the error is the
/// caller's own (invalid parameters), which does not count against the MCP.
fn judge(reply: &Value) -> (bool, Option<(String, String)>, bool) {
    if let Some(error) = reply.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return (
            false,
            Some((error_name(code), message)),
            code == code::INVALID_PARAMS,
        );
    }
    let result = reply.get("result");
    if result
        .and_then(|r| r.get("isError"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        let text = result
            .and_then(|r| r.get("content"))
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("the tool reported an error")
            .to_string();
        return (false, Some(("TOOL_ERROR".into(), text)), false);
    }
    (true, None, false)
}

/// The log's name for a JSON-RPC error code.
pub(super) fn error_name(code: i64) -> String {
    match code {
        code::PARSE_ERROR => "PARSE_ERROR".into(),
        code::INVALID_REQUEST => "INVALID_REQUEST".into(),
        code::METHOD_NOT_FOUND => "METHOD_NOT_FOUND".into(),
        code::INVALID_PARAMS => "INVALID_PARAMS".into(),
        code::INTERNAL_ERROR => "INTERNAL_ERROR".into(),
        other => format!("JSONRPC_{}", other.unsigned_abs()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_as_the_log_and_the_router_see_them() {
        assert_eq!(
            judge(&json!({"result": {"content": []}})),
            (true, None, false)
        );
        let (ok, error, _) = judge(
            &json!({"result": {"isError": true, "content": [{"type": "text", "text": "boom"}]}}),
        );
        assert!(!ok);
        assert_eq!(error, Some(("TOOL_ERROR".into(), "boom".into())));
        let (ok, error, caller) = judge(&json!({"error": {"code": -32602, "message": "bad"}}));
        assert_eq!(
            (ok, error.unwrap().0, caller),
            (false, "INVALID_PARAMS".to_string(), true)
        );
        assert_eq!(error_name(-32042), "JSONRPC_32042");
    }
}
