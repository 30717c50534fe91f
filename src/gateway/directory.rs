//! The MCPs the gateway may send calls to, from the registrations (the Kubernetes watch or
//! standalone's manifests): where each listens, what it offers, which of its tools may be
//! retried, and whether it is routable now. Pure, apart from the holder that swaps a new list in.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kube::ResourceExt;

use crate::crd::MCPRegistration;

/// One MCP behind the gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Backend {
    pub mcp_id: String,
    pub name: String,
    pub namespace: String,
    pub capabilities: Vec<String>,
    /// The MCP endpoint: base URL and `spec.paths.process`, parsed once (not per call).
    pub url: reqwest::Url,
    pub mcp_type: String,
    pub version: String,
    pub idempotent_tools: Vec<String>,
    pub call_timeout: Option<Duration>,
    pub max_concurrent_requests: u32,
    /// Routable now (an ID and a routing weight above 0).
    pub routable: bool,
    /// Headers the MCP expects on every request (from `healthCheck.headersFromSecret`).
    pub headers: BTreeMap<String, String>,
    /// Who may call it and how often (`spec.gatewayPolicy`).
    pub policy: Option<Arc<super::access::PolicyCell>>,
}

impl Backend {
    pub fn idempotent(&self, tool: &str) -> bool {
        self.idempotent_tools.iter().any(|t| t == "*" || t == tool)
    }

    pub fn offers(&self, capability: Option<&str>) -> bool {
        capability.is_none_or(|c| self.capabilities.iter().any(|o| o == c))
    }
}

/// The backends of `registrations`: those with an ID and routing status, not being deleted.
/// `headers` gives the probe headers of a registration (namespace, name), when it has some.
pub fn backends_of<'a>(
    registrations: impl IntoIterator<Item = &'a MCPRegistration>,
    headers: impl Fn(&MCPRegistration) -> BTreeMap<String, String>,
) -> Vec<Backend> {
    let mut out = Vec::new();
    for reg in registrations {
        let Some(namespace) = reg.namespace() else {
            continue;
        };
        if reg.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(status) = &reg.status else { continue };
        let (Some(mcp_id), Some(routing)) = (&status.mcp_id, &status.routing) else {
            continue;
        };
        let spec = &reg.spec;
        let text = format!(
            "{}{}",
            spec.endpoint.base_url(&namespace),
            spec.paths.process
        );
        let url = match reqwest::Url::parse(&text) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(registration = %reg.name_any(), url = %text, error = %e, "the gateway leaves out an MCP whose endpoint is not a URL");
                continue;
            }
        };
        out.push(Backend {
            mcp_id: mcp_id.clone(),
            name: reg.name_any(),
            url,
            namespace,
            capabilities: spec.capabilities.clone(),
            mcp_type: spec.mcp_type.clone(),
            version: spec.version.clone(),
            idempotent_tools: spec.routing.idempotent_tools.clone(),
            call_timeout: spec
                .routing
                .call_timeout_seconds
                .map(|s| Duration::from_secs(s.into())),
            max_concurrent_requests: routing.max_concurrent_requests.max(1),
            routable: routing.effective_weight > 0,
            headers: headers(reg),
            policy: spec
                .gateway_policy
                .clone()
                .map(|p| Arc::new(super::access::PolicyCell::new(p))),
        });
    }
    out.sort_by(|a, b| a.mcp_id.cmp(&b.mcp_id));
    out
}

/// The current backends, swapped whole when the registrations change.
#[derive(Default, Debug)]
pub struct Directory {
    backends: ArcSwap<Vec<Arc<Backend>>>,
    /// MCPs changed or removed since the gateway last looked (what it knows of them is stale).
    changed: std::sync::Mutex<Vec<String>>,
}

impl Directory {
    pub fn install(&self, backends: Vec<Backend>) {
        let current = self.backends.load();
        if current.len() == backends.len() && current.iter().zip(&backends).all(|(a, b)| **a == *b)
        {
            return;
        }
        let mut changed: Vec<String> = current
            .iter()
            .filter(|old| !backends.iter().any(|b| b == old.as_ref()))
            .map(|old| old.mcp_id.clone())
            .collect();
        changed.extend(
            backends
                .iter()
                .filter(|b| !current.iter().any(|old| old.as_ref() == *b))
                .map(|b| b.mcp_id.clone()),
        );
        self.changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(changed);
        // An unchanged backend is kept as it is, with the policy it compiled.
        let kept = backends
            .into_iter()
            .map(|b| {
                current
                    .iter()
                    .find(|old| old.as_ref() == &b)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(b))
            })
            .collect();
        self.backends.store(Arc::new(kept));
    }

    /// The MCPs changed since the last call.
    pub fn take_changed(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .changed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The routable backends of `namespace` (offering `capability`, when given).
    pub fn scope(&self, namespace: &str, capability: Option<&str>) -> Vec<Arc<Backend>> {
        self.backends
            .load()
            .iter()
            .filter(|b| b.routable && b.namespace == namespace && b.offers(capability))
            .cloned()
            .collect()
    }

    pub fn get(&self, mcp_id: &str) -> Option<Arc<Backend>> {
        self.backends
            .load()
            .iter()
            .find(|b| b.mcp_id == mcp_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{MCPRegistrationSpec, MCPRegistrationStatus, RoutingStatus};

    fn reg(name: &str, ns: &str, id: Option<&str>, weight: u32) -> MCPRegistration {
        let spec: MCPRegistrationSpec = serde_json::from_value(serde_json::json!({
            "version": "1.0.0", "type": "ocr", "capabilities": ["text-extraction"],
            "endpoint": {"url": "http://ocr.example:8080/"}, "paths": {"process": "/mcp"},
            "routing": {"idempotentTools": ["extract_text"], "callTimeoutSeconds": 5}
        }))
        .unwrap();
        let mut r = MCPRegistration::new(name, spec);
        r.metadata.namespace = Some(ns.into());
        r.status = id.map(|id| MCPRegistrationStatus {
            mcp_id: Some(id.into()),
            routing: Some(RoutingStatus {
                effective_weight: weight,
                max_concurrent_requests: 10,
                ..Default::default()
            }),
            ..Default::default()
        });
        r
    }

    #[test]
    fn registrations_become_backends_with_their_endpoint_and_retry_rules() {
        let regs = [
            reg("a", "default", Some("mcp-2"), 100),
            reg("b", "ocr", Some("mcp-1"), 0),
            reg("c", "default", None, 0),
        ];
        let backends = backends_of(&regs, |_| BTreeMap::new());
        assert_eq!(
            backends.len(),
            2,
            "without an ID there is nothing to route to"
        );
        let a = backends.iter().find(|b| b.name == "a").unwrap();
        assert_eq!(a.url.as_str(), "http://ocr.example:8080/mcp");
        assert!(a.idempotent("extract_text") && !a.idempotent("delete"));
        assert_eq!(a.call_timeout, Some(Duration::from_secs(5)));
        let directory = Directory::default();
        directory.install(backends);
        assert_eq!(directory.scope("default", None).len(), 1);
        assert_eq!(directory.scope("default", Some("translation")).len(), 0);
        assert!(
            directory.scope("ocr", None).is_empty(),
            "weight 0 is not routable"
        );
        assert!(directory.get("mcp-1").is_some());
    }
}
