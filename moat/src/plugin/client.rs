//! The JSON-RPC client over a plugin's stdio: each caller writes its own request line, one reader
//! task hands every answer to the caller waiting for its id.
//!
//! Why not jsonrpsee's client: it routes every request through a background send task and parses
//! every answer again after moat has sorted the line, and on a small machine those hand-offs cost
//! more than the pipe round trip itself (`cargo bench -p moat --bench plugin`, and BENCHMARKS.md).
//! What a plugin connection needs is small: ids, a table of waiting callers, and the error cases,
//! which are all moat's own anyway (the receiver in [`super::transport`] decides what is fatal,
//! and the reader task hands that [`Failure`] to every caller still waiting).
//! jsonrpsee's types still describe the error objects on both sides.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jsonrpsee::types::ErrorObjectOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::error::{ExitReport, Failure};
use super::transport::{LineReceiver, Shared};

/// Why a request got no result.
#[derive(Debug)]
pub enum RpcError {
    /// The plugin answered with a JSON-RPC error object.
    Remote(ErrorObjectOwned),
    /// The params could not be written as JSON (a serde message, which may quote a value).
    Encode(serde_json::Error),
    /// The connection ended, for this reason: what the reader saw (a protocol violation, the
    /// end of the plugin's stdout as [`Failure::Exited`]), or a broken pipe to the plugin.
    Closed(Failure),
}

/// What the reader hands a caller: the plugin's answer, or why there will be none.
type Reply = Result<Result<Box<RawValue>, ErrorObjectOwned>, Failure>;

/// The callers waiting for an answer, by id.
#[derive(Default)]
struct Calls {
    waiting: HashMap<u64, oneshot::Sender<Reply>>,
    /// Ids whose caller stopped waiting (a timeout, a dropped future): a late answer to one is
    /// dropped quietly, where an answer to an id never sent is a protocol violation.
    abandoned: HashSet<u64>,
    /// Set when the reader stopped, to why: nobody will answer any more.
    closed: Option<Failure>,
}

impl Calls {
    /// Why the connection is closed, for a caller who was not waiting when it closed.
    fn cause(&self) -> Failure {
        self.closed
            .clone()
            .unwrap_or(Failure::Exited(ExitReport::Unknown))
    }
}

type SharedCalls = Arc<Mutex<Calls>>;

fn lock(calls: &SharedCalls) -> std::sync::MutexGuard<'_, Calls> {
    calls.lock().unwrap_or_else(|e| e.into_inner())
}

/// A JSON-RPC client over one plugin's stdin and stdout.
pub struct Client<W> {
    /// `None` once closed: dropping the pipe is the plugin's end of file.
    writer: tokio::sync::Mutex<Option<W>>,
    calls: SharedCalls,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl<W> std::fmt::Debug for Client<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin + Send> Client<W> {
    /// Starts the reader task on `receiver`. Must run in a tokio runtime.
    pub fn start<R>(writer: W, receiver: LineReceiver<R>, shared: Arc<Shared>) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        let calls = SharedCalls::default();
        let reader = tokio::spawn(read_answers(receiver, calls.clone(), shared));
        Client {
            writer: tokio::sync::Mutex::new(Some(writer)),
            calls,
            next_id: AtomicU64::new(0),
            reader,
        }
    }

    /// Sends `method` with `params` and waits for the answer, without a limit (the caller has
    /// one; dropping the future stops the wait).
    pub async fn request<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<Box<RawValue>, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let line = encode(id, method, params).map_err(RpcError::Encode)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut calls = lock(&self.calls);
            if calls.closed.is_some() {
                return Err(RpcError::Closed(calls.cause()));
            }
            calls.waiting.insert(id, tx);
        }
        let waiting = Waiting {
            calls: &self.calls,
            id,
        };
        {
            let mut writer = Writing {
                slot: self.writer.lock().await,
                done: false,
            };
            let Some(pipe) = writer.slot.as_mut() else {
                return Err(RpcError::Closed(lock(&self.calls).cause()));
            };
            // A write error means the plugin is gone or stopped reading; the reader will see the
            // end of its stdout, and the caller fails the connection either way.
            if pipe.write_all(&line).await.is_err() || pipe.flush().await.is_err() {
                return Err(RpcError::Closed(lock(&self.calls).cause()));
            }
            writer.done = true;
        }
        let reply = rx.await;
        waiting.answered();
        match reply {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(RpcError::Remote(error)),
            Ok(Err(failure)) => Err(RpcError::Closed(failure)),
            Err(_) => Err(RpcError::Closed(lock(&self.calls).cause())),
        }
    }

    /// Closes the plugin's stdin (its end of file) once the requests being written are written.
    pub async fn close(&self) {
        self.writer.lock().await.take();
    }
}

