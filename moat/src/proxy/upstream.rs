//! The proxy's side towards the real hosts: verified TLS, connection pooling, HTTP/2 where the
//! host offers it.
//!
//! Trust: the platform's roots (through `rustls-native-certs`) plus, optionally, the PEM file
//! named by `MOAT_EXTRA_CA_CERTS` ([`crate::http::EXTRA_CA_ENV`]): a corporate TLS-inspection CA,
//! or a test server's CA. Nothing else is trusted and no host is special-cased.
//!
//! Addresses: the system resolver, unless [`RESOLVE_ENV`] (`MOAT_PROXY_RESOLVE`) overrides a
//! `host:port`, like curl's `--resolve` (same port) or `--connect-to` (another port):
//!
//! ```text
//! MOAT_PROXY_RESOLVE="api.github.com:443:127.0.0.1:8443,github.com:443:127.0.0.1"
//! ```
//!
//! The TLS name checked is still the requested host, so an override only changes where the
//! bytes go, never whom they are sent to.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::body::{BoxError, ProxyBody};
use super::ca::crypto_provider;
use crate::http::EXTRA_CA_ENV;

/// Overrides where the proxy connects for some `host:port`s (see the module docs).
pub const RESOLVE_ENV: &str = "MOAT_PROXY_RESOLVE";

/// What can go wrong setting up or using the upstream side.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The extra CA file cannot be read.
    #[error("cannot read {EXTRA_CA_ENV} file {path}: {source}")]
    ExtraCaRead {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The extra CA file holds no usable certificate.
    #[error("{EXTRA_CA_ENV} file {path} holds no usable PEM certificate")]
    ExtraCaParse {
        /// The file.
        path: PathBuf,
    },
    /// A bad [`RESOLVE_ENV`] entry.
    #[error("invalid {RESOLVE_ENV} entry {entry:?}: want host:port:address[:port]")]
    Resolve {
        /// The entry.
        entry: String,
    },
    /// rustls refused the configuration.
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The request failed (connect, TLS, protocol); the text is the error chain.
    #[error("{0}")]
    Request(String),
    /// No response headers in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// `host:port` → the address to connect to instead.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolveOverrides {
    map: HashMap<(String, u16), SocketAddr>,
}

impl ResolveOverrides {
    /// Parses `host:port:address[:port],...` (IPv6 addresses in brackets). Without the last port
    /// the requested port is kept. Empty entries are ignored.
    pub fn parse(spec: &str) -> Result<ResolveOverrides, UpstreamError> {
        let mut map = HashMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || UpstreamError::Resolve {
                entry: entry.to_owned(),
            };
            let (host, rest) = entry.split_once(':').ok_or_else(bad)?;
            let (port, address) = rest.split_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let target = if let Ok(ip) = address.trim_matches(['[', ']']).parse::<IpAddr>() {
                SocketAddr::new(ip, port)
            } else {
                address.parse::<SocketAddr>().map_err(|_| bad())?
            };
            if host.is_empty() {
                return Err(bad());
            }
            map.insert((host.to_ascii_lowercase(), port), target);
        }
        Ok(ResolveOverrides { map })
    }

    /// The address for `host:port`, if overridden.
    pub fn get(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.map.get(&(host.to_ascii_lowercase(), port)).copied()
    }

    /// No overrides.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// How the proxy reaches real hosts.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Trust the platform's roots.
    pub native_roots: bool,
    /// A PEM file of extra CA certificates.
    pub extra_ca_file: Option<PathBuf>,
    /// Address overrides.
    pub resolve: ResolveOverrides,
    /// TCP connect timeout (per address).
    pub connect_timeout: Duration,
    /// TLS handshake timeout.
    pub tls_timeout: Duration,
    /// How long to wait for response headers.
    pub response_timeout: Duration,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            native_roots: true,
            extra_ca_file: None,
            resolve: ResolveOverrides::default(),
            connect_timeout: Duration::from_secs(30),
            tls_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(300),
        }
    }
}

