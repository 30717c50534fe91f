//! values.yaml and its schema: what is refused, what every template path needs, numbers, the
//! standard values a platform team sets, GitOps renders and long release names.

use super::*;

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
        std::fs::read_to_string(chart().join("files/mcpregistration.yaml")).expect("chart CRD");
    assert!(
        chart_crd == String::from_utf8_lossy(&out.stdout),
        "charts/mcp-coordinator/files/mcpregistration.yaml is stale: run `make crds`"
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

#[test]
fn a_long_release_name_still_gives_valid_names() {
    // Helm allows release names of up to 53 characters.
    let release = "a-release-name-of-fifty-characters-for-the-coordin";
    assert_eq!(release.len(), 50);
    for set in ["", "ingest.persistence.enabled=false"] {
        let (docs, notes) = render_as(release, set);
        for doc in &docs {
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let kind = doc["kind"].as_str().unwrap_or_default();
            let limit = match kind {
                // DNS labels; a StatefulSet's pods carry its name and an 11-character revision hash.
                "Service" => 63,
                "StatefulSet" => 52,
                _ => 253,
            };
            assert!(
                !name.is_empty() && name.len() <= limit,
                "{kind} {name} ({} characters, at most {limit})",
                name.len()
            );
        }
        let ingest_service = docs
            .iter()
            .find(|d| {
                d["kind"] == "Service"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("-ingest"))
            })
            .expect("the ingest Service");
        let name = ingest_service["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        assert!(
            notes.contains(&format!("://{name}.")),
            "NOTES names the Service: {notes}"
        );
        let workload = docs.iter().find(|d| is_workload(d)).expect("workload");
        if workload["kind"] == "StatefulSet" {
            assert_eq!(workload["spec"]["serviceName"], name);
        }
        let args = workload["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("controller args");
        assert!(
            args.iter()
                .filter_map(Value::as_str)
                .any(|a| a.contains(&format!("://{name}."))),
            "the controller reaches the ingest Service by its name: {args:?}"
        );
    }
    // Names that fitted before keep their names.
    let (docs, _) = render("");
    let names: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Service" || is_workload(d))
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "test-mcp-coordinator",
            "test-mcp-coordinator-clickhouse",
            "test-mcp-coordinator-gateway",
            "test-mcp-coordinator-ingest",
            "test-mcp-coordinator-metrics"
        ])
    );
}

