//! Where what a plugin says goes: moat's log, or a waiting room while a secret may be coming.
//!
//! A plugin may log the token it is about to return from `grant` (read from an environment
//! variable, say) before moat knows that token, so redaction could not catch it. While an
//! [`OutputHold`] is in force, lines are kept back; when the last hold is dropped they are
//! redacted again, with every secret known by then, and logged.

use std::collections::VecDeque;
use std::sync::Arc;

use moat_plugin_sdk::Secret;

use super::{LOG_TARGET, Shared, lock};

/// Most log lines kept back during one hold; older ones are dropped (and counted).
pub(super) const MAX_HELD_LINES: usize = 256;

/// Log lines kept back while a call that may return a new secret is in flight.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// How many holds are in force; lines are forwarded when it drops to zero.
    holds: usize,
    /// `(level, message)`, already redacted with what was known then.
    lines: VecDeque<(String, String)>,
    dropped: usize,
}

/// Forwards what the plugin logged while it was held, redacted with every secret known by then,
/// when dropped.
#[must_use = "the plugin's log is held until this is dropped"]
pub struct OutputHold {
    shared: Arc<Shared>,
}

impl OutputHold {
    /// Scrubs `secret` from the held lines (and everything later) before they are let go.
    pub fn remember_secret(&self, secret: &Secret) {
        self.shared.remember_secret(secret);
    }

    /// Scrubs every secret of `secrets` from the held lines (and everything later).
    pub fn remember_secrets(&self, secrets: &moat_plugin_sdk::SecretSet) {
        self.shared.remember_secrets(secrets);
    }
}

impl Drop for OutputHold {
    fn drop(&mut self) {
        let (lines, dropped) = {
            let mut held = lock(&self.shared.held);
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
    /// Holds back what the plugin logs until the returned guard is dropped (for `grant`; see the
    /// module docs). The tail is redacted on the way out already.
    pub fn hold_output(self: &Arc<Self>) -> OutputHold {
        lock(&self.held).holds += 1;
        OutputHold {
            shared: self.clone(),
        }
    }

    /// True while the output is held.
    pub(super) fn is_held(&self) -> bool {
        lock(&self.held).holds > 0
    }

    /// Logs one line the plugin wrote (already redacted with what is known), or keeps it back
    /// while the output is held.
    pub(super) fn forward(&self, level: &str, message: String) {
        {
            let mut held = lock(&self.held);
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
