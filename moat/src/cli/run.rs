//! `moat run`: a command in a container, its credentials on the wire and never inside.
//!
//! Thin: merge the flags over `moat.yaml`, resolve the grants (all problems at once, before
//! anything is created), hand the rest to the manager, and turn its outcome into moat's exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use moat_plugin_sdk::EnvVar;
use tokio::sync::watch;

use super::{CliError, Context, code};
use crate::config::Config;
use crate::proxy::{Blocked, NetworkPolicy, PolicyMode};
use crate::run::container_env::parse_flag;
use crate::run::manager::{Manager, RunIo, RunReporter, RunRequest};
use crate::runtime::progress::{Progress, stderr_progress};
use crate::runtime::{BindMount, DockerRuntime, ImageRequest, image};

const RUN_HELP: &str = "\
The command runs in a fresh container with the workspace (PATH, default: the current folder)
mounted at /workspace. Its HTTPS traffic goes through moat's proxy, which adds each granted
credential on the wire: the container only sees placeholders (`env` shows them) and a proxy URL
with this run's own token. Files the command writes to /workspace belong to you.

Settings come from the flags, then moat.yaml in the workspace (name, grants, dependencies, env,
command, base_image, network, mounts), then defaults. The image is --image, moat.yaml's
base_image, MOAT_BASE_IMAGE, or debian:bookworm-slim; `dependencies:` (Debian packages) are
built into an image of their own, once.

moat run exits with the command's exit code (130 after Ctrl-C). Before the command starts, moat's
own codes apply: 2 usage, 3 a grant is missing, 6 credentials unreadable, 1 anything else.

Examples:
  moat run --grant github -- curl -s https://api.github.com/user
  moat run --grant github -- env                  the placeholders, not the token
  moat run -e DEBUG=1 ./project -- make test
  moat run --policy strict --allow pypi.org --allow files.pythonhosted.org -- pip download x
  moat run --rule 'api.github.com deny DELETE /**' --grant github -- gh repo list
  moat run -i -- bash                             an interactive shell
  moat list; moat logs -n 20; moat trace --network; moat audit";

/// Run a command in a container with granted credentials injected by moat's proxy.
#[derive(Debug, Args)]
#[command(after_help = RUN_HELP)]
pub struct RunArgs {
    /// The workspace, mounted at /workspace [default: .]
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,

    /// The command and its arguments (after --) [default: moat.yaml's command].
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,

    /// A provider whose stored credential the run may use (repeatable, or comma-separated).
    #[arg(
        short = 'g',
        long = "grant",
        value_name = "PROVIDER",
        value_delimiter = ','
    )]
    grants: Vec<String>,

    /// An environment variable, KEY=VALUE, or KEY to pass this machine's value (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,

    /// The run's name, for `moat logs NAME` and friends [default: moat.yaml's, or random].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,

    /// Keep stdin open (and use a TTY when stdin is a terminal).
    #[arg(short, long)]
    interactive: bool,

    /// The image to run [default: moat.yaml's base_image, MOAT_BASE_IMAGE, debian:bookworm-slim].
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,

    /// Network policy: permissive (allow unless a rule denies) or strict (only the grants' hosts
    /// and --allow; nothing can skip the proxy) [default: moat.yaml's, or permissive].
    #[arg(long, value_name = "POLICY")]
    policy: Option<PolicyMode>,

    /// A host (or *.suffix, host:port) reachable under the strict policy (repeatable).
    #[arg(long = "allow", value_name = "HOST")]
    allow: Vec<String>,

    /// A method and path rule, "HOST allow|deny METHOD|* /glob" (repeatable; first match wins).
    #[arg(long = "rule", value_name = "RULE")]
    rules: Vec<String>,

    /// A port of a service on this machine the container may reach through the proxy, as
    /// moat-host (repeatable).
    #[arg(long = "host-port", value_name = "PORT")]
    host_ports: Vec<u16>,
}

