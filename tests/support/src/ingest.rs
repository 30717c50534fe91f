//! Ingest servers for tests: the `mcp-coordinator ingest` binary spawned with keys and reader
//! tokens from files, and an ingest server started in this process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use mcp_coordinator::ingest::metrics::IngestMetrics;
use mcp_coordinator::ingest::{self, IngestConfig};
use mcp_coordinator::store::Stores;
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
use mcp_coordinator::trust::signing::SigningPolicy;

pub use crate::dir::TestDir;
use crate::http::free_port;

/// The `mcp-coordinator` binary of this build: beside the directory of the test's own executable
/// (`target/<profile>/deps/`), which Cargo builds before it runs integration tests. The variable
/// `MCP_COORDINATOR_BIN` names another.
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_COORDINATOR_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let bin = profile_dir.join("mcp-coordinator");
    assert!(
        bin.exists(),
        "{} is not built: run the tests with cargo (it builds the binary first)",
        bin.display()
    );
    bin
}

/// `name: value` lines, the YAML map the key and token files hold.
fn yaml_map(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

/// The ingest binary's files and address: `keys.yaml`, `readers.yaml` (when there are readers)
/// and the data directory `data/` in a scratch directory, and a free port.
pub struct IngestProcess {
    pub dir: TestDir,
    pub port: u16,
    pub base: String,
    readers: bool,
}

impl IngestProcess {
    /// MCP keys as `(mcp_id, key)`, reader tokens as `(name, token)`.
    pub fn prepare(tag: &str, keys: &[(&str, &str)], readers: &[(&str, &str)]) -> Self {
        let dir = TestDir::new(tag);
        std::fs::write(dir.path().join("keys.yaml"), yaml_map(keys)).expect("keys file");
        if !readers.is_empty() {
            std::fs::write(dir.path().join("readers.yaml"), yaml_map(readers))
                .expect("reader tokens file");
        }
        let port = free_port();
        Self {
            dir,
            port,
            base: format!("http://127.0.0.1:{port}"),
            readers: !readers.is_empty(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `mcp-coordinator ingest` with these files, quiet and killed when dropped; callers add
    /// flags, environment and where output goes.
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(bin());
        command
            .args(["ingest", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--keys-file")
            .arg(self.dir.path().join("keys.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if self.readers {
            command
                .arg("--reader-tokens-file")
                .arg(self.dir.path().join("readers.yaml"));
        }
        command
    }

    /// Waits until `/healthz` answers 200.
    pub async fn wait_healthy(&self) {
        wait_healthy(&self.base).await
    }
}

/// Waits (at most 20 s) until `{base}/healthz` answers 200.
pub async fn wait_healthy(base: &str) {
    let client = super::http_client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client.get(format!("{base}/healthz")).send().await;
        if answer.map(|r| r.status().as_u16()).ok() == Some(200) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ingest server at {base} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configuration in-process tests start from: the documented defaults, the spool in
/// `dir/spool`, a fast flush and drain, and no signatures required.
pub fn test_config(dir: &Path) -> IngestConfig {
    IngestConfig {
        batch_max: 100,
        flush_interval: Duration::from_millis(50),
        drain_timeout: Duration::from_secs(1),
        signing: SigningPolicy::Off,
        ..IngestConfig::new("127.0.0.1:0".parse().expect("address"), dir.join("spool"))
            .expect("configuration")
    }
}

/// A key ring holding `(mcp_id, key)` pairs.
pub fn key_ring(keys: &[(&str, &str)]) -> Arc<KeyRing> {
    let ring = KeyRing::default();
    for (mcp_id, key) in keys {
        ring.set(mcp_id, key);
    }
    Arc::new(ring)
}

/// An ingest server running in this process until `stop` (or until dropped, without draining).
pub struct InProcessIngest {
    pub addr: SocketAddr,
    /// The MCP gateway's address, when the configuration asked for it.
    pub gateway_addr: Option<SocketAddr>,
    pub base: String,
    pub metrics: Arc<IngestMetrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

impl InProcessIngest {
    pub async fn start(
        config: IngestConfig,
        store: impl Into<Stores>,
        keys: Arc<KeyRing>,
        readers: Arc<ReaderTokens>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = ingest::start(config, store, keys, readers, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the ingest server starts");
        Self {
            addr: running.addr,
            gateway_addr: running.gateway_addr,
            base: format!("http://{}", running.addr),
            metrics: running.metrics,
            stop: Some(stop),
            done: running.done,
        }
    }

    /// Stops it cleanly: requests finish, then the spool drains into the store.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.done).await;
    }
}
