//! TLS with rustls: the HTTP and gRPC listeners present a certificate read from PEM files and read again
//! when the files change (a renewed certificate is served without a restart). Between nodes it is mutual:
//! a node calling another verifies its certificate against the cluster's CA (`[tls] ca_file`) and presents
//! its own, which the gRPC listener verifies against the same CA; the internal service admits only callers
//! that presented one (`auth::grpc`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// Node-to-node channels as this node's configuration wants them: presenting the cluster secret, and over
/// mutual TLS with the cluster's CA when TLS is on.
pub fn peer_channels(
    channels: pharos_raft::network::Channels,
    config: &crate::config::Config,
) -> Result<pharos_raft::network::Channels, String> {
    let mut channels =
        channels.with_secret(crate::auth::node_secret(&config.auth).as_deref()).map_err(|e| e.to_string())?;
    if let Some((cert, key, ca)) = config.tls.files() {
        let identity = node_cert(cert, key, config.tls.reload_interval)?;
        channels = channels.with_tls(client_config(&read_ca(ca)?, identity)?);
    }
    Ok(channels)
}

/// The cluster's CA certificates, for verifying peers.
pub fn read_ca(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(ca).map_err(|e| format!("cannot read the CA file {}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: not a PEM certificate: {e}", ca.display()))?;
        roots.add(cert).map_err(|e| format!("{}: unusable CA certificate: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{} holds no certificate", ca.display()));
    }
    Ok(roots)
}

/// This node's certificate, loaded once per process (the listeners and the peer channels share it) and
/// watched for renewal.
pub fn node_cert(cert: &Path, key: &Path, reload: Duration) -> Result<Arc<ReloadingCert>, String> {
    static LOADED: std::sync::Mutex<Vec<Arc<ReloadingCert>>> = std::sync::Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().expect("certificate cache lock");
    if let Some(c) = loaded.iter().find(|c| c.cert == cert && c.key == key) {
        return Ok(c.clone());
    }
    let c = ReloadingCert::load(cert, key)?;
    c.clone().watch(reload);
    loaded.push(c.clone());
    Ok(c)
}

/// What a node presents and trusts when it calls a peer.
pub fn client_config(roots: &rustls::RootCertStore, identity: Arc<ReloadingCert>) -> Result<Arc<ClientConfig>, String> {
    let mut c = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots.clone())
        .with_client_cert_resolver(identity);
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(c))
}

/// A certificate and key read from PEM files, with the files' modification times when read.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>, Option<SystemTime>)>,
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Reads a certificate chain and its private key (PKCS#8, PKCS#1 or SEC1), checking that they match.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let pem = std::fs::read(cert).map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate (expected PEM `BEGIN CERTIFICATE`)", cert.display()));
    }
    let pem = std::fs::read(key).map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let der =
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    let provider = default_provider();
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| format!("{}: unusable private key: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(ck)
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ReloadingCert>, String> {
        let ck = load_certified_key(cert, key)?;
        Ok(Arc::new(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((Arc::new(ck), modified(cert), modified(key))),
        }))
    }

    /// Reads the files again if either changed since the last read. A bad new pair is reported and the
    /// certificate in use stays (a half-written renewal must not take the listener down).
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let (c, k) = (modified(&self.cert), modified(&self.key));
        {
            let cur = self.current.read().expect("certificate lock");
            if cur.1 == c && cur.2 == k {
                return Ok(false);
            }
        }
        let ck = load_certified_key(&self.cert, &self.key)?;
        *self.current.write().expect("certificate lock") = (Arc::new(ck), c, k);
        Ok(true)
    }

    /// Checks the files every `every` for as long as the process runs.
    pub fn watch(self: Arc<Self>, every: Duration) {
        tokio::spawn(async move {
            let mut failed = false;
            loop {
                tokio::time::sleep(every).await;
                match self.reload_if_changed() {
                    Ok(true) => {
                        failed = false;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    Ok(false) => {}
                    // Once per bad version, not every check.
                    Err(e) if !failed => {
                        failed = true;
                        tracing::warn!(error = %e, "the TLS certificate files changed but cannot be used; serving the previous certificate");
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").0.clone())
    }
}

/// The same certificate, presented when this node calls a peer.
impl ResolvesClientCert for ReloadingCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A server configuration presenting `cert`, offering the given ALPN protocols (`h2` for gRPC). With
/// `client_roots`, a client may present a certificate, verified against them (clients without one, users,
/// are still served: the access check decides what each may call).
pub fn server_config(
    cert: Arc<ReloadingCert>,
    alpn: &[&[u8]],
    client_roots: Option<rustls::RootCertStore>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match client_roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("TLS setup (client certificates): {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut c = builder.with_cert_resolver(cert);
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(c))
}

/// Accepts connections and completes each TLS handshake on its own task (a slow or silent client holds up
/// nobody), handing on the finished streams. Failed handshakes (a plain-HTTP client, an untrusted
/// certificate) are logged at debug level and dropped.
pub fn accept(listener: TcpListener, config: Arc<ServerConfig>) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, out) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = out.send((tls, addr)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(from = %addr, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(from = %addr, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    rx
}

/// The HTTP server's listener over TLS, for `axum::serve`.
pub struct TlsListener {
    pub rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    pub local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended: no more connections, ever.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The caller's address, for the access check's logs and the audit trail, from either listener.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>> for RemoteAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, TcpListener>) -> RemoteAddr {
        RemoteAddr(*s.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for RemoteAddr {
    fn connect_info(s: axum::serve::IncomingStream<'_, TlsListener>) -> RemoteAddr {
        RemoteAddr(*s.remote_addr())
    }
}