#[test]
fn gitops_renders_are_identical_when_the_keys_come_from_existing_secrets() {
    let set = "keys.existingSecret=mcp-keys,readerToken.existingSecret=mcp-reader,clickhouse.auth.existingSecret=mcp-clickhouse";
    let first = template(&["--set", set]);
    assert_eq!(
        first,
        template(&["--set", set]),
        "two renders of the same values must not differ (Argo CD would sync forever)"
    );
    let docs = parse_manifests(&first);
    assert!(
        !docs.iter().any(|d| d["kind"] == "Secret"
            && [
                "test-mcp-coordinator-keys",
                "test-mcp-coordinator-reader-token"
            ]
            .contains(&d["metadata"]["name"].as_str().unwrap_or_default())),
        "no generated key Secrets when existing ones are named"
    );
    let workload = docs.iter().find(|d| is_workload(d)).expect("workload");
    let secrets: BTreeSet<&str> = workload["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["secret"]["secretName"].as_str())
        .collect();
    assert!(
        secrets.contains("mcp-keys") && secrets.contains("mcp-reader"),
        "{secrets:?}"
    );
    // Without them, `helm template` generates new keys each time: what `lookup` prevents only
    // for `helm install` and `helm upgrade`, and why docs/install.md sends GitOps users here.
    assert_ne!(template(&[]), template(&[]));
}

#[test]
fn numbers_from_a_values_file_render_as_integers() {
    // Helm reads numbers in a values file as floats and prints those of a million or more as
    // 2e+06. Every integer value has a maximum below that in the schema, and the templates print
    // them as integers anyway.
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let mut unbounded = Vec::new();
    integers_without_a_small_maximum(&schema, "", &mut unbounded);
    assert!(
        unbounded.is_empty(),
        "integers without a maximum below 1,000,000: {unbounded:?}"
    );
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("large-numbers.yaml");
    std::fs::write(
        &file,
        "controller:\n  resyncSeconds: 86400\n  routingIntervalSeconds: 3600\n  probeConcurrency: 10000\n\
         ingest:\n  retentionDays: 3650\n  drainTimeoutSeconds: 3600\n\
         terminationGracePeriodSeconds: 3600\nservice:\n  ingestPort: 18081\n",
    )
    .expect("values file");
    let text = template(&["-f", file.to_str().expect("UTF-8 path")]);
    for expected in [
        "--resync-seconds=86400",
        "--routing-interval-seconds=3600",
        "--probe-concurrency=10000",
        "--retention-days=3650",
        "--drain-timeout-seconds=3600",
        "terminationGracePeriodSeconds: 3600",
        "port: 18081",
    ] {
        assert!(text.contains(expected), "{expected} missing");
    }
    assert!(!text.contains("e+0"), "a number rendered as a float");
    // Beyond the schema's maxima, helm refuses before rendering.
    assert_helm_refuses("controller.resyncSeconds=2000000", "resyncSeconds");
}

/// Paths of integer values in `schema` whose maximum is missing or a million or more.
fn integers_without_a_small_maximum(schema: &Value, path: &str, out: &mut Vec<String>) {
    let is_integer = schema["type"] == "integer"
        || schema["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "integer"));
    if is_integer && schema["maximum"].as_f64().is_none_or(|m| m >= 1e6) {
        out.push(path.to_string());
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (key, child) in properties {
            integers_without_a_small_maximum(child, &format!("{path}.{key}"), out);
        }
    }
}

/// The standard values a platform team sets, from a values file.
const STANDARD_VALUES: &str = r#"
image:
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
commonLabels:
  team: platform
podLabels:
  sidecar.istio.io/inject: "false"
priorityClassName: system-cluster-critical
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        app.kubernetes.io/name: mcp-coordinator
controller:
  extraEnv:
    - name: RUST_LOG
      value: debug
  extraVolumeMounts:
    - name: scratch
      mountPath: /scratch
ingest:
  extraEnv:
    - name: RUST_BACKTRACE
      value: "1"
  extraVolumeMounts:
    - name: scratch
      mountPath: /scratch
extraVolumes:
  - name: scratch
    emptyDir: {}
updateStrategy:
  type: OnDelete
service:
  annotations:
    service.beta.kubernetes.io/aws-load-balancer-internal: "true"
metrics:
  service:
    annotations:
      prometheus.io/scrape: "false"
networkPolicy:
  enabled: true
  ingestFrom:
    - namespaceSelector:
        matchLabels:
          mcp: allowed
"#;

#[test]
fn the_standard_values_reach_the_objects_they_belong_to() {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("standard-values.yaml");
    std::fs::write(&file, STANDARD_VALUES).expect("values file");
    let path = file.to_str().expect("UTF-8 path");
    let docs = parse_manifests(&template(&["-f", path]));
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["labels"]["team"], "platform",
            "{} {} lacks commonLabels",
            doc["kind"], doc["metadata"]["name"]
        );
    }
    let workload = docs.iter().find(|d| is_workload(d)).expect("workload");
    assert_eq!(workload["kind"], "StatefulSet");
    assert_eq!(workload["spec"]["updateStrategy"]["type"], "OnDelete");
    let pod = &workload["spec"]["template"];
    assert_eq!(pod["metadata"]["labels"]["team"], "platform");
    assert_eq!(
        pod["metadata"]["labels"]["sidecar.istio.io/inject"],
        "false"
    );
    let spec = &pod["spec"];
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        spec["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert!(spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .any(|v| v["name"] == "scratch"));
    for (container, variable) in [(0, "RUST_LOG"), (1, "RUST_BACKTRACE")] {
        let c = &spec["containers"][container];
        assert!(
            c["image"].as_str().is_some_and(|i| i.ends_with(
                "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )),
            "{}",
            c["image"]
        );
        assert!(
            c["env"]
                .as_array()
                .expect("env")
                .iter()
                .any(|e| e["name"] == variable),
            "{} lacks {variable}",
            c["name"]
        );
        assert!(c["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == "/scratch"));
    }
    let service = |component: &str| {
        docs.iter()
            .find(|d| {
                d["kind"] == "Service"
                    && d["metadata"]["labels"]["app.kubernetes.io/component"] == component
            })
            .expect("service")
            .clone()
    };
    assert_eq!(
        service("ingest")["metadata"]["annotations"]
            ["service.beta.kubernetes.io/aws-load-balancer-internal"],
        "true"
    );
    assert_eq!(
        service("metrics")["metadata"]["annotations"]["prometheus.io/scrape"],
        "false"
    );
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "test-mcp-coordinator")
        .expect("NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["mcp"],
        "allowed"
    );
    assert!(
        policy["spec"]["ingress"][1]["from"].is_null(),
        "metrics from anywhere by default"
    );

    // Without persistence the pods are a Deployment, and `strategy` applies.
    let deployment = parse_manifests(&template(&[
        "--set",
        "ingest.persistence.enabled=false,strategy.type=Recreate",
    ]))
    .into_iter()
    .find(is_workload)
    .expect("workload");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");

    // And all of it is valid Kubernetes.
    let rendered = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rendered-standard.yaml");
    std::fs::write(&rendered, template(&["-f", path])).expect("rendered file");
    kubernetes_validate(&rendered);
}

/// The values table of the chart's README, made from `values.schema.json` (every property's
/// description and type) and `values.yaml` (its default): helm-docs' idea, checked here so the
/// table cannot drift. `UPDATE_CHART_README=1` writes it.
fn values_table() -> String {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let defaults = values();
    let mut rows = vec![
        "| key | type | default | description |".to_string(),
        "| --- | --- | --- | --- |".to_string(),
    ];
    fn walk(node: &Value, defaults: &Value, path: &str, rows: &mut Vec<String>) {
        let Some(properties) = node["properties"].as_object() else {
            return;
        };
        for (key, property) in properties {
            let path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            let default = &defaults[key];
            let kind = match &property["type"] {
                Value::String(t) => t.clone(),
                Value::Array(types) => types
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" or "),
                _ if property["enum"].is_array() => "enum".into(),
                _ => "any".into(),
            };
            let shown = if property["properties"].is_object() {
                "(below)".to_string()
            } else {
                let text = default.to_string();
                let text = if text.chars().count() > 60 {
                    format!("{}…", text.chars().take(60).collect::<String>())
                } else {
                    text
                };
                format!("`{}`", text.replace('|', "\\|"))
            };
            let description = property["description"]
                .as_str()
                .unwrap_or_default()
                .replace('|', "\\|");
            rows.push(format!("| `{path}` | {kind} | {shown} | {description} |"));
            walk(property, default, &path, rows);
        }
    }
    walk(&schema, &defaults, "", &mut rows);
    rows.join("\n") + "\n"
}

#[test]
fn every_value_is_described_and_the_readme_table_is_the_schemas() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(chart().join("values.schema.json")).expect("schema"),
    )
    .expect("schema JSON");
    let mut undescribed = Vec::new();
    fn check(node: &Value, path: &str, out: &mut Vec<String>) {
        for (key, property) in node["properties"].as_object().into_iter().flatten() {
            let path = format!("{path}{key}");
            if property["description"].as_str().is_none_or(str::is_empty) {
                out.push(path.clone());
            }
            check(property, &format!("{path}."), out);
        }
    }
    check(&schema, "", &mut undescribed);
    assert!(
        undescribed.is_empty(),
        "values without a description in values.schema.json: {undescribed:?}"
    );

    let readme_path = chart().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap_or_default();
    let (begin, end) = ("<!-- values:begin -->\n", "<!-- values:end -->");
    let table = values_table();
    let current = readme
        .split_once(begin)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table.to_string());
    if current.as_deref() != Some(table.as_str()) {
        if std::env::var("UPDATE_CHART_README").is_ok() {
            let (head, tail) = match readme.split_once(begin) {
                Some((head, rest)) => (
                    head.to_string(),
                    rest.split_once(end)
                        .map(|(_, t)| t.to_string())
                        .unwrap_or_default(),
                ),
                None => (readme.clone(), String::new()),
            };
            std::fs::write(&readme_path, format!("{head}{begin}{table}{end}{tail}"))
                .expect("README");
        } else {
            panic!("charts/mcp-coordinator/README.md's values table is out of date: run UPDATE_CHART_README=1 cargo test --test chart every_value_is_described");
        }
    }
}

