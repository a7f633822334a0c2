//! A real HTTPS server on localhost, for moat to talk to in place of a real API.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::ca::TestCa;

/// The names [`FakeHttps::start`] puts in the server certificate.
pub const LOCAL_SANS: &[&str] = &["localhost", "127.0.0.1"];

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path with its query string, e.g. `/user?per_page=1`.
    pub path: String,
    /// The headers in the order received; names are lowercase (HTTP/1.1 names are
    /// case-insensitive, hyper normalizes them), values decoded as UTF-8 (lossily).
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily).
    pub body: String,
}

impl Recorded {
    /// The first value of header `name` (matched case-insensitively), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// The body parsed as JSON.
    ///
    /// # Panics
    ///
    /// If the body is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|err| {
            panic!(
                "{} {} body is not JSON ({err}): {:?}",
                self.method, self.path, self.body
            )
        })
    }
}

/// What a [`FakeHttps`] handler answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status code. An invalid code (outside 100..=999) is sent as 500.
    pub status: u16,
    /// Response headers (`content-length` is added by the server).
    pub headers: Vec<(String, String)>,
    /// The response body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `status`, no headers and an empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON reply: `value` serialized, with `content-type: application/json`.
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        Self::status(status)
            .with_header("content-type", "application/json; charset=utf-8")
            .with_body(value.to_string())
    }

    /// A plain-text reply with `content-type: text/plain`.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::status(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(body.into())
    }

    /// `404` with a GitHub-style JSON body `{"message": "Not Found"}`.
    pub fn not_found() -> Self {
        Self::json(404, serde_json::json!({ "message": "Not Found" }))
    }

    /// This reply with one more header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This reply with `body` as its body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync + 'static;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Recorded>>,
}

impl Shared {
    fn requests(&self) -> MutexGuard<'_, Vec<Recorded>> {
        // A panicking handler is caught before it can poison the lock, but be lenient anyway.
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A real HTTPS server (HTTP/1.1, TLS by rustls with a certificate from a [`TestCa`]) listening on
/// `127.0.0.1` at a free port.
///
/// It runs on its own thread with its own single-threaded tokio runtime, so tests stay plain
/// synchronous `#[test]` functions. Every request is recorded (see [`FakeHttps::requests`]) and
/// then answered by the handler. Dropping the server stops it: the listener closes, open
/// connections are cut, and the thread is joined.
///
/// If the handler panics (or replies with an invalid header), the request stays recorded and the
/// client gets a `500` whose body says so; the panic message goes to the test's stderr.
pub struct FakeHttps {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FakeHttps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHttps")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeHttps {
    /// Starts a server whose certificate, signed by `ca`, is valid for `localhost` and
    /// `127.0.0.1` ([`LOCAL_SANS`]); `handler` answers every request.
    pub fn start(
        ca: &TestCa,
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeHttps {
        Self::start_for(ca, LOCAL_SANS, handler)
    }

    /// Like [`FakeHttps::start`] with a certificate for `sans` instead (for instance
    /// `["api.github.com"]`, to stand in for a real host behind a proxy). Names that parse as IP
    /// addresses become IP address SANs.
    pub fn start_for(
        ca: &TestCa,
        sans: &[&str],
        handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> FakeHttps {
        let acceptor = TlsAcceptor::from(ca.issue(sans).server_config());
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for FakeHttps");
        listener
            .set_nonblocking(true)
            .expect("make the FakeHttps listener non-blocking");
        let addr = listener.local_addr().expect("FakeHttps listener address");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the FakeHttps tokio runtime");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
        });
        let (shutdown, stop) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("fake-https-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    runtime.block_on(accept_loop(listener, acceptor, shared, stop));
                    // Dropping the runtime here cancels the connection tasks still running.
                    drop(runtime);
                }
            })
            .expect("spawn the FakeHttps thread");
        FakeHttps {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The base URL, `https://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    /// The listening address (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests().clone()
    }
}

impl Drop for FakeHttps {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // Err only means the loop is already gone.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the FakeHttps thread for {} panicked", self.addr);
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("register the FakeHttps listener");
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    tokio::spawn(serve_connection(tcp, acceptor.clone(), Arc::clone(&shared)));
                }
                // Transient (e.g. out of file descriptors): do not spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

async fn serve_connection(tcp: tokio::net::TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    // A failed handshake (e.g. a client that does not trust the CA) is the client's business.
    let Ok(tls) = acceptor.accept(tcp).await else {
        return;
    };
    let service = hyper::service::service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(answer(request, &shared).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn answer(request: Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => return plain(StatusCode::BAD_REQUEST, format!("cannot read body: {err}")),
    };
    let recorded = Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    shared.requests().push(recorded.clone());

    let reply = match std::panic::catch_unwind(AssertUnwindSafe(|| (shared.handler)(&recorded))) {
        Ok(reply) => reply,
        Err(_) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "FakeHttps handler panicked on {} {}",
                    recorded.method, recorded.path
                ),
            );
        }
    };
    match build_response(reply) {
        Ok(response) => response,
        Err(message) => {
            eprintln!("FakeHttps: {message}");
            plain(StatusCode::INTERNAL_SERVER_ERROR, message)
        }
    }
}

fn build_response(reply: Reply) -> Result<Response<Full<Bytes>>, String> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in reply.headers {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|err| format!("handler replied with invalid header name {name:?}: {err}"))?;
        let header_value = HeaderValue::from_str(&value)
            .map_err(|err| format!("handler replied with invalid value for {name}: {err}"))?;
        response.headers_mut().append(header_name, header_value);
    }
    Ok(response)
}

fn plain(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
