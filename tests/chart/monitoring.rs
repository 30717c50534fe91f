//! Monitoring: the dashboard, the ServiceMonitor's TLS, the alerts under promtool and the
//! prometheus-operator's own schemas, and the NetworkPolicy against every scraper.

use super::*;
use serde_json::json;

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
        "mcp_client_operation_duration_seconds",
        "mcp_coordinator_gateway_failovers_total",
        "mcp_coordinator_gateway_ejections_total",
        "mcp_coordinator_gateway_ejected",
        "mcp_coordinator_gateway_requests_refused_total",
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

/// Whether a NetworkPolicy `peer` matches a pod with `labels` in a namespace with `ns_labels`
/// (`same` when it is the policy's own namespace), as Kubernetes reads `matchLabels`.
fn peer_matches(peer: &Value, labels: &Value, ns_labels: &Value, same: bool) -> bool {
    let subset = |selector: &Value, of: &Value| {
        selector["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| &of[k] == v)
    };
    match (peer.get("podSelector"), peer.get("namespaceSelector")) {
        (Some(pods), None) => same && subset(pods, labels),
        (None, Some(namespaces)) => subset(namespaces, ns_labels),
        (Some(pods), Some(namespaces)) => subset(pods, labels) && subset(namespaces, ns_labels),
        (None, None) => false,
    }
}

/// Whether `policy` admits that pod to the container port named `port`.
fn admits(policy: &Value, port: &str, labels: &Value, ns_labels: &Value, same: bool) -> bool {
    policy["spec"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            let on_port = rule["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["port"] == port);
            let from = rule["from"].as_array();
            on_port
                && from.is_none_or(|peers| {
                    peers
                        .iter()
                        .any(|p| peer_matches(p, labels, ns_labels, same))
                })
        })
}

#[test]
fn the_network_policy_admits_every_scraper_and_the_test_pod_and_nothing_else() {
    let values = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("policy-values.yaml");
    std::fs::write(
        &values,
        "networkPolicy:\n  enabled: true\n  ingestFrom: [{namespaceSelector: {matchLabels: {mcp: allowed}}}]\n  metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]\nmetrics:\n  serviceMonitor:\n    enabled: true\n",
    )
    .expect("values");
    let docs = parse_manifests(&template(&["-f", values.to_str().unwrap()]));
    let find = |kind: &str, component: Option<&str>| {
        docs.iter()
            .find(|d| {
                d["kind"] == kind
                    && component
                        .is_none_or(|c| d["metadata"]["labels"]["app.kubernetes.io/component"] == c)
            })
            .unwrap_or_else(|| panic!("no {kind} {component:?}"))
            .clone()
    };
    // The coordinator's (the deployed ClickHouse has one of its own).
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == "test-mcp-coordinator")
        .expect("the coordinator's NetworkPolicy")
        .clone();
    let service = find("Service", Some("metrics"));
    let target_of = |matches: &dyn Fn(&Value) -> bool| -> String {
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| matches(p))
            .map(|p| p["targetPort"].as_str().unwrap().to_string())
            .expect("a Service port")
    };
    let none = json!({});

    // Prometheus, in its namespace, on every port the ServiceMonitor scrapes.
    let monitor = find("ServiceMonitor", None);
    let prometheus = json!({"app.kubernetes.io/name": "prometheus"});
    let monitoring = json!({"kubernetes.io/metadata.name": "monitoring"});
    let scraped: Vec<String> = monitor["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| target_of(&|p| p["name"] == e["port"]))
        .collect();
    assert_eq!(scraped, ["metrics", "ingest"]);
    for port in &scraped {
        assert!(
            admits(&policy, port, &prometheus, &monitoring, false),
            "Prometheus cannot scrape {port}: {policy}"
        );
    }

    // `helm test`'s pod, on every port it asks.
    let test_pod = find("Pod", Some("test"));
    let labels = &test_pod["metadata"]["labels"];
    for arg in test_pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
    {
        let Some(url) = arg.as_str().and_then(|a| a.strip_prefix("--url=")) else {
            continue;
        };
        let number: u64 = url.rsplit(':').next().unwrap().parse().unwrap();
        let port = target_of(&|p| p["port"] == number);
        assert!(
            admits(&policy, &port, labels, &none, true),
            "helm test cannot reach {port}: {policy}"
        );
    }

    // An MCP of an admitted namespace reports; anything else reaches neither port.
    let mcp = json!({"app": "ocr"});
    assert!(admits(
        &policy,
        "ingest",
        &mcp,
        &json!({"mcp": "allowed"}),
        false
    ));
    let elsewhere = json!({"kubernetes.io/metadata.name": "elsewhere"});
    assert!(!admits(&policy, "ingest", &mcp, &elsewhere, false));
    assert!(!admits(&policy, "metrics", &mcp, &elsewhere, false));

    // ingestFrom without metricsFrom would keep Prometheus from the ingest port: refused.
    assert_helm_refuses(
        "networkPolicy.enabled=true,networkPolicy.ingestFrom[0].namespaceSelector.matchLabels.mcp=allowed,metrics.serviceMonitor.enabled=true",
        "set networkPolicy.metricsFrom",
    );
}
