//! What a plugin writes, read by moat: its stdout (protocol messages) and its stderr (logs).
//!
//! The transport is split by job, so each rule has one home:
//!
//! - `stdout`: one JSON-RPC message per line ([`moat_plugin_sdk::wire`]'s framing, shared with
//!   the plugin side); hands on the responses, routes `$/log`, and turns what is fatal (a line
//!   too long, not JSON-RPC, end of output) into the [`Failure`](super::Failure) the caller gets.
//! - `stderr`: the plugin's log lines, structured or not, each cut to a bounded length.
//! - `hold`: where what the plugin says goes: to moat's log under [`LOG_TARGET`], or held back
//!   while a call that may return a new secret is in flight.
//! - here, [`Shared`]: the plugin's identity, the secrets scrubbed from everything it says (one
//!   [`SecretSet`]), and the tail of what it said, for error reports.
//!
//! Nothing the plugin says reaches a log, an error or the tail before it went through
//! [`Shared::said`], which redacts it.

pub(crate) mod hold;
pub(crate) mod stderr;
pub(crate) mod stdout;

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use moat_plugin_sdk::{Secret, SecretSet};

pub use hold::OutputHold;
pub use stderr::{STDERR_TAIL_LINES, forward_stderr};
pub use stdout::LineReceiver;

/// The `tracing` target of everything a plugin says.
pub const LOG_TARGET: &str = "moat::plugin";

/// State shared by the stdout reader, the stderr task and the connection.
#[derive(Debug)]
pub struct Shared {
    /// The provider name, for logs.
    pub name: String,
    /// The executable, for logs.
    pub path: PathBuf,
    /// What the plugin said last (stderr and `$/log`), redacted, oldest first.
    tail: Mutex<VecDeque<String>>,
    /// Credentials this plugin has been handed or has returned: scrubbed from everything it
    /// writes before moat logs or keeps it, so a careless plugin cannot leak one through moat.
    secrets: Mutex<SecretSet>,
    /// What the plugin logged while its output is held (see [`Shared::hold_output`]).
    held: Mutex<hold::Held>,
}

impl Shared {
    pub fn new(name: String, path: PathBuf) -> Self {
        Shared {
            name,
            path,
            tail: Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)),
            secrets: Mutex::new(SecretSet::new()),
            held: Mutex::new(hold::Held::default()),
        }
    }

    /// Adds `secret` to what is scrubbed from the plugin's output.
    pub fn remember_secret(&self, secret: &Secret) {
        lock(&self.secrets).insert(secret);
    }

    /// Adds every secret of `secrets` to what is scrubbed from the plugin's output.
    pub fn remember_secrets(&self, secrets: &SecretSet) {
        lock(&self.secrets).extend(secrets);
    }

    /// `text` with every remembered secret replaced by `[REDACTED]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        lock(&self.secrets).redact(text)
    }

    /// The first part of an overlong line, redacted, without an end that could be the start of
    /// a known secret (the stream holds it back and is dropped).
    pub(crate) fn redact_cut(&self, text: &str) -> String {
        lock(&self.secrets).stream().push(text)
    }

    /// One thing the plugin said (`level` empty when it named none): redacted, kept in the
    /// tail as `level: message`, and logged or held.
    pub(crate) fn said(&self, level: &str, message: &str) {
        let message = self.redact(message).into_owned();
        let kept = if level.is_empty() {
            message.clone()
        } else {
            format!("{}: {message}", level.to_ascii_lowercase())
        };
        self.forward(level, message);
        let mut tail = lock(&self.tail);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(kept);
    }

    /// The last lines the plugin said, oldest first.
    pub fn stderr_tail(&self) -> Vec<String> {
        let tail = lock(&self.tail);
        // Redacted again on the way out: a secret learned after a line was kept (the token a
        // grant returned, say) must not be shown by a later crash report either.
        tail.iter()
            .map(|line| self.redact(line).into_owned())
            .collect()
    }
}

/// Reads `stream` as a plugin's stdout (lines of at most `max_line` bytes) until the end of
/// output or a protocol violation, with `secret` among the secrets scrubbed (the fuzz target).
pub(crate) async fn read_to_end(stream: &[u8], max_line: usize, secret: &Secret) {
    let shared = Arc::new(Shared::new(
        "fuzz".into(),
        PathBuf::from("/fuzz/moat-provider-fuzz"),
    ));
    shared.remember_secret(secret);
    let mut receiver = LineReceiver::with_max_line(stream, shared, max_line);
    while let Ok(response) = receiver.next_response().await {
        // What moat does with an answer next: read it as the result type of a call, checked
        // against protocol v1, or read the error's data.
        match &response.outcome {
            Ok(raw) => {
                use moat_plugin_sdk::protocol::{ContainerEnvResult, InitializeResult};
                use moat_plugin_sdk::{GrantStep, ProxyRules};
                let text = raw.get();
                let _ = serde_json::from_str::<InitializeResult>(text);
                let _ = serde_json::from_str::<ProxyRules>(text);
                let _ = serde_json::from_str::<ContainerEnvResult>(text);
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
                    for file in ["grant.result.json", "configure_proxy.result.json"] {
                        let _ = super::schema::validate(file, &value);
                    }
                    let _ = serde_json::from_value::<GrantStep>(value);
                }
            }
            Err(error) => {
                if let Some(data) = error.data() {
                    let _ =
                        serde_json::from_str::<moat_plugin_sdk::protocol::ErrorData>(data.get());
                }
            }
        }
    }
}

/// A poisoned lock still holds good data here: every update is a single step.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
