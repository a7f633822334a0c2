//! Reading a plugin's stdout (one JSON-RPC message per line) and its stderr.
//!
//! [`LineReceiver`] is the careful half of the stdio transport under [`super::client`]:
//!
//! - a line that does not start with `{` (a banner, a stray `print`) is logged and skipped;
//! - a line longer than [`protocol::MAX_LINE_BYTES`] is fatal;
//! - a line that starts with `{` but is not JSON, or is JSON but not a JSON-RPC 2.0 response or
//!   notification, is fatal;
//! - `$/log` notifications are forwarded to `tracing`; other notifications and plugin → host
//!   requests (not part of protocol v1) are logged and skipped;
//! - end of file is reported.
//!
//! Each line is parsed once: a response comes out as its id and its result (still raw JSON, for
//! the caller to read as the type it expects) or its error object.
//!
//! Fatal conditions are recorded in [`Shared`] before the receiver fails, so the connection can
//! say precisely what happened, never quoting the offending message (which may hold a token).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use jsonrpsee::types::ErrorObjectOwned;
use moat_plugin_sdk::{Secret, protocol};
use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::error::Failure;

/// Secrets shorter than this are not scrubbed from plugin output.
const MIN_SCRUBBED_LEN: usize = 6;

/// How many stderr lines are kept for error reports.
pub const STDERR_TAIL_LINES: usize = 64;

/// Longest stderr line kept or forwarded; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// Bytes dropped before the cut of an overlong stderr line: longer than any token.
const CUT_MARGIN: usize = 1024;

/// Longest excerpt of a skipped stdout line shown in the log.
const SKIPPED_EXCERPT: usize = 120;

/// The `tracing` target of everything a plugin says.
pub const LOG_TARGET: &str = "moat::plugin";

/// State shared by the transport halves, the stderr task and the connection.
#[derive(Debug)]
pub struct Shared {
    /// The provider name, for logs.
    pub name: String,
    /// The executable, for logs.
    pub path: PathBuf,
    fault: Mutex<Option<Failure>>,
    tail: Mutex<VecDeque<String>>,
    /// Credentials this plugin has been handed or has returned: scrubbed from everything it
    /// writes before moat logs or keeps it, so a careless plugin cannot leak one through moat.
    secrets: Mutex<Vec<Secret>>,
    /// What the plugin logged while its output is held (see [`Shared::hold_output`]).
    held: Mutex<Held>,
}

/// Log lines kept back while a call that may return a new secret is in flight.
#[derive(Debug, Default)]
struct Held {
    /// How many holds are in force; lines are forwarded when it drops to zero.
    holds: usize,
    lines: VecDeque<(String, String)>,
    dropped: usize,
}

/// Most log lines kept back during one hold; older ones are dropped (and counted).
const MAX_HELD_LINES: usize = 256;

/// Forwards what the plugin logged while it was held, redacted with every secret known by then,
/// when dropped.
#[must_use = "the plugin's log is held until this is dropped"]
pub struct OutputHold {
    shared: std::sync::Arc<Shared>,
}

impl OutputHold {
    /// Scrubs `secret` from the held lines (and everything later) before they are let go.
    pub fn remember_secret(&self, secret: &Secret) {
        self.shared.remember_secret(secret);
    }
}

impl Drop for OutputHold {
    fn drop(&mut self) {
        let (lines, dropped) = {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            held.holds = held.holds.saturating_sub(1);
            if held.holds > 0 {
                return;
            }
            (
                std::mem::take(&mut held.lines),
                std::mem::take(&mut held.dropped),
            )
        };
        if dropped > 0 {
            tracing::warn!(
                target: LOG_TARGET,
                provider = %self.shared.name,
                "{dropped} earlier log lines of the plugin were dropped while they were held"
            );
        }
        for (level, message) in lines {
            emit(&self.shared.name, &level, &self.shared.redact(&message));
        }
    }
}

