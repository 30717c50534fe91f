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

/// Polls `probe` every 50 ms until it answers `Ok`; after `timeout` fails the test with what the
/// last `Err` said.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(done) => return done,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("gave up after {timeout:?}: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

/// `GET {base}/v1/mcps/{mcp}/interactions{query}` with `token`: the interactions answered (a
/// query string starts with `?`).
pub async fn interactions(
    base: &str,
    mcp: &str,
    token: &str,
    query: &str,
) -> Vec<serde_json::Value> {
    let body = get_json_as(&format!("{base}/v1/mcps/{mcp}/interactions{query}"), token).await;
    body["interactions"].as_array().cloned().unwrap_or_default()
}

/// `GET url`, answered as text.
pub async fn get_text(url: &str) -> String {
    http_client()
        .get(url)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("a text answer")
}

/// `POST {base}{path}` of `body` with a bearer `token`: the status and the JSON answered (null when
/// the answer is not JSON).
pub async fn post_json(
    base: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let response = http_client()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the request is answered");
    let status = response.status().as_u16();
    (
        status,
        response.json().await.unwrap_or(serde_json::Value::Null),
    )
}
