//! The ingest server over TLS 1.3, with a certificate made at test time; TLS 1.2 clients are refused.

use test_support as common;

use std::sync::Arc;
use std::time::Duration;

use common::ingest::{test_config, InProcessIngest};
use mcp_coordinator::ingest::{self, IngestConfig};
use mcp_coordinator::store::sqlite::SqliteStore;
use mcp_coordinator::trust::keys::{KeyRing, ReaderTokens};
use rustls_pki_types::pem::PemObject;
use tokio_rustls::rustls;

struct Pki {
    dir: common::TestDir,
    cert_pem: String,
}

fn pki() -> Pki {
    let dir = common::TestDir::new("tls");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert_pem = generated.cert.pem();
    std::fs::write(dir.join("tls.crt"), &cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), generated.signing_key.serialize_pem()).unwrap();
    Pki { dir, cert_pem }
}

fn client(pki: &Pki, version: &'static rustls::SupportedProtocolVersion) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls_pki_types::CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[version])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_only() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = pki();
    let tls =
        ingest::tls::server_config(&pki.dir.join("tls.crt"), &pki.dir.join("tls.key")).unwrap();
    let running = InProcessIngest::start(
        IngestConfig {
            tls: Some(tls),
            ..test_config(&pki.dir)
        },
        Arc::new(SqliteStore::in_memory().unwrap()),
        Arc::new(KeyRing::default()),
        Arc::new(ReaderTokens::default()),
    )
    .await;
    let url = format!("https://localhost:{}/healthz", running.addr.port());

    let ok = client(&pki, &rustls::version::TLS13)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    let refused = client(&pki, &rustls::version::TLS12).get(&url).send().await;
    assert!(refused.is_err(), "a TLS 1.2 client must not connect");

    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{}/healthz", running.addr.port()))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()),
        "plain HTTP is not served"
    );
    let _ = std::fs::remove_dir_all(&pki.dir);
}

#[test]
fn bad_certificate_files_are_clear_errors() {
    let dir = common::TestDir::new("tls-bad");
    std::fs::write(dir.join("empty.crt"), "").unwrap();
    let err =
        ingest::tls::server_config(&dir.join("empty.crt"), &dir.join("missing.key")).unwrap_err();
    assert!(err.to_string().contains("empty.crt"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