impl Shared {
    pub fn new(name: String, path: PathBuf) -> Self {
        Shared {
            name,
            path,
            fault: Mutex::new(None),
            tail: Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)),
            secrets: Mutex::new(Vec::new()),
            held: Mutex::new(Held::default()),
        }
    }

    /// Holds back what the plugin logs until the returned guard is dropped.
    ///
    /// For `grant`: a plugin may log the token it is about to return (read from an environment
    /// variable, say) before moat knows that token, so redaction could not catch it. Held lines
    /// are redacted again when they are let go, after the caller has remembered the returned
    /// credential. The stderr tail is redacted on the way out already.
    pub fn hold_output(self: &std::sync::Arc<Self>) -> OutputHold {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).holds += 1;
        OutputHold {
            shared: self.clone(),
        }
    }

    /// True while the output is held.
    fn is_held(&self) -> bool {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).holds > 0
    }

    /// Logs one line the plugin wrote (already redacted with what is known), or keeps it back
    /// while the output is held.
    fn forward(&self, level: &str, message: String) {
        {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            if held.holds > 0 {
                if held.lines.len() == MAX_HELD_LINES {
                    held.lines.pop_front();
                    held.dropped += 1;
                }
                held.lines.push_back((level.to_string(), message));
                return;
            }
        }
        emit(&self.name, level, &message);
    }

    /// Adds `secret` to what is scrubbed from the plugin's output. Very short values are not
    /// scrubbed: they would mangle every line and protect nothing.
    pub fn remember_secret(&self, secret: &Secret) {
        if secret.expose().len() < MIN_SCRUBBED_LEN {
            return;
        }
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if !secrets.contains(secret) {
            secrets.push(secret.clone());
        }
    }

    /// `text` with every remembered secret replaced by `[REDACTED]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact_secrets(
            &self.secrets.lock().unwrap_or_else(|e| e.into_inner()),
            text,
        )
    }

    /// The first fatal condition the receiver saw, if any.
    pub fn fault(&self) -> Option<Failure> {
        self.fault.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_fault(&self, failure: Failure) {
        let mut fault = self.fault.lock().unwrap_or_else(|e| e.into_inner());
        fault.get_or_insert(failure);
    }

    /// The last stderr lines, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        // Redacted again on the way out: a secret learned after a line was kept (the token a
        // grant returned, say) must not be shown by a later crash report either.
        tail.iter()
            .map(|line| self.redact(line).into_owned())
            .collect()
    }

    fn push_stderr(&self, line: String) {
        let mut tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// Why the receiver stopped. The precise reason is in [`Shared::fault`].
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The plugin closed its stdout.
    #[error("the plugin closed its stdout")]
    Eof,
    /// A fatal protocol violation.
    #[error("protocol violation: {0}")]
    Protocol(Failure),
    /// Reading failed.
    #[error("reading the plugin's stdout failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads the plugin's stdout line by line and hands on only the responses.
pub struct LineReceiver<R> {
    reader: BufReader<R>,
    shared: std::sync::Arc<Shared>,
    buf: Vec<u8>,
    max_line: usize,
    warned: bool,
}

impl<R: AsyncRead + Unpin> LineReceiver<R> {
    pub fn new(reader: R, shared: std::sync::Arc<Shared>) -> Self {
        Self::with_max_line(reader, shared, protocol::MAX_LINE_BYTES)
    }

    /// A receiver with another line limit (tests).
    pub fn with_max_line(reader: R, shared: std::sync::Arc<Shared>, max_line: usize) -> Self {
        LineReceiver {
            reader: BufReader::with_capacity(64 * 1024, reader),
            shared,
            buf: Vec::with_capacity(4096),
            max_line,
            warned: false,
        }
    }

    fn fatal(&self, failure: Failure) -> TransportError {
        self.shared.set_fault(failure.clone());
        TransportError::Protocol(failure)
    }

    /// The next JSON-RPC response, skipping everything else.
    ///
    /// Cancel-safe: a line half read when the caller stopped waiting stays in the buffer and is
    /// continued by the next call, so the stream never loses its place.
    pub async fn next_response(&mut self) -> Result<Response, TransportError> {
        loop {
            let limit = (self.max_line as u64 + 1).saturating_sub(self.buf.len() as u64);
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .await;
            let n = match read {
                Ok(n) => n,
                Err(err) => {
                    self.shared.set_fault(Failure::Io(err.to_string()));
                    return Err(err.into());
                }
            };
            if n == 0 && self.buf.is_empty() {
                return Err(TransportError::Eof);
            }
            // A line is complete at its newline, at the end of the output, or once too long.
            let mut end = self.buf.len();
            if self.buf.last() == Some(&b'\n') {
                end -= 1;
                if end > 0 && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            if end > self.max_line {
                return Err(self.fatal(Failure::LineTooLong));
            }
            let line = classify(&self.buf[..end]);
            let skipped = matches!(line, Line::NotJson)
                .then(|| String::from_utf8_lossy(&self.buf[..end]).into_owned());
            self.buf.clear();
            match line {
                Line::Blank => {}
                Line::NotJson => {
                    // Once per process at warn, without the content (a stray print may hold
                    // anything); each line at debug, abridged, for the plugin's author.
                    if !self.warned {
                        self.warned = true;
                        tracing::warn!(
                            target: LOG_TARGET,
                            provider = %self.shared.name,
                            "the plugin wrote a line that is not JSON-RPC on stdout ({} bytes, \
                             skipped); plugins must log to stderr",
                            skipped.as_ref().map_or(0, String::len)
                        );
                    }
                    let line = skipped.unwrap_or_default();
                    if self.shared.is_held() {
                        // A secret the plugin is about to return is not known yet, and an
                        // excerpt cannot be redacted later without risking a cut token.
                        tracing::debug!(
                            target: LOG_TARGET,
                            provider = %self.shared.name,
                            "skipped a stdout line of {} bytes (not shown during a grant)",
                            line.len()
                        );
                    } else {
                        // Redacted whole before it is cut, so no part of a secret survives the
                        // cut.
                        let excerpt = excerpt(self.shared.redact(&line).as_bytes());
                        tracing::debug!(
                            target: LOG_TARGET,
                            provider = %self.shared.name,
                            "skipped stdout line: {excerpt}"
                        );
                    }
                }
                Line::Response(response) => return Ok(response),
                Line::Log { level, message } => {
                    let message = self.shared.redact(&message).into_owned();
                    let kept = format!("{}: {message}", level.to_ascii_lowercase());
                    self.shared.forward(&level, message);
                    self.shared.push_stderr(kept);
                }
                Line::Notification(method) => tracing::debug!(
                    target: LOG_TARGET,
                    provider = %self.shared.name,
                    "ignored the notification {method:?}"
                ),
                Line::Request(method) => tracing::warn!(
                    target: LOG_TARGET,
                    provider = %self.shared.name,
                    "ignored a request for {method:?}: protocol v1 has no plugin-to-host requests"
                ),
                Line::Invalid(failure) => return Err(self.fatal(failure)),
            }
        }
    }
}

/// An answer to one of moat's requests. `Debug` shows the id and the outcome's size or error code,
/// never the result, which may hold a credential.
pub struct Response {
    /// The id of the request it answers.
    pub id: u64,
    /// The result as raw JSON, or the error object.
    pub outcome: Result<Box<RawValue>, ErrorObjectOwned>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Response");
        debug.field("id", &self.id);
        match &self.outcome {
            Ok(result) => debug.field("result_bytes", &result.get().len()),
            Err(error) => debug.field("error_code", &error.code()),
        };
        debug.finish()
    }
}

impl PartialEq for Response {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && match (&self.outcome, &other.outcome) {
                (Ok(a), Ok(b)) => a.get() == b.get(),
                (Err(a), Err(b)) => a == b,
                _ => false,
            }
    }
}

