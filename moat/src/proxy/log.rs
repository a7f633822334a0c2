//! The request log: one JSON object per line in a run's `network.jsonl`, written as each request
//! finishes (a denied `CONNECT` included).
//!
//! ```json
//! {"ts":"2026-05-01T12:00:00.123Z","method":"GET","url":"https://api.github.com/user",
//!  "status_code":200,"duration_ms":41.2,"grants":["github"],
//!  "req_headers":{"accept":"*/*","authorization":"[REDACTED]"},
//!  "resp_headers":{"content-type":"application/json"},"resp_body":"{\"login\":\"octocat\"}"}
//! ```
//!
//! - Request headers are the client's, before injection; a header moat injected or rewrote shows
//!   `[REDACTED]`; `Proxy-Authorization` and `Proxy-Connection` are left out. Values of repeated
//!   headers are joined with `, `.
//! - The URL is the client's: a token-substitution placeholder stays a placeholder.
//! - Bodies are captured only for text-like types (`text/*`, JSON, XML, form data, JavaScript),
//!   the first [`BODY_CAPTURE_LIMIT`] bytes; `truncated` says one of them was longer. A body cut
//!   at the limit also loses the end that could be the start of a secret running past the cut
//!   (a few hundred bytes at most), so no prefix of a token is ever kept. A
//!   content-encoded (gzip, br, ...) or non-UTF-8 body is logged as a marker
//!   (`[gzip-encoded body, 812 bytes captured, not decoded]`, `[binary body, 64 bytes captured]`),
//!   never as mojibake.
//! - A refusal made before the pipeline is reached is a line too, with its reason in `error`: a
//!   request inside a tunnel whose `Host` is not the CONNECT host (`421`), and a tunnel closed
//!   before any request because what followed the `200` was not a TLS handshake for the CONNECT
//!   host (its SNI named another, none at all, or it was not TLS): a `CONNECT` line with status
//!   `200` (what the client got) and the reason. A wrong proxy token opens no run, so it has no
//!   log to go to; like the others it is said on stderr ([`say_refused`]), never with the token.
//! - Every string goes through the run's redactor before it is written, so a token echoed back by
//!   an upstream still never lands in the file.
//!
//! Lines are serialized and written by a thread per log file (through a channel), so neither JSON
//! nor a slow disk stalls a request; they are in the file within 20 ms of the request's end. The
//! file is created `0600` and appended to.

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use hyper::HeaderMap;
use hyper::header::HeaderName;
use moat_plugin_sdk::SecretSet;
use serde::ser::{Serialize, SerializeMap as _, Serializer};

/// How much of each body is kept.
pub const BODY_CAPTURE_LIMIT: usize = 8 * 1024;

/// How long a finished request's line may wait in memory before it is in the file.
const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// What a header moat injected is logged as.
pub const REDACTED: &str = SecretSet::MASK;

/// A `network.jsonl` file being appended to.
#[derive(Debug, Clone)]
pub struct RequestLog {
    path: PathBuf,
    lines: mpsc::Sender<(Entry, Arc<SecretSet>)>,
}

impl RequestLog {
    /// Opens (creating, `0600`) `path` for appending, creating its folder if needed, and starts
    /// its writer thread. The thread ends, after writing everything sent, when the last clone of
    /// this value is dropped.
    pub fn open(path: &Path) -> io::Result<RequestLog> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        // An existing log may have been created with looser permissions: it holds URLs and
        // headers of the run's traffic, so it is the user's alone.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        let (lines, receiver) = mpsc::channel::<(Entry, Arc<SecretSet>)>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("moat-network-log".into())
            .spawn(move || {
                let mut out = BufWriter::with_capacity(64 * 1024, file);
                let report = |result: io::Result<()>| {
                    if let Err(err) = result {
                        tracing::warn!(log = %shown, %err, "cannot write the request log");
                    }
                };
                // Idle: block until a line comes and write it at once. Busy: wake every
                // FLUSH_INTERVAL and write everything that arrived meanwhile, so senders never
                // have to wake this thread (a wake-up per request costs more than the line).
                while let Ok(first) = receiver.recv() {
                    report(write_line(&mut out, &first).and_then(|()| out.flush()));
                    loop {
                        std::thread::sleep(FLUSH_INTERVAL);
                        let mut wrote = false;
                        let mut result = Ok(());
                        loop {
                            match receiver.try_recv() {
                                Ok(line) => {
                                    wrote = true;
                                    if result.is_ok() {
                                        result = write_line(&mut out, &line);
                                    }
                                }
                                Err(mpsc::TryRecvError::Empty) => break,
                                Err(mpsc::TryRecvError::Disconnected) => {
                                    report(result.and_then(|()| out.flush()));
                                    return;
                                }
                            }
                        }
                        if !wrote {
                            break;
                        }
                        report(result.and_then(|()| out.flush()));
                    }
                }
                report(out.flush());
            })?;
        Ok(RequestLog {
            path: path.to_path_buf(),
            lines,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `entry`; it is redacted and serialized by the writer thread.
    pub(crate) fn write(&self, entry: Entry, redactor: &Arc<SecretSet>) {
        // Err only if the writer thread died (it logged why).
        let _ = self.lines.send((entry, Arc::clone(redactor)));
    }
}

fn write_line(
    out: &mut impl io::Write,
    (entry, redactor): &(Entry, Arc<SecretSet>),
) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &Line { entry, redactor }).map_err(io::Error::other)?;
    out.write_all(b"\n")
}

