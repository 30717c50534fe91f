//! One routed request (`tools/call`, `prompts/get`, `resources/read`): the router picks among
//! the MCPs offering the name, the call fails over while it safely can, and a `tools/call` is
//! logged as an interaction (spooled without waiting for the fsync) that teaches the router at
//! once.

use std::sync::{Arc, PoisonError};
use std::time::Instant;

use serde_json::{json, Value};

use super::access::Refused;
use super::catalog::{Kind, Target};
use super::directory::Backend;
use super::outlier::{Failure, Verdict};
use super::protocol::{self, code, Message};
use super::trace::CallSpan;
use super::{now_ms, Gateway};
use crate::interaction::new_interaction_id;
use crate::routing::router::Outcome;
use crate::trust::callers::Caller;

/// Who asked, and how the answer must be shaped.
pub(super) struct Ctx {
    pub caller: Caller,
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
    /// Over a rate limit: the error, answered with 429 and `Retry-After`.
    Limited(Value, std::time::Duration),
}

/// A call in flight on one MCP; frees its place when dropped.
pub(super) struct Busy {
    pub(super) gateway: Arc<Gateway>,
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
pub(super) struct Logged {
    pub(super) interaction_id: String,
    pub(super) started_ms: i64,
    pub(super) started: Instant,
    pub(super) attempts: Vec<String>,
    /// The call's span (see `trace.rs`), ended with the call.
    pub(super) span: CallSpan,
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
        // The registrations' rules, before anything leaves the gateway.
        let targets = match &tool {
            Some(tool) => {
                let arguments = message.params.get("arguments").unwrap_or(&Value::Null);
                match self.permitted(&ctx.caller, tool, arguments, &targets) {
                    Ok(allowed) => allowed,
                    Err(refused) => {
                        return Reply::Json(protocol::error(
                            id,
                            code::FORBIDDEN,
                            &refused.message(tool),
                        ))
                    }
                }
            }
            None => targets,
        };
        let mut limited: Option<Refused> = None;
        let interaction_id = new_interaction_id(now_ms());
        let mut logged = Logged {
            span: CallSpan::start(&message, &name, &interaction_id),
            interaction_id,
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
            if let Some(tool) = &tool {
                if let Err(refused) = self.take_rate(&backend.mcp_id, &ctx.caller.name, tool) {
                    logged
                        .attempts
                        .push(format!("{}: {}", backend.mcp_id, refused.message(tool)));
                    limited = Some(refused);
                    continue;
                }
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
            // Renamed only when the scope lists it under another name (`<registration>.<name>`).
            let mut renamed = (target.name != name).then(|| {
                let mut renamed = message.clone();
                if let Value::Object(p) = &mut renamed.params {
                    p.insert(kind.id_key().into(), Value::String(target.name.clone()));
                }
                renamed
            });
            let attempt = logged.span.attempt(&backend, &message, &name, &mut renamed);
            let forwarded = renamed.as_ref().unwrap_or(&message);
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
                .send(&backend, &ctx.owner, forwarded, timeout)
                .await;
            attempt.end(result.as_ref().err().map(Failure::reason));
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
        if let (None, Some(refused @ Refused::Limited { retry_after, .. }), Some(tool)) =
            (&last, &limited, &tool)
        {
            self.refused_by_policy(&ctx.caller, tool, refused);
            logged.span.end(Some("rate_limited"));
            let error = protocol::error(id, code::RATE_LIMITED, &refused.message(tool));
            return Reply::Limited(error, *retry_after);
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
        logged.span.end(Some(error_type));
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
    pub(super) fn next_candidate(
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

    pub(super) fn track(&self, owner: &str, id: &Value, mcp_id: &str) -> (String, String) {
        let key = (owner.to_string(), id.to_string());
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone(), mcp_id.to_string());
        key
    }

    pub(super) fn untrack(&self, key: &(String, String)) {
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
}
