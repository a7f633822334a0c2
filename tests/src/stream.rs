//! A local server for the proxy tests that [`crate::FakeHttps`] cannot be: HTTP/2 as well as
//! HTTP/1.1 (ALPN), bodies produced and consumed lazily (so 100 MB cost no memory), a
//! server-sent-events stream the test releases step by step, and a WebSocket echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::ca::{TestCa, crypto_provider};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ServerBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The byte at offset `i` of every body [`StreamServer`] sends or expects: `i % 251`, a pattern
/// that does not line up with any power-of-two chunk size.
pub fn pattern_byte(i: u64) -> u8 {
    (i % 251) as u8
}

/// A lazily produced body of `len` [`pattern_byte`]s, in `chunk`-sized frames.
#[derive(Debug, Clone)]
pub struct PatternBody {
    offset: u64,
    len: u64,
    chunk: usize,
}

impl PatternBody {
    /// `len` bytes in frames of `chunk` bytes.
    pub fn new(len: u64, chunk: usize) -> Self {
        PatternBody {
            offset: 0,
            len,
            chunk: chunk.max(1),
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.offset >= self.len {
            return None;
        }
        let n = (self.len - self.offset).min(self.chunk as u64);
        let chunk: Vec<u8> = (self.offset..self.offset + n).map(pattern_byte).collect();
        self.offset += n;
        Some(Bytes::from(chunk))
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.next_chunk().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

/// The same pattern as a blocking reader (for `reqwest::blocking::Body::new`, or a curl stdin).
#[derive(Debug)]
pub struct PatternReader {
    offset: u64,
    len: u64,
}

impl PatternReader {
    /// `len` bytes.
    pub fn new(len: u64) -> Self {
        PatternReader { offset: 0, len }
    }
}

impl std::io::Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = ((self.len - self.offset) as usize).min(buf.len());
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            *byte = pattern_byte(self.offset + i as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

/// Counts a stream of bytes and checks it against the pattern.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PatternCheck {
    /// Bytes seen.
    pub bytes: u64,
    /// Every byte matched the pattern at its offset.
    pub ok: bool,
}

impl PatternCheck {
    /// Nothing seen yet.
    pub fn new() -> Self {
        PatternCheck { bytes: 0, ok: true }
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            if *byte != pattern_byte(self.bytes + i as u64) {
                self.ok = false;
            }
        }
        self.bytes += data.len() as u64;
    }
}

/// One request as [`StreamServer`] saw it (bodies are not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Lowercase names, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    seen: Mutex<Vec<Seen>>,
    release: Notify,
}

/// A local HTTPS (or plain HTTP) server with these routes:
///
/// - `GET /download?bytes=N` — `N` pattern bytes ([`pattern_byte`]), produced lazily, in 64 KiB
///   frames, with a `content-length`;
/// - `POST /upload` (or `PUT`) — reads the body lazily and answers JSON
///   `{"bytes": N, "pattern_ok": true}`;
/// - `GET /sse` — `text/event-stream`: `data: one`, then, only after [`StreamServer::release`],
///   `data: two`, then the end;
/// - `GET /ws` — a WebSocket echo (HTTP/1.1 upgrade); with `?greet=auth`, its first message is
///   `you sent: <the request's authorization header>`;
/// - `GET /echo-auth?split=N&encoding=E` — the request's `authorization` header echoed in a
///   small JSON body, in frames of `N` bytes without a length (or whole with one), optionally
///   labelled `content-encoding: E`;
/// - anything else — JSON `{"method", "path", "version", "headers": {...}, "body"}` (the body read
///   whole: keep it small).
///
/// Every request head is recorded ([`StreamServer::seen`]).
pub struct StreamServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl StreamServer {
    /// HTTPS with a certificate from `ca` for `sans`, offering `h2` and `http/1.1`.
    pub fn start(ca: &TestCa, sans: &[&str]) -> StreamServer {
        Self::start_with(Some((ca, sans, true)))
    }

    /// HTTPS offering only `http/1.1`.
    pub fn start_h1(ca: &TestCa, sans: &[&str]) -> StreamServer {
        Self::start_with(Some((ca, sans, false)))
    }

    /// Plain HTTP/1.1.
    pub fn start_plain() -> StreamServer {
        Self::start_with(None)
    }

    fn start_with(tls: Option<(&TestCa, &[&str], bool)>) -> StreamServer {
        let acceptor = tls.map(|(ca, sans, h2)| {
            let issued = ca.issue(sans);
            let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_no_client_auth()
                .with_single_cert(vec![issued.cert_der()], issued.key_der())
                .expect("rustls accepts the issued certificate");
            config.alpn_protocols = if h2 {
                vec![b"h2".to_vec(), b"http/1.1".to_vec()]
            } else {
                vec![b"http/1.1".to_vec()]
            };
            TlsAcceptor::from(Arc::new(config))
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            seen: Mutex::new(Vec::new()),
            release: Notify::new(),
        });
        let (shutdown, stop) = oneshot::channel();
        let tls = acceptor.is_some();
        let thread = std::thread::Builder::new()
            .name(format!("stream-server-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("build the server runtime");
                    runtime.block_on(accept_loop(listener, acceptor, shared, stop));
                }
            })
            .expect("spawn the server thread");
        StreamServer {
            addr,
            tls,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://127.0.0.1:<port>` (or `http://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.addr.port())
    }

