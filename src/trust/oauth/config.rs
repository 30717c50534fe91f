//! The gateway's resource-server settings (`--gateway-oauth-file`, YAML): its public URL and the
//! authorization servers whose tokens it takes.
//!
//! ```yaml
//! resource: https://mcp.example.com        # the gateway's public base URL
//! issuers:
//!   - issuer: https://auth.example.com     # the `iss` of its tokens
//!     jwksUrl: https://auth.example.com/jwks   # else found by discovery (RFC 8414, then OIDC)
//!     algorithms: [RS256, ES256]           # default: RS256, ES256, PS256, EdDSA
//!     clockSkewSeconds: 60
//!     namespacesClaim: mcp_namespaces      # a claim listing namespaces (array or space-separated)
//!     namespaces: [ocr]                    # granted to every token of this issuer
//!     subjectClaim: sub
//!     groupsClaim: groups                  # the caller's groups, for policy rules
//!     minRefreshSeconds: 30                # keys fetched again at most this often
//! ```

use std::path::Path;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OAuthConfigError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{path}: {error}")]
    Invalid { path: String, error: String },
}

/// One authorization server whose tokens the gateway takes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Issuer {
    pub issuer: String,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "super::validate::default_algorithms")]
    pub algorithms: Vec<Algorithm>,
    #[serde(default = "default_skew")]
    pub clock_skew_seconds: u64,
    #[serde(default)]
    pub namespaces_claim: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default = "default_subject")]
    pub subject_claim: String,
    /// The claim listing the caller's groups (`caller.groups` in policy rules).
    #[serde(default = "default_groups")]
    pub groups_claim: String,
    /// The least time between two fetches of the issuer's keys (a token naming an unknown key
    /// fetches them again, at most this often).
    #[serde(default = "default_refresh")]
    pub min_refresh_seconds: u64,
}

fn default_refresh() -> u64 {
    30
}

fn default_skew() -> u64 {
    60
}

fn default_subject() -> String {
    "sub".into()
}

fn default_groups() -> String {
    "groups".into()
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResourceServer {
    /// The gateway's public base URL; a namespace's resource is `<resource>/mcp/<namespace>`.
    pub resource: String,
    pub issuers: Vec<Issuer>,
}

impl ResourceServer {
    pub fn parse(text: &str, path: &str) -> Result<Self, OAuthConfigError> {
        let invalid = |error: String| OAuthConfigError::Invalid {
            path: path.to_string(),
            error,
        };
        let mut config: ResourceServer =
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        config.resource = config.resource.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&config.resource)
            .map_err(|e| invalid(format!("resource {:?} is not a URL: {e}", config.resource)))?;
        if !matches!(url.scheme(), "https" | "http") || url.query().is_some() {
            return Err(invalid(format!(
                "resource {:?} must be an http(s) URL without a query",
                config.resource
            )));
        }
        if config.issuers.is_empty() {
            return Err(invalid(
                "issuers: name at least one authorization server".into(),
            ));
        }
        for issuer in &config.issuers {
            if issuer.algorithms.is_empty() {
                return Err(invalid(format!("{}: algorithms is empty", issuer.issuer)));
            }
            if let Some(alg) = issuer
                .algorithms
                .iter()
                .find(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            {
                return Err(invalid(format!(
                    "{}: {alg:?} needs a shared secret; the gateway checks tokens with the issuer's public keys (JWKS) only",
                    issuer.issuer
                )));
            }
            if !(1..=86_400).contains(&issuer.min_refresh_seconds) {
                return Err(invalid(format!(
                    "{}: minRefreshSeconds must be 1–86400",
                    issuer.issuer
                )));
            }
            if issuer.namespaces.is_empty() && issuer.namespaces_claim.is_none() {
                return Err(invalid(format!(
                    "{}: set namespacesClaim or namespaces, or its tokens grant nothing",
                    issuer.issuer
                )));
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<Self, OAuthConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| OAuthConfigError::Read {
            path: shown.clone(),
            error: e.to_string(),
        })?;
        Self::parse(&text, &shown)
    }

    /// The resource URL of a request to `/mcp/<namespace>[/<capability>]`, and the URLs a token
    /// for it may name in `aud` (the namespace's own, which covers its capabilities).
    pub fn audiences(&self, namespace: &str, capability: Option<&str>) -> (String, Vec<String>) {
        let namespace_url = format!("{}/mcp/{namespace}", self.resource);
        match capability {
            Some(c) => {
                let url = format!("{namespace_url}/{c}");
                (url.clone(), vec![url, namespace_url])
            }
            None => (namespace_url.clone(), vec![namespace_url]),
        }
    }

    /// RFC 9728 metadata of `resource`.
    pub fn metadata(&self, resource: &str) -> serde_json::Value {
        serde_json::json!({
            "resource": resource,
            "authorization_servers": self.issuers.iter().map(|i| &i.issuer).collect::<Vec<_>>(),
            "bearer_methods_supported": ["header"],
            "resource_name": "mcp-coordinator gateway",
        })
    }

    /// Where the metadata of `resource` is: the well-known prefix inserted before its path
    /// (RFC 9728 §3.1).
    pub fn metadata_url(&self, resource: &str) -> String {
        match reqwest::Url::parse(resource) {
            Ok(url) => {
                let origin = url.origin().ascii_serialization();
                format!(
                    "{origin}/.well-known/oauth-protected-resource{}",
                    url.path().trim_end_matches('/')
                )
            }
            Err(_) => format!("{}/.well-known/oauth-protected-resource", self.resource),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_checked_and_resources_named_as_rfc_9728_has_them() {
        let config = ResourceServer::parse(
            "resource: https://gw.example.com/\nissuers:\n  - issuer: https://auth.example.com\n    namespacesClaim: mcp_namespaces\n",
            "oauth.yaml",
        )
        .unwrap();
        assert_eq!(
            config.issuers[0].algorithms,
            super::super::validate::default_algorithms()
        );
        assert_eq!(config.issuers[0].clock_skew_seconds, 60);
        let (resource, audiences) = config.audiences("ocr", Some("text"));
        assert_eq!(resource, "https://gw.example.com/mcp/ocr/text");
        assert_eq!(
            audiences,
            [
                "https://gw.example.com/mcp/ocr/text",
                "https://gw.example.com/mcp/ocr"
            ]
        );
        assert_eq!(
            config.metadata_url(&resource),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp/ocr/text"
        );
        for (text, says) in [
            (
                "resource: ftp://x\nissuers: [{issuer: a, namespaces: [x]}]",
                "http(s)",
            ),
            ("resource: https://x\nissuers: []", "at least one"),
            (
                "resource: https://x\nissuers: [{issuer: a}]",
                "grant nothing",
            ),
            (
                "resource: https://x\nissuers: [{issuer: a, namespaces: [x], algorithms: [HS256]}]",
                "shared secret",
            ),
            (
                "resource: https://x\nissuers: [{issuer: a, namespaces: [x], algorithms: [none]}]",
                "oauth.yaml",
            ),
        ] {
            let e = ResourceServer::parse(text, "oauth.yaml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
