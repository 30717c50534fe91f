//! The fleet's protocol migration, as `GET /v1/protocols` answers it: which registrations speak
//! which MCP protocol version, and which rely on what the 2026-07-28 revision removed or
//! deprecated. Kept current by whoever owns the registrations (the registration watch, or
//! standalone mode's loop); built by a pure function from their status.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use serde_json::{json, Value};

use crate::crd::MCPRegistration;

/// The latest view, replaced whole on every change of the registrations.
#[derive(Debug, Default)]
pub struct Fleet(RwLock<Value>);

impl Fleet {
    pub fn install<'a>(&self, registrations: impl Iterator<Item = &'a MCPRegistration>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = view(registrations);
    }

    pub fn view(&self) -> Value {
        let view = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if view.is_null() {
            return self::view(std::iter::empty());
        }
        view.clone()
    }
}

/// Counts by protocol version (`unknown` until an `mcp` probe learned it) and by legacy feature,
/// then one row per registration, sorted by namespace and name.
pub fn view<'a>(registrations: impl Iterator<Item = &'a MCPRegistration>) -> Value {
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut features: BTreeMap<String, u64> = BTreeMap::new();
    let mut rows = Vec::new();
    for reg in registrations {
        let status = reg.status.as_ref();
        let info = status.and_then(|s| s.server_info.as_ref());
        let version = info.map_or("unknown", |i| i.protocol_version.as_str());
        *versions.entry(version.to_string()).or_default() += 1;
        for feature in info
            .map(|i| i.legacy_features.as_slice())
            .unwrap_or_default()
        {
            *features.entry(feature.clone()).or_default() += 1;
        }
        rows.push(json!({
            "namespace": reg.metadata.namespace.as_deref().unwrap_or("default"),
            "name": reg.metadata.name.as_deref().unwrap_or_default(),
            "mcp_id": status.and_then(|s| s.mcp_id.as_deref()),
            "phase": status.map(|s| s.phase.as_str()),
            "protocol_version": version,
            "legacy_features": info.map(|i| i.legacy_features.clone()).unwrap_or_default(),
            "server": info.map(|i| json!({"name": i.name, "version": i.version})),
        }));
    }
    rows.sort_by(|a, b| {
        (a["namespace"].as_str(), a["name"].as_str())
            .cmp(&(b["namespace"].as_str(), b["name"].as_str()))
    });
    json!({
        "current": crate::mcp::wire::MODERN_VERSION,
        "versions": versions,
        "legacy_features": features,
        "registrations": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(name: &str, status: Value) -> MCPRegistration {
        serde_json::from_value(json!({
            "apiVersion": "mcp.coordinator.dev/v1alpha1", "kind": "MCPRegistration",
            "metadata": {"name": name, "namespace": "team-a"},
            "spec": {"version": "1.0.0", "type": "ocr", "capabilities": ["ocr"], "endpoint": {"url": "http://x"}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn registrations_are_counted_by_version_and_by_what_they_still_rely_on() {
        let regs = [
            registration(
                "new",
                json!({"phase": "Ready", "mcpId": "new_ocr_mcp_001", "serverInfo": {"protocolVersion": "2026-07-28", "name": "n", "version": "2.0"}}),
            ),
            registration(
                "old",
                json!({"phase": "Ready", "serverInfo": {"protocolVersion": "2025-06-18", "legacyFeatures": ["sessions", "logging"]}}),
            ),
            registration("http", json!({"phase": "Ready"})),
        ];
        let v = view(regs.iter());
        assert_eq!(
            v["versions"],
            json!({"2025-06-18": 1, "2026-07-28": 1, "unknown": 1})
        );
        assert_eq!(v["legacy_features"], json!({"logging": 1, "sessions": 1}));
        let names: Vec<&str> = v["registrations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["http", "new", "old"]);
        assert_eq!(v["registrations"][1]["server"]["version"], "2.0");
        assert_eq!(Fleet::default().view()["registrations"], json!([]));
    }
}
