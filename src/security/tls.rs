//! TLS for the gRPC port, optionally mutual: certificates from PEM files, reloaded when they change
//! (new connections get the new certificate; open ones keep theirs). Handshakes run off the accept
//! loop with a time limit, so a slow or hostile client cannot hold up the others.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info};

use crate::telemetry as t;

/// `[tls]` in the server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain and private key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// CA that signs client certificates (PEM). Set: clients may (or must) present one (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: refuse connections without a valid client certificate.
    #[serde(default = "yes")]
    pub require_client_cert: bool,
    /// How often to look at the files' modification times.
    #[serde(default = "five_seconds")]
    pub reload_poll_ms: u64,
}

fn yes() -> bool {
    true
}

fn five_seconds() -> u64 {
    5000
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
}

fn file_error(path: &Path, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        source: e.into(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Build the rustls configuration from the files, checking every piece.
pub fn server_config(c: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certs(&c.cert)?;
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| file_error(&c.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &c.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if c.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(TlsError::ClientCa)?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration in force, swapped whole when the files change.
pub struct ReloadingTls {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl ReloadingTls {
    pub fn new(config: TlsConfig) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(server_config(&config)?);
        Ok(Arc::new(ReloadingTls { config, current }))
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    fn files(&self) -> Vec<&Path> {
        let c = &self.config;
        [Some(&c.cert), Some(&c.key), c.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        self.files()
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Poll the files; on a change, load them and switch if they are valid. A bad set (say, a new
    /// certificate written before its key) is refused and retried on the next change.
    pub async fn watch(self: Arc<Self>) {
        let mut last = self.modified();
        let mut ticker =
            tokio::time::interval(Duration::from_millis(self.config.reload_poll_ms.max(50)));
        loop {
            ticker.tick().await;
            let now = self.modified();
            if now == last {
                continue;
            }
            last = now;
            match server_config(&self.config) {
                Ok(c) => {
                    *self.current.write().unwrap_or_else(|e| e.into_inner()) = c;
                    info!("TLS certificates reloaded");
                    metrics::counter!(t::TLS_RELOADS, "result" => "ok").increment(1);
                }
                Err(e) => {
                    error!("TLS certificates refused, the running ones stay: {e}");
                    metrics::counter!(t::TLS_RELOADS, "result" => "error").increment(1);
                }
            }
        }
    }
}

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept TCP connections and yield them once their TLS handshake is done. Failed handshakes (a
/// plain-text client, a client certificate the CA did not sign, none when one is required) are
/// counted and dropped here: gRPC never sees them.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ReloadingTls>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return, // the server stopped listening
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    error!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Without TCP_NODELAY small replies wait for the peer's delayed ACK (~40 ms on Linux).
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (tls.acceptor(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        debug!(%peer, "TLS handshake failed: {e}");
                        metrics::counter!(t::TLS_HANDSHAKE_FAILURES, "reason" => "refused")
                            .increment(1);
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake timed out");
                        metrics::counter!(t::TLS_HANDSHAKE_FAILURES, "reason" => "timeout")
                            .increment(1);
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
