//! TLS for the signaling connection: the server's listener that serves `wss://`, and the
//! client's connector that checks the server's certificate.
//!
//! Tokens, chat and the DTLS fingerprints that protect a call's media all cross the signaling
//! connection, so a client refuses plain `ws://` to anything but a loopback address unless
//! told otherwise ([`ClientTls::insecure`]). TLS is rustls with the *ring* provider.
//!
//! - Server: [`ServerTls::from_pem_files`] loads a certificate chain and its key; the
//!   [`Listener`] completes each handshake in its own task, within [`HANDSHAKE_TIMEOUT`], so a
//!   client that stalls mid-handshake holds nothing but its own socket.
//! - Client: [`ClientTls`] trusts the system's roots, or only the private CA it is given
//!   (`duet --ca FILE`, or `DUET_CA`). A certificate problem is one line naming it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::WebSocketStream;

use crate::Error;

/// A TLS handshake that takes longer than this is abandoned and its socket closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
const HANDSHAKES: usize = 512;
/// Where Linux distributions and the BSDs keep their bundle of trusted roots, in the order
/// they are tried when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(what: &'static str, problem: impl std::fmt::Display) -> Error {
    Error::Invalid {
        what,
        problem: problem.to_string(),
    }
}

/// The server's certificate and key.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Loads a PEM certificate chain (the server's certificate first) and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, Error> {
        let certs = std::fs::read(cert)
            .map_err(|e| tls_error("TLS certificate", format!("{}: {e}", cert.display())))?;
        let key_pem = std::fs::read(key)
            .map_err(|e| tls_error("TLS key", format!("{}: {e}", key.display())))?;
        Self::from_pem(&certs, &key_pem).map_err(|e| match e {
            Error::Invalid { what, problem } => Error::Invalid {
                what,
                problem: format!("{problem} ({} and {})", cert.display(), key.display()),
            },
            other => other,
        })
    }

    /// A certificate chain and key, both PEM text.
    pub fn from_pem(certs: &[u8], key: &[u8]) -> Result<ServerTls, Error> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certs)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_error("TLS certificate", e))?;
        if chain.is_empty() {
            return Err(tls_error("TLS certificate", "no PEM certificate found"));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| tls_error("TLS key", e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS setup", e))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| tls_error("TLS certificate and key", e))?;
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }
}

/// How a client checks a `wss://` server, and whether it may use plain `ws://`.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// Trust only the CA certificates in this PEM file (a private CA) instead of the
    /// system's roots.
    pub ca: Option<PathBuf>,
    /// Allow plain `ws://` to an address that is not loopback. Tokens and call keys then
    /// cross the network in clear.
    pub insecure: bool,
}

impl ClientTls {
    /// The rustls configuration that checks servers as this says.
    fn config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        let (pem, source) = match &self.ca {
            Some(path) => (
                std::fs::read(path)
                    .map_err(|e| tls_error("CA file", format!("{}: {e}", path.display())))?,
                path.display().to_string(),
            ),
            None => system_roots()?,
        };
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| tls_error("CA file", format!("{source}: {e}")))?;
            // A bundle may hold a root rustls cannot use; the others still count.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(tls_error(
                "CA file",
                format!("{source}: no usable CA certificate in it"),
            ));
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("TLS setup", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The system's trusted roots: `SSL_CERT_FILE`, else the first bundle of [`SYSTEM_BUNDLES`].
fn system_roots() -> Result<(Vec<u8>, String), Error> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        if let Ok(pem) = std::fs::read(&path) {
            return Ok((pem, path.display().to_string()));
        }
    }
    Err(tls_error(
        "CA file",
        "no system bundle of trusted roots found (set SSL_CERT_FILE, or give the server's CA with --ca)",
    ))
}

