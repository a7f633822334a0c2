//! Reading a run's `network.jsonl`, the request log the proxy writes (`proxy::log`), for
//! `moat trace --network`.
//!
//! Fields the proxy may add later are ignored; a line that does not parse (a torn last line
//! while the proxy writes) is counted in [`NetworkLog::skipped`], not fatal.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One proxied request, as the proxy logged it (headers before injection, injected ones
/// `[REDACTED]`, bodies only for text types and at most 8 KiB).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// When the request finished.
    pub ts: DateTime<Utc>,
    /// `GET`, `CONNECT`, …
    pub method: String,
    /// The client's URL.
    pub url: String,
    /// The status sent to the client (0 when none was).
    pub status_code: u16,
    /// How long it took.
    pub duration_ms: f64,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The grants whose rules applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// Request headers (sorted by name).
    #[serde(default)]
    pub req_headers: BTreeMap<String, String>,
    /// Response headers.
    #[serde(default)]
    pub resp_headers: BTreeMap<String, String>,
    /// The request body's first 8 KiB, for text types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_body: Option<String>,
    /// The response body's first 8 KiB, for text types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_body: Option<String>,
    /// A body was longer than what was kept.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A whole `network.jsonl`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkLog {
    /// The requests, in file order.
    pub records: Vec<NetworkRecord>,
    /// Lines that did not parse.
    pub skipped: usize,
}

/// Reads the request log at `path`; an absent file is an empty log (a run that made no request).
pub fn read(path: &Path) -> io::Result<NetworkLog> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(NetworkLog::default()),
        Err(err) => return Err(err),
    };
    let mut log = NetworkLog::default();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice(line) {
            Ok(record) => log.records.push(record),
            Err(err) => {
                tracing::debug!(%err, "skipping a network.jsonl line");
                log.skipped += 1;
            }
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as `proxy::log` writes them (its serializer's field order and types).
    const LINES: &str = concat!(
        r#"{"ts":"2026-05-01T12:00:00.123Z","method":"GET","url":"https://api.github.com/user","status_code":200,"duration_ms":41.2,"grants":["github"],"req_headers":{"accept":"*/*","authorization":"[REDACTED]"},"resp_headers":{"content-type":"application/json"},"resp_body":"{\"login\":\"octocat\"}"}"#,
        "\n",
        r#"{"ts":"2026-05-01T12:00:01.000Z","method":"CONNECT","url":"https://blocked.example:443","status_code":407,"duration_ms":0.05,"error":"host not allowed","req_headers":{},"resp_headers":{},"truncated":true,"future_field":1}"#,
        "\n",
        r#"{"ts":"2026-05-01T12:00:02"#,
    );

    #[test]
    fn reads_the_proxy_format_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.jsonl");
        assert_eq!(read(&path).unwrap(), NetworkLog::default());
        std::fs::write(&path, LINES).unwrap();
        let log = read(&path).unwrap();
        assert_eq!(log.skipped, 1);
        let [ok, denied] = log.records.as_slice() else {
            panic!("{log:?}")
        };
        assert_eq!(ok.method, "GET");
        assert_eq!(ok.status_code, 200);
        assert_eq!(ok.duration_ms, 41.2);
        assert_eq!(ok.grants, ["github"]);
        assert_eq!(ok.req_headers["authorization"], "[REDACTED]");
        assert_eq!(ok.resp_body.as_deref(), Some("{\"login\":\"octocat\"}"));
        assert_eq!(ok.ts.timestamp_subsec_millis(), 123);
        assert!(!ok.truncated && ok.error.is_none());
        assert_eq!(denied.error.as_deref(), Some("host not allowed"));
        assert!(denied.truncated);
        assert!(denied.req_headers.is_empty());
    }
}
