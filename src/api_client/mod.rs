//! A client of the coordinator's HTTP API (the ingest server, or standalone mode): a JSON answer
//! to a GET with a bearer token, and errors that say which URL answered what. The controller reads
//! performance through it; the `status` and `query` commands read everything else and print it
//! as tables (`tables`).

pub mod tables;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
pub use tables::{interactions_table, metrics_table, status_table, table};

#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("cannot reach the coordinator at {url}: {source}; is it running there?")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url} answered something unexpected: {source}")]
    Unexpected { url: String, source: reqwest::Error },
}

/// The API at `base`, asked with `token` when there is one.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    pub fn new(http: reqwest::Client, base: &str, token: Option<String>) -> Self {
        Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// `GET {base}{path}`, answered within 10 s with a 2xx and a `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.get(&url).timeout(Duration::from_secs(10));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ApiClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let body = response.text().await.unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.chars().take(300).collect());
            return Err(ApiClientError::Refused {
                url,
                status,
                message,
            });
        }
        response
            .json()
            .await
            .map_err(|source| ApiClientError::Unexpected { url, source })
    }
}

/// `GET {base}{path}` with a bearer token, as JSON (the `status` and `query` commands).
pub async fn get_json(base: &str, path: &str, token: &str) -> Result<Value, ApiClientError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http =
        reqwest::Client::builder()
            .build()
            .map_err(|source| ApiClientError::Unreachable {
                url: base.to_string(),
                source,
            })?;
    ApiClient::new(http, base, Some(token.to_string()))
        .get(path)
        .await
}