/// One request, as gathered on the request path: raw parts, cheap to collect. Serialized (and
/// redacted) by the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub ts: SystemTime,
    pub method: String,
    pub url: String,
    pub status_code: u16,
    pub duration: Duration,
    pub error: Option<String>,
    pub grants: Vec<String>,
    /// The client's headers, before injection.
    pub req_headers: HeaderMap,
    /// Headers moat injected or rewrote: logged as [`REDACTED`].
    pub injected: Vec<HeaderName>,
    pub resp_headers: HeaderMap,
    pub req_body: Option<Vec<u8>>,
    pub resp_body: Option<Vec<u8>>,
    pub truncated: bool,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            ts: SystemTime::now(),
            method: String::new(),
            url: String::new(),
            status_code: 0,
            duration: Duration::ZERO,
            error: None,
            grants: Vec::new(),
            req_headers: HeaderMap::new(),
            injected: Vec::new(),
            resp_headers: HeaderMap::new(),
            req_body: None,
            resp_body: None,
            truncated: false,
        }
    }
}

/// A kind of refusal said on stderr by [`say_refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A request whose `Host` is not its connection's host (`421`).
    HostMismatch,
    /// A `Proxy-Authorization` with a token no run has (`407`).
    WrongToken,
    /// A tunnel whose TLS server name is not the CONNECT host, or missing.
    SniMismatch,
    /// A tunnel whose first bytes were not a TLS handshake.
    NotTls,
    /// A tunnel whose TLS handshake failed or did not come in time.
    TlsFailed,
}

impl Refused {
    const ALL: usize = 5;

    fn index(self) -> usize {
        self as usize
    }
}

/// How often each kind of refusal may be said on stderr.
const SAY_EVERY: Duration = Duration::from_secs(60);

/// When each kind was last said, and how many since were not.
static SAID: [std::sync::Mutex<Option<(std::time::Instant, u64)>>; Refused::ALL] =
    [const { std::sync::Mutex::new(None) }; Refused::ALL];

/// Says a refusal on stderr (`tracing` at warn): the first of each kind at once, then at most one
/// line per kind every minute with how many were not said, so a flood cannot fill the terminal.
/// `what` must not hold a secret (a wrong token is never shown).
pub(crate) fn say_refused(kind: Refused, what: &str) {
    let now = std::time::Instant::now();
    let mut said = SAID[kind.index()]
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(more) = should_say(&mut said, now) {
        drop(said);
        match more {
            0 => tracing::warn!("moat proxy refused {what}"),
            more => tracing::warn!("moat proxy refused {what} (and {more} more like it)"),
        }
    }
}

/// The rate limit of [`say_refused`]: `Some(not said since the last line)` when this one is
/// said.
fn should_say(
    said: &mut Option<(std::time::Instant, u64)>,
    now: std::time::Instant,
) -> Option<u64> {
    match said {
        Some((last, skipped)) if now.duration_since(*last) < SAY_EVERY => {
            *skipped += 1;
            None
        }
        Some((last, skipped)) => {
            let more = *skipped;
            *last = now;
            *skipped = 0;
            Some(more)
        }
        None => {
            *said = Some((now, 0));
            Some(0)
        }
    }
}

/// A copy of `headers` that shares no memory with them. Header values parsed by hyper point into
/// the connection's read buffer; holding them until the log thread writes them would keep that
/// buffer from being reused, so a snapshot for the log copies them.
pub(crate) fn snapshot(headers: &HeaderMap) -> HeaderMap {
    let mut copy = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if let Ok(value) = hyper::header::HeaderValue::from_bytes(value.as_bytes()) {
            copy.append(name.clone(), value);
        }
    }
    copy
}

