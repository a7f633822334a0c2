//! The wire below JSON-RPC: bounded line reading, envelope sniffing, hand-made error responses.
//!
//! jsonrpsee's `raw_json_request` only understands single requests with an `id`; notifications,
//! batches and garbage never reach it. This module sorts every line first.

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::ErrorKind;
use crate::protocol::ErrorData;

/// JSON-RPC 2.0 standard codes.
pub(crate) const PARSE_ERROR: i32 = -32700;
pub(crate) const INVALID_REQUEST: i32 = -32600;
pub(crate) const METHOD_NOT_FOUND: i32 = -32601;
pub(crate) const INVALID_PARAMS: i32 = -32602;
pub(crate) const INTERNAL_ERROR: i32 = -32603;

/// What one read produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line is in the buffer (newline and a trailing `\r` stripped).
    Complete,
    /// The line was longer than the limit; it was skipped up to its newline.
    TooLong,
    /// End of input, nothing pending.
    Eof,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), never holding more than `max`
/// bytes of it. A final line without a newline counts as a line.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut seen_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (seen_any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => {
                    strip_cr(buf);
                    Line::Complete
                }
            });
        }
        seen_any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(available.len());
        reader.consume(consumed);
        if done.is_some() {
            if too_long {
                return Ok(Line::TooLong);
            }
            strip_cr(buf);
            return Ok(Line::Complete);
        }
    }
}

fn strip_cr(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
}

/// A sorted line.
#[derive(Debug)]
pub(crate) enum Envelope<'a> {
    /// A request: has an `id` and a `method`. `id` is the canonical JSON of the id.
    Request {
        id: String,
        method: String,
        params: Option<&'a RawValue>,
    },
    /// A notification: a `method` and no `id`.
    Notification {
        method: String,
        params: Option<&'a RawValue>,
    },
    /// A response (`result` or `error`, no `method`): the host sends none in v1; ignored.
    Response,
    /// Valid JSON that is not a request we accept; answer `-32600`. `id` is the canonical JSON of
    /// the id when one could be read, else `null`.
    Invalid { id: String, reason: &'static str },
    /// Not JSON; answer `-32700` with id null.
    ParseError(String),
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default, borrow)]
    params: Option<&'a RawValue>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// Keeps `"id": null` apart from a missing id (plain `Option` reads both as `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Sorts one line (already trimmed, not empty).
pub(crate) fn classify(text: &str) -> Envelope<'_> {
    let first = text.as_bytes()[0];
    if first != b'{' {
        return match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) if first == b'[' => Envelope::Invalid {
                id: "null".into(),
                reason: "batches are not supported by protocol v1: send one request per line",
            },
            Ok(_) => Envelope::Invalid {
                id: "null".into(),
                reason: "a message must be a JSON object",
            },
            Err(e) => Envelope::ParseError(e.to_string()),
        };
    }
    let fields: Fields<'_> = match serde_json::from_str(text) {
        Ok(fields) => fields,
        Err(e) => {
            return match serde_json::from_str::<IgnoredAny>(text) {
                // Valid JSON with a wrongly typed member (`"method": 5`).
                Ok(_) => Envelope::Invalid {
                    id: "null".into(),
                    reason: "malformed request: `method` must be a string",
                },
                Err(_) => Envelope::ParseError(e.to_string()),
            };
        }
    };
    let id = match fields.id.map(canonical_id) {
        None => None,
        Some(Some(id)) => Some(id),
        Some(None) => {
            return Envelope::Invalid {
                id: "null".into(),
                reason: "`id` must be a string, a number or null",
            };
        }
    };
    match (id, fields.method) {
        (Some(id), Some(_)) if fields.jsonrpc.as_deref() != Some("2.0") => Envelope::Invalid {
            id,
            reason: "a request must have \"jsonrpc\": \"2.0\"",
        },
        (Some(id), Some(method)) => Envelope::Request {
            id,
            method,
            params: fields.params,
        },
        (None, Some(method)) => Envelope::Notification {
            method,
            params: fields.params,
        },
        (_, None) if fields.result.is_some() || fields.error.is_some() => Envelope::Response,
        (id, None) => Envelope::Invalid {
            id: id.unwrap_or_else(|| "null".into()),
            reason: "missing `method`",
        },
    }
}

/// The canonical JSON text of an id (`1`, `"abc"`, `null`), or `None` for other JSON types.
pub(crate) fn canonical_id(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    // The common case, a small integer, is already canonical.
    if !text.is_empty() && text.len() < 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.to_owned());
    }
    let value: serde_json::Value = serde_json::from_str(raw.get()).ok()?;
    canonical_id_value(&value)
}

