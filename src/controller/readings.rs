//! What the controller reads from the ingest API for routing: each MCP's finished interactions
//! (caller faults left out), heartbeats, reported versions and the gateway's ejections.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::routing::RoutingSettings;
use crate::api_client::{ApiClient, ApiClientError};
use crate::routing::weights::Measured;

/// Performance could not be read from the ingest server.
#[derive(Debug, thiserror::Error)]
#[error("reading performance from the ingest server (--ingest-url, --ingest-token-file): {0}")]
pub struct FetchError(#[from] ApiClientError);

#[derive(Debug, Deserialize)]
struct MetricsPage {
    mcps: Vec<MetricsRow>,
}

#[derive(Debug, Deserialize)]
struct MetricsRow {
    mcp_id: String,
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    errors_by_code: BTreeMap<String, u64>,
    p95_processing_time: Option<f64>,
}

/// `GET {ingest}/v1/metrics?range={window}`: what routing counts of each MCP, by MCP ID.
pub async fn fetch(
    api: &ApiClient,
    settings: &RoutingSettings,
) -> Result<HashMap<String, Measured>, FetchError> {
    let page: MetricsPage = api
        .get(&format!("/v1/metrics?range={}", settings.window))
        .await?;
    Ok(page
        .mcps
        .into_iter()
        .map(|row| {
            let measured = Measured::of(
                row.completed,
                row.failed,
                &row.errors_by_code,
                row.p95_processing_time,
            );
            (row.mcp_id, measured)
        })
        .collect())
}

/// `GET {ingest}/v1/heartbeats`: each MCP's latest heartbeat, epoch ms (entries that are not
/// timestamps are left out).
pub async fn fetch_heartbeats(api: &ApiClient) -> Result<HashMap<String, i64>, FetchError> {
    let page: HashMap<String, serde_json::Value> = api.get("/v1/heartbeats").await?;
    Ok(page
        .into_iter()
        .filter_map(|(mcp_id, at)| {
            let ms = crate::interaction::parse_rfc3339_ms(at.as_str()?)?;
            Some((mcp_id, ms))
        })
        .collect())
}

#[derive(Debug, Deserialize)]
struct VersionsPage {
    mcps: HashMap<String, BTreeMap<String, u64>>,
}

/// `GET {ingest}/v1/versions?range={window}`: the versions each MCP's interactions reported.
pub async fn fetch_versions(
    api: &ApiClient,
    settings: &RoutingSettings,
) -> Result<HashMap<String, BTreeMap<String, u64>>, FetchError> {
    let page: VersionsPage = api
        .get(&format!("/v1/versions?range={}", settings.window))
        .await?;
    Ok(page.mcps)
}

/// What one refresh read from the interaction log.
#[derive(Debug, Default)]
pub struct Readings {
    /// What routing counts of each MCP's finished interactions, by MCP ID.
    pub metrics: HashMap<String, Measured>,
    /// Latest heartbeat by MCP ID, epoch ms.
    pub heartbeats: HashMap<String, i64>,
    /// Reported `mcp_version`s and their interactions, by MCP ID.
    pub versions: HashMap<String, BTreeMap<String, u64>>,
    /// MCPs the gateway has out of rotation: until (epoch ms), ejections in a row.
    pub ejections: HashMap<String, (i64, u32)>,
}

/// Reads metrics, heartbeats and versions; versions are optional (an ingest server of an
/// earlier release has no `/v1/versions`), the rest is not.
pub async fn read_all(api: &ApiClient, settings: &RoutingSettings) -> Result<Readings, FetchError> {
    let metrics = fetch(api, settings).await?;
    let heartbeats = fetch_heartbeats(api).await?;
    let versions = fetch_versions(api, settings).await.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "no reported versions; the VersionMismatch condition waits");
        HashMap::new()
    });
    let ejections = fetch_ejections(api).await.unwrap_or_else(|e| {
        tracing::debug!(error = %e, "no gateway ejections read; the GatewayEjected condition waits");
        HashMap::new()
    });
    Ok(Readings {
        metrics,
        heartbeats,
        versions,
        ejections,
    })
}

#[derive(Debug, Deserialize)]
struct Ejection {
    until: String,
    ejections: u32,
}

#[derive(Debug, Deserialize)]
struct EjectionsPage {
    mcps: HashMap<String, Ejection>,
}

/// `GET {ingest}/v1/gateway/ejections`: the MCPs the gateway has out of rotation (an ingest
/// server without a gateway, or of an earlier release, has none).
pub async fn fetch_ejections(api: &ApiClient) -> Result<HashMap<String, (i64, u32)>, FetchError> {
    let page: EjectionsPage = api.get("/v1/gateway/ejections").await?;
    Ok(page
        .mcps
        .into_iter()
        .filter_map(|(id, e)| {
            Some((
                id,
                (crate::interaction::parse_rfc3339_ms(&e.until)?, e.ejections),
            ))
        })
        .collect())
}