/// An entry with its run's redactor: the JSON line.
struct Line<'a> {
    entry: &'a Entry,
    redactor: &'a SecretSet,
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Line { entry, redactor } = self;
        let ts = chrono::DateTime::<chrono::Utc>::from(entry.ts)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("ts", &ts)?;
        map.serialize_entry("method", &entry.method)?;
        map.serialize_entry("url", &redactor.redact(&entry.url))?;
        map.serialize_entry("status_code", &entry.status_code)?;
        let ms = (entry.duration.as_secs_f64() * 100_000.0).round() / 100.0;
        map.serialize_entry("duration_ms", &ms)?;
        if let Some(error) = &entry.error {
            map.serialize_entry("error", &redactor.redact(error))?;
        }
        if !entry.grants.is_empty() {
            map.serialize_entry("grants", &entry.grants)?;
        }
        map.serialize_entry(
            "req_headers",
            &Headers {
                headers: &entry.req_headers,
                injected: &entry.injected,
                redactor,
            },
        )?;
        map.serialize_entry(
            "resp_headers",
            &Headers {
                headers: &entry.resp_headers,
                injected: &[],
                redactor,
            },
        )?;
        if let Some(body) = &entry.req_body {
            let text = body_text(body, &entry.req_headers);
            let cut = entry.truncated && body.len() >= BODY_CAPTURE_LIMIT;
            map.serialize_entry("req_body", &redact_body(redactor, &text, cut))?;
        }
        if let Some(body) = &entry.resp_body {
            let text = body_text(body, &entry.resp_headers);
            let cut = entry.truncated && body.len() >= BODY_CAPTURE_LIMIT;
            map.serialize_entry("resp_body", &redact_body(redactor, &text, cut))?;
        }
        if entry.truncated {
            map.serialize_entry("truncated", &true)?;
        }
        map.end()
    }
}

/// A captured body's text, redacted. A body `cut` at the capture limit may end with the start of
/// a secret that went on past the limit, which no search for the whole secret finds: its end is
/// held back by a [`SecretStream`](moat_plugin_sdk::SecretStream) and dropped, so the log never
/// keeps a prefix of a token.
fn redact_body<'a>(redactor: &SecretSet, text: &'a str, cut: bool) -> Cow<'a, str> {
    if !cut {
        return redactor.redact(text);
    }
    let mut stream = redactor.stream();
    let shown = stream.push(text);
    // Dropped unfinished: what it holds could be the start of a secret.
    drop(stream);
    Cow::Owned(shown)
}

/// A captured body as the log shows it: the text, or a marker when it is content-encoded (gzip,
/// br, ...: moat does not decode it) or not UTF-8 (binary). A text cut at the capture limit in
/// the middle of a character keeps its valid beginning.
fn body_text<'a>(body: &'a [u8], headers: &HeaderMap) -> Cow<'a, str> {
    if let Some(encoding) = headers
        .get(hyper::header::CONTENT_ENCODING)
        .filter(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        let encoding = String::from_utf8_lossy(encoding.as_bytes());
        return Cow::Owned(format!(
            "[{encoding}-encoded body, {} bytes captured, not decoded]",
            body.len()
        ));
    }
    match std::str::from_utf8(body) {
        Ok(text) => Cow::Borrowed(text),
        // Only an incomplete character at the end: the capture limit cut it.
        Err(err) if err.error_len().is_none() && body.len() - err.valid_up_to() < 4 => {
            Cow::Borrowed(std::str::from_utf8(&body[..err.valid_up_to()]).unwrap_or_default())
        }
        Err(_) => Cow::Owned(format!("[binary body, {} bytes captured]", body.len())),
    }
}

/// Headers as a JSON object: names sorted, repeated values joined with `, `, proxy headers left
/// out, `injected` names (whether or not the client sent them) shown as [`REDACTED`], every value
/// redacted.
struct Headers<'a> {
    headers: &'a HeaderMap,
    injected: &'a [HeaderName],
    redactor: &'a SecretSet,
}

impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut names: Vec<&str> = self
            .headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| *name != "proxy-authorization" && *name != "proxy-connection")
            .chain(self.injected.iter().map(HeaderName::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        let mut map = serializer.serialize_map(Some(names.len()))?;
        for name in names {
            if self.injected.iter().any(|i| i.as_str() == name) {
                map.serialize_entry(name, REDACTED)?;
                continue;
            }
            let mut values = self.headers.get_all(name).iter();
            let first = values.next().map(|v| String::from_utf8_lossy(v.as_bytes()));
            let mut value = first.unwrap_or_default();
            for more in values {
                let joined = value.to_mut();
                joined.push_str(", ");
                joined.push_str(&String::from_utf8_lossy(more.as_bytes()));
            }
            map.serialize_entry(name, &self.redactor.redact(&value))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn encoded_and_binary_bodies_are_marked_not_garbled() {
        use super::{HeaderMap, body_text};
        let mut gzip = HeaderMap::new();
        gzip.insert("content-encoding", "gzip".parse().unwrap());
        let compressed = [0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x03];
        assert_eq!(
            body_text(&compressed, &gzip),
            "[gzip-encoded body, 8 bytes captured, not decoded]"
        );
        let plain = HeaderMap::new();
        assert_eq!(
            body_text(&compressed, &plain),
            "[binary body, 8 bytes captured]"
        );
        assert_eq!(body_text("héllo".as_bytes(), &plain), "héllo");
        let cut = &"hé".as_bytes()[..2];
        assert_eq!(
            body_text(cut, &plain),
            "h",
            "a character cut by the limit is dropped"
        );
        let mut identity = HeaderMap::new();
        identity.insert("content-encoding", "identity".parse().unwrap());
        assert_eq!(body_text(b"{}", &identity), "{}");
    }

    #[test]
    fn refusals_are_said_at_most_once_a_minute_per_kind() {
        let start = std::time::Instant::now();
        let mut said = None;
        assert_eq!(should_say(&mut said, start), Some(0), "the first at once");
        for i in 1..1000 {
            assert_eq!(
                should_say(&mut said, start + Duration::from_millis(i)),
                None
            );
        }
        assert_eq!(
            should_say(&mut said, start + SAY_EVERY),
            Some(999),
            "a minute on, one line with the count"
        );
        assert_eq!(should_say(&mut said, start + SAY_EVERY), None);
        say_refused(Refused::NotTls, "a test refusal");
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_log_is_made_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.jsonl");
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _log = RequestLog::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    use super::*;
    use hyper::header::{AUTHORIZATION, HeaderValue};
    use moat_plugin_sdk::Secret;

    fn line(entry: &Entry, redactor: &SecretSet) -> serde_json::Value {
        serde_json::to_value(Line { entry, redactor }).unwrap()
    }

    #[test]
    fn headers_join_omit_and_redact() {
        let mut headers = HeaderMap::new();
        headers.append("accept", HeaderValue::from_static("a"));
        headers.append("accept", HeaderValue::from_static("b"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer placeholder"),
        );
        headers.insert("x-echo", HeaderValue::from_static("has supersecret inside"));
        let entry = Entry {
            req_headers: headers,
            injected: vec![AUTHORIZATION, "x-api-key".parse().unwrap()],
            ..Entry::default()
        };
        let value = line(&entry, &SecretSet::from_iter([Secret::new("supersecret")]));
        assert_eq!(
            value["req_headers"],
            serde_json::json!({
                "accept": "a, b",
                "authorization": "[REDACTED]",
                "x-api-key": "[REDACTED]",
                "x-echo": "has [REDACTED] inside",
            })
        );
        assert_eq!(value["resp_headers"], serde_json::json!({}));
    }

    #[test]
    fn lines_are_appended_as_they_come_with_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run/network.jsonl");
        let log = RequestLog::open(&path).unwrap();
        let redactor = Arc::new(SecretSet::from_iter([Secret::new("supersecret")]));
        let entry = Entry {
            method: "GET".into(),
            url: "https://h/supersecret".into(),
            status_code: 200,
            duration: Duration::from_micros(1500),
            resp_body: Some(b"echo supersecret".to_vec()),
            ..Entry::default()
        };
        log.write(entry.clone(), &redactor);
        log.write(entry, &redactor);
        drop(log);
        // The writer thread drains the channel before it ends; wait for it.
        let mut text = String::new();
        for _ in 0..200 {
            text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains("supersecret"), "{text}");
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["url"], "https://h/[REDACTED]");
        assert_eq!(line["resp_body"], "echo [REDACTED]");
        assert_eq!(line["status_code"], 200);
        assert_eq!(line["duration_ms"], 1.5);
        assert!(line["ts"].as_str().unwrap().ends_with('Z'));
        assert!(line.get("truncated").is_none() && line.get("error").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}
