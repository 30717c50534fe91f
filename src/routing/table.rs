//! The routing table: capability → candidate MCPs with endpoint, priority, weight and concurrency
//! limit. The controller publishes one per namespace as the `mcp-routing-table` ConfigMap (for
//! gateways to mount); the ingest server's route endpoint reads the same format.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::crd::MCPRegistration;

/// Name of the ConfigMap the controller writes in every namespace with registrations.
pub const CONFIGMAP_NAME: &str = "mcp-routing-table";
/// The ConfigMap's data key holding the table as JSON.
pub const CONFIGMAP_KEY: &str = "routing-table.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingTable {
    /// Candidates per capability, best priority first, then by weight.
    pub capabilities: BTreeMap<String, Vec<Candidate>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Candidate {
    pub mcp_id: String,
    pub name: String,
    pub namespace: String,
    /// Base URL of the MCP.
    pub endpoint: String,
    /// Path requests are sent to (`spec.paths.process`).
    #[serde(default)]
    pub process_path: String,
    /// Tier: 0 is tried first.
    pub priority: u32,
    /// The effective weight from status; 0 means not routable (not Ready).
    pub weight: u32,
    pub max_concurrent_requests: u32,
}

impl RoutingTable {
    /// Orders every capability's candidates: priority, then weight (highest first), then ID.
    fn sort(&mut self) {
        for candidates in self.capabilities.values_mut() {
            candidates.sort_by(|a, b| {
                (a.priority, std::cmp::Reverse(a.weight), &a.mcp_id).cmp(&(
                    b.priority,
                    std::cmp::Reverse(b.weight),
                    &b.mcp_id,
                ))
            });
        }
    }

    /// One table from several (the ConfigMaps of several namespaces).
    pub fn merge<'a>(tables: impl IntoIterator<Item = &'a RoutingTable>) -> RoutingTable {
        let mut merged = RoutingTable::default();
        for table in tables {
            for (capability, candidates) in &table.capabilities {
                merged
                    .capabilities
                    .entry(capability.clone())
                    .or_default()
                    .extend(candidates.iter().cloned());
            }
        }
        merged.sort();
        merged
    }
}

/// The table of every namespace, from the registrations' specs and routing status. Registrations
/// without an ID or routing status yet, and those being deleted, are left out.
pub fn build<'a>(
    registrations: impl IntoIterator<Item = &'a MCPRegistration>,
) -> BTreeMap<String, RoutingTable> {
    let mut tables: BTreeMap<String, RoutingTable> = BTreeMap::new();
    for reg in registrations {
        let Some(namespace) = reg.namespace() else {
            continue;
        };
        let table = tables.entry(namespace.clone()).or_default();
        if reg.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(status) = &reg.status else { continue };
        let (Some(mcp_id), Some(routing)) = (&status.mcp_id, &status.routing) else {
            continue;
        };
        // An MCP without an address (healthCheck.type none) is nowhere to route to.
        if reg.spec.endpoint.base_url(&namespace).is_empty() {
            continue;
        }
        for capability in &reg.spec.capabilities {
            table
                .capabilities
                .entry(capability.clone())
                .or_default()
                .push(Candidate {
                    mcp_id: mcp_id.clone(),
                    name: reg.name_any(),
                    namespace: namespace.clone(),
                    endpoint: reg.spec.endpoint.base_url(&namespace),
                    process_path: reg.spec.paths.process.clone(),
                    priority: routing.priority,
                    weight: routing.effective_weight,
                    max_concurrent_requests: routing.max_concurrent_requests,
                });
        }
    }
    for table in tables.values_mut() {
        table.sort();
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{MCPRegistrationSpec, MCPRegistrationStatus, RoutingStatus};

    fn reg(
        name: &str,
        ns: &str,
        caps: &[&str],
        id: Option<&str>,
        priority: u32,
        weight: u32,
    ) -> MCPRegistration {
        let spec: MCPRegistrationSpec = serde_json::from_value(serde_json::json!({
            "version": "1.0.0",
            "type": "workflow",
            "capabilities": caps,
            "endpoint": {"url": format!("http://{name}:8080/")},
        }))
        .expect("valid spec");
        let mut r = MCPRegistration::new(name, spec);
        r.metadata.namespace = Some(ns.into());
        r.status = id.map(|id| MCPRegistrationStatus {
            mcp_id: Some(id.into()),
            routing: Some(RoutingStatus {
                priority,
                weight: 100,
                effective_weight: weight,
                max_concurrent_requests: 10,
                reason: String::new(),
                last_updated: None,
            }),
            ..Default::default()
        });
        r
    }

    #[test]
    fn groups_by_namespace_and_capability_best_first() {
        let regs = [
            reg("a", "team", &["ocr", "pdf"], Some("a_001"), 0, 50),
            reg("b", "team", &["ocr"], Some("b_001"), 0, 90),
            reg("c", "team", &["ocr"], Some("c_001"), 1, 500),
            reg("new", "team", &["ocr"], None, 0, 0),
            reg("x", "other", &["translate"], Some("x_001"), 0, 100),
        ];
        let tables = build(regs.iter());
        let ocr: Vec<&str> = tables["team"].capabilities["ocr"]
            .iter()
            .map(|c| c.mcp_id.as_str())
            .collect();
        assert_eq!(
            ocr,
            ["b_001", "a_001", "c_001"],
            "tier 0 by weight, then tier 1"
        );
        assert_eq!(tables["team"].capabilities["pdf"].len(), 1);
        assert_eq!(
            tables["team"].capabilities["ocr"][0].endpoint,
            "http://b:8080"
        );
        assert!(!tables["other"].capabilities.contains_key("ocr"));
    }

    #[test]
    fn a_namespace_whose_registrations_are_being_deleted_gets_an_empty_table() {
        let mut gone = reg("a", "team", &["ocr"], Some("a_001"), 0, 100);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let tables = build([&gone]);
        assert_eq!(tables["team"], RoutingTable::default());
    }

    #[test]
    fn merged_tables_stay_ordered_and_round_trip_as_json() {
        let t1 = build([&reg("a", "n1", &["ocr"], Some("a_001"), 1, 100)]);
        let t2 = build([&reg("b", "n2", &["ocr"], Some("b_001"), 0, 10)]);
        let merged = RoutingTable::merge([&t1["n1"], &t2["n2"]]);
        assert_eq!(merged.capabilities["ocr"][0].mcp_id, "b_001");
        let text = serde_json::to_string(&merged).expect("serializes");
        assert!(text.contains("\"maxConcurrentRequests\":10"), "{text}");
        let back: RoutingTable = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, merged);
    }
}
