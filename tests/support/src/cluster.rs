//! A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC on, a ServiceAccount
//! issuer, an admin token) and kube-controller-manager (garbage collector, namespaces,
//! ServiceAccounts), the binaries `scripts/build-kube-binaries.sh` builds from their Go modules
//! into `.tools/bin`. Started once per test process ([`shared`]); a watchdog shell stops them and
//! removes their directory when the process exits, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use crate::http::free_port;

/// The control plane's address and credentials.
pub struct RealCluster {
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    pub dir: PathBuf,
    admin_token: String,
    /// The API server's serving certificate and the CA that signed it (PEM).
    ca_pem: String,
    /// How kube-apiserver is started (again, after [`RealCluster::restart_api_server`]).
    apiserver: String,
    /// The shell that stops the control plane when this process exits.
    _watchdog: std::process::Child,
}

/// Where the Kubernetes binaries are: `.tools/bin` of the repository, or `MCP_KUBE_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("MCP_KUBE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin"))
}

fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-kube-binaries.sh (make tools and .ci/run do)",
        path.display()
    );
    path
}

/// The control plane every test of this process shares, started on first use.
pub fn shared() -> &'static RealCluster {
    static CLUSTER: OnceLock<RealCluster> = OnceLock::new();
    CLUSTER.get_or_init(RealCluster::start)
}

impl RealCluster {
    fn start() -> Self {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mcp-kube-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs")).expect("the cluster's directory");
        let admin_token = format!("admin-{}-{}", std::process::id(), free_port());
        std::fs::write(
            dir.join("tokens.csv"),
            format!("{admin_token},test-admin,test-admin-uid,\"system:masters\"\n"),
        )
        .expect("token file");
        let signing = rcgen::KeyPair::generate().expect("a ServiceAccount signing key");
        std::fs::write(dir.join("sa.key"), signing.serialize_pem()).expect("sa.key");
        std::fs::write(dir.join("sa.pub"), signing.public_key_pem()).expect("sa.pub");
        let (etcd_client, etcd_peer, secure) = (free_port(), free_port(), free_port());
        let url = format!("https://127.0.0.1:{secure}");
        let d = dir.display();
        let etcd = format!(
            "{bin} --name test --data-dir {d}/etcd --listen-client-urls http://127.0.0.1:{etcd_client} \
             --advertise-client-urls http://127.0.0.1:{etcd_client} --listen-peer-urls http://127.0.0.1:{etcd_peer} \
             --initial-advertise-peer-urls http://127.0.0.1:{etcd_peer} --initial-cluster test=http://127.0.0.1:{etcd_peer} \
             --unsafe-no-fsync --log-level warn",
            bin = binary("etcd").display(),
        );
        let apiserver = format!(
            "{bin} --etcd-servers http://127.0.0.1:{etcd_client} --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
             --secure-port {secure} --cert-dir {d}/certs --token-auth-file {d}/tokens.csv \
             --authorization-mode Node,RBAC --service-account-issuer https://kubernetes.default.svc \
             --service-account-key-file {d}/sa.pub --service-account-signing-key-file {d}/sa.key \
             --service-cluster-ip-range 10.0.0.0/24 --allow-privileged=true",
            bin = binary("kube-apiserver").display(),
        );
        // The watchdog waits for the parent (the test process) to go, then stops every
        // component (each writes its pid file when launched) and removes the directory.
        let script = format!(
            "while kill -0 $PPID 2>/dev/null; do sleep 0.5; done; \
             kill $(cat {d}/*.pid 2>/dev/null) 2>/dev/null; sleep 1; \
             kill -9 $(cat {d}/*.pid 2>/dev/null) 2>/dev/null; rm -rf {d}"
        );
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        let mut cluster = Self {
            url,
            dir,
            admin_token,
            ca_pem: String::new(),
            apiserver,
            _watchdog: watchdog,
        };
        cluster.launch("etcd", &etcd);
        cluster.launch("apiserver", &cluster.apiserver.clone());
        cluster.wait_ready();
        std::fs::write(
            cluster.dir.join("admin.kubeconfig"),
            cluster.admin_kubeconfig(),
        )
        .expect("admin kubeconfig");
        cluster.start_controller_manager();
        cluster
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let cert = std::fs::read_to_string(self.dir.join("certs/apiserver.crt"));
            if let Ok(cert) = cert {
                if self
                    .curl("/readyz")
                    .is_some_and(|answer| answer.trim() == "ok")
                {
                    self.ca_pem = cert;
                    return;
                }
            }
            if Instant::now() > deadline {
                let log =
                    |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let tail =
                    |text: String| text.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!(
                    "the API server did not become ready in 120 s\n--- apiserver.log (last lines, newest first)\n{}\n--- etcd.log\n{}",
                    tail(log("apiserver.log")),
                    tail(log("etcd.log"))
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `GET path` with the admin token, through curl (no runtime needed): `/metrics`, `/readyz`.
    pub fn curl(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "5", "-H"])
            .arg(format!("Authorization: Bearer {}", self.admin_token))
            .arg(format!("{}{path}", self.url))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start_controller_manager(&self) {
        let d = self.dir.display();
        let command = format!(
            "{bin} --kubeconfig {d}/admin.kubeconfig --controllers garbagecollector,namespace,serviceaccount \
             --leader-elect=false --secure-port 0 --use-service-account-credentials=false",
            bin = binary("kube-controller-manager").display(),
        );
        self.launch("kcm", &command);
    }

    /// Starts `command` in the background, its output in `<name>.log`, its pid in `<name>.pid`.
    fn launch(&self, name: &str, command: &str) {
        let d = self.dir.display();
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{command} > {d}/{name}.log 2>&1 & echo $! > {d}/{name}.pid"
            ))
            .status()
            .expect("sh runs");
        assert!(status.success(), "{name} starts");
    }

