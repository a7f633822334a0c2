//! A [`RunReporter`] that keeps what the run manager says, for tests that drive
//! `moat::run::manager::Manager` in-process.

use std::sync::Mutex;

use moat::proxy::Blocked;
use moat::run::manager::RunReporter;
use moat::runtime::progress::{NoProgress, Progress};

/// Keeps every status line, warning (`warning: ...`) and refusal, in order; shows no progress.
#[derive(Debug, Default)]
pub struct RecordingReporter(Mutex<Vec<String>>);

impl RecordingReporter {
    /// Everything said so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
}

impl RunReporter for RecordingReporter {
    fn status(&self, line: &str) {
        self.push(line.to_owned());
    }

    fn warn(&self, line: &str) {
        self.push(format!("warning: {line}"));
    }

    fn blocked(&self, blocked: &Blocked) {
        self.push(blocked.to_string());
    }

    fn progress(&self) -> &dyn Progress {
        &NoProgress
    }
}
