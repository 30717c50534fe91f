//! The controller's routing loops: fetch every MCP's recent performance from the ingest server,
//! reconcile the registrations whose weight it changes, and publish the routing table of every
//! namespace as the `mcp-routing-table` ConfigMap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use super::status::{heartbeat_missing, routing_status, version_mismatch};

/// A routing table larger than this is not written: Kubernetes refuses objects over 1 MiB.
const MAX_TABLE_BYTES: usize = 900 * 1024;
pub use super::readings::{
    fetch, fetch_ejections, fetch_heartbeats, fetch_versions, read_all, FetchError, Readings,
};
use super::{Context, MANAGER};
use crate::api_client::ApiClient;
use crate::crd::MCPRegistration;
use crate::routing::table::{self, RoutingTable, CONFIGMAP_KEY, CONFIGMAP_NAME};
use crate::routing::weights::{self, McpPerformance, Observed};

/// Where the controller reads performance, and how often.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    /// How often performance is fetched and weights recomputed.
    pub interval: Duration,
    /// The window performance is computed over (`15m`, `1h`, …).
    pub window: String,
    /// The ingest server's base URL; weights follow health alone without it.
    pub ingest_url: Option<String>,
    /// A reader (or admin) token of the ingest server.
    pub ingest_token: Option<String>,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            window: "15m".into(),
            ingest_url: None,
            ingest_token: None,
        }
    }
}

/// The latest performance of every MCP, by MCP ID; read by every reconcile.
#[derive(Debug, Default)]
pub struct PerformanceBoard {
    by_id: RwLock<Arc<HashMap<String, Observed>>>,
}

impl PerformanceBoard {
    pub fn get(&self, mcp_id: &str) -> Option<Observed> {
        self.by_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(mcp_id)
            .cloned()
    }
    fn replace(&self, board: HashMap<String, Observed>) {
        *self.by_id.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(board);
    }
}

/// Each registration's performance, with the median p95 of its peers (the MCPs it shares a
/// capability with), its latest heartbeat and the versions it reported. Pure.
pub fn board(
    registrations: &[Arc<MCPRegistration>],
    readings: &Readings,
) -> HashMap<String, Observed> {
    let (metrics, heartbeats) = (&readings.metrics, &readings.heartbeats);
    let mcps: Vec<McpPerformance> = registrations
        .iter()
        .filter_map(|reg| {
            let id = reg.status.as_ref()?.mcp_id.clone()?;
            let measured = metrics.get(&id).copied().unwrap_or_default();
            Some(McpPerformance {
                mcp_id: id,
                capabilities: reg.spec.capabilities.clone(),
                base_weight: reg.spec.routing.weight,
                health_factor: 1.0,
                success_rate: measured.success_rate,
                finished: measured.finished,
                p95_processing_time: measured.p95_processing_time,
                previous: None,
            })
        })
        .collect();
    mcps.iter()
        .map(|m| {
            (
                m.mcp_id.clone(),
                Observed {
                    success_rate: m.success_rate,
                    finished: m.finished,
                    p95_processing_time: m.p95_processing_time,
                    peer_p95: weights::peer_p95(m, &mcps),
                    last_heartbeat_ms: heartbeats.get(&m.mcp_id).copied(),
                    reported_versions: readings
                        .versions
                        .get(&m.mcp_id)
                        .cloned()
                        .unwrap_or_default(),
                    gateway_ejected: readings.ejections.get(&m.mcp_id).copied(),
                },
            )
        })
        .collect()
}

/// Registrations whose routing status `board` would change, or whose heartbeats stopped or
/// resumed (at `now_ms`, for heartbeats due every `heartbeat_interval_seconds`). Pure.
pub fn stale(
    registrations: &[Arc<MCPRegistration>],
    board: &HashMap<String, Observed>,
    now_ms: i64,
    heartbeat_interval_seconds: u32,
) -> Vec<ObjectRef<MCPRegistration>> {
    registrations
        .iter()
        .filter(|reg| {
            let Some(status) = &reg.status else {
                return false;
            };
            let (Some(id), Some(current)) = (&status.mcp_id, &status.routing) else {
                return false;
            };
            let observed = board.get(id);
            let missing = heartbeat_missing(
                observed.and_then(|o| o.last_heartbeat_ms),
                now_ms,
                heartbeat_interval_seconds,
            );
            let recorded = status
                .conditions
                .iter()
                .any(|c| c.type_ == "HeartbeatMissing" && c.status == "True");
            if missing != recorded {
                return true;
            }
            let versions_differ =
                observed.is_some_and(|o| version_mismatch(&reg.spec.version, &o.reported_versions));
            let recorded_difference = status
                .conditions
                .iter()
                .any(|c| c.type_ == "VersionMismatch" && c.status == "True");
            if versions_differ != recorded_difference {
                return true;
            }
            let ejected = observed
                .and_then(|o| o.gateway_ejected)
                .is_some_and(|(until, _)| until > now_ms);
            let recorded_ejection = status
                .conditions
                .iter()
                .any(|c| c.type_ == "GatewayEjected" && c.status == "True");
            if ejected != recorded_ejection {
                return true;
            }
            let next = routing_status(&reg.spec, status.phase, observed, Some(current), missing);
            next.effective_weight != current.effective_weight
        })
        .map(|reg| ObjectRef::from(reg.as_ref()))
        .collect()
}