    /// Lets a waiting (or the next) `/sse` response send its second event.
    pub fn release(&self) {
        self.shared.release.notify_one();
    }

    /// The request heads received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("register the listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let shared = Arc::clone(&shared);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(route(request, shared).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(tcp).await else { return };
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .http1_only()
                                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                                .await;
                        }
                    }
                });
            }
        }
    }
}

/// A body fed by a channel, one frame per message.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|message| message.map(|bytes| Ok(Frame::data(bytes))))
    }
}

fn boxed<B>(body: B) -> ServerBody
where
    B: Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<ServerBody> {
    let mut response = Response::new(boxed(http_body_util::Full::new(Bytes::from(
        value.to_string(),
    ))));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn route(mut request: Request<Incoming>, shared: Arc<Shared>) -> Response<ServerBody> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/".to_owned(), |pq| pq.as_str().to_owned());
    let seen = Seen {
        method: request.method().to_string(),
        path: path.clone(),
        version: format!("{:?}", request.version()),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    shared.seen.lock().unwrap().push(seen.clone());
    let route = path.split('?').next().unwrap_or("/");

    match route {
        "/download" => {
            let bytes = path
                .split_once("bytes=")
                .and_then(|(_, n)| n.split('&').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            let mut response = Response::new(boxed(PatternBody::new(bytes, 64 * 1024)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes));
            response
        }
        "/upload" => {
            let mut body = request.into_body();
            let mut check = PatternCheck::new();
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            check.update(data);
                        }
                    }
                    Err(err) => {
                        return json(
                            StatusCode::BAD_REQUEST,
                            serde_json::json!({ "error": err.to_string() }),
                        );
                    }
                }
            }
            json(
                StatusCode::OK,
                serde_json::json!({ "bytes": check.bytes, "pattern_ok": check.ok }),
            )
        }
        "/sse" => {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                if tx.send(Bytes::from_static(b"data: one\n\n")).await.is_err() {
                    return;
                }
                shared.release.notified().await;
                let _ = tx.send(Bytes::from_static(b"data: two\n\n")).await;
            });
            let mut response = Response::new(boxed(ChannelBody { rx }));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            response
        }
        "/ws" => {
            let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({ "error": "not a websocket request" }),
                );
            };
            let upgrade = hyper::upgrade::on(&mut request);
            let greeting = path.contains("greet=auth").then(|| {
                format!(
                    "you sent: {}",
                    seen.header("authorization").unwrap_or_default()
                )
            });
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                if let Some(greeting) = greeting
                    && ws.send(greeting.into()).await.is_err()
                {
                    return;
                }
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err()
                    {
                        break;
                    }
                }
            });
            let mut response = Response::new(boxed(http_body_util::Empty::<Bytes>::new()));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let headers = response.headers_mut();
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                "sec-websocket-accept",
                HeaderValue::from_str(&derive_accept_key(key.as_bytes())).unwrap(),
            );
            response
        }
        "/echo-auth" => {
            // The request's Authorization header handed back in the body, as an upstream with a
            // debug endpoint would: as sent and upper-cased, in frames of `split` bytes sent
            // 5 ms apart (so they reach the proxy as separate reads), or whole with a
            // content-length when `split` is 0 or absent; with `encoding`, labelled with that
            // content-encoding (the bytes are not actually compressed).
            let query = |name: &str| {
                path.split_once('?')
                    .and_then(|(_, q)| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                    })
                    .map(str::to_owned)
            };
            let auth = seen.header("authorization").unwrap_or_default().to_owned();
            let text = format!(
                "{{\"authorization\": \"{auth}\", \"shouted\": \"{}\"}}\n",
                auth.to_ascii_uppercase()
            );
            let split = query("split")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            let mut response = if split == 0 {
                let mut response =
                    Response::new(boxed(http_body_util::Full::new(Bytes::from(text.clone()))));
                response
                    .headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from(text.len()));
                response
            } else {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                tokio::spawn(async move {
                    for piece in text.as_bytes().chunks(split) {
                        if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
                Response::new(boxed(ChannelBody { rx }))
            };
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some(encoding) = query("encoding")
                && let Ok(value) = HeaderValue::from_str(&encoding)
            {
                response.headers_mut().insert("content-encoding", value);
            }
            response
        }
        _ => {
            let body = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let headers: serde_json::Map<String, serde_json::Value> = seen
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            json(
                StatusCode::OK,
                serde_json::json!({
                    "method": seen.method,
                    "path": seen.path,
                    "version": seen.version,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                }),
            )
        }
    }
}
