//! The framing under protocol v1, shared by both ends: one JSON-RPC 2.0 message per line.
//!
//! A plugin's stdin and moat's reading of a plugin's stdout (and stderr) go through the same
//! [`LineReader`], and every message line is first read as the same [`Envelope`]; each side then
//! sorts envelopes by its own rules (the plugin answers requests, moat waits for responses). So
//! the limit on a line, the handling of `\r\n`, a last line without a newline and the meaning of
//! `"id": null` cannot drift apart between the two ends.
//!
//! Nothing here needs the `serve` feature: moat uses it without the plugin runtime.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// JSON-RPC 2.0: the line is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0: valid JSON, but not an acceptable request.
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC 2.0: no such method (in protocol v1: not supported by this provider).
pub const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC 2.0: the params do not fit the method.
pub const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC 2.0: the provider failed unexpectedly (a panic).
pub const INTERNAL_ERROR: i32 = -32603;

/// What one read of a [`LineReader`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A line, without its `\n` and a `\r` before it. A last line without a newline counts.
    Line(&'a [u8]),
    /// A line longer than the limit: its first bytes (as many as the limit). The rest of it is
    /// skipped by the next read.
    TooLong(&'a [u8]),
    /// End of input, nothing pending.
    Eof,
}

/// Where a [`LineReader`] is between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a line in the buffer (possibly half read by a cancelled call).
    Reading,
    /// The buffer holds the line last returned: cleared by the next read.
    Returned,
    /// The line last returned was too long: the next read first skips to its newline.
    Skipping,
}

/// Reads `\n`-terminated lines, never holding more than a limit of one line in memory.
///
/// Cancel-safe: a line half read when the caller stopped waiting stays in the buffer and is
/// continued by the next call, so the stream never loses its place.
#[derive(Debug)]
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    max: usize,
    state: State,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `reader`, each at most `max` bytes (without its newline).
    pub fn new(reader: R, max: usize) -> Self {
        LineReader {
            reader,
            buf: Vec::with_capacity(4096.min(max + 1)),
            max,
            state: State::Reading,
        }
    }

    /// The longest line accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The next line. A line longer than the limit is reported as soon as the limit is passed.
    pub async fn next(&mut self) -> std::io::Result<Frame<'_>> {
        match self.state {
            State::Reading => {}
            State::Returned => {
                self.buf.clear();
                self.state = State::Reading;
            }
            State::Skipping => {
                if !self.skip_line().await? {
                    return Ok(Frame::Eof);
                }
                self.buf.clear();
                self.state = State::Reading;
            }
        }
        // Room for the longest line and its newline; appended to what a cancelled call left.
        let limit = (self.max as u64 + 1).saturating_sub(self.buf.len() as u64);
        let read = (&mut self.reader)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .await?;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > self.max {
            self.state = State::Skipping;
            return Ok(Frame::TooLong(&self.buf[..self.max]));
        } else if read == 0 && self.buf.is_empty() {
            return Ok(Frame::Eof);
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        self.state = State::Returned;
        Ok(Frame::Line(&self.buf))
    }

    /// Discards up to the next newline; false at end of input.
    async fn skip_line(&mut self) -> std::io::Result<bool> {
        loop {
            let (found, used) = match self.reader.fill_buf().await? {
                [] => return Ok(false),
                chunk => match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (true, i + 1),
                    None => (false, chunk.len()),
                },
            };
            self.reader.consume(used);
            if found {
                return Ok(true);
            }
        }
    }
}

/// The members of a JSON-RPC 2.0 message either side reads, borrowed from the line; unknown
/// members are ignored. Which combinations make a request, a notification or a response is each
/// side's decision.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    /// `"2.0"` in a valid message.
    #[serde(default, borrow)]
    pub jsonrpc: Option<Cow<'a, str>>,
    /// The id; `Some` whenever present, `null` included.
    #[serde(default, borrow, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    /// The method of a request or notification.
    #[serde(default, borrow)]
    pub method: Option<Cow<'a, str>>,
    /// The params (`None` when absent or `null`).
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    /// A response's result; `Some` whenever present, `null` included.
    #[serde(default, borrow, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    /// A response's error object; `Some` whenever present, `null` included.
    #[serde(default, borrow, deserialize_with = "present")]
    pub error: Option<&'a RawValue>,
}

