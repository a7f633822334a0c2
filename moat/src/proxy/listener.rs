//! The proxy port: binding, the accept loop, and what arrives on it (HTTP/1.1).
//!
//! - `CONNECT host:port`: handed to [`super::tunnel`] (authentication, host policy, then TLS
//!   interception).
//! - absolute-URI requests (`GET http://host/path`): proxy authentication, then the request
//!   pipeline ([`super::pipeline`]). Over cleartext only extra and removed headers apply, never
//!   credentials.
//! - origin-form requests (`GET /_x/credentials`, sent to the proxy itself): a run's endpoints
//!   ([`super::endpoint`]), authenticated by `Authorization: Bearer <run token>`; without that
//!   header, `400`.
//!
//! Timeouts: a request head must arrive within [`ProxyConfig::header_timeout`] (this also closes
//! idle keep-alive connections), a tunnel's TLS handshake within
//! [`ProxyConfig::handshake_timeout`]; request heads are limited to
//! [`ProxyConfig::max_header_bytes`] (`431` beyond).
//!
//! Unauthenticated connections (no valid proxy token presented yet) are bounded: at most
//! [`ProxyConfig::max_unauthenticated`] at once (a connection beyond that is closed as soon as it
//! is accepted), and each must present a valid token within [`ProxyConfig::auth_timeout`] of
//! being accepted or is closed, whatever it sends meanwhile (wrong-token `407`s included). A
//! connection that has presented a valid token leaves the count and the deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::auth::authenticate;
use super::body::ProxyBody;
use super::ca::CertificateAuthority;
use super::endpoint;
use super::host::Target;
use super::pipeline::{Scheme, handle, host_agrees, host_refused};
use super::reclaim::Reclaimer;
use super::respond::text;
use super::runs::RunRegistry;
use super::tunnel::connect;
use super::upstream::{Upstream, UpstreamConfig, UpstreamError};

/// Limits and timeouts of the listening side.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// From `CONNECT`'s `200` to a completed TLS handshake.
    pub handshake_timeout: Duration,
    /// For a request head to arrive (also the idle keep-alive limit).
    pub header_timeout: Duration,
    /// The largest request head accepted.
    pub max_header_bytes: usize,
    /// How many connections may be open at once without having presented a valid proxy token;
    /// more are closed on accept.
    pub max_unauthenticated: usize,
    /// How long a connection has, from accept, to present a valid proxy token.
    pub auth_timeout: Duration,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_unauthenticated: 256,
            auth_timeout: Duration::from_secs(10),
        }
    }
}

pub(crate) struct Shared {
    pub registry: Arc<RunRegistry>,
    pub ca: Arc<CertificateAuthority>,
    pub upstream: Upstream,
    pub config: ProxyConfig,
    pub stop: watch::Receiver<bool>,
    /// One permit per connection that has not presented a valid token yet.
    pub unauthenticated: Arc<Semaphore>,
    /// Told when a connection or tunnel ends, so its memory goes back to the system.
    pub reclaim: Arc<Reclaimer>,
}

/// The proxy, ready to serve.
pub struct Proxy {
    registry: Arc<RunRegistry>,
    ca: Arc<CertificateAuthority>,
    upstream: Upstream,
    config: ProxyConfig,
}

