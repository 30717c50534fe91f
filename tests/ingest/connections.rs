//! Issue 34, attacks 1 and 2: what a client without credentials can hold of a listener. Every
//! phase of a connection has a deadline (the first bytes, half an HTTP/2 preface, an HTTP/2
//! connection that never sends a request, a TLS handshake followed by silence), connections are
//! capped in all and per address with a clear refusal, and a process out of file descriptors
//! backs off instead of spinning.

use test_support as common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::ingest::{key_ring, test_config, InProcessIngest, IngestProcess, TestDir};
use mcp_coordinator::ingest::state::Limits;
use mcp_coordinator::ingest::IngestConfig;
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::ReaderTokens;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const KEY: &str = "mcpk_connections_test_key_012345";
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame: what an HTTP/2 client sends after the preface.
const SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

async fn start(
    dir: &TestDir,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> InProcessIngest {
    InProcessIngest::start(
        IngestConfig {
            limits,
            tls,
            ..test_config(dir.path())
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        key_ring(&[("ocr_workflow_mcp_001", KEY)]),
        Arc::new(ReaderTokens::default()),
    )
    .await
}

/// Whether the server closes `io` within `within` (reading, and dropping, what it sends first).
async fn closed_within(io: &mut (impl AsyncRead + Unpin), within: Duration) -> bool {
    let mut buf = vec![0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// A connection to `to` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// The value of the series `name{labels}` in `exposition` (0 when absent).
fn series(exposition: &str, name_and_labels: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_silent_half_h2_and_idle_h2c_connections_are_closed_by_their_deadlines() {
    let dir = TestDir::new("conn-deadlines");
    // A long idle timeout: HTTP/2's keep-alive pings (every half of it) must not be what closes
    // the idle h2c connections, which never answer a ping.
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let ingest = start(&dir, limits, None).await;
    let mut silent = Vec::new();
    let mut half_preface = Vec::new();
    let mut idle_h2c = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(ingest.addr).await.unwrap());
        let mut half = TcpStream::connect(ingest.addr).await.unwrap();
        half.write_all(b"PRI * HTTP/2.0").await.unwrap();
        half_preface.push(half);
        let mut h2c = TcpStream::connect(ingest.addr).await.unwrap();
        h2c.write_all(PREFACE).await.unwrap();
        h2c.write_all(SETTINGS).await.unwrap();
        idle_h2c.push(h2c);
    }
    // Before: all 60 were still open after 6.5 s with a 2 s header timeout.
    for (what, held) in [
        ("zero-byte", &mut silent),
        ("half-preface", &mut half_preface),
        ("idle h2c", &mut idle_h2c),
    ] {
        for tcp in held.iter_mut() {
            assert!(
                closed_within(tcp, Duration::from_secs(4)).await,
                "a {what} connection was still open 4 s after a 1 s deadline"
            );
        }
    }
    let exposition = mcp_coordinator::telemetry::render(&ingest.metrics.registry);
    let first_bytes = series(
        &exposition,
        r#"mcp_coordinator_http_connections_timed_out_total{listener="api",phase="first_bytes"}"#,
    );
    let idle = series(
        &exposition,
        r#"mcp_coordinator_http_connections_timed_out_total{listener="api",phase="idle"}"#,
    );
    assert_eq!((first_bytes, idle), (40.0, 20.0), "{exposition}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_a_connection_in_use_is_kept_and_an_idle_one_is_closed() {
    let dir = TestDir::new("conn-idle");
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let ingest = start(&dir, limits, None).await;
    // Requests 0.8 s apart on one connection: never idle for 2 s, never cut.
    let mut keep = TcpStream::connect(ingest.addr).await.unwrap();
    for _ in 0..3 {
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: ingest\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = keep.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert!(closed_within(&mut keep, Duration::from_secs(4)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_connections_past_the_caps_read_a_refusal_and_places_come_back() {
    let dir = TestDir::new("conn-caps");
    let limits = Limits {
        max_connections: 6,
        max_connections_per_ip: 4,
        ..Limits::default()
    };
    let ingest = start(&dir, limits, None).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 1], ingest.addr).await);
    }
    let mut fifth = connect_from([127, 0, 0, 1], ingest.addr).await;
    let mut answer = String::new();
    fifth.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("maximum of 4 connections per address"),
        "{answer}"
    );

    // Another address still gets in, up to the cap of the listener.
    for _ in 0..2 {
        held.push(connect_from([127, 0, 0, 2], ingest.addr).await);
    }
    let mut seventh = connect_from([127, 0, 0, 3], ingest.addr).await;
    let mut answer = String::new();
    seventh.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("maximum of 6 connections"), "{answer}");

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let health = common::http_client()
        .get(format!("{}/healthz", ingest.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "places are given back");
    let exposition = mcp_coordinator::telemetry::render(&ingest.metrics.registry);
    for reason in ["limit", "per_ip"] {
        let name = format!(
            r#"mcp_coordinator_http_connections_refused_total{{listener="api",reason="{reason}"}}"#
        );
        assert_eq!(series(&exposition, &name), 1.0, "{reason}: {exposition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_1_a_tls_handshake_followed_by_silence_is_closed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = TestDir::new("conn-tls");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("tls.crt"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), generated.signing_key.serialize_pem()).unwrap();
    let tls =
        mcp_coordinator::ingest::tls::server_config(&dir.join("tls.crt"), &dir.join("tls.key"))
            .unwrap();
    let limits = Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let ingest = start(&dir, limits, Some(tls)).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(generated.cert.der().clone()).unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(client);
    let mut held = Vec::new();
    for _ in 0..10 {
        let tcp = TcpStream::connect(ingest.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        held.push(
            connector
                .connect(name, tcp)
                .await
                .expect("the handshake completes"),
        );
    }
    // Before: 30/30 such connections were held open.
    for tls in held.iter_mut() {
        assert!(closed_within(tls, Duration::from_secs(4)).await);
    }
    // A silent client that never starts the handshake is cut at the same deadline.
    let mut silent = TcpStream::connect(ingest.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(4)).await);
}

/// Seconds of CPU the process `pid` used so far (user + system, from `/proc`).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the name: state is field 3, utime 14 and stime 15 (1-based, counting pid and name).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_2_out_of_file_descriptors_the_accept_loop_backs_off_and_recovers() {
    let ingest = IngestProcess::prepare("conn-emfile", &[("ocr_workflow_mcp_001", KEY)], &[]);
    let log = ingest.dir.join("stderr.log");
    let mut command = ingest.command();
    command
        .args(["--header-timeout-seconds", "3"])
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: `setrlimit` is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(|| {
            let limit = rustix::process::Rlimit {
                current: Some(64),
                maximum: Some(64),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)
                .map_err(std::io::Error::from)
        });
    }
    let child = command.spawn().unwrap();
    let pid = child.id().unwrap();
    ingest.wait_healthy().await;
    let addr: SocketAddr = format!("127.0.0.1:{}", ingest.port).parse().unwrap();
    let cpu_before = cpu_seconds(pid);
    // More silent clients than the process has descriptors.
    let mut held = Vec::new();
    for _ in 0..120 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let cpu = cpu_seconds(pid) - cpu_before;
    let logged = std::fs::metadata(&log).unwrap().len();
    // Before: 1.5 CPU-seconds and 39 MiB of log in 1.5 s.
    assert!(
        cpu < 0.5,
        "the accept loop used {cpu:.2} CPU-seconds in 2.5 s"
    );
    assert!(logged < 64 << 10, "{logged} bytes of log in 2.5 s");
    drop(held);
    // The deadline frees the descriptors the silent clients held; the server answers again.
    ingest.wait_healthy().await;
    let metrics = common::http_client()
        .get(format!("{}/metrics", ingest.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors = series(
        &metrics,
        r#"mcp_coordinator_http_accept_errors_total{kind="resources",listener="api"}"#,
    );
    assert!(errors > 0.0, "{metrics}");
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.matches("cannot accept connections").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings:\n{text}");
}