/// Fetches performance every interval and asks for a reconcile of each registration whose
/// weight moved. Failures are logged and counted; the previous performance stays in use.
pub async fn refresh_weights(
    ctx: Arc<Context>,
    store: Store<MCPRegistration>,
    reconcile: UnboundedSender<ObjectRef<MCPRegistration>>,
) {
    let settings = ctx.settings.routing.clone();
    let Some(base) = settings
        .ingest_url
        .clone()
        .or_else(|| {
            Some(super::status::api_url(
                &ctx.settings.reporting.interaction_log_endpoint,
            ))
        })
        .filter(|u| !u.is_empty())
    else {
        return;
    };
    if settings.ingest_token.is_none() {
        tracing::warn!(
            "no ingest reader token (--ingest-token-file): routing weights follow health only"
        );
        return;
    }
    let http = match reqwest::Client::builder().build() {
        Ok(http) => http,
        Err(e) => {
            tracing::error!(error = %e, "cannot build an HTTP client; routing weights follow health only");
            return;
        }
    };
    let api = ApiClient::new(http, &base, settings.ingest_token.clone());
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match read_all(&api, &settings).await {
            Ok(readings) => {
                let registrations = store.state();
                let next = board(&registrations, &readings);
                let moved = stale(
                    &registrations,
                    &next,
                    k8s_openapi::jiff::Timestamp::now().as_millisecond(),
                    ctx.settings.reporting.heartbeat_interval_seconds,
                );
                ctx.performance.replace(next);
                ctx.metrics
                    .routing_refreshes
                    .with_label_values(&["ok"])
                    .inc();
                for key in moved {
                    let _ = reconcile.send(key);
                }
            }
            Err(e) => {
                ctx.metrics
                    .routing_refreshes
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(error = %e, "cannot refresh routing performance; keeping the last known");
            }
        }
    }
}

/// Writes each namespace's routing table when it changed: after status changes (nudged by
/// reconciles) and on a short tick.
pub async fn publish_tables(ctx: Arc<Context>, store: Store<MCPRegistration>) {
    let mut written: BTreeMap<String, RoutingTable> = BTreeMap::new();
    let tick = ctx.settings.routing.interval.min(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = ctx.table_changed.notified() => {
                // Let the watch cache catch up with the status write that nudged us.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            _ = tokio::time::sleep(tick) => {}
        }
        // Not before the watch cache has synced (a partial table would drop MCPs). The store wakes
        // only its latest waiter, so wait briefly and retry on the next round instead of for good.
        if !matches!(
            tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await,
            Ok(Ok(()))
        ) {
            continue;
        }
        let registrations = store.state();
        let mut tables = table::build(registrations.iter().map(AsRef::as_ref));
        for namespace in written.keys() {
            // A namespace whose last registration is gone gets an empty table.
            tables.entry(namespace.clone()).or_default();
        }
        for (namespace, table) in tables {
            if written.get(&namespace) == Some(&table) {
                continue;
            }
            match write_table(&ctx, &namespace, &table).await {
                Ok(()) => {
                    if table.capabilities.is_empty() {
                        written.remove(&namespace);
                    } else {
                        written.insert(namespace, table);
                    }
                }
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "cannot write the routing table; will retry")
                }
            }
        }
    }
}

async fn write_table(
    ctx: &Context,
    namespace: &str,
    table: &RoutingTable,
) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let mut text = serde_json::to_string_pretty(table).map_err(kube::Error::SerdeError)?;
    if text.len() > MAX_TABLE_BYTES {
        text = serde_json::to_string(table).map_err(kube::Error::SerdeError)?;
    }
    if text.len() > MAX_TABLE_BYTES {
        // The API server would refuse it; keep the last table instead of failing every round.
        tracing::warn!(
            namespace,
            bytes = text.len(),
            "the routing table is larger than a ConfigMap may hold and was not written; run the ingest server with --routes-from-registrations to route from the registrations themselves"
        );
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP_NAME,
            "labels": {"app.kubernetes.io/managed-by": MANAGER},
        },
        "data": {CONFIGMAP_KEY: text},
    });
    api.patch(
        CONFIGMAP_NAME,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    tracing::debug!(namespace, name = %CONFIGMAP_NAME, "routing table written");
    Ok(())
}
