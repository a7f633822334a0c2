//! The listener: HTTP/1.1 proxy requests in, intercepted TLS, requests forwarded with the rules
//! applied.
//!
//! On the proxy port (HTTP/1.1):
//!
//! - `CONNECT host:port`: proxy authentication, then the host-level policy; `200`, and the tunnel
//!   must start a TLS handshake whose SNI names the CONNECT host (no SNI for an IP host). The proxy
//!   answers with a leaf for that host and serves HTTP/1.1 or HTTP/2 (ALPN) inside; each inner
//!   request's `Host` (or `:authority`) must name the CONNECT target too, else `421`. Anything that
//!   is not such a TLS handshake closes the tunnel: nothing is ever relayed blind.
//! - absolute-URI requests (`GET http://host/path`): proxy authentication, policy, forwarded. Over
//!   cleartext only extra and removed headers apply, never credentials.
//! - anything else: `400`.
//!
//! Every forwarded request goes through [`handle`]: policy, injection, upstream, response
//! transforms, request log. Bodies stream both ways; only a request body that needs token
//! substitution (known length up to 64 KiB) is read whole first. WebSocket upgrades (HTTP/1.1)
//! are forwarded on their own upstream connection and relayed byte for byte after the `101`.
//!
//! Timeouts: a request head must arrive within [`ProxyConfig::header_timeout`] (this also closes
//! idle keep-alive connections), a tunnel's TLS handshake within
//! [`ProxyConfig::handshake_timeout`]; request heads are limited to
//! [`ProxyConfig::max_header_bytes`] (`431` beyond).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap,
    HeaderName, HeaderValue, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use moat_plugin_sdk::TransformKind;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use super::auth::{authenticate, challenge};
use super::body::{Capture, Logged, ProxyBody, Scrub, Tee, empty, full, incoming};
use super::ca::CertificateAuthority;
use super::host::Target;
use super::inject::{
    Injected, ResponseAction, SUBSTITUTION_BODY_LIMIT, apply_request_headers, is_text_type,
    response_transform, substitute, substitute_bytes,
};
use super::log::{BODY_CAPTURE_LIMIT, Entry, snapshot};
use super::policy::Decision;
use super::respond::{blocked, text};
use super::runs::{Run, RunRegistry, RunState, TokenHash};
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
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
        }
    }
}

struct Shared {
    registry: Arc<RunRegistry>,
    ca: Arc<CertificateAuthority>,
    upstream: Upstream,
    config: ProxyConfig,
    stop: watch::Receiver<bool>,
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

    /// Serves `listener` in the background.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<ProxyHandle> {
        let addr = listener.local_addr()?;
        let (stop_tx, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            registry: self.registry,
            ca: self.ca,
            upstream: self.upstream,
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
                    let _ = tcp.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let mut stop = shared.stop.clone();
                        tokio::select! {
                            _ = serve_client(Arc::clone(&shared), tcp, peer) => {}
                            _ = stop.changed() => {}
                        }
                    });
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

/// One client connection to the proxy port.
async fn serve_client(shared: Arc<Shared>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let service = service_fn({
        let shared = Arc::clone(&shared);
        move |request| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(proxy_request(shared, request).await) }
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_header_size(shared.config.max_header_bytes);
    if let Err(err) = builder
        .serve_connection(TokioIo::new(tcp), service)
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
    text(
        StatusCode::BAD_REQUEST,
        "moat proxy: this is an HTTP proxy; send absolute-URI requests or CONNECT.\n",
    )
}

/// `CONNECT host:port`.
fn connect(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some(target) = request
        .uri()
        .authority()
        .and_then(|authority| Target::parse(authority.as_str(), 443))
    else {
        return text(StatusCode::BAD_REQUEST, "moat proxy: bad CONNECT target.\n");
    };
    let (hash, run) = match authenticate(&shared.registry, request.headers()) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let state = run.state();
    let decision = state.policy.check_host(&target.host, target.port);
    if decision != Decision::Allow {
        tracing::debug!(run = %run.id, %target, "CONNECT blocked by policy");
        let response = blocked(&decision, &target.host, "CONNECT", "");
        if let Some(log) = &run.log {
            let entry = Entry {
                method: "CONNECT".into(),
                url: target.to_string(),
                status_code: response.status().as_u16(),
                error: Some("blocked by network policy".into()),
                req_headers: snapshot(request.headers()),
                resp_headers: snapshot(response.headers()),
                ..Entry::default()
            };
            log.write(entry, &state.redactor);
        }
        return response;
    }
    tracing::debug!(run = %run.id, %target, "CONNECT");
    let upgrade = hyper::upgrade::on(request);
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let tunnel = async move {
            match upgrade.await {
                Ok(upgraded) => intercept(shared, hash, target, upgraded).await,
                Err(err) => tracing::debug!(%err, "CONNECT upgrade failed"),
            }
        };
        // The tunnel outlives its CONNECT's connection task: stop it with the proxy.
        tokio::select! {
            _ = tunnel => {}
            _ = stop.changed() => {}
        }
    });
    Response::new(empty())
}