    /// A control plane of the test's own, for a test that disturbs it (restarts the API server).
    pub fn start_own() -> Self {
        Self::start()
    }

    /// Stops kube-apiserver (SIGTERM, as a rollout does; SIGKILL if it has not gone in 15 s: it
    /// waits for open watches), starts it again on the same port, certificates and etcd, and
    /// waits until it is ready.
    pub fn restart_api_server(&mut self) {
        let pid_file = self.dir.join("apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("the API server's pid");
        let pid = pid.trim().to_string();
        // Running until its /proc entry is gone or a zombie (its launching shell has exited, so
        // whoever adopted it may never reap it).
        let running = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().next())
                    != Some("Z")
            })
        };
        for (signal, patience) in [("-TERM", 15), ("-KILL", 30)] {
            let _ = Command::new("kill").args([signal, &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(patience);
            while running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        assert!(!running(), "the API server did not stop");
        self.launch("apiserver", &self.apiserver.clone());
        self.wait_ready();
    }

    /// A kubeconfig for `token` (the admin's, or a ServiceAccount's).
    pub fn kubeconfig_for(&self, token: &str) -> String {
        use base64::Engine;
        let encode = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\ncurrent-context: test\n",
            url = self.url,
            ca = encode(self.ca_pem.as_bytes()),
        )
    }

    pub fn admin_kubeconfig(&self) -> String {
        self.kubeconfig_for(&self.admin_token)
    }

    /// The admin kubeconfig's file (for kubectl and helm).
    pub fn admin_kubeconfig_file(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A client for `kubeconfig`.
    pub async fn client_for(&self, kubeconfig: &str) -> Client {
        let parsed = Kubeconfig::from_yaml(kubeconfig).expect("the kubeconfig parses");
        let config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
            .await
            .expect("the kubeconfig is usable");
        Client::try_from(config).expect("a client")
    }

    /// A client with the admin's rights (`system:masters`).
    pub async fn admin(&self) -> Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        self.client_for(&self.admin_kubeconfig()).await
    }

    /// A token of ServiceAccount `namespace/name` (TokenRequest, an hour), and a client with it:
    /// what the real RBAC authorizer lets that identity do.
    pub async fn service_account(&self, namespace: &str, name: &str) -> (String, Client) {
        let admin = self.admin().await;
        let request = http_post(
            &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token"),
            serde_json::json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            }),
        );
        let answer: serde_json::Value = admin
            .request(request)
            .await
            .expect("the TokenRequest is answered");
        let token = answer["status"]["token"]
            .as_str()
            .expect("a token")
            .to_string();
        let client = self.client_for(&self.kubeconfig_for(&token)).await;
        (token, client)
    }

    /// What the API server logged (for a failing test's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default()
    }
}

fn http_post(path: &str, body: serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("JSON"))
        .expect("a request")
}

/// Installs the generated CRD (once per cluster; a second call finds it) and waits until the API
/// server serves it.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    match crds
        .create(&Default::default(), &mcp_coordinator::crd::crd())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("the real API server refused the CRD: {e}"),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds
            .get("mcpregistrations.mcp.coordinator.dev")
            .await
            .expect("the CRD reads back");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "the CRD was never Established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates namespace `name` (a test's own, in the shared cluster) and answers its name.
pub async fn namespace(client: &Client, name: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    let object: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name},
    }))
    .expect("a namespace");
    match namespaces.create(&Default::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("namespace {name}: {e}"),
    }
    name.to_string()
}

/// What the API server says of an MCPRegistration `manifest` created as `kubectl apply
/// --dry-run=server` does (a create with strict field validation, kubectl's default): accepted,
/// or the message of its refusal.
pub async fn create_dry_run(
    client: &Client,
    namespace: &str,
    manifest: &serde_json::Value,
) -> Result<(), String> {
    let request = http::Request::post(format!(
        "/apis/mcp.coordinator.dev/v1alpha1/namespaces/{namespace}/mcpregistrations?dryRun=All&fieldValidation=Strict"
    ))
    .header("content-type", "application/json")
    .body(serde_json::to_vec(manifest).expect("JSON"))
    .expect("a request");
    match client.request::<serde_json::Value>(request).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) => Err(e.message),
        Err(e) => panic!("the API server did not answer: {e}"),
    }
}

/// How many requests of `verbs` (`POST`, `PATCH`…) on `resource` (and `subresource`, or `""`)
/// the API server has answered, from its own `apiserver_request_total`.
pub fn requests(metrics: &str, verbs: &[&str], resource: &str, subresource: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(&format!("resource=\"{resource}\"")))
        .filter(|l| l.contains(&format!("subresource=\"{subresource}\"")))
        .filter(|l| verbs.iter().any(|v| l.contains(&format!("verb=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

impl Drop for RealCluster {
    /// A control plane of a test's own stops with it (the shared one, a static, is never dropped:
    /// its watchdog stops it when the process exits).
    fn drop(&mut self) {
        let d = self.dir.display();
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "kill -9 $(cat {d}/*.pid 2>/dev/null) 2>/dev/null; rm -rf {d}"
            ))
            .status();
    }
}
