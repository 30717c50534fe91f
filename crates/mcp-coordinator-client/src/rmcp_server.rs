//! Reporting for [`rmcp`] servers: wrap the server's handler in [`Reporting`] and every
//! `tools/call` is reported as an interaction — the tool's name as `request_type`, how long the
//! call took, and whether it succeeded (a tool result marked `isError`, or a protocol error, is a
//! failure with its code and message). Everything else passes through untouched.
//!
//! ```ignore
//! use rmcp::ServiceExt;
//! let server = Reporting::new(MyServer::default(), client).serve(transport).await?;
//! ```

use std::time::Instant;

use rmcp::model::{ClientRequest, ServerResult};
use rmcp::service::{MaybeSendFuture, NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, Service};
use serde_json::{json, Value};

use crate::Client;

/// An rmcp server whose tool calls are reported through `client`.
pub struct Reporting<S> {
    inner: S,
    client: Client,
}

impl<S> Reporting<S> {
    pub fn new(inner: S, client: Client) -> Self {
        Self { inner, client }
    }

    /// The wrapped server.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

/// The text of a tool result's content, for the error message of a failed call.
fn content_text(result: &Value) -> String {
    let text: Vec<&str> = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect();
    let joined = text.join(" ");
    if joined.is_empty() {
        "the tool reported an error".to_string()
    } else {
        joined.chars().take(1000).collect()
    }
}

/// `-32602` → `MCP_ERROR_32602`: JSON-RPC codes as the seed's error codes.
fn error_code(error: &ErrorData) -> String {
    format!("MCP_ERROR_{}", error.code.0.unsigned_abs())
}

impl<S: Service<RoleServer>> Service<RoleServer> for Reporting<S> {
    fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> impl std::future::Future<Output = Result<ServerResult, ErrorData>> + MaybeSendFuture + '_
    {
        let tool = match &request {
            ClientRequest::CallToolRequest(call) => Some(call.params.name.to_string()),
            _ => None,
        };
        let input_size = match &request {
            ClientRequest::CallToolRequest(call) => call
                .params
                .arguments
                .as_ref()
                .and_then(|a| serde_json::to_vec(a).ok())
                .map_or(0, |bytes| bytes.len()),
            _ => 0,
        };
        async move {
            let Some(tool) = tool else {
                return self.inner.handle_request(request, context).await;
            };
            let id = self.client.start(&tool, json!({"input_size": input_size}));
            let started = Instant::now();
            let answer = self.inner.handle_request(request, context).await;
            let seconds = started.elapsed().as_secs_f64();
            match &answer {
                Ok(ServerResult::CallToolResult(result)) if result.is_error == Some(true) => {
                    let shown = serde_json::to_value(result).unwrap_or(Value::Null);
                    self.client.fail(
                        &id,
                        "TOOL_ERROR",
                        &content_text(&shown),
                        json!({"processing_time": seconds}),
                    );
                }
                Ok(result) => {
                    let output_size = serde_json::to_vec(result).map_or(0, |b| b.len());
                    self.client.complete(
                        &id,
                        json!({"processing_time": seconds, "output_size": output_size}),
                    );
                }
                Err(error) => self.client.fail(
                    &id,
                    &error_code(error),
                    &error.message,
                    json!({"processing_time": seconds}),
                ),
            }
            answer
        }
    }

    fn handle_notification(
        &self,
        notification: rmcp::model::ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl std::future::Future<Output = Result<(), ErrorData>> + MaybeSendFuture + '_ {
        self.inner.handle_notification(notification, context)
    }

    fn get_info(&self) -> <RoleServer as rmcp::service::ServiceRole>::Info {
        self.inner.get_info()
    }

    fn supported_protocol_versions(
        &self,
    ) -> std::borrow::Cow<'static, [rmcp::model::ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }
}
