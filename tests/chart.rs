//! Checks of the Helm chart that need no helm: values against the schema, the CRD against the
//! generated one, every `.Values` path the templates use, and RBAC against the calls the code makes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mcp_coordinator::rbac::API_CALLS;
use serde_json::Value;

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mcp-coordinator")
}

fn templates() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(chart().join("templates"))
        .expect("templates directory")
        .map(|e| e.expect("entry").path())
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("template reads");
            (
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                text,
            )
        })
        .collect();
    files.sort();
    files
}

fn values() -> Value {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    serde_saphyr::from_str(&text).expect("values.yaml is YAML")
}

#[test]
fn values_validate_against_the_schema_and_the_schema_rejects_mistakes() {
    let out = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/check_values.py"))
        .arg(chart())
        .output()
        .expect("python3 runs (.ci/run installs it with jsonschema and PyYAML)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(results.len(), 6, "{results:?}");
    for r in &results {
        let errors = r["errors"].as_array().expect("errors");
        if r["case"] == "values.yaml" {
            assert!(
                errors.is_empty(),
                "values.yaml does not match its schema: {errors:?}"
            );
        } else {
            assert!(!errors.is_empty(), "the schema accepted {}", r["case"]);
        }
    }
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-coordinator"))
        .arg("crdgen")
        .output()
        .expect("crdgen runs");
    let chart_crd =
        std::fs::read_to_string(chart().join("crds/mcpregistration.yaml")).expect("chart CRD");
    assert!(
        chart_crd == String::from_utf8_lossy(&out.stdout),
        "charts/mcp-coordinator/crds/mcpregistration.yaml is stale: run `make crds`"
    );
}

/// `.Values.a.b.c` references in a template.
fn value_paths(text: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(".Values.") {
        let after = &rest[at + ".Values.".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(after.len());
        paths.insert(after[..end].trim_end_matches('.').to_string());
        rest = &after[end..];
    }
    paths
}

#[test]
fn every_value_the_templates_use_exists_in_values_yaml() {
    let values = values();
    let mut used = 0;
    for (file, text) in templates() {
        for path in value_paths(&text) {
            used += 1;
            let mut at = &values;
            for part in path.split('.') {
                at = at.get(part).unwrap_or_else(|| {
                    panic!("{file} uses .Values.{path}, which values.yaml does not define")
                });
            }
        }
    }
    assert!(
        used > 40,
        "only {used} references found: is the scan broken?"
    );
    assert!(value_paths("{{ .Values.a.b }} {{ .Values.c }}").len() == 2);
}

/// The rules of every Role and ClusterRole in the RBAC template, with template directives blanked.
fn rbac_rules() -> Vec<(BTreeSet<String>, BTreeSet<String>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(chart().join("templates/rbac.yaml")).expect("rbac.yaml");
    let plain: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("{{"))
        .map(|l| {
            let mut out = String::new();
            let mut rest = l;
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                out.push('x');
                rest = rest[start..]
                    .find("}}")
                    .map_or("", |end| &rest[start + end + 2..]);
            }
            out.push_str(rest);
            out + "\n"
        })
        .collect();
    let set = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut rules = Vec::new();
    for doc in plain.split("\n---") {
        let doc: Value = serde_saphyr::from_str(doc).expect("RBAC document parses");
        for rule in doc["rules"].as_array().into_iter().flatten() {
            rules.push((
                set(&rule["apiGroups"]),
                set(&rule["resources"]),
                set(&rule["verbs"]),
            ));
        }
    }
    rules
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let rules = rbac_rules();
    assert!(rules.len() >= 5, "{rules:?}");
    for call in API_CALLS {
        for verb in call.verbs {
            assert!(
                rules
                    .iter()
                    .any(|(groups, resources, verbs)| groups.contains(call.group)
                        && resources.contains(call.resource)
                        && verbs.contains(*verb)),
                "the chart does not grant {verb} {}/{} ({}: {})",
                call.group,
                call.resource,
                call.component,
                call.why
            );
        }
    }
    // Least privilege: nothing granted that the code does not use.
    for (groups, resources, verbs) in &rules {
        for group in groups {
            for resource in resources {
                for verb in verbs {
                    assert!(
                        API_CALLS.iter().any(|c| c.group == group
                            && c.resource == resource
                            && c.verbs.contains(&verb.as_str())),
                        "the chart grants {verb} {group}/{resource}, which no code path uses"
                    );
                }
            }
        }
    }
}

#[test]
fn the_dashboard_is_valid_json_and_queries_the_projects_series() {
    let text = std::fs::read_to_string(chart().join("dashboards/mcp-coordinator.json"))
        .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
    let exprs: Vec<&str> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    for series in [
        "mcp_coordinator_registrations",
        "mcp_up",
        "mcp_ingest_events_received_total",
        "mcp_ingest_route_decisions_total",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(series)),
            "no panel shows {series}"
        );
    }
}