/// A signaling connection's byte stream: plain TCP or TLS over TCP.
pub enum Stream {
    /// `ws://`.
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The server's listener: plain TCP, or TLS with each handshake in its own task.
pub struct Listener {
    addr: SocketAddr,
    accepted: mpsc::Receiver<(Stream, SocketAddr)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Serves connections accepted on `tcp`, through TLS when `tls` is given.
    pub fn new(tcp: TcpListener, tls: Option<ServerTls>) -> io::Result<Listener> {
        let addr = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(
            tcp,
            tls.map(|t| TlsAcceptor::from(t.config)),
            tx,
        ));
        Ok(Listener {
            addr,
            accepted,
            task,
        })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    tx: mpsc::Sender<(Stream, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (socket, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!("signaling: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Small messages must not wait for Nagle's algorithm.
        let _ = socket.set_nodelay(true);
        let Some(acceptor) = tls.clone() else {
            if tx.send((Stream::Plain(socket), peer)).await.is_err() {
                return;
            }
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                Ok(Ok(stream)) => {
                    let stream = Stream::Tls(Box::new(TlsStream::Server(stream)));
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!("signaling: TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("signaling: TLS handshake with {peer} timed out"),
            }
        });
    }
}

impl axum::serve::Listener for Listener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Where a URL points, as far as the connector cares.
struct Target {
    secure: bool,
    host: String,
    port: u16,
}

fn target(url: &str) -> Result<Target, Error> {
    let invalid = |problem: &str| Error::Invalid {
        what: "server URL",
        problem: format!("{url:?}: {problem}"),
    };
    let request = url
        .into_client_request()
        .map_err(|e| invalid(&e.to_string()))?;
    let uri = request.uri();
    let secure = match uri.scheme_str() {
        Some("wss") => true,
        Some("ws") => false,
        _ => return Err(invalid("use ws:// or wss://")),
    };
    let host = uri.host().ok_or_else(|| invalid("no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    Ok(Target { secure, host, port })
}

/// Whether `host` names this machine only.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Refuses a plain `ws://` URL to anything but loopback unless `insecure`; the error says why.
pub fn check_url(url: &str, insecure: bool) -> Result<(), Error> {
    let target = target(url)?;
    if !target.secure && !insecure && !is_loopback(&target.host) {
        return Err(Error::Invalid {
            what: "server URL",
            problem: format!(
                "{url}: plain ws:// to {} would send your token, chat and call keys in clear; \
                 use wss:// (or --insecure on a network you trust)",
                target.host
            ),
        });
    }
    Ok(())
}

/// Opens a WebSocket to `url`: TLS checked as `tls` says for `wss://`, and plain `ws://` only
/// to loopback unless [`ClientTls::insecure`].
pub(crate) async fn connect(
    url: &str,
    tls: &ClientTls,
    ws_config: WebSocketConfig,
) -> Result<WebSocketStream<Stream>, Error> {
    check_url(url, tls.insecure)?;
    let target = target(url)?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if target.secure {
        let name = ServerName::try_from(target.host.clone()).map_err(|e| Error::Invalid {
            what: "server URL",
            problem: format!("{url:?}: {e}"),
        })?;
        let connector = TlsConnector::from(tls.config()?);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::Timeout("in the TLS handshake"))?
            .map_err(|e| certificate_error(e, &target.host))?;
        Stream::Tls(Box::new(TlsStream::Client(stream)))
    } else {
        Stream::Plain(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config)).await?;
    Ok(ws)
}

/// One line that names the certificate problem, from the handshake's error.
fn certificate_error(e: io::Error, host: &str) -> Error {
    use rustls::CertificateError as C;
    let Some(rustls_error) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return Error::Io(e);
    };
    let problem = match rustls_error {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer => format!(
                "{host}'s certificate is not signed by a CA this client trusts \
                 (give the server's CA with --ca FILE or DUET_CA)"
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                format!("{host}'s certificate is for another name")
            }
            C::Expired | C::ExpiredContext { .. } => format!("{host}'s certificate has expired"),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                format!("{host}'s certificate is not valid yet (check the clocks)")
            }
            C::Revoked => format!("{host}'s certificate has been revoked"),
            C::BadSignature => format!("{host}'s certificate has a bad signature"),
            other => format!("{host}'s certificate is not acceptable: {other:?}"),
        },
        other => format!("TLS with {host} failed: {other}"),
    };
    Error::Certificate(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ws_is_refused_beyond_loopback() {
        assert!(check_url("ws://127.0.0.1:7878/", false).is_ok());
        assert!(check_url("ws://[::1]:7878/", false).is_ok());
        assert!(check_url("ws://localhost:7878/", false).is_ok());
        let e = check_url("ws://192.0.2.1:7878/", false).unwrap_err();
        assert!(e.to_string().contains("in clear"), "{e}");
        assert!(check_url("ws://192.0.2.1:7878/", true).is_ok());
        assert!(check_url("wss://192.0.2.1:7878/", false).is_ok());
        assert!(check_url("http://192.0.2.1/", false).is_err());
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let e = ServerTls::from_pem(b"not pem", b"nor this").unwrap_err();
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
    }
}
