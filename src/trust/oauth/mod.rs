//! The gateway as an OAuth 2.1 resource server (the MCP authorization specification): bearer JWTs
//! of configured authorization servers, checked with their published keys. Settings
//! (`config.rs`), the check itself (`validate.rs`, pure), and the keys (`jwks.rs`, fetched and
//! cached). The gateway's HTTP edge serves the RFC 9728 metadata and the `WWW-Authenticate`
//! challenges from what this says.

pub mod config;
pub mod jwks;
pub mod validate;

use std::time::Duration;

pub use config::{OAuthConfigError, ResourceServer};
pub use validate::TokenRefusal;

use crate::trust::callers::Caller;

/// The resource server: its settings and each issuer's keys.
pub struct OAuth {
    pub config: ResourceServer,
    issuers: Vec<jwks::Jwks>,
}

impl std::fmt::Debug for OAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth")
            .field("resource", &self.config.resource)
            .field("issuers", &self.issuers.len())
            .finish()
    }
}

impl OAuth {
    pub fn new(config: ResourceServer) -> Result<Self, OAuthConfigError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OAuthConfigError::Invalid {
                path: "gateway OAuth".into(),
                error: format!("cannot build the HTTP client: {e}"),
            })?;
        let issuers = config
            .issuers
            .iter()
            .map(|i| jwks::Jwks::new(i.clone(), client.clone()))
            .collect();
        Ok(Self { config, issuers })
    }

    /// Whether `token` looks like a JWT (three dot-separated parts), as opposed to a caller token.
    pub fn looks_like_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// The caller a bearer JWT speaks for, on a request to `namespace` (and `capability`).
    pub async fn authenticate(
        &self,
        token: &str,
        namespace: &str,
        capability: Option<&str>,
    ) -> Result<Caller, TokenRefusal> {
        let header = validate::header(token)?;
        let claimed = validate::claimed_issuer(token)
            .ok_or_else(|| TokenRefusal::Invalid("the token names no issuer (iss)".into()))?;
        let jwks = self
            .issuers
            .iter()
            .find(|j| j.issuer().issuer.trim_end_matches('/') == claimed.trim_end_matches('/'))
            .ok_or_else(|| {
                TokenRefusal::Invalid(format!("tokens of {claimed:?} are not accepted here"))
            })?;
        let keys = jwks
            .keys(|set| validate::key_for(set, &header).is_some())
            .await
            .map_err(TokenRefusal::KeysUnavailable)?;
        let key = validate::key_for(&keys, &header).ok_or_else(|| {
            TokenRefusal::Invalid(format!(
                "the issuer publishes no key {:?} (its keys are fetched again at most every {} s)",
                header.kid.as_deref().unwrap_or("(none named)"),
                jwks.issuer().min_refresh_seconds
            ))
        })?;
        let (_, audiences) = self.config.audiences(namespace, capability);
        validate::caller(token, &header, &key, jwks.issuer(), &audiences, namespace)
    }

    /// How many times each issuer's keys were fetched, by issuer.
    pub fn fetches(&self) -> Vec<(String, u64)> {
        self.issuers
            .iter()
            .map(|j| (j.issuer().issuer.clone(), j.fetches()))
            .collect()
    }
}
