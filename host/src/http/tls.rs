//! TLS on the public listener: `wss://` and `https://` with rustls.
//!
//! The certificate sits behind a resolver that a reload task swaps in
//! place: the task looks at the two files' modification time and size
//! every [`TlsConfig::reload_interval`], and when either changed, loads
//! both. A renewal therefore needs no restart, and a new pair that does not
//! load (unreadable, not PEM, a key that does not match the certificate,
//! or the two files caught half written) is logged and the old pair kept
//! until the files change again. Polling rather than file events: renewal
//! tools replace files by renaming over them, often through symbolic links
//! (certbot's `live/` folder), which events on the old files would miss.
//!
//! The handshake runs after admission, within the header timeout (see
//! `listener.rs`): to the front door a client that opens TCP and never
//! finishes its handshake is an idle socket like any other.

use std::path::Path;
use std::sync::{Arc, RwLock, Weak};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// Why a certificate and key pair could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind expected.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is missing or wrong.
        reason: String,
    },
    /// The key does not sign for the certificate, or rustls refused the
    /// configuration.
    #[error("{cert} and {key}: {reason}")]
    Pair {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
        /// What rustls said.
        reason: String,
    },
}

/// The current certificate, handed to every handshake.
#[derive(Debug)]
struct Certificate {
    // A std lock: held only to clone or replace an `Arc`.
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// Loads the pair of PEM files `config` names.
fn load(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
    };
    let pem_error = |path: &Path, reason: String| TlsError::Pem {
        path: path.display().to_string(),
        reason,
    };
    let cert_bytes = read(&config.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&config.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(&config.cert, "no CERTIFICATE in the file".into()));
    }
    let key_bytes = read(&config.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_bytes)
        .map_err(|e| pem_error(&config.key, format!("no private key: {e}")))?;
    let pair_error = |reason: String| TlsError::Pair {
        cert: config.cert.display().to_string(),
        key: config.key.display().to_string(),
        reason,
    };
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| pair_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| pair_error(format!("the key does not match the certificate: {e}")))?;
    Ok(certified)
}

/// What the reload task compares: each file's modification time and size.
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(config: &TlsConfig) -> Stamp {
    [&config.cert, &config.key].map(|path| {
        let metadata = std::fs::metadata(path).ok()?;
        Some((metadata.modified().ok()?, metadata.len()))
    })
}

/// A TLS acceptor serving the pair `config` names, reloaded when the files
/// change until `stop` is cancelled. Fails when the pair does not load now.
pub(crate) fn acceptor(
    config: &TlsConfig,
    stop: CancellationToken,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let mut seen = stamp(config);
    let certificate = Arc::new(Certificate {
        current: RwLock::new(Arc::new(load(config)?)),
    });
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair {
            cert: config.cert.display().to_string(),
            key: config.key.display().to_string(),
            reason: e.to_string(),
        })?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    // HTTP/1.1 only: WebSocket upgrades are HTTP/1.1.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];

    let watched: Weak<Certificate> = Arc::downgrade(&certificate);
    let config = config.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(config.reload_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let Some(certificate) = watched.upgrade() else {
                return;
            };
            let now = stamp(&config);
            if now == seen {
                continue;
            }
            seen = now;
            let loaded = {
                let config = config.clone();
                tokio::task::spawn_blocking(move || load(&config)).await
            };
            match loaded {
                Ok(Ok(pair)) => {
                    *certificate
                        .current
                        .write()
                        .unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                    tracing::info!(cert = %config.cert.display(), "TLS certificate reloaded");
                }
                Ok(Err(error)) => tracing::warn!(
                    cert = %config.cert.display(),
                    %error,
                    "TLS certificate changed but does not load; keeping the previous one"
                ),
                Err(error) => tracing::warn!(%error, "TLS certificate reload failed"),
            }
        }
    });
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let config = TlsConfig::new("/nonexistent/cert.pem", "/nonexistent/key.pem");
        let error = load(&config).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }

    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = std::env::temp_dir().join(format!("wasmgate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "not a certificate\n").unwrap();
        let config = TlsConfig::new(&cert, dir.join("key.pem"));
        let error = load(&config).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(error, TlsError::Pem { .. }), "{error}");
    }
}