/// The jsonrpsee id for a canonical id text, or `None` for an id jsonrpsee cannot represent (a
/// negative or fractional number).
pub(crate) fn rpc_id(canonical: &str) -> Option<jsonrpsee::types::Id<'static>> {
    use jsonrpsee::types::Id;
    match canonical.as_bytes().first()? {
        b'n' => Some(Id::Null),
        b'"' => serde_json::from_str::<String>(canonical)
            .ok()
            .map(|s| Id::Str(s.into())),
        _ => canonical.parse::<u64>().ok().map(Id::Number),
    }
}

/// The canonical JSON text of an id given as a value.
pub(crate) fn canonical_id_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null | serde_json::Value::Number(_) | serde_json::Value::String(_) => {
            Some(value.to_string())
        }
        _ => None,
    }
}

/// A complete error response line. `id` is JSON text (`null`, `7`, `"a"`).
pub(crate) fn error_response(
    id: &str,
    code: i32,
    message: &str,
    kind: Option<ErrorKind>,
    hint: Option<String>,
) -> String {
    let data = kind.map(|kind| ErrorData { kind, hint });
    let error = match data {
        Some(data) => serde_json::json!({ "code": code, "message": message, "data": data }),
        None => serde_json::json!({ "code": code, "message": message }),
    };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<(Line, String)> {
        let mut reader = tokio::io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf, max).await.unwrap();
            if line == Line::Eof {
                return out;
            }
            out.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_resynchronised() {
        let got = lines(b"short\r\nmuch too long a line\nok\nlast", 8).await;
        assert_eq!(
            got,
            vec![
                (Line::Complete, "short".into()),
                (Line::TooLong, String::new()),
                (Line::Complete, "ok".into()),
                (Line::Complete, "last".into()),
            ]
        );
        assert_eq!(lines(b"", 8).await, vec![]);
        assert_eq!(lines(b"\n", 8).await, vec![(Line::Complete, String::new())]);
        assert_eq!(
            lines(b"123456789", 8).await,
            vec![(Line::TooLong, String::new())]
        );
    }

    #[test]
    fn envelopes_are_sorted() {
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":1,"method":"grant"}"#),
            Envelope::Request { id, method, params: None } if id == "1" && method == "grant"
        ));
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":2,"method":"mounts","params":{"a":[1]}}"#),
            Envelope::Request { params: Some(p), .. } if p.get() == r#"{"a":[1]}"#
        ));
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":"a b","method":"x"}"#),
            Envelope::Request { id, .. } if id == r#""a b""#
        ));
        assert!(matches!(
            classify(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#),
            Envelope::Request { id, .. } if id == "null"
        ));
        assert!(matches!(
            classify(r#"{"method":"$/cancel","params":{"id":1}}"#),
            Envelope::Notification { method, params: Some(_) } if method == "$/cancel"
        ));
        assert!(matches!(
            classify(r#"{"id":1,"result":{}}"#),
            Envelope::Response
        ));
        assert!(matches!(classify("[1]"), Envelope::Invalid { .. }));
        assert!(matches!(classify("42"), Envelope::Invalid { .. }));
        assert!(matches!(
            classify(r#"{"id":{},"method":"x"}"#),
            Envelope::Invalid { .. }
        ));
        assert!(matches!(
            classify(r#"{"method":5}"#),
            Envelope::Invalid { .. }
        ));
        assert!(matches!(classify(r#"{"id":3}"#), Envelope::Invalid { id, .. } if id == "3"));
        assert!(matches!(
            classify(r#"{"id":5,"method":"grant"}"#),
            Envelope::Invalid { id, .. } if id == "5"
        ));
        assert!(matches!(
            classify(r#"{"jsonrpc":"1.0","id":5,"method":"grant"}"#),
            Envelope::Invalid { .. }
        ));
        assert!(matches!(classify("{nope"), Envelope::ParseError(_)));
        assert!(matches!(classify("[nope"), Envelope::ParseError(_)));
        assert!(matches!(classify("hello"), Envelope::ParseError(_)));
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
        assert_eq!(rpc_id("7"), Some(jsonrpsee::types::Id::Number(7)));
        assert_eq!(
            rpc_id(r#""a""#),
            Some(jsonrpsee::types::Id::Str("a".into()))
        );
        assert_eq!(rpc_id("null"), Some(jsonrpsee::types::Id::Null));
        assert_eq!(rpc_id("-7"), None);
    }

    #[test]
    fn error_responses_are_one_json_line() {
        let line = error_response("7", -32000, "no\nway", Some(ErrorKind::Network), None);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["data"]["kind"], "network");
    }
}
