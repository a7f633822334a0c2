//! The line loop: read, sort, dispatch concurrently, answer through one writer.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use jsonrpsee::Methods;
use jsonrpsee::core::server::{ConnectionId, Extensions, MethodCallback, MethodResponse};
use jsonrpsee::types::{ErrorCode, ErrorObject, Params};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::ServeOptions;
use super::rpc::{self, Ctx};
use super::wire::{
    self, Envelope, INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR, canonical_id_value,
    error_response,
};
use crate::protocol::{CancelParams, MAX_LINE_BYTES, code, method};
use crate::wire::{Frame, LineReader};
use crate::{CredentialProvider, ErrorKind};

/// Messages for the writer task.
enum Out {
    /// One JSON line (no newline).
    Line(String),
    /// Flush and stop.
    Close,
}

type InFlight = Arc<Mutex<HashMap<String, AbortHandle>>>;

pub(crate) async fn run<R, W>(
    provider: Box<dyn CredentialProvider>,
    reader: R,
    writer: W,
    options: ServeOptions,
) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ctx = Arc::new(Ctx {
        provider,
        plugin_version: options.plugin_version.clone(),
        initialized: AtomicBool::new(false),
        shutdown: AtomicBool::new(false),
    });
    let methods = rpc::module(Arc::clone(&ctx));
    let (tx, rx) = mpsc::channel(256);
    let writer_task = tokio::spawn(write_lines(writer, rx));
    let mut server = Server {
        ctx,
        methods,
        tx,
        in_flight: InFlight::default(),
        tasks: JoinSet::new(),
        max_line: options.max_line_bytes.unwrap_or(MAX_LINE_BYTES),
        poll_here: tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread,
    };

    let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, reader), server.max_line);
    let read_error = loop {
        while server.tasks.try_join_next().is_some() {}
        match lines.next().await {
            Ok(Frame::Line(line)) => server.handle_line(line).await,
            Ok(Frame::TooLong(_)) => {
                tracing::warn!(max = server.max_line, "skipped an over-long line");
                let message = format!("line longer than {} bytes", server.max_line);
                let kind = Some(ErrorKind::InvalidInput);
                server
                    .send(error_response(
                        "null",
                        INVALID_REQUEST,
                        &message,
                        kind,
                        None,
                    ))
                    .await;
            }
            Ok(Frame::Eof) => break None,
            Err(e) => break Some(e),
        }
    };
    let after_shutdown = server.ctx.shutdown.load(Ordering::SeqCst);
    match &read_error {
        None => tracing::debug!(after_shutdown, "stdin closed; finishing in-flight requests"),
        Some(e) => {
            tracing::error!(error = %e, "reading stdin failed; finishing in-flight requests")
        }
    }
    let limit = options.drain_timeout;
    server.drain(limit).await;
    // Bounded: a host that stopped reading stdout must not keep the plugin alive.
    let _ = tokio::time::timeout(limit, server.tx.send(Out::Close)).await;
    drop(server);
    let mut writer_task = writer_task;
    let written = match tokio::time::timeout(limit, &mut writer_task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(io::Error::other(join.to_string())),
        Err(_) => {
            writer_task.abort();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "stdout did not drain in time",
            ))
        }
    };
    match read_error {
        Some(e) => Err(e),
        None => written,
    }
}

struct Server {
    ctx: Arc<Ctx>,
    methods: Methods,
    tx: mpsc::Sender<Out>,
    in_flight: InFlight,
    tasks: JoinSet<()>,
    max_line: usize,
    /// Poll each call once in this loop before giving it a task: on a single-threaded runtime.
    poll_here: bool,
}

impl Server {
    async fn send(&self, line: String) {
        // A send fails only once the writer is gone (stdout broken); nothing left to tell.
        let _ = self.tx.send(Out::Line(line)).await;
    }

