//! The small HTTP server every component runs: `/metrics`, `/healthz`, `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use warp::http::StatusCode;
use warp::Filter;

use super::metrics::Metrics;

/// Serves until `shutdown` resolves. Binding errors are returned, so a taken port is a clear
/// startup failure rather than a silent one.
pub async fn serve_ops(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
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
    warp::serve(routes)
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
    Ok(())
}