#[test]
fn out_of_cluster_mcps_reach_the_ingest_api_through_an_ingress_or_an_http_route() {
    let (docs, _) = render("ingress.enabled=true,ingress.className=nginx,ingress.host=mcp.example.com,ingress.gateway=true");
    let ingress = docs
        .iter()
        .find(|d| d["kind"] == "Ingress")
        .expect("an Ingress");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "mcp.example.com");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let backends: Vec<(&str, &str)> = rule["http"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["path"].as_str().unwrap(),
                p["backend"]["service"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        backends,
        [
            ("/", "test-mcp-coordinator-ingest"),
            ("/mcp", "test-mcp-coordinator-gateway")
        ]
    );
    let rendered = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rendered-ingress.yaml");
    std::fs::write(&rendered, serde_saphyr::to_string(ingress).expect("YAML")).expect("file");
    kubernetes_validate(&rendered);

    let (docs, _) = render("httpRoute.enabled=true,httpRoute.parentRefs[0].name=public,httpRoute.parentRefs[0].namespace=gateways,httpRoute.hostnames[0]=mcp.example.com");
    let route = docs
        .iter()
        .find(|d| d["kind"] == "HTTPRoute")
        .expect("an HTTPRoute");
    assert_eq!(route["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(
        route["spec"]["rules"][0]["backendRefs"][0]["name"],
        "test-mcp-coordinator-ingest"
    );
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["port"], 8081);
    assert_helm_refuses("httpRoute.enabled=true", "httpRoute.parentRefs");
    // Off by default.
    let (docs, _) = render("");
    assert!(!docs
        .iter()
        .any(|d| d["kind"] == "Ingress" || d["kind"] == "HTTPRoute"));
}
