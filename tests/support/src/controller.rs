//! The test API server with the CRD installed, a kube client for it, the controller running
//! in-process, and waiting for a registration to reach a state.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use kube::{Api, Client};
use mcp_coordinator::controller::metrics::Metrics;
use mcp_coordinator::controller::{self, status::ReportingSettings, Settings};
use mcp_coordinator::crd::MCPRegistration;

use crate::fake_mcp::FakeMcp;

pub const STATE_NAMESPACE: &str = "mcp-coordinator";

/// A fake API server that already serves MCPRegistrations.
pub async fn api_server() -> FakeApiServer {
    let server = FakeApiServer::start()
        .await
        .expect("fake API server starts");
    let crd = serde_json::to_value(mcp_coordinator::crd::crd()).expect("CRD serializes");
    server
        .install_crd(crd)
        .expect("the generated CRD is accepted");
    server
}

pub fn client(server: &FakeApiServer) -> Client {
    let uri = server.url().parse().expect("valid URL");
    let config = kube::Config::new(uri);
    Client::try_from(config).expect("client builds")
}

/// The controller, running in this process against `server` until dropped.
pub struct RunningController {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn settings() -> Settings {
    Settings {
        namespace: None,
        state_namespace: STATE_NAMESPACE.into(),
        id_ledger_name: "mcp-coordinator-ids".into(),
        reporting: ReportingSettings {
            interaction_log_endpoint: "http://ingest.test:8081".into(),
            heartbeat_interval_seconds: 30,
            data_report_interval_seconds: 10,
        },
        probe_concurrency: 64,
        probe_policy: Default::default(),
        reconcile_concurrency: 16,
        resync: Duration::from_secs(300),
        instance: Some("test".into()),
        routing: Default::default(),
        leader_election: None,
    }
}

/// A controller as `main` starts it: probes to the API server it talks to are refused.
pub fn start_controller(server: &FakeApiServer) -> RunningController {
    let mut settings = settings();
    settings.probe_policy = settings.probe_policy.refusing_api_server(&server.url());
    start_controller_with(server, settings)
}

pub fn start_controller_with(server: &FakeApiServer, settings: Settings) -> RunningController {
    start_controller_on(client(server), settings)
}

/// The controller, running in this process with `client` (of any API server) until dropped.
pub fn start_controller_on(client: Client, settings: Settings) -> RunningController {
    let metrics = Arc::new(Metrics::new().expect("metrics register"));
    let ready = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(controller_future(
        client,
        settings,
        metrics.clone(),
        ready.clone(),
        async move {
            let _ = stopped.await;
        },
    ));
    RunningController {
        metrics,
        ready,
        stop: Some(stop),
        task,
    }
}

async fn controller_future(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    controller::run(client, settings, metrics, ready, shutdown)
        .await
        .expect("controller starts");
}

/// A registration manifest for an MCP at `url`, probed every second.
pub fn registration(name: &str, url: &str, extra_spec: &str) -> MCPRegistration {
    let yaml = format!(
        "apiVersion: mcp.coordinator.dev/v1alpha1\nkind: MCPRegistration\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  version: 1.0.0\n  type: workflow\n  capabilities: [text_extraction]\n  endpoint:\n    url: {url}\n  healthCheck:\n    intervalSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 2\n{extra_spec}"
    );
    serde_saphyr::from_str(&yaml).expect("test manifest parses")
}

/// Polls the registration until `done` holds, failing with its last state after `timeout`.
pub async fn wait_for(
    api: &Api<MCPRegistration>,
    name: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&MCPRegistration) -> bool,
) -> MCPRegistration {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let current = api.get_opt(name).await.expect("get works");
        if let Some(reg) = &current {
            if done(reg) {
                return reg.clone();
            }
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {timeout:?} waiting for {name} to be {what}; last seen: {}",
                serde_json::to_string_pretty(&current.map(|r| r.status)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn phase(reg: &MCPRegistration) -> Option<mcp_coordinator::crd::Phase> {
    reg.status.as_ref().map(|s| s.phase)
}

/// How long a controller test waits for a registration to reach a state.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where a controller test runs: the test API server, or the real control plane every test of
/// the process shares (then in namespaces of the test's own, with its controller scoped to them).
pub struct Place {
    /// Kept alive for the test (the test API server stops when dropped).
    _fake: Option<FakeApiServer>,
    client: Client,
    /// The namespace of the test's registrations.
    pub namespace: String,
    /// The namespace of the ID ledger and the leader Lease.
    pub state_namespace: String,
    /// The API server's URL (probes must not go there).
    pub url: String,
    /// The real one.
    pub real: bool,
}

impl Place {
    /// The test API server, registrations in `default`.
    pub async fn fake() -> Self {
        let server = api_server().await;
        Self {
            client: client(&server),
            url: server.url(),
            namespace: "default".into(),
            state_namespace: STATE_NAMESPACE.into(),
            _fake: Some(server),
            real: false,
        }
    }

    /// The shared real control plane, in namespaces named after `test`.
    pub async fn real(test: &str) -> Self {
        Self::real_on(crate::cluster::shared(), test).await
    }

    /// `cluster` (a test's own), in namespaces named after `test`.
    pub async fn real_on(cluster: &crate::cluster::RealCluster, test: &str) -> Self {
        let admin = cluster.admin().await;
        crate::cluster::install_crd(&admin).await;
        let base: String = test.replace('_', "-").chars().take(50).collect();
        let base = base.trim_end_matches('-').to_string();
        Self {
            namespace: crate::cluster::namespace(&admin, &base).await,
            state_namespace: crate::cluster::namespace(&admin, &format!("{base}-state")).await,
            client: admin,
            url: cluster.url.clone(),
            _fake: None,
            real: true,
        }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The test API server, for a fault only it can inject (a stall, a conflict storm).
    pub fn fake_server(&self) -> Option<&FakeApiServer> {
        self._fake.as_ref()
    }

    /// `Api` of the test's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client(), &self.namespace)
    }

    /// The settings of a controller watching the test's namespace; probes to the API server are
    /// refused, as `main` does.
    pub fn settings(&self) -> Settings {
        let mut s = settings();
        s.namespace = Some(self.namespace.clone());
        s.state_namespace = self.state_namespace.clone();
        s.probe_policy = s.probe_policy.refusing_api_server(&self.url);
        s
    }

    pub fn start_controller(&self) -> RunningController {
        start_controller_on(self.client(), self.settings())
    }

    /// A registration of an MCP at `url` in the test's namespace (see [`registration`]).
    pub fn registration(&self, name: &str, url: &str, extra_spec: &str) -> MCPRegistration {
        let mut reg = registration(name, url, extra_spec);
        reg.metadata.namespace = Some(self.namespace.clone());
        reg
    }
}

/// `async fn name(place: Place)` scenarios, each run as two tests: on the test API server and on
/// the real one (a contract both must pass).
#[macro_export]
macro_rules! on_both_servers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_the_test_api_server() {
                super::$name($crate::Place::fake().await).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_a_real_api_server() {
                super::$name($crate::Place::real(stringify!($name)).await).await
            }
        }
    )*};
}

/// What most controller tests open with: one healthy MCP, the controller running, and the
/// registrations of the test's namespace.
pub struct Scene {
    pub mcp: FakeMcp,
    pub controller: RunningController,
    pub api: Api<MCPRegistration>,
    namespace: String,
}

impl Scene {
    pub async fn start(place: &Place) -> Self {
        let mcp = FakeMcp::start().await;
        let controller = place.start_controller();
        Self {
            mcp,
            controller,
            api: place.api(),
            namespace: place.namespace.clone(),
        }
    }

    /// Registers the scene's MCP as `name` and waits until it is Ready.
    pub async fn ready(&self, name: &str) -> MCPRegistration {
        let mut reg = registration(name, &self.mcp.url(), "");
        reg.metadata.namespace = Some(self.namespace.clone());
        self.api
            .create(&kube::api::PostParams::default(), &reg)
            .await
            .expect("the registration is created");
        wait_for(&self.api, name, WAIT, "Ready", |r| {
            phase(r) == Some(mcp_coordinator::crd::Phase::Ready)
        })
        .await
    }
}
