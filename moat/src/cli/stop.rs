//! `moat stop` and `moat destroy`: end a run from another terminal, and forget an ended one.
//!
//! A run belongs to the `moat run` process that started it: that process holds the run's proxy
//! and gives back everything the run took. `moat stop` therefore marks the run `stopping`, stops
//! its container, and waits for that process to finish. When the process is gone (killed, or the
//! machine restarted), `moat stop` cleans up what is left itself.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult, Context, code};
use crate::run::{RunMetadata, RunState, RunStore};
use crate::runtime::{ContainerId, DockerRuntime, Runtime};

/// How long the container gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long to wait for the run's own process to record the end.
const OWNER_WAIT: Duration = Duration::from_secs(30);

const STOP_HELP: &str = "\
RUN is a run id, an id prefix (run_3f2a), or a name; without it, the newest run that has not
ended. The command gets SIGTERM, then SIGKILL after 10 seconds; the `moat run` that started it
then exits with code 130 and cleans up.

Examples:
  moat stop                 the newest running run
  moat stop brave-otter";

const DESTROY_HELP: &str = "\
Removes an ended run's record: its metadata, logs, request log and audit log. A run that has not
ended is refused: stop it first (moat stop RUN). Without RUN, the newest ended run.

Examples:
  moat destroy run_3f2a9c01d4e5
  moat list --json | jq -r '.[] | select(.state==\"failed\") | .id' | xargs -n1 moat destroy";

/// Stop a running run.
#[derive(Debug, Args)]
#[command(after_help = STOP_HELP)]
pub struct StopArgs {
    /// The run: id, id prefix or name [default: the newest running run].
    #[arg(value_name = "RUN")]
    run: Option<String>,
}

/// Delete an ended run's record.
#[derive(Debug, Args)]
#[command(after_help = DESTROY_HELP)]
pub struct DestroyArgs {
    /// The run: id, id prefix or name [default: the newest ended run].
    #[arg(value_name = "RUN")]
    run: Option<String>,
}

pub async fn stop(context: &Context, args: StopArgs) -> CliResult {
    let runs = RunStore::new(&context.home);
    let mut meta = pick(
        &runs,
        args.run.as_deref(),
        |state| !state.is_ended(),
        "running",
    )?;
    if meta.state().is_ended() {
        return Err(CliError::new(format!(
            "run {} ({}) has already {}",
            meta.id,
            meta.name,
            meta.state()
        ))
        .hint(format!("Remove its record with: moat destroy {}", meta.id)));
    }
    if meta.state() != RunState::Stopping {
        runs.set_state(&mut meta, RunState::Stopping)?;
    }
    let runtime: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect().await?);
    if let Some(container) = meta.container_id.clone().map(ContainerId) {
        runtime.stop(&container, STOP_GRACE).await?;
    }
    if owner_alive(&meta) {
        // The run's own process sees the container end and records it.
        let deadline = tokio::time::Instant::now() + OWNER_WAIT;
        while tokio::time::Instant::now() < deadline {
            if runs.load(&meta.id)?.state().is_ended() {
                println!("Run {} stopped", meta.id);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Err(CliError::new(format!(
            "run {}'s container is stopped, but its moat process ({}) has not finished",
            meta.id,
            meta.owner_pid.unwrap_or_default()
        ))
        .hint("It may still be cleaning up; check with: moat list"));
    }
    // Nobody else will clean up.
    if let Some(container) = meta.container_id.clone().map(ContainerId) {
        runtime.remove(&container).await?;
    }
    runs.set_state(&mut meta, RunState::Stopped)?;
    println!("Run {} stopped", meta.id);
    Ok(())
}

pub async fn destroy(context: &Context, args: DestroyArgs) -> CliResult {
    let runs = RunStore::new(&context.home);
    let mut meta = pick(&runs, args.run.as_deref(), RunState::is_ended, "ended")?;
    if !meta.state().is_ended() {
        if owner_alive(&meta) {
            return Err(CliError::new(format!(
                "run {} ({}) is {}",
                meta.id,
                meta.name,
                meta.state()
            ))
            .hint(format!("Stop it first: moat stop {}", meta.id)));
        }
        // Its process is gone: the record is stale. Say so, then clean up as stop would.
        eprintln!(
            "warning: run {} is marked {} but its moat process is gone; cleaning up",
            meta.id,
            meta.state()
        );
        let _ = meta.fail("moat exited before the run ended");
    }
    if let Some(container) = meta.container_id.clone().map(ContainerId) {
        let runtime = DockerRuntime::connect().await?;
        runtime.remove(&container).await?;
    }
    runs.remove(&meta.id)?;
    println!("Run {} destroyed", meta.id);
    Ok(())
}

/// The run named by `arg`, or the newest one whose state passes `wanted`.
fn pick(
    runs: &RunStore,
    arg: Option<&str>,
    wanted: fn(RunState) -> bool,
    what: &str,
) -> Result<RunMetadata, CliError> {
    if let Some(arg) = arg {
        return Ok(runs.resolve(arg)?);
    }
    runs.list()?
        .into_iter()
        .find(|meta| wanted(meta.state()))
        .ok_or_else(|| {
            CliError::new(format!("no {what} run"))
                .hint("See the runs with: moat list")
                .code(code::NOT_FOUND)
        })
}

/// Whether the `moat run` process that owns the run is still alive.
pub(super) fn owner_alive(meta: &RunMetadata) -> bool {
    let Some(pid) = meta.owner_pid else {
        return false;
    };
    if pid == std::process::id() {
        return true;
    }
    #[cfg(target_os = "linux")]
    {
        // A live process with that pid whose executable is a moat binary (a recycled pid that
        // now belongs to something else does not count).
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        exe.is_ok_and(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("moat"))
        })
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    #[expect(unsafe_code, reason = "kill(2) with signal 0: is the process alive")]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: signal 0 only checks that the process exists; nothing is sent.
        unsafe { libc::kill(pid, 0) == 0 }
    }
}
