//! An issuer's signing keys (its JWKS), fetched on first use and again when a token names a key
//! the set lacks (a rotation), but at most once per `minRefreshSeconds` (30 s by default): a
//! stream of tokens with made-up `kid`s cannot make the gateway hammer the authorization server.
//! Where the set is comes from the settings or from discovery (RFC 8414 metadata, then OpenID
//! Connect's).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::config::Issuer;

/// The largest key set or metadata document read.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Keys kept of one set.
const MAX_KEYS: usize = 100;

/// One issuer's keys as last fetched.
pub struct Jwks {
    issuer: Issuer,
    client: reqwest::Client,
    state: tokio::sync::Mutex<State>,
    /// Fetches made, for the metric and the tests.
    fetches: Mutex<u64>,
}

#[derive(Default)]
struct State {
    keys: Option<JwkSet>,
    jwks_url: Option<String>,
    fetched: Option<Instant>,
}

impl Jwks {
    pub fn new(issuer: Issuer, client: reqwest::Client) -> Self {
        let jwks_url = issuer.jwks_url.clone();
        Self {
            issuer,
            client,
            state: tokio::sync::Mutex::new(State {
                jwks_url,
                ..State::default()
            }),
            fetches: Mutex::new(0),
        }
    }

    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    pub fn fetches(&self) -> u64 {
        *self
            .fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The key set, fetched again first when `has` says the current one lacks what is needed
    /// and the last fetch is older than the issuer's `minRefreshSeconds`.
    pub async fn keys(&self, has: impl Fn(&JwkSet) -> bool) -> Result<JwkSet, String> {
        let mut state = self.state.lock().await;
        let stale = state.keys.as_ref().is_none_or(|k| !has(k));
        let min_refresh = Duration::from_secs(self.issuer.min_refresh_seconds);
        let may_fetch = state.fetched.is_none_or(|at| at.elapsed() >= min_refresh);
        if stale && may_fetch {
            state.fetched = Some(Instant::now());
            *self
                .fetches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) += 1;
            match self.fetch(&mut state).await {
                Ok(keys) => state.keys = Some(keys),
                Err(e) if state.keys.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(issuer = %self.issuer.issuer, error = %e, "could not refresh the issuer's keys; keeping the ones held")
                }
            }
        }
        state
            .keys
            .clone()
            .ok_or_else(|| format!("no keys of {} yet", self.issuer.issuer))
    }

    async fn fetch(&self, state: &mut State) -> Result<JwkSet, String> {
        let url = match &state.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = self.discover().await?;
                state.jwks_url = Some(url.clone());
                url
            }
        };
        let mut keys: JwkSet = serde_json::from_slice(&self.get(&url).await?)
            .map_err(|e| format!("{url} is not a JWK set: {e}"))?;
        keys.keys.truncate(MAX_KEYS);
        Ok(keys)
    }

    /// The `jwks_uri` of the issuer's metadata: RFC 8414 first, then OpenID Connect discovery.
    async fn discover(&self) -> Result<String, String> {
        let issuer = self.issuer.issuer.trim_end_matches('/');
        let url = reqwest::Url::parse(issuer).map_err(|e| format!("issuer {issuer:?}: {e}"))?;
        let origin = url.origin().ascii_serialization();
        let path = url.path().trim_end_matches('/');
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut last = String::new();
        for candidate in candidates {
            match self.get(&candidate).await {
                Ok(body) => {
                    let metadata: serde_json::Value = serde_json::from_slice(&body)
                        .map_err(|e| format!("{candidate} is not JSON: {e}"))?;
                    if metadata["issuer"].as_str().map(|i| i.trim_end_matches('/')) != Some(issuer)
                    {
                        return Err(format!(
                            "{candidate} names another issuer: {}",
                            metadata["issuer"]
                        ));
                    }
                    return metadata["jwks_uri"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{candidate} has no jwks_uri"));
                }
                Err(e) => last = e,
            }
        }
        Err(format!(
            "no authorization server metadata for {issuer}: {last}"
        ))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: more than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