/// The tunnel after `200`: TLS with a minted leaf, then HTTP inside.
async fn intercept(
    shared: Arc<Shared>,
    hash: TokenHash,
    target: Target,
    upgraded: hyper::upgrade::Upgraded,
) {
    let handshake = async {
        let start =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded))
                .await
                .map_err(|err| format!("not a TLS handshake: {err}"))?;
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        sni_agrees(&target, sni.as_deref())?;
        let config = shared
            .ca
            .server_config(&target.host)
            .map_err(|err| err.to_string())?;
        start
            .into_stream(config)
            .await
            .map_err(|err| format!("TLS handshake failed: {err}"))
    };
    let tls = match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(reason)) => {
            tracing::debug!(%target, %reason, "tunnel closed");
            return;
        }
        Err(_) => {
            tracing::debug!(%target, "tunnel closed: no TLS handshake in time");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let tunnel = Arc::new(Tunnel { hash, target });
    let service = service_fn({
        let shared = Arc::clone(&shared);
        move |request| {
            let shared = Arc::clone(&shared);
            let tunnel = Arc::clone(&tunnel);
            async move { Ok::<_, Infallible>(tunnel_request(&shared, &tunnel, request).await) }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_buf_size(shared.config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(shared.config.max_header_bytes).unwrap_or(u32::MAX));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    if let Err(err) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%err, "tunnel ended with an error");
    }
}

/// The SNI must name the CONNECT host; IP targets may send none.
fn sni_agrees(target: &Target, sni: Option<&str>) -> Result<(), String> {
    match sni {
        Some(name) if name.trim_end_matches('.') == target.host => Ok(()),
        None if target.is_ip() => Ok(()),
        Some(name) => Err(format!(
            "the TLS server name {name:?} does not match the CONNECT host {:?}",
            target.host
        )),
        None => Err(format!(
            "no TLS server name sent for the CONNECT host {:?}",
            target.host
        )),
    }
}

struct Tunnel {
    hash: TokenHash,
    target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A request inside an intercepted tunnel.
async fn tunnel_request(
    shared: &Shared,
    tunnel: &Tunnel,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    // The run may have been removed since the CONNECT.
    let Some(run) = shared.registry.get(&tunnel.hash) else {
        return challenge("Invalid proxy token");
    };
    if let Err(refusal) = host_agrees(&request, &tunnel.target, Scheme::Https) {
        return refusal;
    }
    handle(shared, &run, Scheme::Https, tunnel.target.clone(), request).await
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
        return refusal;
    }
    handle(shared, &run, scheme, target, request).await
}

/// Every host the request names (`Host`, the URI's authority) must be `target`.
#[allow(clippy::result_large_err, reason = "the error is the response to send")]
fn host_agrees(
    request: &Request<Incoming>,
    target: &Target,
    scheme: Scheme,
) -> Result<(), Response<ProxyBody>> {
    let mut named = Vec::new();
    if let Some(authority) = request.uri().authority() {
        named.push(authority.as_str().to_owned());
    }
    for value in request.headers().get_all(HOST) {
        named.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if named.is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "moat proxy: the request names no host.\n",
        ));
    }
    for name in named {
        if Target::parse(&name, scheme.default_port()).as_ref() != Some(target) {
            return Err(text(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "moat proxy: the request is for {:?} but the connection is for {}; refused.\n",
                    name.chars().take(256).collect::<String>(),
                    target
                ),
            ));
        }
    }
    Ok(())
}