/// What one stdout line is.
#[derive(Debug, PartialEq)]
enum Line {
    Blank,
    NotJson,
    Response(Response),
    Log { level: String, message: String },
    Notification(String),
    Request(String),
    Invalid(Failure),
}

/// Every member of a message moat reads; unknown members are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<serde_json::Value>,
    #[serde(default)]
    params: Option<serde_json::Value>,
}

/// `Some` whenever the field is present, even when it is `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

fn classify(line: &[u8]) -> Line {
    let Some(first) = line.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Line::Blank;
    };
    if *first != b'{' {
        return Line::NotJson;
    }
    let envelope: Envelope = match serde_json::from_slice(line) {
        Ok(envelope) => envelope,
        Err(err) if err.is_data() => {
            return Line::Invalid(Failure::NotJsonRpc(format!(
                "a message with malformed envelope fields (line {}, column {})",
                err.line(),
                err.column()
            )));
        }
        Err(err) => {
            return Line::Invalid(Failure::InvalidJson(format!(
                "a line that is not valid JSON ({} at column {} of {} bytes)",
                category(&err),
                err.column(),
                line.len()
            )));
        }
    };
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Line::Invalid(Failure::NotJsonRpc(
            "a message without \"jsonrpc\": \"2.0\"".into(),
        ));
    }
    let has_id = envelope.id.as_ref().is_some_and(|id| !id.is_null());
    if let Some(method) = envelope.method {
        if has_id {
            return Line::Request(method.into_owned());
        }
        if method == protocol::method::LOG {
            let params = envelope.params.unwrap_or_default();
            let field = |key: &str| params.get(key).and_then(|v| v.as_str()).unwrap_or_default();
            return Line::Log {
                level: field("level").to_string(),
                message: field("message").to_string(),
            };
        }
        return Line::Notification(method.into_owned());
    }
    if envelope.result.is_some() || envelope.error.is_some() {
        if has_id {
            return response(envelope);
        }
        let code = envelope
            .error
            .as_ref()
            .and_then(|e| e.get("code"))
            .and_then(|c| c.as_i64());
        let what = match code {
            Some(code) => format!("an error (code {code}) without a request id"),
            None => "a response without a request id".to_string(),
        };
        return Line::Invalid(Failure::NotJsonRpc(what));
    }
    Line::Invalid(Failure::NotJsonRpc(
        "a JSON object that is neither a response nor a notification".into(),
    ))
}

