//! Self-registration: an MCP declares itself to the coordinator with a registrar token (the
//! seed's `register_mcp`) and gets back its ID, its API key and where and how often to report.
//! Registering again is safe: the same name keeps its ID and key unless a rotation is asked for.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{ClientError, Key};

/// What an MCP says about itself (the seed's `mcp_info`).
#[derive(Debug, Clone, Default)]
pub struct McpInfo {
    /// The MCP's name (`ocr_workflow_mcp`); its registration is named after it.
    pub name: String,
    /// Its semantic version (`1.0.0`).
    pub version: String,
    /// Its type (`workflow`, `adapter`, ...): part of its ID.
    pub mcp_type: String,
    pub capabilities: Vec<String>,
    pub supported_formats: Vec<String>,
    /// As the seed writes them: `"1GB"`, `"2 cores"`.
    pub min_memory: Option<String>,
    pub min_cpu: Option<String>,
    pub gpu_required: bool,
    /// Where the coordinator reaches the MCP (`http://ocr.example:8080`).
    pub url: String,
    /// Paths under `url`; the coordinator's defaults (`/health`, `/process`, `/status`) if unset.
    pub health_check_path: Option<String>,
    pub process_path: Option<String>,
    pub status_path: Option<String>,
    /// Where to register; the registrar token's first namespace if unset.
    pub namespace: Option<String>,
}

impl McpInfo {
    /// The seed's `mcp_info` object.
    pub fn to_json(&self) -> Value {
        let mut info = json!({
            "name": self.name,
            "version": self.version,
            "type": self.mcp_type,
            "capabilities": self.capabilities,
            "supported_formats": self.supported_formats,
            "url": self.url,
            "resource_requirements": {"gpu_required": self.gpu_required},
        });
        if let Some(memory) = &self.min_memory {
            info["resource_requirements"]["min_memory"] = json!(memory);
        }
        if let Some(cpu) = &self.min_cpu {
            info["resource_requirements"]["min_cpu"] = json!(cpu);
        }
        let mut endpoints = serde_json::Map::new();
        for (name, path) in [
            ("health_check", &self.health_check_path),
            ("process", &self.process_path),
            ("status", &self.status_path),
        ] {
            if let Some(path) = path {
                endpoints.insert(name.into(), json!(path));
            }
        }
        if !endpoints.is_empty() {
            info["endpoints"] = Value::Object(endpoints);
        }
        if let Some(ns) = &self.namespace {
            info["namespace"] = json!(ns);
        }
        info
    }
}

/// What the coordinator answered: everything the MCP needs to report.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub mcp_id: String,
    pub api_key: String,
    /// Where the seed's report envelope goes (`…/api/interactions`); [`crate::Client::builder`]
    /// takes it as the API's URL too.
    pub interaction_log_endpoint: String,
    pub heartbeat_interval: Duration,
    pub data_report_interval: Duration,
    pub namespace: String,
    pub name: String,
    /// The seed's `routing_config`, as answered.
    pub routing_config: Value,
}

impl Registration {
    /// A reporting client for this registration, heartbeating and sending its reports on the
    /// intervals the coordinator gave.
    pub fn client(&self) -> Result<crate::Client, ClientError> {
        crate::Client::builder(
            self.interaction_log_endpoint.clone(),
            Key::Fixed(self.api_key.clone()),
        )
        .heartbeat_every(self.heartbeat_interval)
        .report_every(self.data_report_interval)
        .build()
    }
}

async fn send(coordinator: &str, token: &str, body: &Value) -> Result<Value, ClientError> {
    if !coordinator.starts_with("http://") && !coordinator.starts_with("https://") {
        return Err(ClientError::BadUrl(coordinator.to_string()));
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("{}/api/register", coordinator.trim_end_matches('/'));
    let unreachable = |source| ClientError::Unreachable {
        url: url.clone(),
        source,
    };
    // Registration waits (bounded, on the coordinator's side) for the ID and key.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(unreachable)?;
    let response = http
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(unreachable)?;
    if status != 200 {
        return Err(ClientError::Refused {
            url,
            status,
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|e| ClientError::Refused {
        url,
        status,
        body: format!("not JSON ({e}): {text}"),
    })
}

/// Registers the MCP `info` with the coordinator at `coordinator` (its ingest URL) using a
/// registrar token; `rotate_key` asks for a new API key.
pub async fn register(
    coordinator: &str,
    registrar_token: &str,
    info: &McpInfo,
    rotate_key: bool,
) -> Result<Registration, ClientError> {
    let body =
        json!({"action": "register_mcp", "mcp_info": info.to_json(), "rotate_key": rotate_key});
    let answer = send(coordinator, registrar_token, &body).await?;
    let text = |pointer: &str| {
        answer
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let seconds = |pointer: &str, default: u64| {
        Duration::from_secs(
            answer
                .pointer(pointer)
                .and_then(Value::as_u64)
                .unwrap_or(default),
        )
    };
    let registration = Registration {
        mcp_id: text("/mcp_id"),
        api_key: text("/api_key"),
        interaction_log_endpoint: text("/coordinator_config/interaction_log_endpoint"),
        heartbeat_interval: seconds("/coordinator_config/heartbeat_interval", 30),
        data_report_interval: seconds("/coordinator_config/data_report_interval", 10),
        namespace: text("/registration/namespace"),
        name: text("/registration/name"),
        routing_config: answer.get("routing_config").cloned().unwrap_or(Value::Null),
    };
    if registration.mcp_id.is_empty() || registration.api_key.is_empty() {
        return Err(ClientError::NoKey(format!(
            "the coordinator's answer has no mcp_id or api_key: {answer}"
        )));
    }
    Ok(registration)
}

/// Retires a self-registered MCP: its ID is never reused, its key stops working.
pub async fn unregister(
    coordinator: &str,
    registrar_token: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<(), ClientError> {
    let mut body = json!({"action": "unregister_mcp", "name": name});
    if let Some(ns) = namespace {
        body["namespace"] = json!(ns);
    }
    send(coordinator, registrar_token, &body).await.map(drop)
}