impl<W> Drop for Client<W> {
    fn drop(&mut self) {
        // Nobody can ask any more; the pipe to the plugin closes with `writer`.
        self.reader.abort();
    }
}

/// The plugin's stdin while one request line is written. If the writing stops half way (the
/// caller's future was dropped, or the write failed), the rest of the line will never follow and
/// the next request would be glued to the half line: the pipe is closed instead, which the plugin
/// reads as end of file.
struct Writing<'a, W> {
    slot: tokio::sync::MutexGuard<'a, Option<W>>,
    done: bool,
}

impl<W> Drop for Writing<'_, W> {
    fn drop(&mut self) {
        if !self.done {
            self.slot.take();
        }
    }
}

/// Marks a request's id abandoned if its caller stops waiting before the answer.
struct Waiting<'a> {
    calls: &'a SharedCalls,
    id: u64,
}

impl Waiting<'_> {
    fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut calls = lock(self.calls);
        if calls.waiting.remove(&self.id).is_some() {
            calls.abandoned.insert(self.id);
        }
    }
}

/// One request line: `{"jsonrpc":"2.0","id":N,"method":"..","params":..}` and a newline
/// (compact JSON never holds a raw newline, so a message is one line).
fn encode<P: Serialize + ?Sized>(
    id: u64,
    method: &str,
    params: &P,
) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    write!(line, "{id}").expect("writing to a Vec cannot fail");
    line.extend_from_slice(br#","method":"#);
    serde_json::to_writer(&mut line, method)?;
    line.extend_from_slice(br#","params":"#);
    serde_json::to_writer(&mut line, params)?;
    line.extend_from_slice(b"}\n");
    Ok(line)
}

/// Hands each answer to its caller until the plugin's stdout ends or breaks the protocol; then
/// every caller still waiting gets the reason.
async fn read_answers<R: AsyncRead + Unpin>(
    mut receiver: LineReceiver<R>,
    calls: SharedCalls,
    shared: Arc<Shared>,
) {
    let cause = loop {
        let response = match receiver.next_response().await {
            Ok(response) => response,
            Err(failure) => break failure,
        };
        let mut state = lock(&calls);
        if let Some(caller) = state.waiting.remove(&response.id) {
            drop(state);
            // The caller may have stopped waiting just now; then nobody needs the answer.
            let _ = caller.send(Ok(response.outcome));
        } else if state.abandoned.remove(&response.id) {
            tracing::debug!(
                provider = %shared.name,
                id = response.id,
                "dropped a late answer nobody waits for"
            );
        } else {
            break Failure::WrongId(response.id.to_string());
        }
    };
    let mut state = lock(&calls);
    state.closed = Some(cause.clone());
    for (_, caller) in state.waiting.drain() {
        let _ = caller.send(Err(cause.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncBufReadExt, BufReader};

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new("t".into(), "/x".into()))
    }

    /// A client wired to an in-memory "plugin": returns the client and the plugin's ends.
    fn wired() -> (
        Client<tokio::io::DuplexStream>,
        BufReader<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Arc<Shared>,
    ) {
        let (host_out, plugin_in) = tokio::io::duplex(1 << 16);
        let (plugin_out, host_in) = tokio::io::duplex(1 << 16);
        let shared = shared();
        let client = Client::start(
            host_out,
            LineReceiver::new(host_in, shared.clone()),
            shared.clone(),
        );
        (client, BufReader::new(plugin_in), plugin_out, shared)
    }

    async fn next_request(input: &mut BufReader<tokio::io::DuplexStream>) -> serde_json::Value {
        let mut line = String::new();
        input.read_line(&mut line).await.unwrap();
        assert!(line.ends_with('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn requests_are_one_json_rpc_line() {
        let line = encode(7, "configure_proxy", &json!({"a": "line\nbreak"})).unwrap();
        let text = String::from_utf8(line).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({"jsonrpc": "2.0", "id": 7, "method": "configure_proxy",
                   "params": {"a": "line\nbreak"}})
        );
    }

    #[tokio::test]
    async fn answers_reach_their_callers_in_any_order() {
        let (client, mut input, mut output, _) = wired();
        let client = Arc::new(client);
        let first = tokio::spawn({
            let client = client.clone();
            async move { client.request("a", &json!({})).await }
        });
        let a = next_request(&mut input).await;
        let second = tokio::spawn({
            let client = client.clone();
            async move { client.request("b", &json!({})).await }
        });
        let b = next_request(&mut input).await;
        assert_eq!(
            (a["method"].as_str(), b["method"].as_str()),
            (Some("a"), Some("b"))
        );
        let answer = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":-32601,\"message\":\"no\"}}}}\n\
             {{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{{\"ok\":true}}}}\n",
            b["id"], a["id"]
        );
        output.write_all(answer.as_bytes()).await.unwrap();
        let first = first.await.unwrap().unwrap();
        assert_eq!(first.get(), r#"{"ok":true}"#);
        match second.await.unwrap() {
            Err(RpcError::Remote(error)) => assert_eq!(error.code(), -32601),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_unknown_id_closes_the_connection_with_a_fault() {
        let (client, mut input, mut output, _) = wired();
        let client = Arc::new(client);
        let call = tokio::spawn({
            let client = client.clone();
            async move { client.request("a", &json!({})).await }
        });
        next_request(&mut input).await;
        output
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":{}}\n")
            .await
            .unwrap();
        let wrong = Failure::WrongId("99".into());
        assert!(matches!(call.await.unwrap(), Err(RpcError::Closed(f)) if f == wrong));
        // Later requests fail at once, for the same reason.
        assert!(matches!(
            client.request("b", &json!({})).await,
            Err(RpcError::Closed(f)) if f == wrong
        ));
    }

    #[tokio::test]
    async fn a_late_answer_to_an_abandoned_call_is_dropped() {
        let (client, mut input, mut output, _) = wired();
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            client.request("slow", &json!({})),
        )
        .await;
        assert!(gave_up.is_err());
        let slow = next_request(&mut input).await;
        let late = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":1}}\n",
            slow["id"]
        );
        output.write_all(late.as_bytes()).await.unwrap();
        let empty = json!({});
        let call = client.request("next", &empty);
        let answer = async {
            let next = next_request(&mut input).await;
            let line = format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":2}}\n",
                next["id"]
            );
            output.write_all(line.as_bytes()).await.unwrap();
        };
        let (result, ()) = tokio::join!(call, answer);
        assert_eq!(result.unwrap().get(), "2");
    }

    #[tokio::test]
    async fn end_of_output_wakes_every_caller() {
        let (client, mut input, output, _) = wired();
        let empty = json!({});
        let call = client.request("a", &empty);
        let hang_up = async {
            next_request(&mut input).await;
            drop(output);
        };
        let (result, ()) = tokio::join!(call, hang_up);
        assert!(matches!(
            result,
            Err(RpcError::Closed(Failure::Exited(ExitReport::Unknown)))
        ));
    }

    #[tokio::test]
    async fn a_request_dropped_half_written_closes_the_pipe_instead_of_garbling_it() {
        // A pipe that takes 16 bytes and then nothing until the plugin reads.
        let (host_out, plugin_in) = tokio::io::duplex(16);
        let (_plugin_out, host_in) = tokio::io::duplex(1024);
        let shared = shared();
        let client = Client::start(host_out, LineReceiver::new(host_in, shared.clone()), shared);
        let big = json!({"padding": "x".repeat(1000)});
        let gave_up = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            client.request("a", &big),
        )
        .await;
        assert!(gave_up.is_err(), "the write cannot finish");
        // What the plugin reads is the start of one line, then end of file: no second request
        // glued to it.
        let mut input = BufReader::new(plugin_in);
        let mut seen = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut input, &mut seen);
        tokio::time::timeout(std::time::Duration::from_secs(5), read)
            .await
            .expect("the pipe was closed")
            .unwrap();
        assert_eq!(seen.len(), 16);
        assert!(matches!(
            client.request("b", &json!({})).await,
            Err(RpcError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn close_is_the_plugins_end_of_file() {
        let (client, mut input, _output, _) = wired();
        client.close().await;
        let mut rest = String::new();
        assert_eq!(input.read_line(&mut rest).await.unwrap(), 0);
        assert!(matches!(
            client.request("a", &json!({})).await,
            Err(RpcError::Closed(_))
        ));
    }
}
