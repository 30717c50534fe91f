//! A small HTTP MCP on loopback whose health can be switched, counting probes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use warp::Filter;

/// A small HTTP MCP on loopback whose health can be switched, counting probes.
pub struct FakeMcp {
    pub addr: SocketAddr,
    pub healthy: Arc<AtomicBool>,
    /// 0: answer normally; otherwise answer every request with this status.
    pub forced_status: Arc<AtomicU16>,
    pub probes: Arc<AtomicU64>,
    /// When set, /health answers 401 unless this `Authorization` value is sent.
    pub required_auth: Option<String>,
}

impl FakeMcp {
    pub async fn start() -> Self {
        Self::start_with_auth(None).await
    }

    pub async fn start_with_auth(required_auth: Option<String>) -> Self {
        let healthy = Arc::new(AtomicBool::new(true));
        let forced_status = Arc::new(AtomicU16::new(0));
        let probes = Arc::new(AtomicU64::new(0));
        let (h, f, p, auth) = (
            healthy.clone(),
            forced_status.clone(),
            probes.clone(),
            required_auth.clone(),
        );
        let route = warp::path!("health")
            .and(warp::header::optional::<String>("authorization"))
            .map(move |given: Option<String>| {
                p.fetch_add(1, Ordering::Relaxed);
                let code = match f.load(Ordering::Relaxed) {
                    0 if auth.is_some() && given != auth => 401,
                    0 if h.load(Ordering::Relaxed) => 200,
                    0 => 503,
                    forced => forced,
                };
                warp::reply::with_status(
                    "status".to_string(),
                    warp::http::StatusCode::from_u16(code).unwrap_or(warp::http::StatusCode::OK),
                )
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self {
            addr,
            healthy,
            forced_status,
            probes,
            required_auth,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }
}
