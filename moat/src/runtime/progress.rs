//! Where pull and build progress goes.
//!
//! Pulling a base image or building the dependency layer can take a minute; the user must see
//! that something happens. The runtime reports [`ProgressEvent`]s to a [`Progress`] sink the caller
//! passes in, so the CLI picks the rendering ([`stderr_progress`]: a spinner with `indicatif` on a
//! terminal, plain lines otherwise) and tests capture the events ([`RecordingProgress`]). Nothing
//! is coloured, so `NO_COLOR` holds trivially.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// One thing worth telling the user while an image is prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A phase begins, e.g. `Pulling debian:bookworm-slim` or `Building moat/run:…`.
    Begin(String),
    /// A line of build output or a pull status (`Pulling fs layer`, `Step 2/3 : RUN …`).
    Line(String),
    /// Download progress of one layer while pulling.
    Bytes {
        /// The layer id.
        id: String,
        /// Bytes done.
        current: u64,
        /// Bytes in all, when known.
        total: Option<u64>,
    },
    /// The phase ended well, with a short summary (`pulled`, `built`, `cached`).
    Done(String),
}

/// A sink for [`ProgressEvent`]s. Called from the runtime's task; must not block for long.
pub trait Progress: Send + Sync {
    /// Report one event.
    fn event(&self, event: ProgressEvent);
}

/// Drops everything (for callers that want silence).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: ProgressEvent) {}
}

/// Keeps every event, for tests and for callers that log the build afterwards.
#[derive(Debug, Default)]
pub struct RecordingProgress {
    events: Mutex<Vec<ProgressEvent>>,
}

impl RecordingProgress {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was reported so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The text of every `Begin`, `Line` and `Done`, one per entry.
    pub fn lines(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|event| match event {
                ProgressEvent::Begin(s) | ProgressEvent::Line(s) | ProgressEvent::Done(s) => {
                    Some(s)
                }
                ProgressEvent::Bytes { .. } => None,
            })
            .collect()
    }
}

impl Progress for RecordingProgress {
    fn event(&self, event: ProgressEvent) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
    }
}

/// Plain lines on a writer (stderr when not a terminal, or a log file): phases and build output,
/// byte counts left out (they would be one line per chunk).
pub struct PlainProgress<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> PlainProgress<W> {
    /// Lines go to `out`.
    pub fn new(out: W) -> Self {
        PlainProgress {
            out: Mutex::new(out),
        }
    }

    /// The writer back (tests read what was written).
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<W: Write + Send> Progress for PlainProgress<W> {
    fn event(&self, event: ProgressEvent) {
        let line = match event {
            ProgressEvent::Begin(what) => format!("{what}..."),
            ProgressEvent::Line(line) => format!("  {line}"),
            ProgressEvent::Done(what) => what,
            ProgressEvent::Bytes { .. } => return,
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // Progress is best effort: a closed stderr must not fail the run.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// A spinner on stderr that shows the current phase, the latest line and download totals.
pub struct TerminalProgress {
    bar: ProgressBar,
    layers: Mutex<BTreeMap<String, (u64, Option<u64>)>>,
}

impl TerminalProgress {
    /// A spinner drawn on stderr (hidden until the first `Begin`).
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        TerminalProgress {
            bar,
            layers: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for TerminalProgress {
    fn event(&self, event: ProgressEvent) {
        match event {
            ProgressEvent::Begin(what) => {
                self.layers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                self.bar.reset();
                self.bar.set_prefix(what);
                self.bar.set_message("");
                self.bar.enable_steady_tick(Duration::from_millis(120));
            }
            ProgressEvent::Line(line) => self.bar.set_message(line),
            ProgressEvent::Bytes { id, current, total } => {
                let mut layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
                layers.insert(id, (current, total));
                let done: u64 = layers.values().map(|(c, _)| c).sum();
                let all: u64 = layers.values().filter_map(|(_, t)| *t).sum();
                self.bar.set_message(format!(
                    "{} layer(s), {} / {}",
                    layers.len(),
                    indicatif::HumanBytes(done),
                    indicatif::HumanBytes(all)
                ));
            }
            ProgressEvent::Done(what) => {
                self.bar.disable_steady_tick();
                self.bar.finish_and_clear();
                self.bar.println(what);
            }
        }
    }
}

/// The sink for a CLI: a spinner when stderr is a terminal, plain lines otherwise.
pub fn stderr_progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(TerminalProgress::new())
    } else {
        Box::new(PlainProgress::new(std::io::stderr()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_writes_phases_and_lines_but_not_byte_counts() {
        let progress = PlainProgress::new(Vec::new());
        progress.event(ProgressEvent::Begin("Pulling debian:bookworm-slim".into()));
        progress.event(ProgressEvent::Bytes {
            id: "abc".into(),
            current: 10,
            total: Some(20),
        });
        progress.event(ProgressEvent::Line("Pull complete".into()));
        progress.event(ProgressEvent::Done("Pulled debian:bookworm-slim".into()));
        let text = String::from_utf8(progress.into_inner()).unwrap();
        assert_eq!(
            text,
            "Pulling debian:bookworm-slim...\n  Pull complete\nPulled debian:bookworm-slim\n"
        );
        assert!(!text.contains('\x1b'), "no escape codes: {text:?}");
    }

    #[test]
    fn recording_progress_keeps_events_in_order() {
        let progress = RecordingProgress::new();
        progress.event(ProgressEvent::Begin("a".into()));
        progress.event(ProgressEvent::Bytes {
            id: "l".into(),
            current: 1,
            total: None,
        });
        progress.event(ProgressEvent::Done("b".into()));
        assert_eq!(progress.events().len(), 3);
        assert_eq!(progress.lines(), ["a", "b"]);
    }
}