impl UpstreamConfig {
    /// The defaults, with `MOAT_EXTRA_CA_CERTS` and [`RESOLVE_ENV`] read from the environment.
    pub fn from_env() -> Result<UpstreamConfig, UpstreamError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(UpstreamConfig {
            extra_ca_file: var(EXTRA_CA_ENV).map(PathBuf::from),
            resolve: ResolveOverrides::parse(&var(RESOLVE_ENV).unwrap_or_default())?,
            ..UpstreamConfig::default()
        })
    }

    fn roots(&self) -> Result<rustls::RootCertStore, UpstreamError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.native_roots {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::debug!(%err, "skipping an unreadable platform certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "platform trust roots loaded");
        }
        if let Some(path) = &self.extra_ca_file {
            let certs = read_pem_bundle(path)?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(UpstreamError::ExtraCaParse { path: path.clone() });
            }
        }
        if roots.is_empty() {
            tracing::warn!("no trust roots: every upstream TLS connection will fail");
        }
        Ok(roots)
    }
}

fn read_pem_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamError> {
    let pem = std::fs::read(path).map_err(|source| UpstreamError::ExtraCaRead {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(UpstreamError::ExtraCaParse {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The upstream client.
pub(crate) struct Upstream {
    client: Client<Connector, ProxyBody>,
    connector: Connector,
    response_timeout: Duration,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        let roots = Arc::new(config.roots()?);
        let tls_config = |alpn: &[&[u8]]| -> Result<Arc<rustls::ClientConfig>, UpstreamError> {
            let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(Arc::clone(&roots))
                .with_no_client_auth();
            tls.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(tls))
        };
        let connector = Connector {
            inner: Arc::new(ConnectorInner {
                tls: tls_config(&[b"h2", b"http/1.1"])?,
                tls_h1: tls_config(&[b"http/1.1"])?,
                resolve: config.resolve.clone(),
                connect_timeout: config.connect_timeout,
                tls_timeout: config.tls_timeout,
            }),
            h1_only: false,
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        Ok(Upstream {
            client,
            connector,
            response_timeout: config.response_timeout,
        })
    }

    /// Sends a request with an absolute `http(s)://` URI over a pooled connection.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(UpstreamError::Request(crate::http::error_chain(&err))),
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
        }
    }

    /// Sends an upgrade request (WebSocket) on a connection of its own, HTTP/1.1 only, so the
    /// `101` response can be upgraded. `request` has an absolute URI.
    pub async fn send_upgrade(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let uri = request.uri().clone();
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connector = Connector {
            inner: Arc::clone(&self.connector.inner),
            h1_only: true,
        };
        let stream = connector
            .connect(https, &host, port)
            .await
            .map_err(|err| UpstreamError::Request(crate::http::error_chain(&err)))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(stream)
            .await
            .map_err(|err| UpstreamError::Request(crate::http::error_chain(&err)))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(%err, "upgraded upstream connection ended");
            }
        });
        if let Some(authority) = uri.authority()
            && let Ok(value) = HeaderValue::from_str(authority.as_str())
        {
            request.headers_mut().insert(HOST, value);
        }
        *request.uri_mut() = uri.path_and_query().map_or_else(
            || Uri::from_static("/"),
            |pq| {
                pq.as_str()
                    .parse()
                    .unwrap_or_else(|_| Uri::from_static("/"))
            },
        );
        match tokio::time::timeout(self.response_timeout, sender.send_request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(UpstreamError::Request(crate::http::error_chain(&err))),
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
        }
    }
}

struct ConnectorInner {
    tls: Arc<rustls::ClientConfig>,
    tls_h1: Arc<rustls::ClientConfig>,
    resolve: ResolveOverrides,
    connect_timeout: Duration,
    tls_timeout: Duration,
}

/// Connects to `http(s)://host:port`: override or DNS, TCP, then TLS for `https`.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: Arc<ConnectorInner>,
    h1_only: bool,
}

