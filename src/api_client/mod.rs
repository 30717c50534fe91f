//! A client of the coordinator's HTTP API (the ingest server, or standalone mode): a JSON answer
//! to a GET with a bearer token, and errors that say which URL answered what. The controller reads
//! performance through it; the `status` and `query` commands read everything else and print it
//! as tables (`tables`).

pub mod tables;

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
pub use tables::{interactions_table, metrics_table, series_table, status_table, table};

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
    #[error("cannot use {path} as the CA certificate: {problem}")]
    CaFile { path: String, problem: String },
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
        let (url, response) = self.answered(path).await?;
        response
            .json()
            .await
            .map_err(|source| ApiClientError::Unexpected { url, source })
    }

    /// `GET {base}{path}`, answered within 10 s with a 2xx; the body as text.
    pub async fn get_text(&self, path: &str) -> Result<String, ApiClientError> {
        let (url, response) = self.answered(path).await?;
        response
            .text()
            .await
            .map_err(|source| ApiClientError::Unexpected { url, source })
    }

    /// The 2xx response to `GET {base}{path}` and its URL, or what the server refused with.
    async fn answered(&self, path: &str) -> Result<(String, reqwest::Response), ApiClientError> {
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
        Ok((url, response))
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

/// The MCP ID `given` names: an ID, or a registration's name as `status` prints it (standalone
/// mode lists them at `GET /v1/registrations`; in a cluster, IDs are taken as given and an unknown
/// one is the API's 404). A name or ID no registration has is refused here, naming what exists.
pub async fn resolve_mcp(base: &str, token: &str, given: &str) -> Result<String, ApiClientError> {
    let view = match get_json(base, "/v1/registrations", token).await {
        Ok(view) => view,
        Err(ApiClientError::Refused { status: 404, .. }) => return Ok(given.to_string()),
        Err(other) => return Err(other),
    };
    let registrations = view["registrations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let found = registrations
        .iter()
        .find(|r| r["mcp_id"] == given || r["name"] == given)
        .and_then(|r| r["mcp_id"].as_str());
    match found {
        Some(id) => Ok(id.to_string()),
        None => {
            let known: Vec<String> = registrations
                .iter()
                .filter_map(|r| {
                    Some(format!(
                        "{} ({})",
                        r["name"].as_str()?,
                        r["mcp_id"].as_str()?
                    ))
                })
                .collect();
            Err(ApiClientError::Refused {
                url: format!("{}/v1/registrations", base.trim_end_matches('/')),
                status: 404,
                message: format!(
                    "unknown MCP {given:?}; the registrations are: {}",
                    if known.is_empty() {
                        "none yet".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            })
        }
    }
}

/// `GET {base}/readyz` of each endpoint: Ok when every one answers 2xx within 5 s, else the
/// first refusal. With `ca_file`, HTTPS endpoints are verified against that CA (PEM).
/// `GET /readyz` of every base, and, given `(ingest base, reader token)`, `GET /v1/store` of that
/// ingest server: its store reachable and writable.
pub async fn check_ready(
    bases: &[String],
    ca_file: Option<&std::path::Path>,
    store: Option<(&str, String)>,
) -> Result<(), ApiClientError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(path) = ca_file {
        let ca_error = |problem: String| ApiClientError::CaFile {
            path: path.display().to_string(),
            problem,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
        builder = builder.add_root_certificate(ca);
    }
    let http = builder
        .build()
        .map_err(|source| ApiClientError::Unreachable {
            url: bases.join(", "),
            source,
        })?;
    for base in bases {
        ApiClient::new(http.clone(), base, None)
            .get_text("/readyz")
            .await?;
    }
    if let Some((base, token)) = store {
        ApiClient::new(http, base, Some(token))
            .get_text("/v1/store")
            .await?;
    }
    Ok(())
}
