//! The upstream `kubectl` against both API servers, the test one and the real one (a contract both
//! pass): users apply the examples, get the schema's and the CEL rule's errors for bad manifests,
//! and see ID, Phase and Weight in `kubectl get mcpcreg`.

use test_support as common;

use std::path::Path;
use std::time::Duration;

use common::*;
use kube::Api;
use mcp_coordinator::controller::Settings;
use mcp_coordinator::crd::MCPRegistration;

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    // Upstream kubectl from scripts/install-kube-tools.sh when it is there, else the one on PATH.
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl");
    let program = if tools.exists() {
        tools
    } else {
        "kubectl".into()
    };
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect(
            "kubectl runs (scripts/install-kube-tools.sh installs it; .ci/run and make test do)",
        );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_on_the_test_api_server() {
    let server = api_server().await;
    let dir = common::TestDir::new("kubectl");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).expect("kubeconfig");
    let mut settings = settings();
    settings.probe_policy = settings.probe_policy.refusing_api_server(&server.url());
    scenario(&dir, &kubeconfig, client(&server), settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_on_a_real_api_server() {
    let cluster = common::cluster::shared();
    let admin = cluster.admin().await;
    common::cluster::install_crd(&admin).await;
    let dir = common::TestDir::new("kubectl-real");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.admin_kubeconfig()).expect("kubeconfig");
    // The examples live in `default`; this test is the only one there.
    let mut settings = settings();
    settings.namespace = Some("default".into());
    settings.state_namespace = common::cluster::namespace(&admin, "kubectl-state").await;
    settings.probe_policy = settings.probe_policy.refusing_api_server(&cluster.url);
    scenario(&dir, &kubeconfig, admin, settings).await;
}

/// What a user does with kubectl, on whichever server `kubeconfig` and `client` reach.
async fn scenario(
    dir: &common::TestDir,
    kubeconfig: &Path,
    client: kube::Client,
    settings: Settings,
) {
    let kubeconfig = kubeconfig.to_path_buf();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");

    let (ok, out, err) = kubectl(
        &kubeconfig,
        &[
            "apply",
            "-f",
            &examples.join("ocr-workflow.yaml").to_string_lossy(),
            "-f",
            &examples.join("model-adapter.yaml").to_string_lossy(),
        ],
    )
    .await;
    assert!(ok, "kubectl apply failed:\n{out}\n{err}");
    assert!(
        out.contains("mcpregistration.mcp.coordinator.dev/ocr-workflow created"),
        "{out}"
    );
    let api: Api<MCPRegistration> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        api.list(&Default::default())
            .await
            .expect("list")
            .items
            .len(),
        2
    );
    // Applying again changes nothing.
    let (ok, out, _) = kubectl(
        &kubeconfig,
        &[
            "apply",
            "-f",
            &examples.join("ocr-workflow.yaml").to_string_lossy(),
        ],
    )
    .await;
    assert!(ok && out.contains("unchanged"), "{out}");

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: bad\n  namespace: default\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: http://bad:8080\n  routing:\n    weight: 5000\n",
    )
    .expect("write");
    let (ok, out, err) = kubectl(&kubeconfig, &["apply", "-f", &bad.to_string_lossy()]).await;
    assert!(!ok, "an out-of-range weight was accepted: {out}");
    assert!(
        err.contains("spec.routing.weight") && err.contains("1000"),
        "the schema's message: {err}"
    );

    // The CRD's CEL rules, as a 1.25+ API server evaluates them.
    let slow = dir.join("slow.yaml");
    std::fs::write(
        &slow,
        "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: slow\n  namespace: default\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [ocr]\n  endpoint:\n    url: http://slow:8080\n  healthCheck:\n    intervalSeconds: 5\n    timeoutSeconds: 30\n",
    )
    .expect("write");
    let (ok, out, err) = kubectl(&kubeconfig, &["apply", "-f", &slow.to_string_lossy()]).await;
    assert!(
        !ok,
        "a probe timeout longer than its interval was accepted: {out}"
    );
    assert!(
        err.contains("spec.healthCheck")
            && err.contains("timeoutSeconds must not exceed intervalSeconds"),
        "the rule's message: {err}"
    );

    let _controller = start_controller_on(client, settings);
    // The example Services do not exist here, so they stay Pending or turn Unavailable with
    // weight 0; what matters is that kubectl shows the columns the controller fills in.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = kubectl(&kubeconfig, &["get", "mcpcreg", "-n", "default"]).await;
        assert!(ok, "{err}");
        let header: Vec<&str> = out
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "ID", "READY", "PHASE", "WEIGHT", "AGE"],
            "{out}"
        );
        let row = out
            .lines()
            .find(|l| l.starts_with("ocr-workflow"))
            .unwrap_or_default()
            .to_string();
        let cells: Vec<&str> = row.split_whitespace().collect();
        if cells.len() == 6
            && cells[1] == "ocr_workflow_mcp_001"
            && cells[2] == "False"
            && matches!(cells[3], "Pending" | "Unavailable")
            && cells[4] == "0"
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "kubectl get mcpcreg never showed the reconciled row:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The category lists them too.
    let (ok, out, err) = kubectl(&kubeconfig, &["get", "mcp-coordinator", "-A"]).await;
    assert!(
        ok && out.contains("ocr-workflow"),
        "kubectl get mcp-coordinator: {out}{err}"
    );
    let (ok, out, _) = kubectl(
        &kubeconfig,
        &[
            "get",
            "mcpcreg",
            "ocr-workflow",
            "-n",
            "default",
            "-o",
            "jsonpath={.status.coordinatorConfig.apiKeySecretRef.name}",
        ],
    )
    .await;
    assert!(ok && out == "ocr-workflow-mcp-key", "{out}");
}