/// Where a request's log line is being put together.
struct Pending {
    run: Arc<Run>,
    state: Arc<RunState>,
    entry: Entry,
    started: Instant,
    req_capture: Option<Arc<Mutex<Capture>>>,
}

impl Pending {
    fn finish(mut self, resp_capture: Option<Capture>, error: Option<String>) {
        let Some(log) = &self.run.log else { return };
        self.entry.duration = self.started.elapsed();
        if error.is_some() {
            self.entry.error = error;
        }
        if let Some(capture) = self.req_capture.take() {
            let capture = capture.lock().unwrap_or_else(|p| p.into_inner()).clone();
            self.entry.truncated |= capture.truncated;
            self.entry.req_body = Some(capture.bytes);
        }
        if let Some(capture) = resp_capture {
            self.entry.truncated |= capture.truncated;
            self.entry.resp_body = Some(capture.bytes);
        }
        log.write(self.entry, &self.state.redactor);
    }

    /// Logs a response the proxy made itself (or an upstream failure) and returns it.
    fn respond(
        mut self,
        response: Response<ProxyBody>,
        error: Option<String>,
    ) -> Response<ProxyBody> {
        self.entry.status_code = response.status().as_u16();
        self.entry.resp_headers = snapshot(response.headers());
        self.finish(None, error);
        response
    }
}

