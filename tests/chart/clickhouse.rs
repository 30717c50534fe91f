//! Issue 37: the interaction log is ClickHouse-backed by default. Three modes, rendered by the
//! real helm: a ClickHouse deployed with the release (the default), an existing one
//! (`clickhouse.url`: nothing deployed), the embedded store (`clickhouse.deploy=false`, one replica
//! only: more is refused at render, saying why).

use super::*;

fn ingest_of(docs: &[Value]) -> Value {
    let workload = docs
        .iter()
        .find(|d| is_workload(d) && d["metadata"]["name"] == "test-mcp-coordinator")
        .expect("the coordinator's workload");
    workload["spec"]["template"]["spec"]["containers"][1].clone()
}

fn args_of(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

#[test]
fn by_default_the_release_deploys_clickhouse_and_the_ingest_servers_write_to_it() {
    let (docs, _) = render("");
    let name = "test-mcp-coordinator-clickhouse";
    let ingest = ingest_of(&docs);
    let args = args_of(&ingest);
    for expected in [
        "--clickhouse-url=http://test-mcp-coordinator-clickhouse.mcp-coordinator.svc:8123",
        "--clickhouse-user=mcp_coordinator",
        "--clickhouse-database=mcp_coordinator",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
    }
    let password = &ingest["env"][0];
    assert_eq!(password["name"], "MCP_COORDINATOR_CLICKHOUSE_PASSWORD");
    assert_eq!(password["valueFrom"]["secretKeyRef"]["name"], name);
    assert_eq!(password["valueFrom"]["secretKeyRef"]["key"], "password");

    let secret = named(&docs, "Secret", name).expect("the generated password");
    assert_eq!(
        secret["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    assert!(secret["data"]["password"].as_str().unwrap().len() >= 40);

    let set = named(&docs, "StatefulSet", name).expect("ClickHouse's StatefulSet");
    let pod = &set["spec"]["template"]["spec"];
    let server = &pod["containers"][0];
    assert_eq!(server["image"], "clickhouse/clickhouse-server:25.8");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 101);
    assert_eq!(server["readinessProbe"]["httpGet"]["path"], "/ping");
    assert_eq!(server["livenessProbe"]["httpGet"]["path"], "/ping");
    assert_eq!(
        server["env"][0]["valueFrom"]["secretKeyRef"]["name"], name,
        "the server's user has the password the ingest servers send"
    );
    assert_eq!(
        set["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "20Gi"
    );
    // Its pods are not the coordinator's: the coordinator's selector does not take them.
    let coordinator = docs
        .iter()
        .find(|d| is_workload(d) && d["metadata"]["name"] == "test-mcp-coordinator")
        .unwrap();
    let selector = coordinator["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    let labels = set["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    assert!(
        selector.iter().any(|(k, v)| labels.get(k) != Some(v)),
        "{selector:?} would select ClickHouse's pods {labels:?}"
    );

    let policy = named(&docs, "NetworkPolicy", name).expect("ClickHouse's NetworkPolicy");
    let from = &policy["spec"]["ingress"][0]["from"];
    assert_eq!(from.as_array().unwrap().len(), 1, "{from}");
    assert_eq!(
        from[0]["podSelector"]["matchLabels"], coordinator["spec"]["selector"]["matchLabels"],
        "only the coordinator's pods"
    );
    let config = named(&docs, "ConfigMap", name).expect("ClickHouse's settings");
    let users = config["data"]["users.xml"].as_str().unwrap();
    assert!(
        users.contains("<mcp_coordinator>")
            && users.contains("from_env=\"CLICKHOUSE_MCP_PASSWORD\""),
        "{users}"
    );
}

#[test]
fn an_existing_clickhouse_deploys_nothing_and_the_embedded_store_is_one_replica_only() {
    let (docs, _) =
        render("clickhouse.url=http://ch.db.svc:8123,clickhouse.passwordSecret.name=ch");
    assert!(
        !docs.iter().any(|d| d["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .ends_with("-clickhouse")),
        "an existing ClickHouse: nothing deployed"
    );
    let args = args_of(&ingest_of(&docs));
    assert!(args.contains(&"--clickhouse-url=http://ch.db.svc:8123".to_string()));
    assert!(args.contains(&"--clickhouse-user=default".to_string()));

    let (docs, _) = render("clickhouse.deploy=false");
    let args = args_of(&ingest_of(&docs));
    assert!(
        !args.iter().any(|a| a.starts_with("--clickhouse")),
        "the embedded store: {args:?}"
    );
    assert!(ingest_of(&docs)["env"].is_null());
    assert_helm_refuses(
        "clickhouse.deploy=false,replicaCount=2",
        "replicaCount 2 needs ClickHouse",
    );

    // Pinned by digest, and a password Secret of the user's own: nothing generated.
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let (docs, _) = render(&format!(
        "clickhouse.image.digest={digest},clickhouse.auth.existingSecret=ch-auth"
    ));
    let set = named(&docs, "StatefulSet", "test-mcp-coordinator-clickhouse").unwrap();
    assert_eq!(
        set["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("clickhouse/clickhouse-server@{digest}")
    );
    assert!(named(&docs, "Secret", "test-mcp-coordinator-clickhouse").is_none());
    assert_eq!(
        ingest_of(&docs)["env"][0]["valueFrom"]["secretKeyRef"]["name"],
        "ch-auth"
    );
}
