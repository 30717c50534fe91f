//! The rendered objects: the documented set, the CRD's upgrades, the pod's lockdown and probes,
//! persistence, helm lint, the packaged chart, Kubernetes' strict validation and `helm test`.

use super::*;

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
            "ConfigMap",
            "CustomResourceDefinition",
            "NetworkPolicy",
            "Role",
            "RoleBinding",
            "Secret",
            "Secret",
            "Secret",
            "Secret",
            "Service",
            "Service",
            "Service",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "StatefulSet",
            "StatefulSet"
        ]
    );
    assert!(
        notes.contains("kubectl get mcpcreg")
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
    let set = "keys.existingSecret=k,readerToken.existingSecret=t,clickhouse.auth.existingSecret=ch,grafanaDashboard.enabled=true";
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
fn every_rendered_object_passes_kubernetes_strict_validation_on_the_oldest_and_newest_supported() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for (name, set) in [
        ("defaults", ""),
        ("everything", EVERYTHING),
        ("ephemeral", "ingest.persistence.enabled=false"),
        ("embedded store", "clickhouse.deploy=false"),
        (
            "deployed ClickHouse, pinned, own Secret",
            "clickhouse.image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef,clickhouse.auth.existingSecret=ch-auth,clickhouse.persistence.storageClass=fast",
        ),
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
            "--store-url=https://test-mcp-coordinator-metrics.default.svc:8081",
            "--token-file=/etc/mcp-coordinator/reader-token/token",
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

#[test]
fn span_export_is_off_by_default_and_set_on_both_containers_when_asked() {
    let otel_names = |docs: &[Value]| -> Vec<Vec<String>> {
        let workload = docs.iter().find(|d| is_workload(d)).expect("the workload");
        workload["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| {
                c["env"]
                    .as_array()
                    .map(|env| {
                        env.iter()
                            .filter_map(|e| e["name"].as_str())
                            .filter(|n| n.starts_with("OTEL_"))
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect()
    };
    let (docs, _) = render("");
    assert!(
        otel_names(&docs).iter().all(Vec::is_empty),
        "{:?}",
        otel_names(&docs)
    );
    let (docs, _) = render(
        "opentelemetry.endpoint=http://otel-collector.observability:4318,opentelemetry.headersSecret.name=otel-auth,opentelemetry.resourceAttributes=deployment.environment.name=prod,clickhouse.deploy=false",
    );
    let names = otel_names(&docs);
    assert_eq!(names.len(), 2, "controller and ingest");
    for container in names {
        assert_eq!(
            container,
            [
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "OTEL_RESOURCE_ATTRIBUTES",
                "OTEL_EXPORTER_OTLP_HEADERS"
            ]
        );
    }
    let workload = docs.iter().find(|d| is_workload(d)).expect("the workload");
    let env = &workload["spec"]["template"]["spec"]["containers"][0]["env"];
    let attributes = env
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "OTEL_RESOURCE_ATTRIBUTES"))
        .expect("resource attributes");
    assert_eq!(
        attributes["value"],
        "k8s.namespace.name=mcp-coordinator,k8s.pod.name=$(K8S_POD_NAME),deployment.environment.name=prod"
    );
    assert_helm_refuses(
        "opentelemetry.endpoint=collector:4318",
        "/opentelemetry/endpoint",
    );
}

#[test]
fn the_gateways_oauth_settings_render_into_a_file_the_binary_takes() {
    let (docs, _) = render(
        "gateway.oauth.resource=https://mcp.example.com,gateway.oauth.issuers[0].issuer=https://auth.example.com,gateway.oauth.issuers[0].namespacesClaim=mcp_namespaces,gateway.oauth.issuers[0].algorithms={RS256,ES256}",
    );
    let config = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"] == "test-mcp-coordinator-gateway-oauth"
        })
        .expect("the OAuth ConfigMap");
    let text = config["data"]["oauth.yaml"].as_str().expect("oauth.yaml");
    let parsed = mcp_coordinator::trust::oauth::ResourceServer::parse(text, "oauth.yaml")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(parsed.resource, "https://mcp.example.com");
    assert_eq!(
        parsed.issuers[0].namespaces_claim.as_deref(),
        Some("mcp_namespaces")
    );
    let workload = docs.iter().find(|d| is_workload(d)).expect("the workload");
    let args = workload["spec"]["template"]["spec"]["containers"][1]["args"].to_string();
    assert!(
        args.contains("--gateway-oauth-file=/etc/mcp-coordinator/gateway-oauth/oauth.yaml"),
        "{args}"
    );
    assert_helm_refuses(
        "gateway.oauth.resource=https://mcp.example.com",
        "names no authorization server",
    );
}
