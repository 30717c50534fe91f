//! The generated CRD: checked in, structural, and the contract the examples are written against.

use fake_apiserver::schema::{apply_defaults, prune, structural_violations, validate};
use serde_json::Value;

fn schema() -> Value {
    let crd = serde_json::to_value(mcp_coordinator::crd::crd()).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .unwrap()
}

#[test]
fn checked_in_crd_matches_the_generated_one() {
    let generated = mcp_coordinator::crd::crd_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/mcpregistration.yaml");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "crds/mcpregistration.yaml is out of date with src/crd: run `make crds` and commit the result"
    );
}

#[test]
fn crd_schema_is_structural() {
    let violations = structural_violations(&schema());
    assert!(violations.is_empty(), "not structural: {violations:#?}");
}

#[test]
fn crd_names_and_printer_columns() {
    let crd = serde_json::to_value(mcp_coordinator::crd::crd()).unwrap();
    assert_eq!(
        crd["metadata"]["name"],
        "mcpregistrations.mcp.coordinator.dev"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["spec"]["names"]["shortNames"],
        serde_json::json!(["mcpcreg"])
    );
    assert_eq!(
        crd["spec"]["names"]["categories"],
        serde_json::json!(["mcp-coordinator"])
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["ID", "Ready", "Phase", "Weight", "Age"]);
}

fn documents(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap()
}

fn check(mut object: Value) -> (Vec<String>, Vec<String>, Value) {
    let mut body = object.take();
    if let Some(map) = body.as_object_mut() {
        for k in ["apiVersion", "kind", "metadata"] {
            map.remove(k);
        }
    }
    let mut pruned = Vec::new();
    prune(&schema(), &mut body, "", &mut pruned);
    apply_defaults(&schema(), &mut body);
    let mut causes = Vec::new();
    validate(&schema(), &body, "", &mut causes);
    (
        pruned,
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect(),
        body,
    )
}

#[test]
fn examples_validate_against_the_schema_without_unknown_fields() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in documents(&path) {
            if doc["kind"] != "MCPRegistration" {
                continue;
            }
            seen += 1;
            let (pruned, causes, body) = check(doc.clone());
            assert!(
                pruned.is_empty(),
                "{}: unknown fields {pruned:?}",
                path.display()
            );
            assert!(causes.is_empty(), "{}: {causes:?}", path.display());
            // And the controller's own checks accept it too.
            let reg: mcp_coordinator::crd::MCPRegistrationSpec =
                serde_json::from_value(body["spec"].clone()).unwrap();
            let problems = mcp_coordinator::crd::validate::validate_spec(&reg);
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
        }
    }
    assert!(
        seen >= 2,
        "expected at least two example registrations, found {seen}"
    );
}

#[test]
fn defaults_are_applied_as_documented() {
    let doc: Value = serde_json::json!({"spec": {"version": "1.0.0", "type": "tool", "capabilities": ["x"], "endpoint": {"url": "http://x"}}});
    let (_, causes, body) = check(doc);
    assert!(causes.is_empty(), "{causes:?}");
    let spec = &body["spec"];
    assert_eq!(spec["paths"]["healthCheck"], "/health");
    assert_eq!(spec["paths"]["process"], "/process");
    assert_eq!(spec["healthCheck"]["type"], "http");
    assert_eq!(spec["healthCheck"]["intervalSeconds"], 10);
    assert_eq!(spec["routing"]["weight"], 100);
    assert_eq!(spec["privacy"]["level"], "internal");
}

#[test]
fn an_mcp_without_an_address_is_accepted_when_it_says_so() {
    let doc = serde_json::json!({"spec": {"version": "1.0.0", "type": "tool", "capabilities": ["x"], "healthCheck": {"type": "none"}}});
    let (_, causes, _) = check(doc);
    assert!(causes.is_empty(), "{causes:?}");
}

#[test]
fn schema_rejects_what_kubectl_apply_should_reject() {
    let cases = [
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": [], "endpoint": {"url": "http://x"}}),
            "spec.capabilities",
        ),
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": ["x"], "endpoint": {"url": "http://x"}, "routing": {"weight": 5000}}),
            "spec.routing.weight",
        ),
        // No address, and not saying it has none: the spec's own rule names the endpoint.
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": ["x"], "endpoint": {}}),
            "spec: Invalid value: \"object\": set endpoint.service or endpoint.url",
        ),
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": ["x"]}),
            "spec: Invalid value: \"object\": set endpoint.service or endpoint.url",
        ),
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": ["x"], "endpoint": {"url": "http://x", "service": {"name": "a", "port": 80}}}),
            "spec.endpoint",
        ),
        (
            serde_json::json!({"version": "1.0.0", "type": "tool", "capabilities": ["x"], "endpoint": {"url": "http://x"}, "privacy": {"level": "secret"}}),
            "spec.privacy.level",
        ),
        (
            serde_json::json!({"version": "one", "type": "tool", "capabilities": ["x"], "endpoint": {"url": "http://x"}}),
            "spec.version",
        ),
        (
            serde_json::json!({"type": "tool", "capabilities": ["x"], "endpoint": {"url": "relative/path"}}),
            "spec.version",
        ),
    ];
    for (spec, field) in cases {
        let (_, causes, _) = check(serde_json::json!({"spec": spec}));
        assert!(
            causes.iter().any(|c| c.starts_with(field)),
            "expected a complaint about {field}, got {causes:?}"
        );
    }
}
