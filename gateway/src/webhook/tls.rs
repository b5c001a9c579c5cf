//! TLS for the webhook (the apiserver only calls webhooks over HTTPS): an axum [`Listener`]
//! whose connections finish their handshake on their own tasks, and a certificate resolver that
//! reads `tls.crt`/`tls.key` from a directory (a cert-manager Secret mounted as a volume) and
//! reloads them when they change, so a renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the webhook cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate or key file cannot be read or parsed.
    #[error("cannot load {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration (an unsupported key type, a key that does not match).
    #[error("invalid TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The port cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The certificate and key files, and what was loaded from them.
#[derive(Debug)]
pub struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<(Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl CertificateFiles {
    /// Loads `dir/tls.crt` (the chain) and `dir/tls.key` (PKCS#8, PKCS#1 or SEC1 PEM).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        let stamp = modified(&cert, &key);
        let certified = Arc::new(read_pair(&cert, &key)?);
        Ok(Self {
            cert,
            key,
            loaded: Mutex::new((stamp, certified)),
        })
    }

    /// The current key: reloaded when either file changed since the last load (a failed
    /// reload keeps the old one, since a half-written renewal fixes itself on the next try).
    fn current(&self) -> Arc<CertifiedKey> {
        let stamp = modified(&self.cert, &self.key);
        let mut loaded = match self.loaded.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if stamp != loaded.0 {
            match read_pair(&self.cert, &self.key) {
                Ok(fresh) => {
                    tracing::info!(cert = %self.cert.display(), "webhook certificate reloaded");
                    *loaded = (stamp, Arc::new(fresh));
                }
                Err(e) => tracing::warn!(error = %e, "webhook certificate reload failed"),
            }
        }
        loaded.1.clone()
    }
}

/// The later modification time of the two files (a Secret volume swaps both at once).
fn modified(cert: &Path, key: &Path) -> Option<SystemTime> {
    let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    time(cert).max(time(key))
}

fn read_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let load_error = |path: &Path, e: &dyn std::fmt::Display| TlsError::Load {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| load_error(cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| load_error(cert, &e))?;
    if chain.is_empty() {
        return Err(load_error(cert, &"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| load_error(key, &e))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    Ok(CertifiedKey::from_der(chain, private, &provider)?)
}

impl ResolvesServerCert for CertificateFiles {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS listener for `axum::serve`.
pub struct TlsListener {
    connections: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    address: SocketAddr,
}

impl TlsListener {
    /// Binds `address` and serves the certificate in `files`.
    pub async fn bind(address: SocketAddr, files: CertificateFiles) -> Result<Self, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(files));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| TlsError::Bind { address, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| TlsError::Bind { address, source })?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, acceptor, tx));
        Ok(Self {
            connections: rx,
            address: bound,
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "webhook accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "webhook TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "webhook TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.connections.recv().await {
            Some(connection) => connection,
            // The accept loop only ends when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