/// A response with an id: the id must be one moat could have sent, and exactly one of `result`
/// and `error` must be there, the error a JSON-RPC error object.
fn response(envelope: Envelope<'_>) -> Line {
    let raw_id = envelope.id.unwrap_or_default();
    let Some(id) = raw_id.as_u64() else {
        // moat's ids are non-negative integers.
        let text: String = raw_id.to_string().chars().take(40).collect();
        return Line::Invalid(Failure::WrongId(text));
    };
    let outcome = match (envelope.result, envelope.error) {
        (Some(result), None) => Ok(result),
        (None, Some(error)) => match serde_json::from_value::<ErrorObjectOwned>(error) {
            Ok(error) => Err(error),
            Err(_) => {
                return Line::Invalid(Failure::NotJsonRpc(
                    "an error object without an integer `code` and a string `message`".into(),
                ));
            }
        },
        _ => {
            return Line::Invalid(Failure::NotJsonRpc(
                "a response with both `result` and `error`".into(),
            ));
        }
    };
    Line::Response(Response { id, outcome })
}

fn category(err: &serde_json::Error) -> &'static str {
    match err.classify() {
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Data => "bad data",
    }
}

/// `text` with every secret in `secrets` replaced by `[REDACTED]`.
pub(crate) fn redact_secrets<'a>(secrets: &[Secret], text: &'a str) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(text);
    for secret in secrets {
        if text.contains(secret.expose()) {
            text = Cow::Owned(text.replace(secret.expose(), "[REDACTED]"));
        }
    }
    text
}

/// The start of a skipped line, for the log.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut excerpt: String = text.chars().take(SKIPPED_EXCERPT).collect();
    if text.chars().count() > SKIPPED_EXCERPT {
        excerpt.push('…');
    }
    excerpt.escape_debug().to_string()
}

