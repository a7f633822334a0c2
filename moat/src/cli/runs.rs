//! What the commands that read runs share: resolving the run argument, errors, times, JSON.

use chrono::{DateTime, Local, Utc};
use serde::Serialize;

use super::{CliError, CliResult, Context, code};
use crate::run::{RunMetadata, RunStore, RunStoreError};

/// The run store of the context's home.
pub fn store(context: &Context) -> RunStore {
    RunStore::new(&context.home)
}

/// The run `arg` names, or the newest run without one.
pub fn resolve(context: &Context, arg: Option<&str>) -> Result<RunMetadata, CliError> {
    store(context).resolve_or_newest(arg).map_err(store_error)
}

/// A run store error as the CLI reports it: not found is exit 3, several matches exit 2 (name
/// one), the rest exit 1.
pub fn store_error(err: RunStoreError) -> CliError {
    let code = match &err {
        RunStoreError::NotFound { .. } | RunStoreError::NoRuns => code::NOT_FOUND,
        RunStoreError::Ambiguous { .. } => code::USAGE,
        _ => code::FAILURE,
    };
    let mut message = err.to_string();
    if let RunStoreError::Ambiguous { arg, matches } = &err {
        // A small table instead of one long line.
        message = format!("{} runs match {arg:?}:", matches.len());
        for run in matches {
            message.push_str(&format!(
                "\n  {}  {}  {}  {}",
                run.id,
                run.name,
                run.state(),
                clock_seconds(run.created_at)
            ));
        }
    }
    let hint = err.hint();
    let err = CliError::new(message).code(code);
    match hint {
        Some(hint) => err.hint(hint),
        None => err,
    }
}

/// `HH:MM:SS.mmm`, local time.
pub fn clock_millis(time: DateTime<Utc>) -> String {
    time.with_timezone(&Local)
        .format("%H:%M:%S%.3f")
        .to_string()
}

/// `HH:MM:SS`, local time.
pub fn clock_seconds(time: DateTime<Utc>) -> String {
    time.with_timezone(&Local).format("%H:%M:%S").to_string()
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|err| CliError::new(format!("cannot write JSON: {err}")))?;
    println!("{text}");
    Ok(())
}

/// At most `limit` characters of `text`, with `…` when cut.
pub fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
