//! A real ClickHouse server for tests: Debian's `clickhouse-server` (installed by .ci/run), started
//! on ephemeral loopback ports with its own data directory. A watchdog shell stops it when the test
//! process exits, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mcp_coordinator::store::clickhouse::ClickHouseConfig;

use crate::http::free_port;

pub struct ClickHouseServer {
    pub http_port: u16,
    tcp_port: u16,
    interserver_port: u16,
    pub dir: PathBuf,
    watchdog: Option<Child>,
    config_file: PathBuf,
    /// `NAME=value` the server starts with.
    env: Vec<(String, String)>,
}

fn binary() -> &'static str {
    for candidate in ["/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server"] {
        if Path::new(candidate).exists() {
            return candidate;
        }
    }
    panic!("clickhouse-server is not installed: run .ci/run (apt-get install clickhouse-server)");
}

impl ClickHouseServer {
    /// Starts a new server in a fresh directory. A watchdog shell kills the server when the test
    /// process exits and then removes the directory: the [`shared`] server is a static, never
    /// dropped, and each test process (nextest runs one per test) would leave its data behind.
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-ch-{name}-{}", std::process::id()));
        Self::start_in(dir, PathBuf::from("/etc/clickhouse-server/config.xml"), &[])
    }

    /// Starts a server whose configuration is Debian's, copied into its directory, and then
    /// what `configure` adds there (files under `config.d/` and `users.d/`), with `env`.
    pub fn start_with(name: &str, configure: impl FnOnce(&Path), env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-ch-{name}-{}", std::process::id()));
        let etc = std::env::temp_dir().join(format!("mcp-ch-etc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&etc);
        std::fs::create_dir_all(&etc).expect("ClickHouse config dir");
        for file in ["config.xml", "users.xml"] {
            std::fs::copy(
                Path::new("/etc/clickhouse-server").join(file),
                etc.join(file),
            )
            .expect("Debian's ClickHouse configuration (apt-get install clickhouse-server)");
        }
        configure(&etc);
        Self::start_in(dir, etc.join("config.xml"), env)
    }

    fn start_in(dir: PathBuf, config_file: PathBuf, env: &[(&str, &str)]) -> Self {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tmp")).expect("ClickHouse dir");
        let mut server = Self {
            http_port: free_port(),
            tcp_port: free_port(),
            interserver_port: free_port(),
            dir,
            watchdog: None,
            config_file,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        // A port picked free can be taken by another test process before ClickHouse binds it:
        // then start again on fresh ports.
        for attempt in 1.. {
            match server.try_launch() {
                Ok(()) => break,
                Err(problem) if attempt < 4 && problem.contains("Address already in use") => {
                    server.kill();
                    server.http_port = free_port();
                    server.tcp_port = free_port();
                    server.interserver_port = free_port();
                }
                Err(problem) => panic!("{problem}"),
            }
        }
        server
    }

    fn launch(&mut self) {
        if let Err(problem) = self.try_launch() {
            panic!("{problem}");
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        // The previous run's pid must not be taken for this one's.
        let _ = std::fs::remove_file(self.dir.join("pid"));
        let started_before = self.times_ready();
        let d = self.dir.display();
        let env: String = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}='{v}' "))
            .collect();
        let command = format!(
            "{env}{bin} --config-file={config} -- --http_port={http} --tcp_port={tcp} --interserver_http_port={inter} --listen_host=127.0.0.1 --path={d}/ --tmp_path={d}/tmp/ --user_files_path={d}/user_files/ --format_schema_path={d}/format_schemas/ --logger.log={d}/log --logger.level=information --logger.errorlog={d}/err > {d}/stdout 2>&1 & \
             ch=$!; echo $ch > {d}/pid; while kill -0 $PPID 2>/dev/null && kill -0 $ch 2>/dev/null; do sleep 0.5; done; kill -9 $ch 2>/dev/null; \
             if ! kill -0 $PPID 2>/dev/null; then rm -rf {d}; fi",
            bin = binary(),
            config = self.config_file.display(),
            http = self.http_port,
            tcp = self.tcp_port,
            inter = self.interserver_port,
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs");
        self.watchdog = Some(child);
        self.wait_ready(started_before)
    }

    /// How often this server's own log says it finished starting. A free port can be taken by
    /// another test's server between choosing it and binding it, and that server answers /ping
    /// too: only our log tells that ours is the one listening.
    fn times_ready(&self) -> usize {
        std::fs::read_to_string(self.dir.join("log"))
            .map(|log| log.matches("Ready for connections").count())
            .unwrap_or(0)
    }

    /// False only once the server's process is known to be gone (the pid file may not be
    /// written, or be half-written, while it starts).
    fn alive(&self) -> bool {
        let pid = std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        pid.is_none_or(|pid| {
            Command::new("kill")
                .args(["-0", &pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    fn wait_ready(&self, started_before: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut dead_polls = 0;
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.http_port)) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /ping HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.contains("Ok.") && self.times_ready() > started_before {
                    return Ok(());
                }
            }
            // Gone on five polls in a row: it exited (a single look can race its start).
            dead_polls = if self.alive() { 0 } else { dead_polls + 1 };
            let exited = dead_polls >= 5;
            if exited || Instant::now() > deadline {
                let err = std::fs::read_to_string(self.dir.join("err")).unwrap_or_default();
                return Err(format!(
                    "ClickHouse did not answer /ping on {} ({}); its error log ends:\n{}",
                    self.http_port,
                    if exited { "it exited" } else { "within 60 s" },
                    tail(&err)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the server (the data directory stays).
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// The server process, while it runs (for benchmarks that read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Runs one statement over HTTP and answers its output (TSV); panics with the server's
    /// message if it fails.
    pub async fn sql(&self, statement: &str) -> String {
        match self.try_sql(statement).await {
            Ok(text) => text,
            Err(problem) => panic!("{statement}\n→ {problem}"),
        }
    }

    /// Runs one statement over HTTP: its output, or the server's message.
    pub async fn try_sql(&self, statement: &str) -> Result<String, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let response = reqwest::Client::new()
            .post(self.url())
            .body(statement.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let text = response.text().await.unwrap_or_default();
        if ok {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Connection settings for a database of its own (tests share the server, not the data).
    pub fn config(&self) -> ClickHouseConfig {
        static N: AtomicU32 = AtomicU32::new(0);
        ClickHouseConfig {
            url: self.url(),
            database: format!(
                "t{}_{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ),
            user: None,
            password: None,
            max_interaction_ms: mcp_coordinator::store::clickhouse::DEFAULT_MAX_INTERACTION_MS,
            read_rollups: true,
            cluster: None,
            settings: Vec::new(),
        }
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// One server for every test of this test binary.
pub fn shared() -> &'static ClickHouseServer {
    static SERVER: OnceLock<ClickHouseServer> = OnceLock::new();
    SERVER.get_or_init(|| ClickHouseServer::start("shared"))
}

/// The cluster [`ClickHouseCluster`] defines.
pub const CLUSTER: &str = "mcp_cluster";

/// ZooKeeper (Debian's `zookeeper`) and two ClickHouse servers on loopback, each one shard of
/// cluster [`CLUSTER`] with one replica, as `--clickhouse-cluster` expects a cluster to be.
pub struct ClickHouseCluster {
    pub servers: Vec<ClickHouseServer>,
    zookeeper: Child,
    dir: PathBuf,
}

impl ClickHouseCluster {
    pub fn start(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mcp-chc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("zk/data")).expect("ZooKeeper dir");
        let zk_port = free_port();
        std::fs::write(
            dir.join("zk/zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={zk_port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n",
                dir.join("zk/data").display()
            ),
        )
        .expect("zoo.cfg");
        let d = dir.display();
        let zookeeper = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "java -cp '/usr/share/java/*' org.apache.zookeeper.server.quorum.QuorumPeerMain {d}/zk/zoo.cfg > {d}/zk/out.log 2>&1 & \
                 zk=$!; echo $zk > {d}/zk/pid; while kill -0 $PPID 2>/dev/null && kill -0 $zk 2>/dev/null; do sleep 0.5; done; kill -9 $zk 2>/dev/null"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh runs (ZooKeeper: apt-get install zookeeper; .ci/run does)");
        // Serving, not only listening: ClickHouse 18.16's DDL worker connects at start, and when
        // that first session fails it later dereferences a null session and crashes (seen in CI
        // as the first ON CLUSTER statement's connection refused).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !zookeeper_serves(zk_port) {
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not serve on {zk_port}: {}",
                std::fs::read_to_string(dir.join("zk/out.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let ports: Vec<(u16, u16, u16)> = (0..2)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let shards: String = ports
            .iter()
            .map(|(_, tcp, _)| {
                format!("<shard><internal_replication>true</internal_replication><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>")
            })
            .collect();
        let mut servers = Vec::new();
        for (i, (http, tcp, inter)) in ports.into_iter().enumerate() {
            let server_dir = dir.join(format!("s{i}"));
            std::fs::create_dir_all(server_dir.join("config.d")).expect("server dir");
            std::fs::create_dir_all(server_dir.join("tmp")).expect("server dir");
            for file in ["config.xml", "users.xml"] {
                std::fs::copy(
                    Path::new("/etc/clickhouse-server").join(file),
                    server_dir.join(file),
                )
                .expect("ClickHouse's configuration is readable");
            }
            std::fs::write(
                server_dir.join("config.d/cluster.xml"),
                format!(
                    "<yandex><remote_servers><{CLUSTER}>{shards}</{CLUSTER}></remote_servers>\
                     <zookeeper><node><host>127.0.0.1</host><port>{zk_port}</port></node></zookeeper>\
                     <macros><shard>0{n}</shard><replica>r{n}</replica></macros></yandex>",
                    n = i + 1
                ),
            )
            .expect("cluster.xml");
            let mut server = ClickHouseServer {
                http_port: http,
                tcp_port: tcp,
                interserver_port: inter,
                config_file: server_dir.join("config.xml"),
                dir: server_dir,
                watchdog: None,
                env: Vec::new(),
            };
            server.launch();
            servers.push(server);
        }
        Self {
            servers,
            zookeeper,
            dir,
        }
    }

    /// What each server and ZooKeeper last said, and whether they still run: for a failure
    /// message, since a server that goes away mid-test otherwise shows only as a refused connection.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        for (i, server) in self.servers.iter().enumerate() {
            let read =
                |file: &str| std::fs::read_to_string(server.dir.join(file)).unwrap_or_default();
            out.push_str(&format!(
                "\n--- server {i} (http {}, {}): error log ends\n{}\n--- its stdout ends\n{}\n",
                server.http_port,
                if server.alive() { "running" } else { "exited" },
                tail(&read("err")),
                tail(&read("stdout")),
            ));
        }
        let zk = std::fs::read_to_string(self.dir.join("zk/out.log")).unwrap_or_default();
        out.push_str(&format!("--- ZooKeeper's log ends\n{}\n", tail(&zk)));
        out
    }

    /// Settings for the store on the first server, in a database of its own, on the cluster.
    pub fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig {
            cluster: Some(CLUSTER.to_string()),
            ..self.servers[0].config()
        }
    }
}

/// ZooKeeper's `srvr` answers with the server's mode once it serves sessions (and "not currently
/// serving requests" before).
fn zookeeper_serves(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut answer = String::new();
    stream.write_all(b"srvr").is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.contains("Mode:")
}

impl Drop for ClickHouseCluster {
    fn drop(&mut self) {
        self.servers.clear();
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("zk/pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = self.zookeeper.kill();
        let _ = self.zookeeper.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