/// Policy, injection, forwarding, transforms and logging for one request.
async fn handle(
    shared: &Shared,
    run: &Arc<Run>,
    scheme: Scheme,
    target: Target,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let state = run.state();
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let authority = target.authority(scheme.default_port());
    let url = format!("{}://{authority}{path}", scheme.as_str());
    let mut pending = Pending {
        run: Arc::clone(run),
        state: Arc::clone(&state),
        entry: Entry {
            method: method.to_string(),
            url,
            ..Entry::default()
        },
        started,
        req_capture: None,
    };
    let logging = run.log.is_some();

    let decision = state
        .policy
        .check(&target.host, target.port, method.as_str(), &path);
    if decision != Decision::Allow {
        tracing::debug!(run = %run.id, host = %target.host, %method, "request blocked by policy");
        pending.entry.req_headers = snapshot(request.headers());
        let response = blocked(&decision, &target.host, method.as_str(), &path);
        return pending.respond(response, Some("blocked by network policy".into()));
    }

    let upgrade = is_upgrade(request.headers()) && request.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let client_headers = logging.then(|| snapshot(&parts.headers));

    strip_hop_by_hop(&mut parts.headers, upgrade);
    let view = state
        .rules
        .for_host(&target.host, target.port, scheme == Scheme::Https);
    if upgrade && view.substitution.is_some() {
        // After a 101 the bytes are relayed untouched: the real token the proxy substituted into
        // the request could come back to the client unscrubbed.
        let response = text(
            StatusCode::FORBIDDEN,
            "moat proxy: connection upgrades are refused on hosts whose token moat substitutes\n",
        );
        return pending.respond(
            response,
            Some("upgrade refused on a substitution host".into()),
        );
    }
    let Injected {
        headers: injected,
        grants,
    } = apply_request_headers(&view, &mut parts.headers);
    if let Some(headers) = client_headers {
        pending.entry.req_headers = headers;
        pending.entry.injected = injected;
    }
    pending.entry.grants = grants;
    let forwarded_path = view
        .substitution
        .and_then(|sub| substitute(&path, sub))
        .unwrap_or_else(|| path.clone());
    if view.transforms.contains(&TransformKind::ResponseScrub) && view.substitution.is_some() {
        // The scrubber can only search what it can read.
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }

    let capture_request = logging
        && parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_text_type);
    let declared_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = match (view.substitution, declared_length) {
        (Some(sub), Some(length)) if length > 0 && length <= SUBSTITUTION_BODY_LIMIT => {
            let limit = usize::try_from(SUBSTITUTION_BODY_LIMIT).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => {
                    let response = text(
                        StatusCode::BAD_REQUEST,
                        "moat proxy: cannot read the request body.\n",
                    );
                    return pending.respond(response, Some(format!("request body: {err}")));
                }
            };
            if capture_request {
                let mut capture = Capture::new(BODY_CAPTURE_LIMIT);
                capture.push(&bytes);
                pending.req_capture = Some(Arc::new(Mutex::new(capture)));
            }
            match substitute_bytes(&bytes, sub) {
                Some(replaced) => {
                    parts
                        .headers
                        .insert(CONTENT_LENGTH, HeaderValue::from(replaced.len()));
                    full(replaced)
                }
                None => full(bytes),
            }
        }
        _ if capture_request => {
            let capture = Arc::new(Mutex::new(Capture::new(BODY_CAPTURE_LIMIT)));
            pending.req_capture = Some(Arc::clone(&capture));
            Tee::wrap(incoming(body), capture)
        }
        _ => incoming(body),
    };

    parts.headers.remove(HOST);
    parts.version = Version::HTTP_11;
    parts.uri = match format!("{}://{authority}{forwarded_path}", scheme.as_str()).parse::<Uri>() {
        Ok(uri) => uri,
        Err(_) => {
            let response = text(StatusCode::BAD_REQUEST, "moat proxy: bad request target.\n");
            return pending.respond(response, Some("bad request target".into()));
        }
    };
    let outbound = Request::from_parts(parts, body);

    let result = if upgrade {
        shared.upstream.send_upgrade(outbound).await
    } else {
        shared.upstream.send(outbound).await
    };
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            let reason = state.redactor.redact(&err.to_string()).into_owned();
            tracing::debug!(run = %run.id, host = %target.host, %reason, "upstream request failed");
            let response = text(
                StatusCode::BAD_GATEWAY,
                &format!("moat proxy: upstream request failed: {reason}\n"),
            );
            return pending.respond(response, Some(reason));
        }
    };

    if let Some(client_upgrade) = client_upgrade
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        let host = target.host.clone();
        tokio::spawn(async move {
            match tokio::join!(client_upgrade, upstream_upgrade) {
                (Ok(client), Ok(upstream)) => {
                    let mut client = TokioIo::new(client);
                    let mut upstream = TokioIo::new(upstream);
                    if let Err(err) =
                        tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                    {
                        tracing::debug!(%host, %err, "upgraded connection ended");
                    }
                }
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(%host, %err, "upgrade failed");
                }
            }
        });
        let (parts, _) = response.into_parts();
        let response = Response::from_parts(parts, empty());
        return pending.respond(response, None);
    }

    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    if !view.credentials.is_empty() {
        // An upstream that echoes the request's credentials in a response header (a debug header,
        // an error in a redirect) must not hand them to the client.
        scrub_credential_headers(&mut parts.headers, view.credentials);
    }
    if let Some(sub) = view.substitution {
        // The request carried the real token (in its path or body): an upstream may echo it in a
        // redirect's Location, a cookie, or a body the scrubber cannot read.
        scrub_headers(&mut parts.headers, sub);
        if view.transforms.contains(&TransformKind::ResponseScrub)
            && !identity_encoded(&parts.headers)
        {
            let response = text(
                StatusCode::BAD_GATEWAY,
                "moat proxy: the upstream sent a compressed body, which cannot be scrubbed of the \
                 substituted token; it was not passed on\n",
            );
            return pending.respond(response, Some("encoded body on a substitution host".into()));
        }
    }
    let body = match response_transform(&view, method.as_str(), &path, parts.status, &parts.headers)
    {
        ResponseAction::None => incoming(body),
        ResponseAction::Replace(json) => {
            parts.status = StatusCode::OK;
            for name in [CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING] {
                parts.headers.remove(name);
            }
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.insert(
                HeaderName::from_static("x-moat-transformed"),
                HeaderValue::from_static("oauth-scope-workaround"),
            );
            full(json)
        }
        ResponseAction::Scrub(sub) => {
            if sub.placeholder.len() != sub.real.expose().len() {
                parts.headers.remove(CONTENT_LENGTH);
            }
            Scrub::wrap(
                incoming(body),
                sub.real.expose().as_bytes(),
                sub.placeholder.as_bytes(),
            )
        }
    };

    if !logging {
        return Response::from_parts(parts, body);
    }
    pending.entry.status_code = parts.status.as_u16();
    pending.entry.resp_headers = snapshot(&parts.headers);
    let capture_response = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_text_type);
    let body = Logged::wrap(
        body,
        capture_response.then(|| Capture::new(BODY_CAPTURE_LIMIT)),
        Box::new(move |capture, error| pending.finish(capture, error)),
    );
    Response::from_parts(parts, body)
}

