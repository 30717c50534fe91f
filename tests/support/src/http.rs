//! One HTTP client for tests, and the requests many of them make.

/// A free loopback port (bound once and released, so another process could take it first: use it
/// at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A plain HTTP client for tests (the TLS backend needs its crypto provider chosen first).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .expect("HTTP client builds")
}

/// `GET url` with a bearer `token`, answered as JSON.
pub async fn get_json_as(url: &str, token: &str) -> serde_json::Value {
    http_client()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON answer")
}

/// `POST {base}/v1/interactions` with `key`: the status it answered (0 when it did not answer).
pub async fn post_report(base: &str, key: &str, report: &serde_json::Value) -> u16 {
    http_client()
        .post(format!("{base}/v1/interactions"))
        .bearer_auth(key)
        .json(report)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}