impl Proxy {
    /// A proxy signing with `ca`, serving the runs of `registry`.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        registry: Arc<RunRegistry>,
        upstream: &UpstreamConfig,
        config: ProxyConfig,
    ) -> Result<Proxy, UpstreamError> {
        Ok(Proxy {
            registry,
            ca,
            upstream: Upstream::new(upstream)?,
            config,
        })
    }

    /// Binds `addr` and serves in the background.
    pub async fn listen(self, addr: SocketAddr) -> std::io::Result<ProxyHandle> {
        let listener = TcpListener::bind(addr).await?;
        self.serve(listener)
    }

    /// The proxy serving connections handed to it as streams, without a socket (fuzzing).
    #[doc(hidden)]
    pub fn into_stream_server(self) -> StreamServer {
        let (stop_tx, stop) = watch::channel(false);
        StreamServer {
            shared: Arc::new(Shared {
                registry: self.registry,
                ca: self.ca,
                upstream: self.upstream,
                unauthenticated: Arc::new(Semaphore::new(self.config.max_unauthenticated)),
                reclaim: Arc::default(),
                config: self.config,
                stop,
            }),
            _stop: stop_tx,
        }
    }

    /// Serves `listener` in the background.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<ProxyHandle> {
        let addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            registry: self.registry,
            ca: self.ca,
            upstream: self.upstream,
            unauthenticated: Arc::new(Semaphore::new(self.config.max_unauthenticated)),
            reclaim: Arc::default(),
            config: self.config,
            stop,
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        tracing::debug!(%addr, "proxy listening");
        Ok(ProxyHandle {
            addr,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running proxy. Dropping it (or [`ProxyHandle::shutdown`]) stops it and cuts its connections.
pub struct ProxyHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProxyHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, cuts every connection, and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(permit) = Arc::clone(&shared.unauthenticated).try_acquire_owned()
                    else {
                        tracing::debug!(%peer, "proxy connection closed: too many unauthenticated");
                        drop(tcp);
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_accepted(Arc::clone(&shared), tcp, peer, permit));
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%err, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// One accepted connection, holding its unauthenticated `permit`: served until it ends, the proxy
/// stops, or it has presented no valid token within [`ProxyConfig::auth_timeout`].
async fn serve_accepted<T>(
    shared: Arc<Shared>,
    io: T,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stop = shared.stop.clone();
    let auth = Arc::new(ConnectionAuth::new(permit));
    let deadline = shared.config.auth_timeout;
    tokio::select! {
        _ = serve_client(Arc::clone(&shared), io, peer, Arc::clone(&auth)) => {}
        _ = stop.changed() => {}
        _ = auth.expired(deadline) => {
            tracing::debug!(%peer, "proxy connection closed: no valid token in time");
        }
    }
    shared.reclaim.connection_closed();
}

/// The proxy's front without a listening socket: each [`StreamServer::serve`] is one client
/// connection, taken through exactly the path of an accepted TCP connection (the unauthenticated
/// bound, the token deadline, `CONNECT` and tunnels, absolute-URI requests). For the fuzz targets
/// (`fuzz/`), which feed it bytes in memory.
#[doc(hidden)]
pub struct StreamServer {
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

impl StreamServer {
    /// Serves `io` as one client connection until it ends. Tunnels it opened run on in the
    /// background until their stream ends.
    pub async fn serve<T>(&self, io: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let Ok(permit) = Arc::clone(&self.shared.unauthenticated).try_acquire_owned() else {
            return;
        };
        serve_accepted(Arc::clone(&self.shared), io, peer, permit).await;
    }
}

/// Whether a connection has presented a valid proxy token; until it has, it holds one of the
/// [`Shared::unauthenticated`] permits.
struct ConnectionAuth {
    authenticated: AtomicBool,
    permit: std::sync::Mutex<Option<OwnedSemaphorePermit>>,
}

impl ConnectionAuth {
    fn new(permit: OwnedSemaphorePermit) -> ConnectionAuth {
        ConnectionAuth {
            authenticated: AtomicBool::new(false),
            permit: std::sync::Mutex::new(Some(permit)),
        }
    }

    /// A valid token arrived: the connection leaves the count and the deadline.
    fn authenticated(&self) {
        self.authenticated.store(true, Ordering::SeqCst);
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Resolves `deadline` after it is called unless a valid token arrived by then (then never).
    async fn expired(&self, deadline: Duration) {
        tokio::time::sleep(deadline).await;
        if self.authenticated.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

/// One client connection to the proxy port.
async fn serve_client<T>(shared: Arc<Shared>, io: T, peer: SocketAddr, auth: Arc<ConnectionAuth>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn({
        let shared = Arc::clone(&shared);
        move |request: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            if !auth.authenticated.load(Ordering::SeqCst)
                && (authenticate(&shared.registry, request.headers()).is_ok()
                    || endpoint::authenticates(&shared.registry, request.headers()))
            {
                auth.authenticated();
            }
            async move { Ok::<_, Infallible>(proxy_request(shared, request).await) }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_header_size(shared.config.max_header_bytes);
    if let Err(err) = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%peer, %err, "proxy connection ended with an error");
    }
}

/// A request on the proxy port.
async fn proxy_request(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ProxyBody> {
    if request.method() == Method::CONNECT {
        return connect(shared, request);
    }
    if request.uri().scheme().is_some() {
        return absolute(&shared, request).await;
    }
    if request.uri().path().starts_with('/') {
        return endpoint::serve(&shared, request).await;
    }
    text(
        StatusCode::BAD_REQUEST,
        "moat proxy: this is an HTTP proxy; send absolute-URI requests or CONNECT.\n",
    )
}

/// An absolute-URI request on the proxy port.
async fn absolute(shared: &Shared, request: Request<Incoming>) -> Response<ProxyBody> {
    let scheme = match request.uri().scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("http") => Scheme::Http,
        Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "moat proxy: only http and https URLs are proxied.\n",
            );
        }
    };
    let Some(target) = request
        .uri()
        .authority()
        .and_then(|a| Target::parse(a.as_str(), scheme.default_port()))
    else {
        return text(StatusCode::BAD_REQUEST, "moat proxy: bad request URL.\n");
    };
    let run = match authenticate(&shared.registry, request.headers()) {
        Ok((_, run)) => run,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) = host_agrees(&request, &target, scheme) {
        let connection = format!("run {}'s plain-HTTP request for {target}", run.id);
        host_refused(&run, &request, &target, scheme, &refusal, &connection);
        return refusal;
    }
    handle(shared, &run, scheme, target, request).await
}
