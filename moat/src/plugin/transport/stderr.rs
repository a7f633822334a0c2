//! A plugin's stderr: its log, one line at a time, bounded.
//!
//! JSON lines with a level and a message (`{"level":…,"message":…}`, hclog's
//! `@level`/`@message`, tracing-subscriber's JSON) are logged at that level, anything else at
//! debug; jsonrpsee's own traces are dropped (they echo whole messages, credentials included).
//! Every line goes through [`Shared::said`], which redacts it and keeps it in the tail for error
//! reports.

use std::sync::Arc;

use moat_plugin_sdk::wire::{Frame, LineReader};
use tokio::io::{AsyncRead, BufReader};

use super::Shared;

/// How many stderr lines are kept for error reports.
pub const STDERR_TAIL_LINES: usize = 64;

/// Longest stderr line kept or forwarded; the rest of a longer line is dropped.
pub(super) const MAX_STDERR_LINE: usize = 8 * 1024;
/// Bytes dropped before the cut of an overlong stderr line: longer than any token moat may not
/// know yet (the one a grant is about to return).
const CUT_MARGIN: usize = 1024;

/// Forwards the plugin's stderr to `tracing` and keeps the last lines. Returns on end of file
/// (or a read error: nothing more will come).
pub async fn forward_stderr<R: AsyncRead + Unpin>(stderr: R, shared: Arc<Shared>) {
    let mut lines = LineReader::new(BufReader::new(stderr), MAX_STDERR_LINE);
    loop {
        match lines.next().await {
            Ok(Frame::Line(line)) => record_stderr(&shared, line),
            Ok(Frame::TooLong(start)) => {
                // The rest is dropped. A secret cut in two by the limit could not be recognised,
                // so the end of what is kept goes too: a margin for secrets not known yet, and
                // whatever could be the start of one that is.
                let start = String::from_utf8_lossy(&start[..MAX_STDERR_LINE - CUT_MARGIN]);
                let mut kept = shared.redact_cut(&start);
                kept.push_str(" …(line cut)");
                record_stderr(&shared, kept.as_bytes());
            }
            Ok(Frame::Eof) | Err(_) => return,
        }
    }
}

/// One stderr line.
pub(super) fn record_stderr(shared: &Shared, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    if text.trim().is_empty() {
        return;
    }
    match parse_log_line(&text) {
        Some(Record::Dropped) => {}
        Some(Record::Log(level, message)) => shared.said(&level, &message),
        // Unstructured: at debug.
        None => shared.said("", &text),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use moat_plugin_sdk::Secret;

    use super::super::hold::MAX_HELD_LINES;
    use super::*;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new("t".into(), "/x".into()))
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

    impl Captured {
        /// A subscriber writing every level, without colours, here.
        fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
            let writer = self.clone();
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .finish()
        }

        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn stderr_goes_to_tracing_under_the_plugin_target_with_its_name() {
        let captured = Captured::default();
        let subscriber = captured.subscriber();
        let shared = Arc::new(Shared::new("gitlab".into(), "/x".into()));
        tracing::subscriber::with_default(subscriber, || {
            record_stderr(
                &shared,
                br#"{"level":"warn","message":"token expires soon"}"#,
            );
            record_stderr(&shared, b"plain words");
        });
        let text = captured.text();
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
        let subscriber = captured.subscriber();
        let shared = Arc::new(Shared::new("p".into(), "/x".into()));
        let text = || captured.text();
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
