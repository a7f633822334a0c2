//! `moat plugin`: tools for plugin authors.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CliError, CliResult};
use crate::plugin::Timeouts;
use crate::plugin::check::{self, Outcome};

#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Check a plugin executable against protocol v1: naming, running by hand, version
    /// negotiation, the handshake, every declared method (answers validated against the
    /// schema), unknown methods, and that a test token never reaches the container or the logs.
    #[command(
        after_help = "Exit status 0 when every check passes, 1 otherwise.\n\nExample:\n  \
        moat plugin check ./target/release/moat-provider-foo"
    )]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The executable (`moat-provider-<name>`).
    path: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PluginArgs) -> CliResult {
    let PluginCommand::Check(args) = args.command;
    let report = check::check(&args.path, Timeouts::from_env()).await;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| CliError::new(format!("cannot write JSON: {err}")))?;
        println!("{text}");
    } else {
        println!("Checking {}", report.path.display());
        let width = report
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0);
        for check in &report.checks {
            let mark = match check.outcome {
                Outcome::Pass => "ok  ",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            };
            println!("  {mark}  {:<width$}  {}", check.name, check.detail);
        }
    }
    let failed = report.failed();
    if failed == 0 {
        if !args.json {
            println!("\nAll {} checks passed.", report.checks.len());
        }
        Ok(())
    } else {
        Err(CliError::new(format!("{failed} of {} checks failed", report.checks.len()))
            .hint("Each FAIL line says what the protocol expects; schema/README.md is the specification."))
    }
}
