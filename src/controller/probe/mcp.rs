//! The `mcp` probe: speaks MCP over streamable HTTP to the process path, either generation. A
//! 2026-07-28 server answers `server/discover`; any other gets `initialize` and `ping` in a
//! session, closed at the end. Then `tools/list` (paged, bounded) and, when declared, the
//! functional probe's `tools/call`.

use serde_json::{json, Value};

use super::learn;
use super::{Failure, ProbeTarget};
use crate::controller::health::Learned;
use crate::crd::ToolSchema;
use crate::mcp::client::{ExchangeError, Mode, Server};

/// The largest answer a probe reads (a tool list, a functional probe's result).
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// At most this many tools/list pages are read, and this many tools kept: an MCP cannot make a
/// probe page forever or grow its registration's status without bound.
const MAX_TOOL_PAGES: usize = 16;
const MAX_TOOLS: usize = 256;
/// What the tools kept in status may take in all (their names, digests and property types): far
/// below what one Kubernetes object may hold, whatever the server lists.
const MAX_TOOL_BYTES: usize = 128 * 1024;
/// The largest functional-probe arguments sent, as JSON text.
const MAX_CALL_ARGUMENTS: usize = 8 * 1024;

pub(super) async fn probe(
    client: &reqwest::Client,
    target: &ProbeTarget,
) -> Result<Option<Learned>, Failure> {
    let url = reqwest::Url::parse(&target.url)
        .map_err(|e| Failure::Down(format!("{} is not a URL: {e}", target.url)))?;
    let server = Server {
        http: client,
        url: &url,
        headers: &target.headers,
        max_answer_bytes: MAX_ANSWER_BYTES,
    };
    let (mode, info) = match server
        .discover()
        .await
        .map_err(|e| failure("server/discover", e))?
    {
        Some(result) => (Mode::Modern, learn::from_discover(&result)),
        None => {
            let (mode, result) = server
                .initialize("mcp-coordinator-probe")
                .await
                .map_err(|e| failure("initialize", e))?;
            (mode, learn::from_initialize(&result))
        }
    };
    let learned = async {
        if mode != Mode::Modern {
            server
                .request("ping", json!({}), &mode)
                .await
                .map_err(|e| failure("ping", e))?;
        }
        let tools = tools(&server, &mode).await?;
        let call = match &target.call {
            Some(call) => Some(functional(&server, &mode, call).await?),
            None => None,
        };
        Ok(Some(Learned {
            server: info,
            tools,
            call,
        }))
    }
    .await;
    server.close(&mode).await;
    learned
}

async fn tools(server: &Server<'_>, mode: &Mode) -> Result<Vec<ToolSchema>, Failure> {
    let mut tools = Vec::new();
    let mut bytes = 0;
    let mut cursor: Option<Value> = None;
    for _ in 0..MAX_TOOL_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = server
            .request("tools/list", params, mode)
            .await
            .map_err(|e| failure("tools/list", e))?;
        for tool in page["tools"].as_array().into_iter().flatten() {
            let Some(schema) = learn::tool_schema(tool) else {
                continue;
            };
            bytes += learn::size_of(&schema);
            if tools.len() >= MAX_TOOLS || bytes > MAX_TOOL_BYTES {
                break;
            }
            tools.push(schema);
        }
        cursor = page.get("nextCursor").filter(|c| !c.is_null()).cloned();
        if cursor.is_none() || tools.len() >= MAX_TOOLS || bytes > MAX_TOOL_BYTES {
            break;
        }
    }
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tools)
}

/// The functional probe: its verdict, or the failure when the call got no answer at all.
async fn functional(
    server: &Server<'_>,
    mode: &Mode,
    call: &crate::crd::ProbeCall,
) -> Result<Result<(), String>, Failure> {
    let arguments = call.arguments.clone().unwrap_or_else(|| json!({}));
    if arguments.to_string().len() > MAX_CALL_ARGUMENTS {
        return Ok(Err(format!(
            "healthCheck.call.arguments exceed {MAX_CALL_ARGUMENTS} bytes of JSON"
        )));
    }
    let params = json!({"name": call.tool, "arguments": arguments});
    match server.request("tools/call", params, mode).await {
        Ok(result) => Ok(learn::judge_call(&result, &call.expect)),
        // A JSON-RPC error is an answer: the tool exists or not, the arguments fit or not.
        Err(ExchangeError::Rpc { code, message }) => Ok(Err(format!(
            "tools/call {} was refused with error {code}: {message:?}",
            call.tool
        ))),
        Err(other) => Err(failure("tools/call", other)),
    }
}

fn failure(step: &str, error: ExchangeError) -> Failure {
    match error {
        ExchangeError::Status(status @ (401 | 403)) => Failure::Refused(format!(
            "MCP {step} was refused with HTTP {status}: it is up but refuses the probe's credentials; put them in a Secret named by healthCheck.headersFromSecret"
        )),
        other => Failure::Down(format!("MCP {step} failed: {other}")),
    }
}
