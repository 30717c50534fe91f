//! How a routed call ended, recorded: the metrics, the router, and the interaction in the log
//! (spooled in the background, after the client has its answer).

use std::time::Instant;

use serde_json::{json, Value};

use super::call::{Ctx, Logged};
use super::directory::Backend;
use super::outlier::Failure;
use super::protocol::code;
use super::{now_ms, Gateway};
use crate::interaction::{EventKind, Fields, InteractionEvent};
use crate::routing::router::Outcome;
use crate::routing::weights::jsonrpc_error_name;

impl Gateway {
    /// Records how a call ended: metrics, the router, the outlier count, and the log.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn finish(
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
        logged
            .span
            .end((!error_type.is_empty()).then_some(error_type.as_str()));
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
    pub(super) fn log(
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
            user_id: Some(self.privacy.pseudonym(&ctx.caller.name)),
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
            Some((jsonrpc_error_name(code), message)),
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
            (false, "CALLER_INVALID_PARAMS".to_string(), true)
        );
        assert_eq!(jsonrpc_error_name(-32042), "JSONRPC_32042");
    }
}
