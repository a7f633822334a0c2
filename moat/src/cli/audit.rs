//! `moat audit`: verify a run's hash-chained audit log and show its events.

use std::io;

use clap::Args;
use serde::Serialize;

use super::runs::{clock_seconds, print_json, resolve, store};
use super::{CliError, CliResult, Context, code};
use crate::run::audit::{self, AuditEntry, Tamper};

const HELP: &str = "\
Every entry of a run's audit log (what was granted, the container, requests the
policy refused, the command's exit) carries the SHA-256 of its content and of the
entry before it. This recomputes them all and checks that no entry is missing,
moved, edited or cut off, then lists the events as HH:MM:SS  <type>  <summary>.

Exit codes: 0 the log is intact, 1 it is not (the first bad entry is named),
3 no such run or the run has no audit log.

RUN is a run id, an id prefix (run_3f), or a name; without it, the newest run.

Examples:
  moat audit
  moat audit my-agent --json";

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct AuditArgs {
    /// The run: id, id prefix, or name [default: the newest run].
    #[arg(value_name = "RUN")]
    run: Option<String>,

    /// Print the verdict and the entries as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    run: &'a str,
    intact: bool,
    entries: usize,
    problem: Option<&'a Tamper>,
    events: &'a [AuditEntry],
}

pub fn run(context: &Context, args: AuditArgs) -> CliResult {
    let meta = resolve(context, args.run.as_deref())?;
    let path = store(context).paths(&meta.id).audit;
    let verification = match audit::verify(&path) {
        Ok(verification) => verification,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(CliError::new(format!("run {} has no audit log", meta.id))
                .hint(format!(
                    "A run writes {} once it starts; 'moat list' shows the state of {}.",
                    path.display(),
                    meta.id
                ))
                .code(code::NOT_FOUND));
        }
        Err(err) => {
            return Err(CliError::new(format!(
                "cannot read {}: {err}",
                path.display()
            )));
        }
    };
    let entries = &verification.entries;
    let tampered = || {
        CliError::new(format!(
            "the audit log of run {} has been tampered with",
            meta.id
        ))
        .hint(format!("Do not trust {}.", path.display()))
    };
    if args.json {
        print_json(&Report {
            run: meta.id.as_str(),
            intact: verification.tamper.is_none(),
            entries: entries.len(),
            problem: verification.tamper.as_ref(),
            events: entries,
        })?;
        return match verification.tamper {
            Some(_) => Err(tampered()),
            None => Ok(()),
        };
    }

    let ok = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Green.into()));
    let bad = anstyle::Style::new()
        .bold()
        .fg_color(Some(anstyle::AnsiColor::Red.into()));
    anstream::println!("Auditing run: {} ({})", meta.id, meta.name);
    match &verification.tamper {
        None => anstream::println!(
            "{ok}[ok]{ok:#} Hash chain: {} entries, no gaps, all hashes valid",
            entries.len()
        ),
        Some(tamper) => anstream::println!("{bad}[FAIL]{bad:#} TAMPERED: {tamper}"),
    }
    if !entries.is_empty() {
        println!("\nEvent log:");
        let width = entries.iter().map(|e| e.kind.len()).max().unwrap_or(0);
        for entry in entries {
            let time = entry.time().map_or_else(|| entry.ts.clone(), clock_seconds);
            println!("{time}  {:<width$}  {}", entry.kind, entry.summary());
        }
    }
    match verification.tamper {
        Some(_) => Err(tampered()),
        None => Ok(()),
    }
}