impl<'a> Envelope<'a> {
    /// Reads one line's envelope. A data error ([`serde_json::Error::is_data`]) is valid JSON
    /// with a wrongly typed member; any other error is a line that is not JSON.
    pub fn parse(line: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// True when the message says `"jsonrpc": "2.0"`.
    pub fn is_v2(&self) -> bool {
        self.jsonrpc.as_deref() == Some("2.0")
    }
}

/// Keeps `"id": null` apart from a missing id (plain `Option` reads both as `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The canonical JSON text of an id (`1`, `"abc"`, `null`), or `None` for other JSON types.
pub fn canonical_id(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    // The common case, a small integer, is already canonical.
    if !text.is_empty() && text.len() < 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    canonical_id_value(&value)
}

/// The canonical JSON text of an id given as a value.
pub fn canonical_id_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null | serde_json::Value::Number(_) | serde_json::Value::String(_) => {
            Some(value.to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(&'static str, String)> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        loop {
            let (kind, bytes) = match reader.next().await.unwrap() {
                Frame::Eof => return out,
                Frame::Line(line) => ("line", line),
                Frame::TooLong(start) => ("too long", start),
            };
            out.push((kind, String::from_utf8(bytes.to_vec()).unwrap()));
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_resynchronised() {
        let got = lines(b"short\r\nmuch too long a line\nok\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                ("line", "short".into()),
                ("too long", "much too".into()),
                ("line", "ok".into()),
                ("line", "last".into()),
            ]
        );
        assert_eq!(lines(b"", 8).await, vec![]);
        assert_eq!(lines(b"\n", 8).await, vec![("line", String::new())]);
        assert_eq!(
            lines(b"12345678\n", 8).await,
            vec![("line", "12345678".into())]
        );
        assert_eq!(
            lines(b"123456789", 8).await,
            vec![("too long", "12345678".into())]
        );
    }

    #[tokio::test]
    async fn a_cancelled_read_loses_nothing() {
        use tokio::io::AsyncWriteExt;
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut lines = LineReader::new(tokio::io::BufReader::new(reader), 64);
        writer.write_all(b"{\"half\":").await.unwrap();
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), lines.next()).await;
        assert!(waited.is_err(), "half a line is not a line");
        writer.write_all(b"1}\nnext\n").await.unwrap();
        assert_eq!(lines.next().await.unwrap(), Frame::Line(b"{\"half\":1}"));
        assert_eq!(lines.next().await.unwrap(), Frame::Line(b"next"));
    }

    #[test]
    fn envelopes_keep_null_apart_from_absent() {
        let e = Envelope::parse(br#"{"jsonrpc":"2.0","id":null,"result":null}"#).unwrap();
        assert!(e.is_v2());
        assert_eq!(e.id.map(RawValue::get), Some("null"));
        assert_eq!(e.result.map(RawValue::get), Some("null"));
        assert!(e.error.is_none() && e.method.is_none());
        let e = Envelope::parse(br#"{"method":"$/log","params":{"a":[1]},"x":1}"#).unwrap();
        assert!(!e.is_v2() && e.id.is_none());
        assert_eq!(e.params.map(RawValue::get), Some(r#"{"a":[1]}"#));
        assert!(Envelope::parse(br#"{"method":5}"#).unwrap_err().is_data());
        assert!(!Envelope::parse(b"{nope").unwrap_err().is_data());
    }

    #[test]
    fn ids_have_one_canonical_text() {
        let canonical = |text: &str| canonical_id(&RawValue::from_string(text.into()).unwrap());
        assert_eq!(canonical("7").as_deref(), Some("7"));
        assert_eq!(canonical("0").as_deref(), Some("0"));
        assert_eq!(canonical("-7").as_deref(), Some("-7"));
        assert_eq!(canonical(r#""\u0061""#).as_deref(), Some(r#""a""#));
        assert_eq!(canonical("null").as_deref(), Some("null"));
        assert_eq!(canonical("[1]"), None);
    }
}