/// `Connection: upgrade` with an `Upgrade` header.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), and those the `Connection` header lists. With
/// `upgrade`, `Connection: upgrade` and `Upgrade` are kept.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(upgrade && name == UPGRADE) {
            headers.remove(name);
        }
    }
    for name in ["keep-alive", "proxy-connection", "proxy-authenticate"] {
        headers.remove(name);
    }
    headers.remove(hyper::header::PROXY_AUTHORIZATION);
    headers.remove(TRAILER);
    headers.remove(TRANSFER_ENCODING);
    let trailers_only = headers
        .get(TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    if !trailers_only {
        headers.remove(TE);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(CONNECTION);
        headers.remove(UPGRADE);
    }
}

/// Replaces the substituted token by its placeholder in every response header value.
fn scrub_headers(headers: &mut hyper::HeaderMap, sub: &super::inject::Substitution) {
    let real = sub.real.expose().as_bytes();
    if real.is_empty() {
        return;
    }
    for value in headers.values_mut() {
        let bytes = value.as_bytes();
        if bytes.windows(real.len()).any(|window| window == real) {
            let replaced =
                String::from_utf8_lossy(bytes).replace(sub.real.expose(), &sub.placeholder);
            // The placeholder is visible ASCII, so the result is a valid header value; if the
            // value was not text, drop it rather than pass the token on.
            match HeaderValue::from_str(&replaced) {
                Ok(clean) => *value = clean,
                Err(_) => *value = HeaderValue::from_static("[removed by moat]"),
            }
        }
    }
}

/// Replaces every response header value that contains one of `credentials` (the whole value,
/// or the token after its scheme) by a marker.
fn scrub_credential_headers(
    headers: &mut hyper::HeaderMap,
    credentials: &[super::inject::CredentialRule],
) {
    let needles: Vec<&[u8]> = credentials
        .iter()
        .flat_map(|credential| {
            let value = credential.value.as_bytes();
            let token = value
                .iter()
                .position(|b| *b == b' ')
                .map(|i| &value[i + 1..]);
            std::iter::once(value).chain(token)
        })
        .filter(|needle| needle.len() >= 6)
        .collect();
    for value in headers.values_mut() {
        let bytes = value.as_bytes();
        if needles
            .iter()
            .any(|needle| bytes.windows(needle.len()).any(|w| w == *needle))
        {
            *value = HeaderValue::from_static("[removed by moat: it held a credential]");
        }
    }
}

/// True when the body is not content-encoded (or says `identity`).
fn identity_encoded(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_must_name_the_connect_host() {
        let host = Target::parse("api.github.com:443", 443).unwrap();
        assert!(sni_agrees(&host, Some("api.github.com")).is_ok());
        assert!(sni_agrees(&host, Some("api.github.com.")).is_ok());
        assert!(sni_agrees(&host, Some("evil.com")).is_err());
        assert!(sni_agrees(&host, None).is_err());
        let ip = Target::parse("127.0.0.1:8443", 443).unwrap();
        assert!(sni_agrees(&ip, None).is_ok());
        assert!(sni_agrees(&ip, Some("127.0.0.1")).is_ok());
        assert!(sni_agrees(&ip, Some("localhost")).is_err());
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(TE, HeaderValue::from_static("gzip"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert("x-end-to-end", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-end-to-end"));

        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        assert!(is_upgrade(&headers));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers[CONNECTION], "upgrade");
        assert_eq!(headers[UPGRADE], "websocket");
        assert_eq!(headers[TE], "trailers");
    }
}
