//! A plugin's stdout: one JSON-RPC message per line, and only responses are handed on.
//!
//! [`LineReceiver`] is the careful half of the stdio transport under [`super::super::client`].
//! Lines are framed by [`moat_plugin_sdk::wire`] (the same reader the plugin side uses) and each
//! is read once as a [`wire::Envelope`]:
//!
//! - a line that does not start with `{` (a banner, a stray `print`) is logged and skipped;
//! - a line longer than [`protocol::MAX_LINE_BYTES`] is fatal;
//! - a line that starts with `{` but is not JSON, or is JSON but not a JSON-RPC 2.0 response or
//!   notification, is fatal;
//! - `$/log` notifications ([`protocol::LogParams`]) go where the plugin's stderr goes; other
//!   notifications and plugin → host requests (not part of protocol v1) are logged and skipped;
//! - end of output is fatal too: nobody will answer any more.
//!
//! A response comes out as its id and its result (still raw JSON, for the caller to read as the
//! type it expects) or its error object. Whatever is fatal comes out as the [`Failure`] itself,
//! which the client hands to every caller still waiting: the cause travels in the error value,
//! and is never quoted from the offending message (which may hold a token).

use std::sync::Arc;

use jsonrpsee::types::ErrorObjectOwned;
use moat_plugin_sdk::protocol::{self, LogParams};
use moat_plugin_sdk::wire::{self, Envelope, Frame, LineReader};
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, BufReader};

use super::super::error::{ExitReport, Failure};
use super::{LOG_TARGET, Shared};

/// Longest excerpt of a skipped stdout line shown in the log.
const SKIPPED_EXCERPT: usize = 120;

/// Reads the plugin's stdout line by line and hands on only the responses.
pub struct LineReceiver<R> {
    lines: LineReader<BufReader<R>>,
    shared: Arc<Shared>,
    warned: bool,
}

impl<R: AsyncRead + Unpin> LineReceiver<R> {
    pub fn new(reader: R, shared: Arc<Shared>) -> Self {
        Self::with_max_line(reader, shared, protocol::MAX_LINE_BYTES)
    }

    /// A receiver with another line limit (tests).
    pub fn with_max_line(reader: R, shared: Arc<Shared>, max_line: usize) -> Self {
        LineReceiver {
            lines: LineReader::new(BufReader::with_capacity(64 * 1024, reader), max_line),
            shared,
            warned: false,
        }
    }

    /// The next JSON-RPC response, skipping everything else; or why there will be none: end of
    /// output ([`Failure::Exited`], the exit status still unknown), a read error or a protocol
    /// violation.
    ///
    /// Cancel-safe: a line half read when the caller stopped waiting stays in the buffer and is
    /// continued by the next call, so the stream never loses its place.
    pub async fn next_response(&mut self) -> Result<Response, Failure> {
        loop {
            let line = match self.lines.next().await {
                Ok(Frame::Line(line)) => line,
                Ok(Frame::TooLong(_)) => return Err(Failure::LineTooLong),
                Ok(Frame::Eof) => return Err(Failure::Exited(ExitReport::Unknown)),
                Err(err) => return Err(Failure::Io(err.to_string())),
            };
            match classify(line) {
                Line::Blank => {}
                Line::NotJson => {
                    let skipped = String::from_utf8_lossy(line);
                    skipped_line(&self.shared, &mut self.warned, &skipped);
                }
                Line::Response(response) => return Ok(response),
                Line::Log(LogParams { level, message }) => self.shared.said(&level, &message),
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
                Line::Invalid(failure) => return Err(failure),
            }
        }
    }
}

/// Logs a stdout line that is not JSON-RPC: once per process at warn, without the content (a
/// stray print may hold anything); each line at debug, abridged, for the plugin's author.
fn skipped_line(shared: &Shared, warned: &mut bool, line: &str) {
    if !*warned {
        *warned = true;
        tracing::warn!(
            target: LOG_TARGET,
            provider = %shared.name,
            "the plugin wrote a line that is not JSON-RPC on stdout ({} bytes, skipped); plugins \
             must log to stderr",
            line.len()
        );
    }
    if shared.is_held() {
        // A secret the plugin is about to return is not known yet, and an excerpt cannot be
        // redacted later without risking a cut token.
        tracing::debug!(
            target: LOG_TARGET,
            provider = %shared.name,
            "skipped a stdout line of {} bytes (not shown during a grant)",
            line.len()
        );
    } else {
        // Redacted whole before it is cut, so no part of a secret survives the cut.
        let excerpt = excerpt(shared.redact(line).as_bytes());
        tracing::debug!(
            target: LOG_TARGET,
            provider = %shared.name,
            "skipped stdout line: {excerpt}"
        );
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
    Log(LogParams),
    Notification(String),
    Request(String),
    Invalid(Failure),
}

fn classify(line: &[u8]) -> Line {
    let Some(first) = line.iter().find(|b| !b.is_ascii_whitespace()) else {
        return Line::Blank;
    };
    if *first != b'{' {
        return Line::NotJson;
    }
    let envelope = match Envelope::parse(line) {
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
    if !envelope.is_v2() {
        return Line::Invalid(Failure::NotJsonRpc(
            "a message without \"jsonrpc\": \"2.0\"".into(),
        ));
    }
    let has_id = envelope.id.is_some_and(|id| id.get() != "null");
    if let Some(method) = envelope.method {
        if has_id {
            return Line::Request(method.into_owned());
        }
        if method == protocol::method::LOG
            && let Some(Ok(params)) = envelope
                .params
                .map(|params| serde_json::from_str::<LogParams>(params.get()))
        {
            return Line::Log(params);
        }
        return Line::Notification(method.into_owned());
    }
    if envelope.result.is_some() || envelope.error.is_some() {
        if has_id {
            return response(&envelope);
        }
        let code = envelope
            .error
            .and_then(|e| serde_json::from_str::<serde_json::Value>(e.get()).ok())
            .and_then(|e| e.get("code")?.as_i64());
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
fn response(envelope: &Envelope<'_>) -> Line {
    let raw_id = envelope.id.map_or("null", RawValue::get);
    let Ok(id) = raw_id.parse::<u64>() else {
        // moat's ids are non-negative integers.
        let shown = envelope.id.and_then(wire::canonical_id);
        let text = shown
            .as_deref()
            .unwrap_or(raw_id)
            .chars()
            .take(40)
            .collect();
        return Line::Invalid(Failure::WrongId(text));
    };
    let outcome = match (envelope.result, envelope.error) {
        (Some(result), None) => Ok(result.to_owned()),
        (None, Some(error)) => match serde_json::from_str::<ErrorObjectOwned>(error.get()) {
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

/// The start of a skipped line, for the log.
fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut excerpt: String = text.chars().take(SKIPPED_EXCERPT).collect();
    if text.chars().count() > SKIPPED_EXCERPT {
        excerpt.push('…');
    }
    excerpt.escape_debug().to_string()
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
            Line::Log(LogParams {
                level: "info".into(),
                message: "hi".into()
            })
        );
        // A `$/log` that does not fit its params is an ignored notification.
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"$/log","params":{"level":1}}"#),
            Line::Notification("$/log".into())
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
        assert_eq!(rx.next_response().await.unwrap_err(), Failure::LineTooLong);
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
        assert_eq!(
            rx.next_response().await.unwrap_err(),
            Failure::Exited(ExitReport::Unknown)
        );
    }
}