impl Connector {
    async fn connect(&self, https: bool, host: &str, port: u16) -> io::Result<UpstreamStream> {
        let inner = &self.inner;
        let addresses: Vec<SocketAddr> = match inner.resolve.get(host, port) {
            Some(address) => vec![address],
            None if host == "moat-host" => vec![SocketAddr::from(([127, 0, 0, 1], port))],
            None => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
                let allowed = reachable(host, &found);
                if allowed.is_empty() && !found.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!("{host} resolves to this machine; refused"),
                    ));
                }
                allowed
            }
        };
        let mut last_error =
            io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
        let mut tcp = None;
        for address in addresses {
            match tokio::time::timeout(inner.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => {
                    tcp = Some(stream);
                    break;
                }
                Ok(Err(err)) => {
                    last_error = io::Error::new(err.kind(), format!("connect to {address}: {err}"))
                }
                Err(_) => {
                    last_error = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connect to {address}: timed out"),
                    )
                }
            }
        }
        let tcp = tcp.ok_or(last_error)?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(UpstreamStream::Plain(TokioIo::new(tcp)));
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS name"),
            )
        })?;
        let config = if self.h1_only {
            &inner.tls_h1
        } else {
            &inner.tls
        };
        let connector = TlsConnector::from(Arc::clone(config));
        match tokio::time::timeout(inner.tls_timeout, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(UpstreamStream::Tls(Box::new(TokioIo::new(tls)))),
            Ok(Err(err)) => Err(io::Error::new(
                err.kind(),
                format!("TLS with {host}: {err}"),
            )),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS with {host}: timed out"),
            )),
        }
    }
}

/// The addresses a DNS answer may be used for. A name that is not itself a loopback name or
/// address (which the network policy has already checked against its allowed host ports) must not
/// lead to this machine: otherwise any name resolving to `127.0.0.1` would open the host's
/// loopback services to the container.
fn reachable(host: &str, found: &[SocketAddr]) -> Vec<SocketAddr> {
    if super::policy::is_host_local(host) {
        return found.to_vec();
    }
    found
        .iter()
        .filter(|a| !super::policy::is_local_ip(a.ip()))
        .copied()
        .collect()
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let https = match uri.scheme_str() {
                Some("https") => true,
                Some("http") => false,
                _ => return Err(format!("unsupported URI scheme in {uri}").into()),
            };
            let host = uri
                .host()
                .ok_or_else(|| format!("no host in {uri}"))?
                .trim_matches(['[', ']'])
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            Ok(this.connect(https, &host, port).await?)
        })
    }
}

/// A connection to an upstream host.
pub(crate) enum UpstreamStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for UpstreamStream {
    fn connected(&self) -> Connected {
        match self {
            UpstreamStream::Tls(tls) if tls.inner().get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl hyper::rt::Read for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_overrides_parse_like_curl() {
        let r = ResolveOverrides::parse(
            " api.github.com:443:127.0.0.1:8443, GitHub.com:443:127.0.0.2 ,v6.test:443:[::1]:9,,",
        )
        .unwrap();
        assert_eq!(
            r.get("api.github.com", 443),
            Some("127.0.0.1:8443".parse().unwrap())
        );
        assert_eq!(
            r.get("github.com", 443),
            Some("127.0.0.2:443".parse().unwrap())
        );
        assert_eq!(r.get("v6.test", 443), Some("[::1]:9".parse().unwrap()));
        assert_eq!(r.get("api.github.com", 80), None);
        assert!(ResolveOverrides::parse("").unwrap().is_empty());
        for bad in [
            "host",
            "host:443",
            "host:x:127.0.0.1",
            "host:443:nothere",
            ":443:127.0.0.1",
        ] {
            let err = ResolveOverrides::parse(bad).unwrap_err();
            assert!(err.to_string().contains(RESOLVE_ENV), "{err}");
        }
    }

    #[test]
    fn names_resolving_to_this_machine_are_not_followed() {
        let local: SocketAddr = "127.0.0.1:443".parse().unwrap();
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:443".parse().unwrap();
        let public: SocketAddr = "140.82.112.6:443".parse().unwrap();
        assert!(reachable("rebind.example", &[local, v6, any]).is_empty());
        assert_eq!(reachable("api.github.com", &[local, public]), [public]);
        assert_eq!(reachable("localhost", &[local, v6]), [local, v6]);
        assert_eq!(reachable("127.0.0.1", &[local]), [local]);
    }

    #[test]
    fn extra_ca_file_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.pem");
        let config = UpstreamConfig {
            native_roots: false,
            extra_ca_file: Some(missing.clone()),
            ..UpstreamConfig::default()
        };
        let err = config.roots().unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "not pem").unwrap();
        let config = UpstreamConfig {
            native_roots: false,
            extra_ca_file: Some(junk),
            ..UpstreamConfig::default()
        };
        assert!(matches!(
            config.roots().unwrap_err(),
            UpstreamError::ExtraCaParse { .. }
        ));
    }
}