    async fn handle_line(&mut self, bytes: &[u8]) {
        let Ok(text) = std::str::from_utf8(bytes) else {
            let message = "parse error: the line is not UTF-8";
            self.send(error_response("null", PARSE_ERROR, message, None, None))
                .await;
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        match wire::classify(text) {
            Envelope::Request { id, method, params } => {
                let params = Params::new(params.map(|p| p.get())).into_owned();
                self.request(id, method, params).await
            }
            Envelope::Notification { method, params } => {
                let params = params.map(|p| p.get().to_owned());
                self.notification(&method, params.as_deref()).await
            }
            Envelope::Response => tracing::debug!("ignored a response sent to the plugin"),
            Envelope::Invalid { id, reason } => {
                tracing::warn!(reason, "invalid request");
                let kind = Some(ErrorKind::InvalidInput);
                self.send(error_response(&id, INVALID_REQUEST, reason, kind, None))
                    .await;
            }
            Envelope::ParseError(detail) => {
                tracing::warn!("a line on stdin is not JSON");
                let message = format!("parse error: {detail}");
                self.send(error_response("null", PARSE_ERROR, &message, None, None))
                    .await;
            }
        }
    }

    async fn notification(&mut self, name: &str, params: Option<&str>) {
        if name != method::CANCEL {
            tracing::debug!(method = name, "ignored notification");
            return;
        }
        let Some(params) = params.and_then(|p| serde_json::from_str::<CancelParams>(p).ok()) else {
            tracing::warn!("ignored $/cancel without a valid `id`");
            return;
        };
        let Some(id) = canonical_id_value(&params.id) else {
            return;
        };
        let handle = self.in_flight.lock().expect("in-flight map").remove(&id);
        match handle {
            Some(handle) => {
                handle.abort();
                tracing::debug!(%id, "request cancelled");
                self.send(cancelled(&id, "request cancelled by the host"))
                    .await;
            }
            None => tracing::debug!(%id, "$/cancel for a request that is not in flight"),
        }
    }

    async fn request(&mut self, id: String, name: String, params: Params<'static>) {
        if !self.ctx.initialized.load(Ordering::SeqCst) && !rpc::allowed_before_initialize(&name) {
            let message = format!("'{name}' before 'initialize': send 'initialize' first");
            let kind = Some(ErrorKind::InvalidInput);
            self.send(error_response(
                &id,
                code::NOT_INITIALIZED,
                &message,
                kind,
                None,
            ))
            .await;
            return;
        }
        let duplicate = self
            .in_flight
            .lock()
            .expect("in-flight map")
            .contains_key(&id);
        if duplicate {
            let message = format!("request id {id} is already in flight");
            let kind = Some(ErrorKind::InvalidInput);
            self.send(error_response(&id, INVALID_REQUEST, &message, kind, None))
                .await;
            return;
        }
        let mut call = Box::pin(dispatch(
            self.methods.clone(),
            id.clone(),
            name.clone(),
            params,
        ));
        // On a single-threaded runtime (the default) a call is polled once right here: most
        // answers (`configure_proxy`, `container_env`, ...) are ready at once, and answering them
        // without a task, an in-flight entry or a wake-up is most of a warm call's cost; provider
        // code that blocks would stall this one thread either way. With worker threads, every
        // call gets its own task at once, so blocking provider code never stalls this loop.
        // `initialize` always finishes here, so that every later line sees its outcome.
        if self.poll_here || name == method::INITIALIZE {
            let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
            if let Poll::Ready(line) = first {
                self.send(line).await;
                return;
            }
            if name == method::INITIALIZE {
                let line = call.await;
                self.send(line).await;
                return;
            }
        }
        // Not ready: it goes on as a task of its own, cancellable by `$/cancel`, while this loop
        // reads the next line. (A future may be polled with a new waker; the task's replaces
        // this loop's.)
        let tx = self.tx.clone();
        let registry = Arc::clone(&self.in_flight);
        let key = id.clone();
        // Inserted under the same lock the task takes to remove itself, so a fast task never
        // misses its own entry.
        let mut in_flight = self.in_flight.lock().expect("in-flight map");
        let handle = self.tasks.spawn(async move {
            let response = call.await;
            let still_ours = registry.lock().expect("in-flight map").remove(&key);
            if still_ours.is_some() {
                let _ = tx.send(Out::Line(response)).await;
            }
        });
        in_flight.insert(id, handle);
    }

    /// Waits (bounded) for in-flight requests, then cancels the rest.
    async fn drain(&mut self, timeout: std::time::Duration) {
        let tasks = &mut self.tasks;
        let finished = tokio::time::timeout(timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!("in-flight requests did not finish in time; cancelling them");
        }
        let left: Vec<_> = self
            .in_flight
            .lock()
            .expect("in-flight map")
            .drain()
            .collect();
        for (id, handle) in left {
            handle.abort();
            // Never waits: with stdout stuck, these answers are dropped.
            let line = cancelled(&id, "the plugin is exiting: stdin closed");
            let _ = self.tx.try_send(Out::Line(line));
        }
        // What still runs has been answered or aborted; a task stuck in blocking code (which
        // an abort cannot reach) is left behind and ends with the process.
        self.tasks.detach_all();
    }
}

/// Runs one request through the jsonrpsee method registered for it; always yields a response
/// line. The line was parsed once already (see [`wire::classify`]), so the method's callback is
/// called directly with its id and params, not through `raw_json_request`, which would parse it
/// again and set up a subscription channel for every call.
async fn dispatch(methods: Methods, id: String, name: String, params: Params<'static>) -> String {
    let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
    let Some(rpc_id) = wire::rpc_id(&id) else {
        let message = "invalid request: `id` must be a string, a non-negative integer or null";
        let kind = Some(ErrorKind::InvalidInput);
        return error_response(&id, INVALID_REQUEST, message, kind, None);
    };
    let call = async {
        match methods.method(&name) {
            Some(MethodCallback::Sync(callback)) => {
                callback(rpc_id, params, usize::MAX, Extensions::new())
            }
            Some(MethodCallback::Async(callback)) => {
                let extensions = Extensions::new();
                callback(rpc_id, params, ConnectionId(0), usize::MAX, extensions).await
            }
            // Unknown, or a subscription kind the SDK never registers.
            _ => MethodResponse::error(rpc_id, ErrorObject::from(ErrorCode::MethodNotFound)),
        }
    };
    // What the provider got wrong goes to its log and, as an internal error, to the host.
    let internal = |message: String| {
        tracing::error!(method = name, "{message}");
        error_response(
            &id,
            INTERNAL_ERROR,
            &message,
            Some(ErrorKind::Internal),
            None,
        )
    };
    let outcome = CatchUnwind(Box::pin(call)).await;
    let response = match outcome {
        Ok(response) => String::from(Box::<str>::from(response.into_json())),
        Err(panic) => internal(format!(
            "the provider panicked in '{name}': {}",
            panic_text(&panic)
        )),
    };
    let response = if response.len() > MAX_LINE_BYTES {
        internal(format!(
            "the response to '{name}' is {} bytes, over the {MAX_LINE_BYTES}-byte line limit",
            response.len()
        ))
    } else {
        response
    };
    if let Some(started) = started {
        tracing::debug!(
            method = name,
            id,
            micros = started.elapsed().as_micros() as u64,
            error = response_is_error(&response),
            "answered"
        );
    }
    response
}

/// Whether a response is an error, for the debug log; the result itself is never logged.
fn response_is_error(response: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Outcome {
        error: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_str::<Outcome>(response).is_ok_and(|o| o.error.is_some())
}

fn cancelled(id: &str, message: &str) -> String {
    error_response(
        id,
        code::CANCELLED,
        message,
        Some(ErrorKind::Cancelled),
        None,
    )
}

fn panic_text(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".into()
    }
}

/// Turns a panic while polling into an error value, so a panicking provider still gets its
/// request answered.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The single owner of the protocol output: writes whole lines, flushes when idle.
async fn write_lines<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::Receiver<Out>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(8192);
    let mut closing = false;
    while !closing {
        let Some(first) = rx.recv().await else { break };
        batch.clear();
        let mut next = Some(first);
        while let Some(out) = next.take() {
            match out {
                Out::Line(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                }
                Out::Close => closing = true,
            }
            if !closing && batch.len() < 1 << 20 {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty()
            && let Err(e) = write_all(&mut writer, &batch).await
        {
            tracing::error!(error = %e, "writing to stdout failed");
            return Err(e);
        }
    }
    writer.shutdown().await.or_else(ignore_broken_pipe)
}

async fn write_all<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

fn ignore_broken_pipe(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}
