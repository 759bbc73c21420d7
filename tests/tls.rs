use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use wasmgate_tests::*;

/// A certificate authority made for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A certificate for `localhost` signed by this CA, and its key, as PEM.
    fn server_pair(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A TLS client that trusts this CA only.
    fn client(&self) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// Writes a file whole, by renaming a finished copy over it, as renewal
/// tools do.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// The certificate and key files of a test gateway.
struct CertFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new((cert_pem, key_pem): (String, String)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Self {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
            _dir: dir,
        };
        files.install((cert_pem, key_pem));
        files
    }

    fn install(&self, (cert_pem, key_pem): (String, String)) {
        replace(&self.key, &key_pem);
        replace(&self.cert, &cert_pem);
    }
}

/// A gateway serving the echo service over TLS with the pair in `files`,
/// looking at them for changes every 100 ms.
async fn tls_gateway(files: &CertFiles, header_timeout: Duration) -> TestGateway {
    let (cert, key) = (files.cert.clone(), files.key.clone());
    TestGateway::start_with(&[ServiceSpec::new("echo").handler("echo")], |config| {
        config.tls = Some(wasmgate::TlsConfig {
            reload_interval: Duration::from_millis(100),
            ..wasmgate::TlsConfig::new(cert, key)
        });
        config.front_door.header_timeout = header_timeout;
    })
    .await
}

/// A TLS connection to the gateway's public listener, as `localhost`.
async fn tls_connect(
    gateway: &TestGateway,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(gateway.addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// A `wss://` client of the echo service.
async fn wss_connect(
    gateway: &TestGateway,
    connector: &tokio_rustls::TlsConnector,
) -> std::io::Result<WebSocketStream<TlsStream<TcpStream>>> {
    let tls = tls_connect(gateway, connector).await?;
    let url = format!("wss://localhost:{}/ws/echo", gateway.addr.port());
    let (client, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake over TLS");
    Ok(client)
}

async fn wss_ask(client: &mut WebSocketStream<TlsStream<TcpStream>>, text: &str) -> String {
    client.send(Message::text(text)).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
        Ok(Some(Ok(Message::Text(answer)))) => answer.to_string(),
        other => panic!("expected a text echo, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_trusting_the_test_ca_echoes_over_wss_and_gets_https() {
    let ca = TestCa::new("wasmgate test CA");
    let files = CertFiles::new(ca.server_pair());
    let gateway = tls_gateway(&files, Duration::from_secs(10)).await;

    let mut client = wss_connect(&gateway, &ca.client()).await.unwrap();
    assert_eq!(wss_ask(&mut client, "over TLS").await, "over TLS");
    let large = "0123456789abcdef".repeat(4096);
    assert_eq!(wss_ask(&mut client, &large).await, large);

    let mut https = tls_connect(&gateway, &ca.client()).await.unwrap();
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
}

#[tokio::test]
async fn a_client_trusting_another_ca_is_refused_the_handshake() {
    let ca = TestCa::new("wasmgate test CA");
    let files = CertFiles::new(ca.server_pair());
    let gateway = tls_gateway(&files, Duration::from_secs(10)).await;

    let stranger = TestCa::new("another CA");
    let error = tls_connect(&gateway, &stranger.client())
        .await
        .expect_err("a certificate from an untrusted CA was accepted");
    assert!(
        error.to_string().contains("UnknownIssuer"),
        "unexpected error: {error}"
    );
    // The gateway goes on serving clients that trust it.
    let mut client = wss_connect(&gateway, &ca.client()).await.unwrap();
    assert_eq!(wss_ask(&mut client, "still here").await, "still here");
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let old_ca = TestCa::new("old CA");
    let files = CertFiles::new(old_ca.server_pair());
    let gateway = tls_gateway(&files, Duration::from_secs(10)).await;
    let mut before = wss_connect(&gateway, &old_ca.client()).await.unwrap();

    // A certificate file that does not parse is logged and the old pair kept.
    replace(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    let cert_path = files.cert.display().to_string();
    wait_for_log(&["does not load", &cert_path], 1).await;
    let mut meanwhile = wss_connect(&gateway, &old_ca.client()).await.unwrap();
    assert_eq!(wss_ask(&mut meanwhile, "old pair").await, "old pair");

    // A new pair from a new CA: a client trusting only the new CA gets in
    // once the gateway has looked at the files again.
    let new_ca = TestCa::new("new CA");
    files.install(new_ca.server_pair());
    wait_for_log(&["TLS certificate reloaded", &cert_path], 1).await;
    let mut after = wss_connect(&gateway, &new_ca.client()).await.unwrap();
    assert_eq!(wss_ask(&mut after, "new pair").await, "new pair");
    assert!(
        tls_connect(&gateway, &old_ca.client()).await.is_err(),
        "the old certificate is still served"
    );
    // A connection made before the renewal is untouched.
    assert_eq!(wss_ask(&mut before, "before").await, "before");
}

#[tokio::test]
async fn a_tls_client_that_never_finishes_its_handshake_is_closed_like_an_idle_socket() {
    let ca = TestCa::new("wasmgate test CA");
    let files = CertFiles::new(ca.server_pair());
    let gateway = tls_gateway(&files, Duration::from_millis(500)).await;

    // One sends nothing at all; one sends the first bytes of a ClientHello
    // (a handshake record header) and stops.
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    let mut stalled = TcpStream::connect(gateway.addr).await.unwrap();
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();
    for socket in [&mut silent, &mut stalled] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(30), socket.read(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a socket without a TLS handshake was kept: {read:?}"
        );
    }
    let mut client = wss_connect(&gateway, &ca.client()).await.unwrap();
    assert_eq!(wss_ask(&mut client, "served").await, "served");
}