pub async fn run(context: &Context, args: RunArgs) -> Result<u8, CliError> {
    let workspace = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    let config = if workspace.is_dir() {
        Config::load(&workspace).map_err(|err| CliError::new(err.to_string()).code(code::USAGE))?
    } else {
        Config::default()
    };

    let command = if args.command.is_empty() {
        config
            .command
            .as_ref()
            .map(|c| c.argv())
            .unwrap_or_default()
    } else {
        args.command.clone()
    };
    if command.is_empty() {
        return Err(CliError::new("no command to run")
            .hint("Put it after --: moat run -- COMMAND, or set command: in moat.yaml.")
            .code(code::USAGE));
    }

    let grants = if args.grants.is_empty() {
        config.grants.clone()
    } else {
        args.grants.clone()
    };
    // Every missing or unreadable grant at once, before anything is created.
    let resolving = std::time::Instant::now();
    let resolved =
        crate::provider::resolve_grants(&context.registry, &context.store, &grants).await?;
    tracing::debug!(
        phase = "grants",
        ms = resolving.elapsed().as_secs_f64() * 1e3,
        "run phase"
    );

    let mut flag_env = Vec::new();
    for arg in &args.env {
        flag_env.push(parse_flag(arg).map_err(|err| CliError::new(err).code(code::USAGE))?);
    }
    let config_env = config
        .env
        .iter()
        .map(|(name, value)| EnvVar::new(name, value))
        .collect();

    let policy = policy_of(&args, &config)?;
    let mounts = config
        .mounts
        .iter()
        .map(|mount| {
            let source = if mount.source.is_absolute() {
                mount.source.clone()
            } else {
                workspace.join(&mount.source)
            };
            BindMount {
                source,
                target: mount.target.clone(),
                read_only: mount.read_only,
            }
        })
        .collect();

    let mut image = ImageRequest::new(image::base_image(
        args.image.as_deref(),
        config.base_image.as_deref(),
    ));
    image.dependencies = config.dependencies.clone();
    for grant in &resolved {
        image
            .dependencies
            .extend(grant.entry.info.implied_dependencies.iter().cloned());
    }

    let interactive = args.interactive || config.interactive;
    let tty = interactive && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let request = RunRequest {
        workspace,
        command,
        name: args.name.clone(),
        configured_name: config.name.clone(),
        grant_names: resolved.iter().map(|g| g.name().to_owned()).collect(),
        config_env,
        flag_env,
        interactive,
        tty,
        image,
        policy,
        mounts,
    };

    // Bad upstream settings are usage errors, found before anything is created.
    let upstream = crate::proxy::UpstreamConfig::from_env()?;
    let connecting = std::time::Instant::now();
    let runtime = DockerRuntime::connect().await?;
    tracing::debug!(
        phase = "engine connect",
        ms = connecting.elapsed().as_secs_f64() * 1e3,
        "run phase"
    );
    let manager = Manager {
        home: context.home.clone(),
        credentials: Arc::new(context.store.clone()),
        runtime: Arc::new(runtime),
        reporter: Arc::new(TerminalReporter {
            progress: stderr_progress(),
        }),
        upstream,
    };
    let io = RunIo {
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        stdin: interactive.then(|| Box::new(tokio::io::stdin()) as _),
    };
    let (stop_tx, stop) = watch::channel(false);
    let signals = tokio::spawn(async move {
        super::proxy::wait_for_stop().await;
        let _ = stop_tx.send(true);
    });
    let outcome = manager.run(request, resolved, io, stop).await;
    signals.abort();
    let outcome = outcome?;
    anstream::eprintln!(
        "{dim}View output: moat logs {}{dim:#}",
        outcome.id,
        dim = anstyle::Style::new().dimmed()
    );
    if outcome.stopped {
        return Ok(130);
    }
    // Exit codes outside 0-255 (signals on other systems) become a plain failure.
    Ok(outcome
        .exit_code
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(code::FAILURE))
}

/// The flags' policy over moat.yaml's: the mode replaces, hosts and rules add up.
fn policy_of(args: &RunArgs, config: &Config) -> Result<NetworkPolicy, CliError> {
    let mut policy = config.network.clone();
    if let Some(mode) = args.policy {
        policy.policy = mode;
    }
    policy.allow.extend(args.allow.iter().cloned());
    for rule in &args.rules {
        let entry = crate::config::parse_rule(rule).map_err(|err| {
            CliError::new(format!("invalid --rule {rule:?}: {err}")).code(code::USAGE)
        })?;
        crate::config::merge_rules(&mut policy.rules, entry);
    }
    policy.host_ports.extend(args.host_ports.iter().copied());
    crate::proxy::policy::validate(&policy)
        .map_err(|err| CliError::new(err.to_string()).code(code::USAGE))?;
    Ok(policy)
}

/// Status lines and warnings on stderr; progress as the runtime draws it on a terminal.
struct TerminalReporter {
    progress: Box<dyn Progress>,
}

impl RunReporter for TerminalReporter {
    fn status(&self, line: &str) {
        let dim = anstyle::Style::new().dimmed();
        anstream::eprintln!("{dim}{line}{dim:#}");
    }

    fn warn(&self, line: &str) {
        let yellow = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
        anstream::eprintln!("{yellow}warning:{yellow:#} {line}");
    }

    fn blocked(&self, blocked: &Blocked) {
        let yellow = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
        anstream::eprintln!("{yellow}moat:{yellow:#} {blocked}");
    }

    fn progress(&self) -> &dyn Progress {
        self.progress.as_ref()
    }
}
