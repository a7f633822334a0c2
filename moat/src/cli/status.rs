//! `moat status`: whether the container engine answers, the active runs, what ended runs keep
//! on disk, and containers moat started that no active run owns.

use std::path::Path;

use chrono::Utc;
use clap::Args;
use serde::Serialize;

use super::runs::{print_json, store, store_error};
use super::{CliError, CliResult, Context, table};
use crate::run::RunMetadata;
use crate::runtime::{DockerRuntime, Endpoint, MANAGED_LABEL, RUN_LABEL, Runtime as _};

const HELP: &str = "\
Active runs are those created, starting, running or stopping; one whose moat process is gone
(killed, or the machine restarted) is stale: 'moat destroy <run>' cleans it up. Ended runs keep their records
(metadata, output, request and audit logs) under $MOAT_HOME/runs/ until 'moat destroy' removes
them. An orphaned container carries moat's label but belongs to no active run (left behind by a
moat that was killed); 'docker rm -f' removes it.

Exit status: 0, or 1 when the container engine cannot be reached (the error says why).

Examples:
  moat status
  moat status --json | jq '.orphaned_containers'";

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct StatusArgs {
    /// Print the status as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Status {
    runtime: RuntimeStatus,
    active_runs: Vec<RunMetadata>,
    /// Ids of the active runs whose `moat` process is gone.
    stale_runs: Vec<String>,
    ended_runs: usize,
    /// Bytes under `$MOAT_HOME/runs/`.
    runs_disk_bytes: u64,
    /// `None` when the engine could not be asked.
    orphaned_containers: Option<Vec<Orphan>>,
}

#[derive(Serialize)]
struct RuntimeStatus {
    name: &'static str,
    endpoint: Option<String>,
    reachable: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct Orphan {
    id: String,
    name: String,
    /// The run its label names, when it has one.
    run: Option<String>,
    state: String,
}

pub async fn run(context: &Context, args: StatusArgs) -> CliResult {
    let runs = store(context).list().map_err(store_error)?;
    let (active_runs, ended): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|run| !run.state().is_ended());
    let stale_runs = active_runs
        .iter()
        .filter(|run| !super::stop::owner_alive(run))
        .map(|run| run.id.to_string())
        .collect();
    let runs_disk_bytes = disk_usage(&context.home.root().join("runs"));
    let (runtime, orphaned_containers, unreachable) = match DockerRuntime::connect().await {
        Ok(docker) => {
            let endpoint = Some(docker.endpoint().host.clone());
            match docker.list(&format!("{MANAGED_LABEL}=true")).await {
                Ok(containers) => {
                    let orphans = containers
                        .into_iter()
                        .filter_map(|container| {
                            let run = container.labels.get(RUN_LABEL).cloned();
                            let owned = run.as_deref().is_some_and(|id| {
                                active_runs.iter().any(|active| active.id.as_str() == id)
                            });
                            (!owned).then(|| Orphan {
                                id: container.id.as_ref().chars().take(12).collect(),
                                name: container.name,
                                run,
                                state: container.state,
                            })
                        })
                        .collect();
                    let status = RuntimeStatus {
                        name: docker.name(),
                        endpoint,
                        reachable: true,
                        error: None,
                    };
                    (status, Some(orphans), None)
                }
                Err(err) => {
                    let status = RuntimeStatus {
                        name: docker.name(),
                        endpoint,
                        reachable: false,
                        error: Some(err.to_string()),
                    };
                    (status, None, Some(CliError::from(err)))
                }
            }
        }
        Err(err) => {
            let status = RuntimeStatus {
                name: "docker",
                endpoint: Endpoint::from_env().ok().map(|endpoint| endpoint.host),
                reachable: false,
                error: Some(err.to_string()),
            };
            (status, None, Some(CliError::from(err)))
        }
    };
    let status = Status {
        runtime,
        active_runs,
        stale_runs,
        ended_runs: ended.len(),
        runs_disk_bytes,
        orphaned_containers,
    };
    if args.json {
        print_json(&status)?;
    } else {
        print_text(&status, &context.home.root().join("runs"));
    }
    match unreachable {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn print_text(status: &Status, runs_dir: &Path) {
    let runtime = &status.runtime;
    let place = runtime
        .endpoint
        .as_deref()
        .map_or_else(String::new, |endpoint| format!(" at {endpoint}"));
    let state = if runtime.reachable {
        "reachable"
    } else {
        "unreachable"
    };
    println!("Runtime: {}{place}, {state}", runtime.name);

    println!("Active runs: {}", status.active_runs.len());
    if !status.active_runs.is_empty() {
        let now = Utc::now();
        let rows: Vec<Vec<String>> = status
            .active_runs
            .iter()
            .map(|run| {
                vec![
                    run.name.clone(),
                    run.id.to_string(),
                    run.agent.clone().unwrap_or_else(|| "-".into()),
                    if status.stale_runs.contains(&run.id.to_string()) {
                        format!("{}, moat process gone", run.state())
                    } else {
                        run.state().to_string()
                    },
                    table::relative(run.created_at, now),
                ]
            })
            .collect();
        table::print(&["NAME", "RUN ID", "AGENT", "STATE", "AGE"], &rows, 2);
        if !status.stale_runs.is_empty() {
            println!(
                "{} stale (its moat process is gone): 'moat destroy <run>' cleans one up",
                status.stale_runs.len()
            );
        }
    }

    print!(
        "Ended runs: {}, {} under {}",
        status.ended_runs,
        human_bytes(status.runs_disk_bytes),
        runs_dir.display()
    );
    if status.ended_runs > 0 {
        print!(" ('moat destroy <run>' deletes one)");
    }
    println!();

    match &status.orphaned_containers {
        None => println!("Orphaned containers: unknown (the runtime cannot be asked)"),
        Some(orphans) if orphans.is_empty() => println!("Orphaned containers: none"),
        Some(orphans) => {
            println!(
                "Orphaned containers: {} (moat's label, no active run)",
                orphans.len()
            );
            let rows: Vec<Vec<String>> = orphans
                .iter()
                .map(|orphan| {
                    vec![
                        orphan.name.clone(),
                        orphan.id.clone(),
                        orphan.run.clone().unwrap_or_else(|| "-".into()),
                        orphan.state.clone(),
                    ]
                })
                .collect();
            table::print(&["NAME", "CONTAINER ID", "RUN", "STATE"], &rows, 2);
            let names: Vec<&str> = orphans.iter().map(|o| o.name.as_str()).collect();
            println!("Remove them with: docker rm -f {}", names.join(" "));
        }
    }
}

/// The bytes of the files below `dir` (0 when it does not exist); symbolic links not followed.
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => disk_usage(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// `812 B`, `4.2 KiB`, `1.3 MiB`, `2.0 GiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_bytes(4096 << 30), "4096.0 GiB");
    }

    #[test]
    fn disk_usage_adds_files_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir_all(dir.path().join("run/x")).unwrap();
        std::fs::write(dir.path().join("run/x/b"), [0u8; 50]).unwrap();
        assert_eq!(disk_usage(dir.path()), 150);
        assert_eq!(disk_usage(&dir.path().join("missing")), 0);
    }
}
