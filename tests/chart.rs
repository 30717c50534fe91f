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
    let mut files = Vec::new();
    let mut dirs = vec![chart().join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("templates directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("template reads");
            let name = path
                .strip_prefix(chart().join("templates"))
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.push((name, text));
        }
    }
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

/// The real `helm` (v4): on PATH, or where `scripts/install-kube-tools.sh` put it (`.ci/run` and
/// `make test` run it).
fn helm() -> std::process::Command {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    let program = if tools.exists() {
        tools
    } else {
        PathBuf::from("helm")
    };
    std::process::Command::new(program)
}

/// Runs helm with `args` and answers its standard output; fails the test with helm's own words.
fn run_helm(args: &[&str]) -> String {
    let out = helm()
        .args(args)
        .output()
        .expect("helm runs (scripts/install-kube-tools.sh installs it; .ci/run and make test do)");
    assert!(
        out.status.success(),
        "helm {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template` with `set` fails, and its error mentions `says`.
fn assert_helm_refuses(set: &str, says: &str) {
    let out = helm()
        .args(["template", "test"])
        .arg(chart())
        .args(["--set", set])
        .output()
        .expect("helm runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "helm accepted {set}");
    assert!(stderr.contains(says), "{stderr}");
}

/// The chart rendered with `--set` overrides: the manifests and NOTES.txt.
fn render(set: &str) -> (Vec<Value>, String) {
    render_as("test", set)
}

/// [`render`] for a release of another name: `helm install --dry-run=client`, which renders
/// like `helm template` (no cluster, `lookup` finds nothing) and also answers the notes.
fn render_as(release: &str, set: &str) -> (Vec<Value>, String) {
    let chart = chart();
    let mut args = vec![
        "install",
        release,
        chart.to_str().expect("UTF-8 path"),
        "--dry-run=client",
        "--namespace",
        "mcp-coordinator",
        "--output",
        "json",
    ];
    if !set.is_empty() {
        args.extend(["--set", set]);
    }
    let release: Value =
        serde_json::from_str(&run_helm(&args)).expect("helm answers a JSON release");
    let manifests = release["manifest"].as_str().expect("a manifest");
    let notes = release["info"]["notes"].as_str().unwrap_or_default();
    (parse_manifests(manifests), notes.to_string())
}

/// The YAML documents of a rendered manifest.
fn parse_manifests(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| {
            serde_saphyr::from_str::<Value>(d)
                .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{d}"))
        })
        .collect()
}

/// The Deployment or StatefulSet that runs the pods.
fn is_workload(doc: &Value) -> bool {
    doc["kind"] == "Deployment" || doc["kind"] == "StatefulSet"
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    k.sort();
    k
}

const EVERYTHING: &str = "replicaCount=2,clickhouse.url=http://clickhouse:8123,clickhouse.passwordSecret.name=ch,metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,watchNamespace=mcps,ingest.tls.secretName=ingest-tls";

type Grant = (String, String, String);

/// What each ServiceAccount may do, by following the rendered bindings to their roles:
/// ServiceAccount name → every (API group, resource, verb) granted.
fn grants_by_identity(docs: &[Value]) -> std::collections::BTreeMap<String, BTreeSet<Grant>> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let mut grants: std::collections::BTreeMap<String, BTreeSet<Grant>> = Default::default();
    for binding in docs.iter().filter(|d| {
        d["kind"]
            .as_str()
            .is_some_and(|k| k.ends_with("RoleBinding"))
    }) {
        let role = docs
            .iter()
            .find(|d| {
                d["kind"] == binding["roleRef"]["kind"]
                    && d["metadata"]["name"] == binding["roleRef"]["name"]
            })
            .unwrap_or_else(|| panic!("binding to a role the chart does not render: {binding}"));
        for subject in binding["subjects"].as_array().into_iter().flatten() {
            assert_eq!(subject["kind"], "ServiceAccount", "{subject}");
            let name = subject["name"].as_str().unwrap_or_default().to_string();
            for rule in role["rules"].as_array().into_iter().flatten() {
                for group in strings(&rule["apiGroups"]) {
                    for resource in strings(&rule["resources"]) {
                        for verb in strings(&rule["verbs"]) {
                            grants.entry(name.clone()).or_default().insert((
                                group.clone(),
                                resource.clone(),
                                verb,
                            ));
                        }
                    }
                }
            }
        }
    }
    grants
}

/// What src/rbac.rs says `component` needs.
fn needed_by(component: &str) -> BTreeSet<Grant> {
    API_CALLS
        .iter()
        .filter(|c| c.component == component)
        .flat_map(|c| {
            c.verbs
                .iter()
                .map(|v| (c.group.to_string(), c.resource.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_chart_renders_the_documented_objects() {
    let (docs, notes) = render("");
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Role",
            "RoleBinding",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "StatefulSet"
        ]
    );
    assert!(
        notes.contains("kubectl get mcpreg")
            && notes.contains("http://test-mcp-coordinator-ingest.mcp-coordinator.svc:8081"),
        "{notes}"
    );
    assert!(!notes.contains("WARNING"), "{notes}");

    let (docs, notes) = render(EVERYTHING);
    assert_eq!(
        kinds(&docs),
        [
            "ConfigMap",
            "CustomResourceDefinition",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceMonitor",
            "StatefulSet"
        ]
    );
    let dashboard = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("dashboard");
    let json = dashboard["data"]["mcp-coordinator.json"]
        .as_str()
        .expect("dashboard JSON");
    assert!(
        serde_json::from_str::<Value>(json).is_ok(),
        "the dashboard ConfigMap holds valid JSON"
    );
    let deployment = docs
        .iter()
        .find(|d| is_workload(d))
        .expect("the pods' workload");
    let ingest = &deployment["spec"]["template"]["spec"]["containers"][1];
    let args: Vec<&str> = ingest["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        args.contains(&"--tls-cert=/etc/mcp-coordinator/tls/tls.crt")
            && args.contains(&"--clickhouse-url=http://clickhouse:8123"),
        "{args:?}"
    );
    assert_eq!(ingest["env"][0]["valueFrom"]["secretKeyRef"]["name"], "ch");
    assert_eq!(ingest["readinessProbe"]["httpGet"]["scheme"], "HTTPS");
    assert!(notes.contains("watching only mcps"), "{notes}");
}

#[test]
fn the_crd_is_upgraded_with_the_release_and_kept_when_it_is_uninstalled() {
    let crd_of = |set: &str| {
        render(set)
            .0
            .into_iter()
            .find(|d| d["kind"] == "CustomResourceDefinition")
    };
    let crd = crd_of("").expect("the CRD is a release object, so `helm upgrade` applies it");
    let generated: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart().join("files/mcpregistration.yaml")).expect("CRD file"),
    )
    .expect("CRD YAML");
    assert_eq!(crd["spec"], generated["spec"]);
    assert_eq!(crd["metadata"]["name"], generated["metadata"]["name"]);
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(crd_of("crds.keep=false").expect("CRD")["metadata"]["annotations"].is_null());
    assert!(crd_of("crds.install=false").is_none());
}

#[test]
fn the_pod_is_locked_down_probed_and_passes_only_flags_the_binary_knows() {
    for set in ["", EVERYTHING] {
        let (docs, _) = render(set);
        let pod = &docs
            .iter()
            .find(|d| is_workload(d))
            .expect("the pods' workload")["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        // Volumes of the pod, and the claims a StatefulSet makes for each replica.
        let claims = docs
            .iter()
            .filter(|d| is_workload(d))
            .flat_map(|d| {
                d["spec"]["volumeClaimTemplates"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|c| c["metadata"]["name"].as_str().map(str::to_string))
            .collect::<Vec<_>>();
        let volumes: Vec<&str> = pod["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .filter_map(|v| v["name"].as_str())
            .chain(claims.iter().map(String::as_str))
            .collect();
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(
            containers
                .iter()
                .map(|c| c["name"].as_str().unwrap_or(""))
                .collect::<Vec<_>>(),
            ["controller", "ingest"]
        );
        for c in containers {
            let name = c["name"].as_str().unwrap_or("");
            assert_eq!(
                c["securityContext"]["readOnlyRootFilesystem"], true,
                "{name}"
            );
            assert_eq!(
                c["securityContext"]["allowPrivilegeEscalation"], false,
                "{name}"
            );
            assert!(
                c["livenessProbe"].is_object() && c["readinessProbe"].is_object(),
                "{name} has probes"
            );
            assert!(
                c["resources"]["requests"]["memory"].is_string(),
                "{name} has resources"
            );
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                assert!(
                    volumes.contains(&m["name"].as_str().unwrap_or("")),
                    "{name} mounts an undefined volume {m}"
                );
            }
            let args: Vec<&str> = c["args"]
                .as_array()
                .expect("args")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let help = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-coordinator"))
                .args([args[0], "--help"])
                .output()
                .expect("help");
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in args[1..].iter().map(|a| a.split('=').next().unwrap_or(a)) {
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "the chart passes {flag} to `{}`, which does not know it",
                    args[0]
                );
            }
        }
    }
}

/// Opening the embedded store may convert a database of an earlier release, which takes minutes
/// for a large one: liveness counts only once the server has started, within the set timeout.
#[test]
fn the_ingest_server_has_its_startup_timeout_before_liveness_counts() {
    for (set, seconds) in [("", 600), ("ingest.startupTimeoutSeconds=1800", 1800)] {
        let (docs, _) = render(set);
        let ingest = docs
            .iter()
            .find(|d| is_workload(d))
            .and_then(|d| {
                d["spec"]["template"]["spec"]["containers"]
                    .as_array()?
                    .iter()
                    .find(|c| c["name"] == "ingest")
                    .cloned()
            })
            .expect("the ingest container");
        let startup = &ingest["startupProbe"];
        assert_eq!(startup["httpGet"]["path"], "/healthz", "{set}");
        let period = startup["periodSeconds"].as_i64().unwrap_or(0);
        let failures = startup["failureThreshold"].as_i64().unwrap_or(0);
        assert_eq!(period * failures, seconds, "{set}");
    }
    // A timeout shorter than two probe periods would make the probe fail at once.
    assert_helm_refuses("ingest.startupTimeoutSeconds=1", "startupTimeoutSeconds");
}

#[test]
fn each_container_gets_exactly_the_rbac_its_code_uses_and_only_its_own_token() {
    for set in ["", EVERYTHING] {
        let (docs, _) = render(set);
        let grants = grants_by_identity(&docs);
        let controller_sa = "test-mcp-coordinator";
        let ingest_sa = "test-mcp-coordinator-ingest";
        assert_eq!(
            grants.keys().collect::<Vec<_>>(),
            [controller_sa, ingest_sa],
            "{set}"
        );
        // Exactly: nothing the code does not use (least privilege), nothing it uses missing.
        assert_eq!(grants[controller_sa], needed_by("controller"), "{set}");
        assert_eq!(grants[ingest_sa], needed_by("ingest"), "{set}");
        assert!(
            grants[ingest_sa]
                .iter()
                .all(|(_, _, verb)| ["get", "list", "watch"].contains(&verb.as_str())),
            "the network-facing ingest server only reads"
        );

        let pod = &docs
            .iter()
            .find(|d| is_workload(d))
            .expect("the pods' workload")["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], controller_sa);
        assert_eq!(
            pod["automountServiceAccountToken"], false,
            "no token for every container"
        );
        let token_volume = |container: &Value| -> String {
            let mount = container["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")
                .unwrap_or_else(|| panic!("{} mounts no API token", container["name"]));
            mount["name"].as_str().unwrap_or_default().to_string()
        };
        let volume = |name: &str| -> Value {
            pod["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no volume {name}"))
        };
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 2);
        let controller = volume(&token_volume(&containers[0]));
        assert!(
            controller["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["serviceAccountToken"]["path"] == "token"),
            "the controller gets the pod's own ServiceAccount token: {controller}"
        );
        let ingest = volume(&token_volume(&containers[1]));
        let secret_name = ingest["secret"]["secretName"].as_str().expect("a Secret");
        let token_secret = docs
            .iter()
            .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret_name)
            .expect("the ingest token Secret is rendered");
        assert_eq!(token_secret["type"], "kubernetes.io/service-account-token");
        assert_eq!(
            token_secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
            ingest_sa,
            "the ingest container's token is the read-only identity's"
        );
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
    // Every series either component registers has a panel (vectors without labels yet included).
    let controller = mcp_coordinator::controller::metrics::Metrics::new().expect("metrics");
    let ingest = mcp_coordinator::ingest::metrics::IngestMetrics::new().expect("metrics");
    let families: BTreeSet<String> = [controller.registry.gather(), ingest.registry.gather()]
        .into_iter()
        .flatten()
        .map(|f| f.name().to_string())
        // The process collector's series: the panels show memory and CPU of them.
        .filter(|name| {
            !name.starts_with("process_")
                || name == "process_resident_memory_bytes"
                || name == "process_cpu_seconds_total"
        })
        .collect();
    let mut registered: BTreeSet<String> = families;
    // Vectors appear in a gather only once they have a child; name them from the code's types.
    for name in [
        "mcp_coordinator_reconcile_errors_total",
        "mcp_coordinator_probe_duration_seconds",
        "mcp_up",
        "mcp_coordinator_effective_weight",
        "mcp_ingest_events_received_total",
        "mcp_ingest_requests_rejected_total",
        "mcp_ingest_store_errors_total",
        "mcp_ingest_processing_time_seconds",
        "mcp_ingest_route_decisions_total",
    ] {
        registered.insert(name.to_string());
    }
    assert!(registered.len() > 20, "{registered:?}");
    for series in &registered {
        assert!(
            exprs.iter().any(|e| e.contains(series.as_str())),
            "no panel shows {series}"
        );
    }
    // Each query is scoped by the namespace and job variables.
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(variables, ["datasource", "namespace", "job"]);
    for expr in &exprs {
        assert!(
            expr.contains(r#"namespace=~"$namespace", job=~"$job""#),
            "not scoped by $namespace and $job: {expr}"
        );
    }
}

#[test]
fn the_spool_and_store_persist_on_a_claim_per_replica_unless_told_otherwise() {
    let workload = |set: &str| -> Value {
        let (docs, _) = render(set);
        docs.into_iter()
            .find(is_workload)
            .expect("the pods' workload")
    };
    let data_volume = |w: &Value| -> Option<Value> {
        w["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "data")
            .cloned()
    };

    // By default every replica gets a claim of its own.
    let stateful = workload(
        "replicaCount=3,ingest.persistence.size=50Gi,ingest.persistence.storageClass=fast",
    );
    assert_eq!(stateful["kind"], "StatefulSet");
    assert_eq!(stateful["spec"]["replicas"], 3);
    let claim = &stateful["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "50Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert!(stateful["spec"]["serviceName"]
        .as_str()
        .is_some_and(|s| s.ends_with("-ingest")));
    assert_eq!(
        data_volume(&stateful),
        None,
        "the claim template provides the volume"
    );

    // Without persistence: a Deployment on an emptyDir, as before.
    let ephemeral = workload("ingest.persistence.enabled=false");
    assert_eq!(ephemeral["kind"], "Deployment");
    assert_eq!(
        data_volume(&ephemeral).unwrap()["emptyDir"]["sizeLimit"],
        "2Gi"
    );

    // An existing claim: one replica, replaced (not rolled) so two pods never share the claim.
    let existing = workload("ingest.spool.existingClaim=mine");
    assert_eq!(existing["kind"], "Deployment");
    assert_eq!(existing["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        data_volume(&existing).unwrap()["persistentVolumeClaim"]["claimName"],
        "mine"
    );
    assert_helm_refuses(
        "ingest.spool.existingClaim=mine,replicaCount=2",
        "replicaCount 1",
    );
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
            "test-mcp-coordinator-ingest",
            "test-mcp-coordinator-metrics"
        ])
    );
}

/// The plain `helm template` output for `args` (a release named "test").
fn template(args: &[&str]) -> String {
    let chart = chart();
    let mut all = vec!["template", "test", chart.to_str().expect("UTF-8 path")];
    all.extend(args);
    run_helm(&all)
}

#[test]
fn helm_lint_strict_passes_with_defaults_and_with_every_option() {
    let chart = chart();
    for set in [
        "",
        EVERYTHING,
        "keys.existingSecret=k,readerToken.existingSecret=t,crds.install=false",
    ] {
        let mut args = vec!["lint", "--strict", chart.to_str().expect("UTF-8 path")];
        if !set.is_empty() {
            args.extend(["--set", set]);
        }
        let out = run_helm(&args);
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn the_packaged_chart_renders_like_the_source_tree() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("package");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let chart = chart();
    run_helm(&[
        "package",
        chart.to_str().expect("UTF-8 path"),
        "--destination",
        dir.to_str().expect("UTF-8 path"),
    ]);
    let version: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart.join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml YAML");
    let package = dir.join(format!(
        "mcp-coordinator-{}.tgz",
        version["version"].as_str().expect("version")
    ));
    assert!(package.exists(), "{} missing", package.display());
    let set = "keys.existingSecret=k,readerToken.existingSecret=t,grafanaDashboard.enabled=true";
    let from_package = run_helm(&[
        "template",
        "test",
        package.to_str().expect("UTF-8 path"),
        "--set",
        set,
    ]);
    assert_eq!(from_package, template(&["--set", set]));
}

#[test]
fn gitops_renders_are_identical_when_the_keys_come_from_existing_secrets() {
    let set = "keys.existingSecret=mcp-keys,readerToken.existingSecret=mcp-reader";
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

#[test]
fn every_rendered_object_passes_kubernetes_strict_validation_on_the_oldest_and_newest_supported() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (name, set) in [
        ("defaults", ""),
        ("everything", EVERYTHING),
        ("ephemeral", "ingest.persistence.enabled=false"),
    ] {
        let file = dir.join(format!("rendered-{name}.yaml"));
        let args: Vec<&str> = if set.is_empty() {
            vec![]
        } else {
            vec!["--set", set]
        };
        std::fs::write(&file, template(&args)).expect("rendered file");
        kubernetes_validate(&file);
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
        .find(|d| d["kind"] == "NetworkPolicy")
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

#[test]
fn the_service_monitor_verifies_tls_instead_of_skipping_it() {
    let monitor = |set: &str| {
        parse_manifests(&template(&["--set", set]))
            .into_iter()
            .find(|d| d["kind"] == "ServiceMonitor")
            .expect("ServiceMonitor")
    };
    let tls = monitor("metrics.serviceMonitor.enabled=true,ingest.tls.secretName=ingest-tls,metrics.serviceMonitor.scrapeTimeout=10s");
    let ingest = &tls["spec"]["endpoints"][1];
    assert_eq!(ingest["scheme"], "https");
    assert_eq!(ingest["scrapeTimeout"], "10s");
    assert_eq!(ingest["tlsConfig"]["ca"]["secret"]["name"], "ingest-tls");
    assert_eq!(ingest["tlsConfig"]["ca"]["secret"]["key"], "ca.crt");
    assert_eq!(
        ingest["tlsConfig"]["serverName"],
        "test-mcp-coordinator-ingest.default.svc"
    );
    assert!(ingest["tlsConfig"]["insecureSkipVerify"].is_null());
    let own = monitor("metrics.serviceMonitor.enabled=true,ingest.tls.secretName=ingest-tls,metrics.serviceMonitor.tlsConfig.serverName=mcp.example.com");
    assert_eq!(
        own["spec"]["endpoints"][1]["tlsConfig"]["serverName"],
        "mcp.example.com"
    );
    assert!(own["spec"]["endpoints"][1]["tlsConfig"]["ca"].is_null());
    let plain = monitor("metrics.serviceMonitor.enabled=true");
    assert_eq!(plain["spec"]["endpoints"][1]["scheme"], "http");
    assert!(plain["spec"]["endpoints"][1]["tlsConfig"].is_null());
}

#[test]
fn helm_test_checks_both_containers_with_flags_the_binary_knows() {
    let docs = parse_manifests(&template(&["--set", "ingest.tls.secretName=ingest-tls"]));
    let pod = docs
        .iter()
        .find(|d| d["kind"] == "Pod")
        .expect("the helm test Pod");
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        args,
        [
            "ready",
            "--url=http://test-mcp-coordinator-metrics.default.svc:8080",
            "--url=https://test-mcp-coordinator-metrics.default.svc:8081",
            "--ca-file=/etc/mcp-coordinator/tls/ca.crt",
        ]
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-coordinator"))
        .args(["ready", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().skip(1) {
        let name = flag.split('=').next().unwrap_or_default();
        assert!(help.contains(name), "`ready` does not know {name}");
    }
}

/// `kubernetes-validate --strict` of `file` on the oldest and newest Kubernetes the chart supports.
fn kubernetes_validate(file: &Path) {
    for version in ["1.26.0", "1.35.0"] {
        let out = std::process::Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "--kubernetes-version", version])
            .arg(file)
            .output()
            .expect("kubernetes-validate runs (pip install kubernetes-validate; .ci/run does)");
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !said.contains("ERROR"),
            "{} on {version}: {said}",
            file.display()
        );
    }
}

/// The alert's annotations as Prometheus renders them for `labels` (the rules use only
/// `{{ $labels.name }}`).
fn rendered_annotations(rule: &Value, labels: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for (key, text) in rule["annotations"].as_object().expect("annotations") {
        let mut text = text.as_str().expect("text").to_string();
        for (name, value) in labels.as_object().expect("labels") {
            text = text.replace(
                &format!("{{{{ $labels.{name} }}}}"),
                value.as_str().unwrap_or_default(),
            );
        }
        out.insert(key.clone(), Value::String(text));
    }
    Value::Object(out)
}

#[test]
fn the_alerts_fire_on_trouble_in_this_release_only_and_stay_quiet_otherwise() {
    let docs = parse_manifests(&template(&["--set", "metrics.prometheusRule.enabled=true"]));
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("PrometheusRule");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("alerts");
    std::fs::create_dir_all(&dir).expect("dir");
    let rules_file = dir.join("rules.json");
    std::fs::write(
        &rules_file,
        serde_json::json!({"groups": rule["spec"]["groups"]}).to_string(),
    )
    .expect("rules");
    let rules: Vec<&Value> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .collect();

    let release = r#"namespace="default",job="test-mcp-coordinator-metrics",pod="p0""#;
    let other = r#"namespace="other",job="test-mcp-coordinator-metrics",pod="p9""#;
    // Each series with its extra labels, its values in trouble, and its values when all is well
    // (None: absent then). Samples are a minute apart; the alerts are evaluated at 20 minutes.
    let histories: &[(&str, &str, &str, &str, Option<&str>)] = &[
        (
            "mcp_up",
            release,
            r#"mcp_id="ocr_mcp_001""#,
            "1 1 0x30",
            Some("1x32"),
        ),
        ("mcp_up", release, r#"mcp_id="fine_mcp_001""#, "1x32", None),
        ("mcp_up", other, r#"mcp_id="theirs_mcp_001""#, "0x32", None),
        (
            "mcp_coordinator_registrations",
            release,
            r#"phase="Invalid""#,
            "1x32",
            Some("0x32"),
        ),
        (
            "mcp_coordinator_registrations",
            release,
            r#"phase="Ready""#,
            "3x32",
            Some("3x32"),
        ),
        (
            "mcp_ingest_spool_oldest_unshipped_age_seconds",
            release,
            "",
            "0+60x32",
            Some("0x32"),
        ),
        (
            "mcp_ingest_store_errors_total",
            release,
            r#"kind="unavailable""#,
            "0+5x32",
            Some("0x32"),
        ),
        (
            "mcp_ingest_poison_events_total",
            release,
            "",
            "0x15 3x17",
            Some("0x32"),
        ),
        (
            "mcp_coordinator_reconcile_errors_total",
            release,
            r#"kind="api""#,
            "0+1x32",
            Some("0x32"),
        ),
        (
            "mcp_coordinator_leader",
            release,
            "",
            "1x5 0x27",
            Some("1x32"),
        ),
    ];
    let series = |name: &str, scope: &str, extra: &str, values: &str| {
        let labels = if extra.is_empty() {
            scope.to_string()
        } else {
            format!("{scope},{extra}")
        };
        serde_json::json!({"series": format!("{name}{{{labels}}}"), "values": values})
    };
    let trouble: Vec<Value> = histories
        .iter()
        .map(|(name, scope, extra, values, _)| series(name, scope, extra, values))
        .collect();
    let healthy: Vec<Value> = histories
        .iter()
        .filter_map(|(name, scope, extra, _, values)| Some(series(name, scope, extra, (*values)?)))
        .collect();
    let expected: Vec<(&str, Value)> = vec![
        (
            "MCPDown",
            serde_json::json!({"namespace": "default", "mcp_id": "ocr_mcp_001"}),
        ),
        (
            "MCPRegistrationsNotReady",
            serde_json::json!({"namespace": "default", "phase": "Invalid"}),
        ),
        (
            "MCPCoordinatorSpoolBehind",
            serde_json::json!({"namespace": "default", "pod": "p0"}),
        ),
        (
            "MCPCoordinatorStoreErrors",
            serde_json::json!({"namespace": "default", "pod": "p0", "kind": "unavailable"}),
        ),
        (
            "MCPCoordinatorPoisonEvents",
            serde_json::json!({"namespace": "default", "pod": "p0"}),
        ),
        (
            "MCPCoordinatorReconcileErrors",
            serde_json::json!({"namespace": "default", "kind": "api"}),
        ),
        (
            "MCPCoordinatorNoLeader",
            serde_json::json!({"namespace": "default"}),
        ),
    ];
    assert_eq!(rules.len(), expected.len(), "every alert is tested");
    let mut firing = Vec::new();
    let mut quiet = Vec::new();
    for (alert, labels) in &expected {
        let rule = rules
            .iter()
            .find(|r| r["alert"] == *alert)
            .unwrap_or_else(|| panic!("no alert {alert}"));
        let mut all_labels = labels.clone();
        for (k, v) in rule["labels"].as_object().expect("labels") {
            all_labels[k] = v.clone();
        }
        firing.push(serde_json::json!({
            "eval_time": "20m",
            "alertname": alert,
            "exp_alerts": [{"exp_labels": all_labels, "exp_annotations": rendered_annotations(rule, labels)}],
        }));
        quiet.push(serde_json::json!({"eval_time": "20m", "alertname": alert, "exp_alerts": []}));
    }
    let tests = serde_json::json!({
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "tests": [
            {"interval": "1m", "input_series": trouble, "alert_rule_test": firing},
            {"interval": "1m", "input_series": healthy, "alert_rule_test": quiet},
        ],
    });
    let tests_file = dir.join("tests.json");
    std::fs::write(&tests_file, tests.to_string()).expect("tests");
    for args in [
        vec![
            "check".to_string(),
            "rules".to_string(),
            rules_file.display().to_string(),
        ],
        vec![
            "test".to_string(),
            "rules".to_string(),
            tests_file.display().to_string(),
        ],
    ] {
        let out = std::process::Command::new("promtool")
            .args(&args)
            .output()
            .expect("promtool runs (apt-get install prometheus; .ci/run does)");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Runs tests/node/validate-monitoring.mjs over `objects`: (passed, what it printed).
fn validate_monitoring(objects: &[Value]) -> (bool, String) {
    use std::io::Write as _;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("node")
        .arg(root.join("tests/node/validate-monitoring.mjs"))
        .env(
            "PROMETHEUS_OPERATOR_MODELS",
            root.join(".tools/npm/node_modules/@kubernetes-models/prometheus-operator"),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (apt-get install nodejs npm; scripts/install-kube-tools.sh installs the schemas)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&serde_json::to_vec(objects).expect("JSON"))
        .expect("write");
    let out = child.wait_with_output().expect("node ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn the_service_monitor_and_rules_pass_the_prometheus_operators_own_schemas() {
    for set in [
        "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
        "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true,ingest.tls.secretName=ingest-tls,metrics.serviceMonitor.scrapeTimeout=10s,metrics.serviceMonitor.honorLabels=true",
    ] {
        let docs = parse_manifests(&template(&["--set", set]));
        let (valid, said) = validate_monitoring(&docs);
        assert!(valid, "{set}: {said}");
        assert!(said.contains("checked 2"), "{said}");
    }
    // The check is real: a malformed endpoint is refused.
    let bad = serde_json::json!([{
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "bad"},
        "spec": {"selector": {}, "endpoints": [{"port": "ingest", "interval": "thirty seconds", "tlsConfig": {"insecureSkipVerify": "yes"}}]}
    }]);
    let (valid, said) = validate_monitoring(bad.as_array().expect("array"));
    assert!(!valid && said.contains("insecureSkipVerify"), "{said}");
}

#[test]
fn self_registration_gets_its_own_identity_with_create_rights_only_in_its_namespaces() {
    let (docs, _) = render("registrar.enabled=true,registrar.namespaces={mcps,team-a}");
    let grants = grants_by_identity(&docs);
    let registrar_sa = "test-mcp-coordinator-registrar";
    assert_eq!(
        grants.keys().collect::<Vec<_>>(),
        [
            "test-mcp-coordinator",
            "test-mcp-coordinator-ingest",
            registrar_sa
        ]
    );
    assert_eq!(grants[registrar_sa], needed_by("registrar"));
    for (identity, granted) in &grants {
        let creates = granted
            .iter()
            .any(|(_, resource, verb)| resource == "mcpregistrations" && verb == "create");
        assert_eq!(
            creates,
            identity == registrar_sa,
            "only self-registration creates registrations: {identity}"
        );
    }
    let mut role_namespaces: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == registrar_sa)
        .filter_map(|d| d["metadata"]["namespace"].as_str())
        .collect();
    role_namespaces.sort_unstable();
    assert_eq!(
        role_namespaces,
        ["mcps", "team-a"],
        "a Role in each allowed namespace, nowhere else"
    );
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRoleBinding"
            && d["subjects"].to_string().contains(registrar_sa)),
        "never cluster-wide"
    );

    // The ingest container holds the registrar's token for that one code path, and its tokens file.
    let pod = &docs.iter().find(|d| is_workload(d)).expect("workload")["spec"]["template"]["spec"];
    let ingest = &pod["containers"][1];
    let args = ingest["args"].to_string();
    assert!(
        args.contains("--registrar-tokens-file=/etc/mcp-coordinator/registrar/registrars.yaml"),
        "{args}"
    );
    assert!(
        args.contains(
            "--registrar-kube-token-file=/var/run/secrets/mcp-coordinator/registrar/token"
        ),
        "{args}"
    );
    let api_token_secret = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "registrar-api-token")
        .expect("the registrar token volume")["secret"]["secretName"]
        .clone();
    let api_token = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == api_token_secret)
        .expect("its Secret is rendered");
    assert_eq!(api_token["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        api_token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        registrar_sa
    );

    // The generated tokens file is what the ingest server reads: one token for both namespaces.
    let tokens = docs
        .iter()
        .find(|d| {
            d["kind"] == "Secret"
                && d["metadata"]["name"] == "test-mcp-coordinator-registrar-tokens"
        })
        .expect("the registrar tokens Secret");
    let decode = |key: &str| {
        use base64::Engine;
        let text = tokens["data"][key].as_str().expect(key);
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64"),
        )
        .expect("UTF-8")
    };
    let dir = test_support::TestDir::new("chart-registrars");
    let file = dir.join("registrars.yaml");
    std::fs::write(&file, decode("registrars.yaml")).unwrap();
    let parsed = mcp_coordinator::ingest::registrar::RegistrarTokens::from_file(&file)
        .expect("the ingest server accepts the file");
    let grant = parsed
        .grant(&decode("token"))
        .expect("the token in the Secret is the one in the file");
    assert_eq!(grant.namespaces, ["mcps", "team-a"]);
    let _ = std::fs::remove_dir_all(dir);

    // Off by default; on without namespaces is refused, with what to set.
    assert!(!render("")
        .0
        .iter()
        .any(|d| d["metadata"]["name"] == registrar_sa));
    let out = helm()
        .args(["template", "test"])
        .arg(chart())
        .args(["--set", "registrar.enabled=true"])
        .output()
        .expect("helm runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("registrar.namespaces"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
