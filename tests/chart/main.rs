//! The Helm chart, checked with real helm (v4), kubectl's schemas (kubernetes-validate), promtool
//! and the prometheus-operator's schemas; and the container image's Dockerfile. The helpers every
//! area uses are here; each area is a module.

mod clickhouse;
mod image;
mod monitoring;
mod objects;
mod rbac;
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mcp_coordinator::rbac::API_CALLS;
use serde_json::Value;

pub fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/mcp-coordinator")
}

pub fn templates() -> Vec<(String, String)> {
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

pub fn values() -> Value {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    serde_saphyr::from_str(&text).expect("values.yaml is YAML")
}

/// The real `helm` (v4): on PATH, or where `scripts/install-kube-tools.sh` put it (`.ci/run` and
/// `make test` run it).
pub fn helm() -> std::process::Command {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/helm");
    let program = if tools.exists() {
        tools
    } else {
        PathBuf::from("helm")
    };
    std::process::Command::new(program)
}

/// Runs helm with `args` and answers its standard output; fails the test with helm's own words.
pub fn run_helm(args: &[&str]) -> String {
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
pub fn assert_helm_refuses(set: &str, says: &str) {
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
pub fn render(set: &str) -> (Vec<Value>, String) {
    render_as("test", set)
}

/// [`render`] for a release of another name: `helm install --dry-run=client`, which renders
/// like `helm template` (no cluster, `lookup` finds nothing) and also answers the notes.
pub fn render_as(release: &str, set: &str) -> (Vec<Value>, String) {
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
pub fn parse_manifests(text: &str) -> Vec<Value> {
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

/// The Deployment or StatefulSet that runs the coordinator's pods (not the deployed ClickHouse's).
pub fn is_workload(doc: &Value) -> bool {
    (doc["kind"] == "Deployment" || doc["kind"] == "StatefulSet")
        && doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] != "clickhouse"
}

pub fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or("?").to_string())
        .collect();
    k.sort();
    k
}

pub const EVERYTHING: &str = "replicaCount=2,clickhouse.url=http://clickhouse:8123,clickhouse.passwordSecret.name=ch,metrics.serviceMonitor.enabled=true,grafanaDashboard.enabled=true,watchNamespace=mcps,ingest.tls.secretName=ingest-tls";

/// The plain `helm template` output for `args` (a release named "test").
pub fn template(args: &[&str]) -> String {
    let chart = chart();
    let mut all = vec!["template", "test", chart.to_str().expect("UTF-8 path")];
    all.extend(args);
    run_helm(&all)
}

/// `kubernetes-validate --strict` of `file` on the oldest and newest Kubernetes the chart supports.
pub fn kubernetes_validate(file: &Path) {
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
