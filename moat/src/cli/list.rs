//! `moat list`: the runs, newest first.

use chrono::Utc;
use clap::Args;

use super::runs::{print_json, store, store_error};
use super::{CliResult, Context, table};

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
    let now = Utc::now();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            let state = match run.exit_code {
                Some(code) => format!("{} (exit {code})", run.state()),
                None => run.state().to_string(),
            };
            vec![
                run.name.clone(),
                run.id.to_string(),
                state,
                table::relative(run.created_at, now),
                run.image.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::print(&["NAME", "RUN ID", "STATE", "AGE", "IMAGE"], &rows, 2);
    Ok(())
}
