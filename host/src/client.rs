//! `wasmgate client URL`: a WebSocket from the terminal, so trying the
//! gateway needs nothing but the gateway. Each line read from stdin is sent
//! as a text message; each message received is printed on its own line
//! (a binary one as its size). The end of stdin closes the socket with
//! 1000; the server closing it ends the program.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Where the system keeps its CA bundle (Debian, Ubuntu, Alpine, Arch).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Connects to `url` (`ws://` or `wss://`, trusting the CAs of `ca_cert` or
/// else of the system's bundle) and relays stdin and stdout until either
/// side ends.
pub async fn run(url: &str, ca_cert: Option<&Path>) -> anyhow::Result<()> {
    let request = url
        .into_client_request()
        .with_context(|| format!("{url}: not a WebSocket URL"))?;
    let uri = request.uri().clone();
    let host = uri.host().context("the URL has no host")?.to_owned();
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => anyhow::bail!("{url}: the URL must start with ws:// or wss://"),
    };
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let tcp = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let _ = tcp.set_nodelay(true);
    if secure {
        let connector = tls_connector(ca_cert)?;
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())
                .with_context(|| format!("{host}: not a server name"))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {host}:{port}"))?;
        relay(handshake(request, tls).await?).await
    } else {
        relay(handshake(request, tcp).await?).await
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
    stream: S,
) -> anyhow::Result<WebSocketStream<S>> {
    let uri = request.uri().to_string();
    let (socket, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .map_err(|error| match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                anyhow::anyhow!("{uri}: refused with {}: {body}", response.status())
            }
            other => anyhow::Error::new(other).context(format!("{uri}: WebSocket handshake")),
        })?;
    Ok(socket)
}

/// A TLS client trusting the PEM certificates of `ca_cert`, or of the
/// system's bundle.
fn tls_connector(ca_cert: Option<&Path>) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;

    let path = ca_cert.unwrap_or(Path::new(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading CA certificates from {}", path.display()))?
    {
        let certificate = certificate
            .with_context(|| format!("reading CA certificates from {}", path.display()))?;
        // A bundle may hold a certificate this TLS stack cannot use; the
        // others still count.
        let _ = roots.add(certificate);
    }
    anyhow::ensure!(!roots.is_empty(), "{}: no CA certificate", path.display());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Sends stdin's lines and prints what comes back, until stdin ends (the
/// socket is then closed, and what the server still sends is printed) or
/// the server closes.
async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    socket: WebSocketStream<S>,
) -> anyhow::Result<()> {
    let (mut sender, mut receiver) = socket.split();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut stdin_open = true;
    loop {
        tokio::select! {
            line = lines.next_line(), if stdin_open => match line? {
                Some(line) => sender.send(Message::text(line)).await?,
                None => {
                    stdin_open = false;
                    sender.send(Message::Close(None)).await?;
                }
            },
            message = receiver.next() => {
                let text = match message {
                    None => return Ok(()),
                    Some(Err(error)) => return Err(error.into()),
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(bytes))) => format!("<binary message, {} bytes>", bytes.len()),
                    Some(Ok(Message::Close(frame))) => {
                        if stdin_open {
                            match frame {
                                Some(frame) => eprintln!("closed by the server: {} {}", u16::from(frame.code), frame.reason),
                                None => eprintln!("closed by the server"),
                            }
                        }
                        return Ok(());
                    }
                    Some(Ok(_)) => continue,
                };
                stdout.write_all(text.as_bytes()).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await?;
            }
        }
    }
}
