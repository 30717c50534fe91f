//! The small HTTP server every component runs: `/metrics`, `/healthz`, `/readyz`, served like
//! every listener of the binary (`crate::serve`: deadlines in every phase, capped connections,
//! a bounded shutdown).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use warp::http::StatusCode;
use warp::Filter;

use super::metrics::Metrics;
use crate::serve::{ServeConfig, ServeMetrics};

/// How the metrics port is served: the ingest server's deadlines, fewer connections (Prometheus
/// and the kubelet are its only clients), and `grace` to finish at shutdown.
pub fn ops_serving(grace: Duration) -> ServeConfig {
    ServeConfig {
        max_connections: 256,
        max_connections_per_ip: 64,
        grace,
        ..ServeConfig::new("metrics")
    }
}

/// Serves until `shutdown` resolves, then for at most the grace period. Binding errors are
/// returned, so a taken port is a clear startup failure rather than a silent one.
pub async fn serve_ops(
    addr: SocketAddr,
    serving: ServeConfig,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let series = crate::telemetry::Series {
        registry: metrics.registry.clone(),
    };
    let serve_metrics = Arc::new(ServeMetrics::new(&series).map_err(std::io::Error::other)?);
    let metrics_route = warp::path!("metrics").and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
    });
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| "ok".to_string());
    let readyz = warp::path!("readyz").and(warp::get()).map(move || {
        if ready.load(Ordering::Relaxed) {
            warp::reply::with_status("ready".to_string(), StatusCode::OK)
        } else {
            warp::reply::with_status(
                "not ready: watch cache not synced yet".to_string(),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    });
    let routes = metrics_route.or(healthz).or(readyz);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    crate::serve::serve(listener, serving, serve_metrics, routes, shutdown).await;
    Ok(())
}
