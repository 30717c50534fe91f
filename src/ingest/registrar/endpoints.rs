//! Where the coordinator reaches a self-registering MCP: `mcp_info.url` and the seed's
//! `endpoints` (paths, or full URLs of one origin), or, when neither says, the Service of the
//! registration's name in Kubernetes.

use serde::Deserialize;

use super::refused::Refused;
use crate::crd::{Endpoint, Paths, Scheme, ServiceRef};

/// The seed's `mcp_info.endpoints`: paths under `mcp_info.url`, or full URLs of one origin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedEndpoints {
    #[serde(default)]
    pub health_check: Option<String>,
    #[serde(default)]
    pub process: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// The port of the Service a registration without a URL is reached through.
pub const DEFAULT_SERVICE_PORT: u16 = 80;

/// Where an MCP without a URL is reached, if anywhere: Kubernetes gives it the Service of the
/// registration's name; standalone mode has no Services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutUrl<'a> {
    Service(&'a str),
    /// The MCP has no address of its own (`health_check.type: none`, a stdio server).
    Nowhere,
    Refuse,
}

/// The MCP's base URL and paths: endpoints may be paths (relative to `url`) or absolute URLs,
/// which then must share one origin.
/// The third value says what was assumed, for the answer.
pub(super) fn endpoint_and_paths(
    url: Option<&str>,
    endpoints: Option<&SeedEndpoints>,
    without_url: WithoutUrl<'_>,
) -> Result<(Endpoint, Paths, Option<String>), Refused> {
    let mut paths = Paths::default();
    let mut origin = url.map(|u| u.trim_end_matches('/').to_string());
    if let Some(endpoints) = endpoints {
        let fields = [
            (
                "health_check",
                &endpoints.health_check,
                &mut paths.health_check,
            ),
            ("process", &endpoints.process, &mut paths.process),
            ("status", &endpoints.status, &mut paths.status),
        ];
        for (name, given, path) in fields {
            let Some(given) = given else { continue };
            let field = format!("mcp_info.endpoints.{name}");
            if given.starts_with('/') {
                *path = given.clone();
                continue;
            }
            let (base, rest) = split_url(given).ok_or_else(|| {
                Refused::new(
                    &field,
                    format!("{given:?} is neither a path (\"/health\") nor an http(s) URL"),
                )
            })?;
            match &origin {
                Some(o) if o != base => {
                    return Err(Refused::new(
                        field,
                        format!(
                        "{given:?} is not under {o}: every endpoint of an MCP shares one base URL"
                    ),
                    ))
                }
                Some(_) => {}
                None => origin = Some(base.to_string()),
            }
            *path = if rest.is_empty() {
                "/".into()
            } else {
                rest.into()
            };
        }
    }
    let Some(url) = origin else {
        return match without_url {
            WithoutUrl::Service(name) => Ok((
                Endpoint {
                    service: Some(ServiceRef {
                        name: name.to_string(),
                        namespace: None,
                        port: DEFAULT_SERVICE_PORT,
                        scheme: Scheme::Http,
                    }),
                    url: None,
                },
                paths,
                Some(format!(
                    "no mcp_info.url: the coordinator reaches this MCP through the Service {name} of its namespace, port {DEFAULT_SERVICE_PORT}; send mcp_info.url to say otherwise"
                )),
            )),
            WithoutUrl::Nowhere => Ok((Endpoint::default(), paths, None)),
            WithoutUrl::Refuse => Err(Refused::new(
                "mcp_info.url",
                "where does the coordinator reach this MCP? Standalone mode has no Services to assume: add mcp_info.url (e.g. \"http://127.0.0.1:8080\") or give the endpoints as full URLs (an MCP without an address of its own, such as a stdio server, says health_check: {\"type\": \"none\"})",
            )),
        };
    };
    if split_url(&url).is_none_or(|(base, rest)| base.len() + rest.len() != url.len()) {
        return Err(Refused::new(
            "mcp_info.url",
            format!("{url:?} is not an http(s) URL"),
        ));
    }
    Ok((
        Endpoint {
            service: None,
            url: Some(url),
        },
        paths,
        None,
    ))
}

/// `http://host:port/path` → (`http://host:port`, `/path`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let after_scheme = url
        .strip_prefix("http://")
        .map(|r| (r, 7))
        .or_else(|| url.strip_prefix("https://").map(|r| (r, 8)))?;
    let (rest, scheme_len) = after_scheme;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_end == 0 || rest[..host_end].contains(char::is_whitespace) {
        return None;
    }
    Some(url.split_at(scheme_len + host_end))
}
