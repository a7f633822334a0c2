//! `moat logs`: a run's output, the last lines, or followed while the run goes on.

use std::io::{self, Write as _};
use std::time::Duration;

use clap::Args;

use super::runs::{clock_millis, resolve, store};
use super::{CliError, CliResult, Context};
use crate::run::logs::{LogLine, LogReader, Stream, follow};

const HELP: &str = "\
Each line is printed as [HH:MM:SS.mmm] <line>, in local time. Lines the command
wrote to stdout go to stdout and lines it wrote to stderr go to stderr, as with
docker logs, so 'moat logs 2>/dev/null' shows stdout only. Output is saved as it
arrives, so the logs of a live run are there too.

RUN is a run id, an id prefix (run_3f), or a name; without it, the newest run.

Examples:
  moat logs                    everything the newest run printed
  moat logs my-agent -n 20     the last 20 lines of the run named my-agent
  moat logs -f                 follow the newest run until it ends (Ctrl-C to stop)";

/// How often `-f` looks for new lines and checks whether the run has ended.
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
#[command(after_help = HELP)]
pub struct LogsArgs {
    /// The run: id, id prefix, or name [default: the newest run].
    #[arg(value_name = "RUN")]
    run: Option<String>,

    /// Show only the last N lines.
    #[arg(short = 'n', long = "lines", value_name = "N")]
    lines: Option<usize>,

    /// Keep printing new lines until the run ends.
    #[arg(short, long)]
    follow: bool,
}

pub fn run(context: &Context, args: LogsArgs) -> CliResult {
    let meta = resolve(context, args.run.as_deref())?;
    let store = store(context);
    let path = store.paths(&meta.id).logs;
    let mut reader = LogReader::new(&path);
    let cannot = |err: io::Error| CliError::new(format!("cannot read {}: {err}", path.display()));
    let lines = reader.tail(args.lines).map_err(cannot)?;
    let result = lines.iter().try_for_each(emit).and_then(|()| {
        if !args.follow {
            return Ok(());
        }
        let id = meta.id.clone();
        follow(
            &mut reader,
            POLL,
            // A run whose metadata is gone (destroyed) has ended too.
            || store.load(&id).map_or(true, |m| m.state().is_ended()),
            emit,
        )
    });
    match result {
        Ok(()) => {}
        // `moat logs | head`: the reader has seen enough.
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(err) => return Err(cannot(err)),
    }
    if reader.skipped() > 0 {
        tracing::warn!(
            skipped = reader.skipped(),
            "some lines of {} could not be read",
            path.display()
        );
    }
    Ok(())
}

fn emit(line: &LogLine) -> io::Result<()> {
    let text = format!("[{}] {}\n", clock_millis(line.ts), line.line);
    match line.stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()
        }
        Stream::Stderr => {
            // Keep the order of the two streams on a shared terminal or file.
            io::stdout().flush()?;
            io::stderr().lock().write_all(text.as_bytes())
        }
    }
}
