//! Probes: the I/O half of health checking. Each returns a [`ProbeOutcome`]; none panics or hangs
//! past its timeout. `http` probes are here, `mcp` probes in [`mcp`], where probes may not go in
//! [`policy`].

pub mod learn;
mod mcp;
mod policy;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;

use super::health::{Learned, ProbeOutcome};
use crate::crd::{ProbeCall, ProbeType};
use crate::telemetry::spans;
pub use policy::{client, forbidden, ProbePolicy};

/// Everything needed to probe one MCP.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeTarget {
    pub probe_type: ProbeType,
    /// Absolute URL of the health path (`http`) or the MCP endpoint (`mcp`).
    pub url: String,
    pub timeout: Duration,
    pub interval: Duration,
    /// Extra headers from `healthCheck.headersFromSecret` (values never logged).
    pub headers: BTreeMap<String, String>,
    /// Set when the headers could not be loaded; the probe reports it instead of probing blind.
    pub setup_error: Option<String>,
    /// The functional probe's call (`healthCheck.call`), made by `mcp` probes.
    pub call: Option<ProbeCall>,
}

impl ProbeTarget {
    /// Where and how the spec says to probe, without extra headers.
    pub fn of(spec: &crate::crd::MCPRegistrationSpec, namespace: &str) -> Self {
        let path = match spec.health_check.probe_type {
            ProbeType::Http | ProbeType::None => &spec.paths.health_check,
            ProbeType::Mcp => &spec.paths.process,
        };
        Self {
            probe_type: spec.health_check.probe_type,
            url: format!("{}{path}", spec.endpoint.base_url(namespace)),
            timeout: Duration::from_secs(spec.health_check.timeout_seconds.into()),
            interval: Duration::from_secs(spec.health_check.interval_seconds.into()),
            headers: BTreeMap::new(),
            setup_error: None,
            call: spec.health_check.call.clone(),
        }
    }
}

pub async fn probe(client: &reqwest::Client, target: &ProbeTarget) -> ProbeOutcome {
    let span = spans::Op::start(spans::SpanKind::Client, || {
        let kind = format!("{:?}", target.probe_type).to_ascii_lowercase();
        let attributes = vec![
            spans::Attribute::new(
                "url.full",
                target.url.split('?').next().unwrap_or_default().to_string(),
            ),
            spans::Attribute::new("mcp_coordinator.probe.type", kind.clone()),
        ];
        (format!("probe {kind}"), attributes)
    });
    let outcome = span.within(probe_once(client, target)).await;
    let failure = match &outcome {
        ProbeOutcome::Up { .. } => None,
        ProbeOutcome::Refused { detail, .. } => Some(("refused", detail.clone())),
        ProbeOutcome::Down { error, .. } => Some(("down", error.clone())),
    };
    span.end(failure);
    outcome
}

async fn probe_once(client: &reqwest::Client, target: &ProbeTarget) -> ProbeOutcome {
    let started = Instant::now();
    if let Some(error) = &target.setup_error {
        return ProbeOutcome::Down {
            latency: Duration::ZERO,
            error: error.clone(),
        };
    }
    let headers = match header_map(&target.headers) {
        Ok(h) => h,
        Err(error) => {
            return ProbeOutcome::Down {
                latency: Duration::ZERO,
                error,
            }
        }
    };
    let outcome = match target.probe_type {
        ProbeType::Http => {
            tokio::time::timeout(target.timeout, http_probe(client, target, headers)).await
        }
        ProbeType::Mcp => tokio::time::timeout(target.timeout, mcp::probe(client, target)).await,
        // Never scheduled (the registration step does not probe these); nothing to learn.
        ProbeType::None => Ok(Ok(None)),
    };
    let latency = started.elapsed();
    match outcome {
        Ok(Ok(learned)) => ProbeOutcome::Up { latency, learned },
        Ok(Err(Failure::Refused(detail))) => ProbeOutcome::Refused { latency, detail },
        Ok(Err(Failure::Down(error))) => ProbeOutcome::Down { latency, error },
        Err(_) => ProbeOutcome::Down {
            latency,
            error: format!("no answer within the {}s timeout", target.timeout.as_secs()),
        },
    }
}

/// Why a probe did not vouch for the MCP.
enum Failure {
    Refused(String),
    Down(String),
}

fn header_map(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!(
                "probe header name {name:?} from headersFromSecret is not a valid HTTP header name"
            )
        })?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "probe header {name} from headersFromSecret has a value that is not valid in HTTP"
            )
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

async fn http_probe(
    client: &reqwest::Client,
    target: &ProbeTarget,
    headers: HeaderMap,
) -> Result<Option<Learned>, Failure> {
    let response = client
        .get(&target.url)
        .headers(headers)
        .send()
        .await
        .map_err(|e| Failure::Down(error_chain(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(None);
    }
    Err(classify_status(status, "GET"))
}

fn classify_status(status: StatusCode, method: &str) -> Failure {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Failure::Refused(format!(
            "the server answered {status} to the probe's {method}: it is up but refuses the probe's credentials; put them in a Secret named by healthCheck.headersFromSecret"
        )),
        StatusCode::METHOD_NOT_ALLOWED => Failure::Refused(format!(
            "the server answered {status} to the probe's {method}: it is up but does not accept {method} on that path; point paths.healthCheck at a GET endpoint or use healthCheck.type: mcp"
        )),
        _ => Failure::Down(format!("the server answered {status} to the probe's {method}")),
    }
}

/// An error with its sources, so "error sending request" comes with "connection refused".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
