//! Serving HTTP on a listener, plain or TLS, for every listener of the binary (the ingest API, the
//! MCP gateway, the controller's metrics port), with a bound on everything a client can hold:
//!
//! - **connections**: at most `max_connections` open and `max_connections_per_ip` from one
//!   address; past either, the client reads a 503 or 429 with `Retry-After` and the connection
//!   closes (`admit.rs`);
//! - **time in every phase** (`connection.rs`): the TLS handshake, the first bytes (which say the
//!   protocol), a request's headers, an HTTP/2 connection's first request, idleness between
//!   requests; HTTP/2 peers that stop answering pings are dropped;
//! - **the accept loop**: when the process runs out of file descriptors, it backs off (up to a
//!   second) instead of spinning, warns at most every ten seconds, and counts it;
//! - **shutdown**: every connection is asked to finish its request and close, and is cut after
//!   the grace period, so a stalled client cannot hold the process.

pub mod admit;
pub mod connection;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::telemetry::Series;
use admit::Admission;
use connection::{Counted, Ended, Requests, SniffError};

/// How connections are served.
#[derive(Clone)]
pub struct ServeConfig {
    /// Names the listener in the metrics (`api`, `gateway`, `metrics`).
    pub listener: &'static str,
    /// Serve HTTPS with this configuration; plain HTTP when `None`.
    pub tls: Option<Arc<ServerConfig>>,
    /// The TLS handshake, the first bytes, a request's headers and an HTTP/2 connection's first
    /// request must each arrive within this.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// At shutdown, connections get this long to finish before they are cut.
    pub grace: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
}

impl ServeConfig {
    /// The defaults of `--header-timeout-seconds`, `--idle-timeout-seconds`, `--max-connections`
    /// and `--max-connections-per-ip`.
    pub fn new(listener: &'static str) -> Self {
        Self {
            listener,
            tls: None,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            grace: Duration::from_secs(20),
            max_connections: 4096,
            max_connections_per_ip: 1024,
        }
    }
}

/// The series of every listener, by its name.
pub struct ServeMetrics {
    open: IntGaugeVec,
    refused: IntCounterVec,
    closed: IntCounterVec,
    accept_errors: IntCounterVec,
}

impl ServeMetrics {
    pub fn new(series: &Series) -> Result<Self, prometheus::Error> {
        Ok(Self {
            open: series.gauges(
                "mcp_coordinator_http_connections_open",
                "Connections open, by listener.",
                &["listener"],
            )?,
            refused: series.counters(
                "mcp_coordinator_http_connections_refused_total",
                "Connections refused on arrival, by listener and reason (limit: --max-connections; per_ip: --max-connections-per-ip).",
                &["listener", "reason"],
            )?,
            closed: series.counters(
                "mcp_coordinator_http_connections_timed_out_total",
                "Connections closed by a deadline, by listener and phase (tls_handshake, first_bytes, idle).",
                &["listener", "phase"],
            )?,
            accept_errors: series.counters(
                "mcp_coordinator_http_accept_errors_total",
                "Failed accepts, by listener and kind (resources: out of file descriptors or memory, the loop backs off; connection: one client's connection failed).",
                &["listener", "kind"],
            )?,
        })
    }

    fn timed_out(&self, listener: &str, phase: &str) {
        self.closed.with_label_values(&[listener, phase]).inc();
    }
}

/// Pure: how long the accept loop waits after `failures` resource errors in a row.
pub fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(10u64 << failures.min(7)).min(Duration::from_secs(1))
}

/// Whether an accept error is one client's connection failing (retry at once) rather than the
/// process running short of something (back off).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted
    )
}

/// Warnings at most once per period, with the count of those left out.
struct Throttled {
    period: Duration,
    last: Option<Instant>,
    left_out: u64,
}

