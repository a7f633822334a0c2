//! What went wrong with a plugin process, said so that the user can act on it.
//!
//! A [`PluginFault`] names the plugin, its executable, what happened (timed out, exited, sent
//! garbage) and during which call, and carries the last lines of its stderr. It becomes a
//! [`ProviderError`] at the trait boundary, so the CLI reports it like any other provider error.
//!
//! Nothing here ever contains a message the plugin sent on stdout: a malformed line may hold a
//! token, so only its position, its length or the JSON-RPC error code is reported.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use moat_plugin_sdk::{ErrorKind, ProviderError, protocol};

/// What happened to a plugin process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The executable could not be started.
    Spawn(String),
    /// No answer in time.
    Timeout(Duration),
    /// The process ended (or closed its stdout) while moat was waiting for an answer.
    Exited(ExitReport),
    /// A stdout line longer than [`protocol::MAX_LINE_BYTES`].
    LineTooLong,
    /// A stdout line that starts like JSON but does not parse.
    InvalidJson(String),
    /// Well-formed JSON that is not a JSON-RPC 2.0 response or notification.
    NotJsonRpc(String),
    /// A response whose id matches no request moat sent.
    WrongId(String),
    /// The pipe to or from the plugin failed.
    Io(String),
    /// The handshake answered, but with something moat cannot accept (protocol version, name).
    Handshake(String),
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReport {
    /// It exited on its own, with this status.
    Status(ExitStatus),
    /// It closed its stdout but kept running, and was killed.
    ClosedStdout,
    /// Its status could not be read.
    Unknown,
}

impl fmt::Display for ExitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReport::Status(status) => describe_status(*status, f),
            ExitReport::ClosedStdout => f.write_str("closed its stdout (and was stopped)"),
            ExitReport::Unknown => f.write_str("went away"),
        }
    }
}

fn describe_status(status: ExitStatus, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some(code) = status.code() {
        return write!(f, "exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return write!(f, "was killed by signal {signal}");
        }
    }
    write!(f, "exited ({status})")
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Spawn(err) => write!(f, "could not be started: {err}"),
            Failure::Timeout(after) => write!(f, "timed out after {}", seconds(*after)),
            Failure::Exited(report) => report.fmt(f),
            Failure::LineTooLong => write!(
                f,
                "sent a line longer than the protocol's limit of {} MiB",
                protocol::MAX_LINE_BYTES / (1024 * 1024)
            ),
            Failure::InvalidJson(detail) => write!(f, "sent invalid JSON-RPC: {detail}"),
            Failure::NotJsonRpc(detail) => write!(f, "sent invalid JSON-RPC: {detail}"),
            Failure::WrongId(id) => write!(
                f,
                "answered with the wrong id ({id}, which matches no request moat sent)"
            ),
            Failure::Io(err) => write!(f, "could not be talked to: {err}"),
            Failure::Handshake(why) => f.write_str(why),
        }
    }
}

/// `5s`, `1.5s`, `250ms`.
pub(crate) fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A plugin failed: which one, where it lives, what happened during which call, and what it said
/// on stderr last. The process has been stopped and reaped by the time this exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFault {
    /// The provider name (the executable's suffix).
    pub name: String,
    /// The executable.
    pub path: PathBuf,
    /// The method being called.
    pub method: String,
    /// What happened.
    pub failure: Failure,
    /// The last lines of the plugin's stderr, oldest first.
    pub stderr_tail: Vec<String>,
}

impl PluginFault {
    /// One line: what happened, without the plugin's name and path (for listings that show the
    /// path already), with the last stderr line when there is one.
    pub fn reason(&self) -> String {
        let mut reason = self.failure.to_string();
        if !matches!(self.failure, Failure::Handshake(_)) && self.method != "initialize" {
            reason.push_str(&format!(" during {}", self.method));
        }
        // A crash usually explains itself in its last words.
        if let (Failure::Exited(_), Some(last)) = (&self.failure, self.stderr_tail.last()) {
            reason.push_str(&format!(" (stderr: {last})"));
        }
        reason
    }

    /// The user's next step, with the stderr tail.
    pub fn hint(&self) -> String {
        let mut hint = String::new();
        if !self.stderr_tail.is_empty() {
            hint.push_str("Last lines of its stderr:\n");
            for line in &self.stderr_tail {
                hint.push_str("  | ");
                hint.push_str(line);
                hint.push('\n');
            }
            hint.push('\n');
        }
        hint.push_str(&self.advice());
        hint
    }

    /// What the user can do about it, in a sentence or two (the end of [`hint`](Self::hint)).
    pub fn advice(&self) -> String {
        match &self.failure {
            Failure::Timeout(_) if self.method != protocol::method::GRANT => {
                "If the plugin is just slow, set MOAT_PLUGIN_TIMEOUT_SECS to wait longer; \
                 otherwise report this to the plugin's author."
                    .to_string()
            }
            Failure::Spawn(_) => format!(
                "Check that {} is an executable moat plugin, or remove it.",
                self.path.display()
            ),
            _ => format!(
                "This is a fault in the plugin, not in moat: report it to the plugin's author, \
                 or remove {}.",
                self.path.display()
            ),
        }
    }
}

impl fmt::Display for PluginFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} ({}) ", self.name, self.path.display())?;
        match &self.failure {
            Failure::Handshake(why) => write!(f, "failed its handshake: {why}"),
            Failure::Spawn(_) => self.failure.fmt(f),
            failure => write!(f, "{failure} during {}; it was stopped", self.method),
        }
    }
}

impl std::error::Error for PluginFault {}

impl From<PluginFault> for ProviderError {
    fn from(fault: PluginFault) -> Self {
        ProviderError::new(ErrorKind::Internal, fault.to_string()).with_hint(fault.hint())
    }
}

/// Replaces every double-quoted span of a serde error message with `"…"`, so that a value the
/// plugin sent (possibly a token in the wrong place) never reaches an error message.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in message.chars() {
        if c == '"' {
            if inside {
                out.push_str("…\"");
            } else {
                out.push('"');
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    if inside {
        out.push_str("…\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_redacted() {
        assert_eq!(
            redact_quoted(r#"invalid type: string "ghp_secret", expected u32 at line 1"#),
            r#"invalid type: string "…", expected u32 at line 1"#
        );
        assert_eq!(
            redact_quoted("missing field `token`"),
            "missing field `token`"
        );
        assert_eq!(redact_quoted(r#"x "open"#), r#"x "…""#);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(250)), "250ms");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn a_fault_names_the_plugin_the_call_and_the_stderr_tail() {
        let fault = PluginFault {
            name: "x".into(),
            path: "/bin/moat-provider-x".into(),
            method: "grant".into(),
            failure: Failure::Timeout(Duration::from_secs(30)),
            stderr_tail: vec!["waiting for the network".into()],
        };
        let crashed = PluginFault {
            failure: Failure::Exited(ExitReport::ClosedStdout),
            ..fault.clone()
        };
        assert_eq!(
            crashed.reason(),
            "closed its stdout (and was stopped) during grant (stderr: waiting for the network)"
        );
        let err = ProviderError::from(fault.clone());
        assert_eq!(
            err.message,
            "plugin x (/bin/moat-provider-x) timed out after 30s during grant; it was stopped"
        );
        assert!(err.hint.unwrap().contains("  | waiting for the network"));
        assert_eq!(fault.reason(), "timed out after 30s during grant");
    }
}
