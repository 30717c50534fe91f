//! RBAC: each container gets exactly what its code calls (src/rbac.rs), self-registration its own
//! identity.

use super::*;

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
