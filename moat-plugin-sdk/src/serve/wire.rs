//! Sorting what a plugin reads, and hand-made error responses.
//!
//! The line framing and the envelope are [`crate::wire`]'s, shared with moat. jsonrpsee's
//! `raw_json_request` only understands single requests with an `id`; notifications, batches and
//! garbage never reach it. This module sorts every line first.

use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::ErrorKind;
use crate::protocol::ErrorData;
use crate::wire::canonical_id;
pub(crate) use crate::wire::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
    canonical_id_value,
};

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
    let fields = match crate::wire::Envelope::parse(text.as_bytes()) {
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
    let v2 = fields.is_v2();
    match (id, fields.method) {
        (Some(id), Some(_)) if !v2 => Envelope::Invalid {
            id,
            reason: "a request must have \"jsonrpc\": \"2.0\"",
        },
        (Some(id), Some(method)) => Envelope::Request {
            id,
            method: method.into_owned(),
            params: fields.params,
        },
        (None, Some(method)) => Envelope::Notification {
            method: method.into_owned(),
            params: fields.params,
        },
        // A `null` result or error does not make a response here (the host sends none anyway).
        (_, None) if not_null(fields.result) || not_null(fields.error) => Envelope::Response,
        (id, None) => Envelope::Invalid {
            id: id.unwrap_or_else(|| "null".into()),
            reason: "missing `method`",
        },
    }
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

fn not_null(member: Option<&RawValue>) -> bool {
    member.is_some_and(|raw| raw.get() != "null")
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
