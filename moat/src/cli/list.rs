//! `moat list`: the runs, newest first.

use chrono::{DateTime, Utc};
use clap::Args;

use super::runs::{print_json, store, store_error};
use super::{CliResult, Context, table};
use crate::run::RunMetadata;

const HELP: &str = "\
Runs are kept under $MOAT_HOME/runs/ until 'moat destroy' removes them.
STATE is created, starting, running, stopping, stopped (with the command's exit
code) or failed.

Examples:
  moat list
  moat list --json | jq -r '.[] | select(.state == \"running\") | .id'";

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct ListArgs {
    /// Print the runs' metadata as a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(context: &Context, args: ListArgs) -> CliResult {
    let runs = store(context).list().map_err(store_error)?;
    if args.json {
        return print_json(&runs);
    }
    if runs.is_empty() {
        println!("No runs found");
        println!("\nStart one with: moat run -- <command>");
        return Ok(());
    }
    table::print(
        &["NAME", "RUN ID", "AGENT", "STATE", "AGE", "IMAGE"],
        &rows(&runs, Utc::now()),
        2,
    );
    Ok(())
}

/// One table row per run; `-` where a run has no agent (`moat run`) or no image yet.
fn rows(runs: &[RunMetadata], now: DateTime<Utc>) -> Vec<Vec<String>> {
    runs.iter()
        .map(|run| {
            let state = match run.exit_code {
                Some(code) => format!("{} (exit {code})", run.state()),
                None => run.state().to_string(),
            };
            vec![
                run.name.clone(),
                run.id.to_string(),
                run.agent.clone().unwrap_or_else(|| "-".into()),
                state,
                table::relative(run.created_at, now),
                run.image.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunId;

    #[test]
    fn a_row_names_the_agent_of_an_agent_run_and_a_dash_otherwise() {
        let mut claude = RunMetadata::new(RunId::generate(), "fix-tests", "/w");
        claude.agent = Some("claude".into());
        claude.image = Some("moat/claude:abc".into());
        let plain = RunMetadata::new(RunId::generate(), "build", "/w");
        let rows = rows(&[claude.clone(), plain.clone()], claude.created_at);
        assert_eq!(
            rows[0],
            [
                "fix-tests",
                claude.id.as_str(),
                "claude",
                "created",
                &table::relative(claude.created_at, claude.created_at),
                "moat/claude:abc"
            ]
        );
        assert_eq!(rows[1][2], "-");
        assert_eq!(rows[1][5], "-");
    }
}