/// Forwards the plugin's stderr to `tracing` under [`LOG_TARGET`] and keeps the last lines. JSON
/// lines with a level and a message are logged at that level; anything else at debug. Returns on
/// end of file.
pub async fn forward_stderr<R: AsyncRead + Unpin>(stderr: R, shared: std::sync::Arc<Shared>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        } else if buf.len() >= MAX_STDERR_LINE {
            // Overlong line: the rest is dropped. A secret cut in two by the limit could not be
            // recognised and redacted, so the end of what is kept goes too.
            buf.truncate(MAX_STDERR_LINE - CUT_MARGIN);
            buf.extend_from_slice(" …(line cut)".as_bytes());
            if !skip_rest_of_line(&mut reader).await {
                record_stderr(&shared, &buf);
                return;
            }
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        record_stderr(&shared, &buf);
    }
}

/// Discards up to the next newline; false at end of file.
async fn skip_rest_of_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> bool {
    loop {
        let (done, used) = match reader.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(chunk) => match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (true, i + 1),
                None => (false, chunk.len()),
            },
        };
        reader.consume(used);
        if done {
            return true;
        }
    }
}

fn record_stderr(shared: &Shared, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = shared.redact(&text).into_owned();
    let text = Cow::<str>::Owned(text);
    if text.trim().is_empty() {
        return;
    }
    let kept = match parse_log_line(&text) {
        Some(Record::Dropped) => return,
        Some(Record::Log(level, message)) => {
            let kept = if level.is_empty() {
                message.clone()
            } else {
                format!("{}: {message}", level.to_ascii_lowercase())
            };
            shared.forward(&level, message);
            kept
        }
        None => {
            // Unstructured: at debug.
            shared.forward("", text.to_string());
            text.into_owned()
        }
    };
    shared.push_stderr(kept);
}

/// A structured stderr line.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    /// `(level, message)`.
    Log(String, String),
    /// A record that must not be shown: jsonrpsee's own traces echo whole messages, credentials
    /// included, when a plugin built on it logs at trace level.
    Dropped,
}

/// A structured log line: `{"level": .., "message": ..}`, hclog's `@level`/`@message`, or
/// tracing-subscriber's JSON (`fields.message`, `target`).
fn parse_log_line(text: &str) -> Option<Record> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let string = |key: &str| value.get(key).and_then(|v| v.as_str());
    if string("target").is_some_and(|target| target.starts_with("jsonrpsee")) {
        return Some(Record::Dropped);
    }
    let level = string("level")
        .or_else(|| string("@level"))
        .unwrap_or_default();
    let message = string("message")
        .or_else(|| string("@message"))
        .or_else(|| string("msg"))
        .or_else(|| value.pointer("/fields/message").and_then(|v| v.as_str()))?;
    Some(Record::Log(level.to_string(), message.to_string()))
}