impl Throttled {
    /// `Some(left out since the last warning)` when this one may be written.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.period => {
                self.left_out += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

/// Serves `filter` on `listener` until `shutdown` resolves, then lets connections finish for at
/// most the grace period.
pub async fn serve<F>(
    listener: TcpListener,
    config: ServeConfig,
    metrics: Arc<ServeMetrics>,
    filter: F,
    shutdown: impl Future<Output = ()>,
) where
    F: warp::Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.idle_timeout / 2)
        .keep_alive_timeout(config.header_timeout);
    let acceptor = config.tls.clone().map(TlsAcceptor::from);
    let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut warnings = Throttled {
        period: Duration::from_secs(10),
        last: None,
        left_out: 0,
    };
    let mut failures = 0u32;
    let name = config.listener;
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    failures = 0;
                    a
                }
                Err(e) if is_connection_error(&e) => {
                    metrics.accept_errors.with_label_values(&[name, "connection"]).inc();
                    continue;
                }
                Err(e) => {
                    metrics.accept_errors.with_label_values(&[name, "resources"]).inc();
                    let wait = accept_backoff(failures);
                    failures = failures.saturating_add(1);
                    if let Some(left_out) = warnings.allow(Instant::now()) {
                        tracing::warn!(listener = name, error = %e, retry_in = ?wait, left_out, "cannot accept connections (out of file descriptors or memory?); backing off");
                    }
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
            },
        };
        let ticket = match admission.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refusal) => {
                metrics
                    .refused
                    .with_label_values(&[name, refusal.reason()])
                    .inc();
                if acceptor.is_none() {
                    // Never waits: a fresh socket's send buffer has room for this answer.
                    let _ = tcp.try_write(refusal.answer().as_bytes());
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let service = TowerToHyperService::new(warp::service(filter.clone()));
        let builder = builder.clone();
        let acceptor = acceptor.clone();
        let (config, metrics, stop) = (config.clone(), metrics.clone(), stop_rx.clone());
        connections.spawn(async move {
            let open = metrics.open.with_label_values(&[name]);
            open.inc();
            match acceptor {
                None => one(tcp, &builder, service, &config, &metrics, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(config.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => one(tls, &builder, service, &config, &metrics, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => metrics.timed_out(name, "tls_handshake"),
                    }
                }
            }
            open.dec();
            drop(ticket);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let finished = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.grace, finished).await.is_err() {
        tracing::warn!(
            listener = name,
            grace = ?config.grace,
            open = connections.len(),
            "connections still open after the grace period; closing them"
        );
        connections.abort_all();
    }
}

/// One connection after its TLS handshake: its protocol sniffed in time, then served.
async fn one<T, S>(
    io: T,
    builder: &Builder<TokioExecutor>,
    service: S,
    config: &ServeConfig,
    metrics: &ServeMetrics,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = match connection::sniff(io, config.header_timeout).await {
        Ok((_, io)) => io,
        Err(SniffError::TimedOut) => return metrics.timed_out(config.listener, "first_bytes"),
        Err(SniffError::Closed | SniffError::Io(_)) => return,
    };
    let requests = Arc::new(Requests::default());
    let service = Counted {
        inner: service,
        requests: requests.clone(),
    };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let (ended, result) = connection::drive(
        connection,
        requests,
        config.header_timeout,
        config.idle_timeout,
        stop,
    )
    .await;
    if ended == Ended::Idle {
        metrics.timed_out(config.listener, "idle");
    }
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_loop_backs_off_to_a_second_and_warns_once_per_period() {
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(3), Duration::from_millis(80));
        assert_eq!(accept_backoff(40), Duration::from_secs(1));
        let mut warnings = Throttled {
            period: Duration::from_secs(10),
            last: None,
            left_out: 0,
        };
        let t0 = Instant::now();
        assert_eq!(warnings.allow(t0), Some(0));
        assert_eq!(warnings.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(warnings.allow(t0 + Duration::from_secs(2)), None);
        assert_eq!(warnings.allow(t0 + Duration::from_secs(11)), Some(2));
    }
}