/// Logs `message` at the level named by `level` (debug when unknown).
fn emit(provider: &str, level: &str, message: &str) {
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(target: LOG_TARGET, $level, provider = %provider, "{message}")
        };
    }
    match level.to_ascii_lowercase().as_str() {
        "error" | "fatal" | "critical" => at!(tracing::Level::ERROR),
        "warn" | "warning" => at!(tracing::Level::WARN),
        "info" => at!(tracing::Level::INFO),
        "trace" => at!(tracing::Level::TRACE),
        _ => at!(tracing::Level::DEBUG),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use tokio::io::AsyncWriteExt;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new("t".into(), "/x".into()))
    }

    #[test]
    fn lines_are_classified() {
        assert_eq!(classify(b""), Line::Blank);
        assert_eq!(classify(b"   "), Line::Blank);
        assert_eq!(classify(b"Welcome to my plugin!"), Line::NotJson);
        assert_eq!(classify(b"[1,2]"), Line::NotJson);
        let Line::Response(ok) = classify(br#"{"jsonrpc":"2.0","id":1,"result":null}"#) else {
            panic!("not a response")
        };
        assert_eq!(ok.id, 1);
        assert_eq!(ok.outcome.unwrap().get(), "null");
        let Line::Response(error) = classify(
            br#"{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"x","data":{"kind":"unsupported"}}}"#,
        ) else {
            panic!("not a response")
        };
        assert_eq!(error.id, 2);
        let error = error.outcome.unwrap_err();
        assert_eq!((error.code(), error.message()), (-32601, "x"));
        assert_eq!(error.data().unwrap().get(), r#"{"kind":"unsupported"}"#);
        assert_eq!(
            classify(
                br#"{"jsonrpc":"2.0","method":"$/log","params":{"level":"info","message":"hi"}}"#
            ),
            Line::Log {
                level: "info".into(),
                message: "hi".into()
            }
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"$/progress"}"#),
            Line::Notification("$/progress".into())
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","id":7,"method":"ask"}"#),
            Line::Request("ask".into())
        );
        for bad in [
            &br#"{"jsonrpc":"2.0","id":1,"result":"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":{}} trailing"#,
        ] {
            assert!(matches!(
                classify(bad),
                Line::Invalid(Failure::InvalidJson(_))
            ));
        }
        for bad in [
            &br#"{"id":1,"result":{}}"#[..],
            br#"{"jsonrpc":"2.0","hello":1}"#,
            br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse"}}"#,
            br#"{"jsonrpc":"2.0","method":12}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"x"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":{"message":"no code"}}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":"text"}"#,
        ] {
            assert!(
                matches!(classify(bad), Line::Invalid(Failure::NotJsonRpc(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_response_never_shows_its_result_in_debug() {
        let Line::Response(response) =
            classify(br#"{"jsonrpc":"2.0","id":4,"result":{"token":"ghp_secret"}}"#)
        else {
            panic!("not a response")
        };
        let shown = format!("{response:?}");
        assert!(!shown.contains("ghp_secret"), "{shown}");
        assert!(shown.contains("id: 4"), "{shown}");
    }

    #[test]
    fn ids_moat_never_sends_are_wrong_ids() {
        for (line, id) in [
            (&br#"{"jsonrpc":"2.0","id":"1","result":{}}"#[..], r#""1""#),
            (br#"{"jsonrpc":"2.0","id":-3,"result":{}}"#, "-3"),
            (br#"{"jsonrpc":"2.0","id":1.5,"result":{}}"#, "1.5"),
        ] {
            assert_eq!(
                classify(line),
                Line::Invalid(Failure::WrongId(id.into())),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn invalid_json_is_reported_without_its_content() {
        let Line::Invalid(failure) = classify(br#"{"jsonrpc":"2.0","id":1,"result":"ghp_secret"#)
        else {
            panic!()
        };
        assert!(!failure.to_string().contains("ghp_secret"), "{failure}");
    }

    #[tokio::test]
    async fn the_receiver_skips_banners_and_fails_on_long_lines() {
        let input = b"banner\n\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n0123456789ABCDEF\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":\"0123456789\"}\n";
        let shared = shared();
        let mut rx = LineReceiver::with_max_line(&input[..], shared.clone(), 40);
        let first = rx.next_response().await.unwrap();
        assert_eq!((first.id, first.outcome.unwrap().get()), (1, "{}"));
        // The banner-like line of 16 bytes fits; the next frame is too long.
        assert!(matches!(
            rx.next_response().await,
            Err(TransportError::Protocol(Failure::LineTooLong))
        ));
        assert_eq!(shared.fault(), Some(Failure::LineTooLong));
    }

    #[tokio::test]
    async fn a_cancelled_read_loses_nothing() {
        let (mut plugin, host) = tokio::io::duplex(1024);
        let mut rx = LineReceiver::new(host, shared());
        plugin
            .write_all(br#"{"jsonrpc":"2.0","id":1,"#)
            .await
            .unwrap();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), rx.next_response()).await;
        assert!(waited.is_err(), "half a line is not a response");
        plugin
            .write_all(b"\"result\":{\"ok\":1}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":2}\n")
            .await
            .unwrap();
        let first = rx.next_response().await.unwrap();
        assert_eq!((first.id, first.outcome.unwrap().get()), (1, r#"{"ok":1}"#));
        let second = rx.next_response().await.unwrap();
        assert_eq!((second.id, second.outcome.unwrap().get()), (2, "2"));
    }

    #[tokio::test]
    async fn the_receiver_reports_eof() {
        let mut rx = LineReceiver::new(&b"hello\n"[..], shared());
        assert!(matches!(rx.next_response().await, Err(TransportError::Eof)));
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn stderr_goes_to_tracing_under_the_plugin_target_with_its_name() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let shared = Arc::new(Shared::new("gitlab".into(), "/x".into()));
        tracing::subscriber::with_default(subscriber, || {
            record_stderr(
                &shared,
                br#"{"level":"warn","message":"token expires soon"}"#,
            );
            record_stderr(&shared, b"plain words");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("WARN moat::plugin: token expires soon provider=gitlab"),
            "{text}"
        );
        assert!(
            lines[1].contains("DEBUG moat::plugin: plain words provider=gitlab"),
            "{text}"
        );
    }

    #[test]
    fn held_lines_wait_for_the_last_hold_and_are_redacted_with_what_is_known_then() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        let shared = Arc::new(Shared::new("p".into(), "/x".into()));
        let text = || String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let outer = shared.hold_output();
            let inner = shared.hold_output();
            for i in 0..MAX_HELD_LINES + 2 {
                record_stderr(&shared, format!("filler {i}").as_bytes());
            }
            record_stderr(
                &shared,
                br#"{"level":"info","message":"got tok-0123456789"}"#,
            );
            drop(inner);
            assert_eq!(text(), "", "nothing is logged while a hold is in force");
            outer.remember_secret(&Secret::from("tok-0123456789"));
            drop(outer);
            record_stderr(&shared, b"after");
        });
        let text = text();
        assert!(!text.contains("tok-0123456789"), "{text}");
        // The oldest lines went over the bound: counted, not shown.
        assert!(text.contains("3 earlier log lines"), "{text}");
        assert!(text.contains("INFO moat::plugin: got [REDACTED]"), "{text}");
        assert!(!text.contains("filler 2 "), "{text}");
        assert!(text.contains("filler 3 "), "{text}");
        assert!(text.trim_end().ends_with("after provider=p"), "{text}");
        // The tail kept everything, and shows it redacted.
        assert!(
            shared
                .stderr_tail()
                .iter()
                .all(|l| !l.contains("tok-0123456789"))
        );
    }

    #[tokio::test]
    async fn stderr_is_kept_and_parsed() {
        let mut input = String::new();
        input.push_str("{\"level\":\"WARN\",\"fields\":{\"message\":\"careful\"}}\n");
        input.push_str(&"x".repeat(MAX_STDERR_LINE + 10));
        input.push('\n');
        for i in 0..70 {
            input.push_str(&format!("line {i}\n"));
        }
        let shared = shared();
        forward_stderr(input.as_bytes(), shared.clone()).await;
        let tail = shared.stderr_tail();
        assert_eq!(tail.len(), STDERR_TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 69");
        assert_eq!(tail[0], "line 6");

        // A secret straddling the cut of an overlong line leaves no part of itself behind.
        let secret = "tok-straddling-the-cut-0123456789";
        let mut long = "y".repeat(MAX_STDERR_LINE - 10);
        long.push_str(secret);
        long.push('\n');
        let cut = self::shared();
        cut.remember_secret(&Secret::new(secret));
        forward_stderr(long.as_bytes(), cut.clone()).await;
        let kept = cut.stderr_tail().join("");
        assert!(kept.ends_with("(line cut)"), "{}", &kept[kept.len() - 40..]);
        assert!(
            !kept.contains("tok-"),
            "a prefix of the secret survived the cut"
        );

        let shared3 = self::shared();
        let jsonrpsee = br#"{"level":"TRACE","fields":{"message":"Request: grant tok"},"target":"jsonrpsee_core::server"}"#;
        forward_stderr(&jsonrpsee[..], shared3.clone()).await;
        assert!(
            shared3.stderr_tail().is_empty(),
            "jsonrpsee's traces are dropped"
        );

        let shared2 = self::shared();
        forward_stderr(
            &b"{\"level\":\"WARN\",\"fields\":{\"message\":\"careful\"}}\r\nplain"[..],
            shared2.clone(),
        )
        .await;
        assert_eq!(shared2.stderr_tail(), vec!["warn: careful", "plain"]);
    }
}
