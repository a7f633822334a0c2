//! `moat run`: a command in a container, its credentials on the wire and never inside.
//!
//! Thin: merge the flags over `moat.yaml`, resolve the grants (all problems at once, before
//! anything is created), hand the rest to the manager, and turn its outcome into moat's exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use moat_plugin_sdk::EnvVar;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::network::NetworkArgs;
use super::{CliError, Context, code};
use crate::config::Config;
use crate::proxy::Blocked;
use crate::run::container_env::parse_flag;
use crate::run::manager::{Manager, RunIo, RunReporter, RunRequest};
use crate::run::terminal::{StdinTerminal, stdin_reader};
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

    /// Keep stdin open. On a terminal: a TTY of its size, and the terminal raw while the command
    /// runs (Ctrl-C goes to the command; SIGTERM or `moat stop` stops the run).
    #[arg(short, long)]
    interactive: bool,

    /// The image to run [default: moat.yaml's base_image, MOAT_BASE_IMAGE, debian:bookworm-slim].
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,

    #[command(flatten)]
    options: RunOptions,
}

/// The flags `moat run` and the agent commands (`moat <agent>`) share.
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// A provider whose stored credential the run may use (repeatable, or comma-separated).
    #[arg(
        short = 'g',
        long = "grant",
        value_name = "PROVIDER",
        value_delimiter = ','
    )]
    pub grants: Vec<String>,

    /// An environment variable, KEY=VALUE, or KEY to pass this machine's value (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// The run's name, for `moat logs NAME` and friends [default: moat.yaml's, or random].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub network: NetworkArgs,
}

/// What an agent command (`moat <agent>`) adds to a run, decided by `super::agent` from the
/// command the provider declared. Nothing here names an agent: it is data.
#[derive(Debug, Clone, Default)]
pub struct AgentLaunch {
    /// The command's name (recorded as the run's `agent`).
    pub name: String,
    /// The whole container command: the declared argv, the options' words, the user's ARGS.
    pub command: Vec<String>,
    /// A `batch` option was given: not interactive.
    pub batch: bool,
    /// The agent's image dependencies (`moat.yaml` `dependencies:` entries).
    pub dependencies: Vec<String>,
    /// Hosts allowed under the strict policy too.
    pub hosts: Vec<String>,
    /// Grants the agent can use, in order of preference.
    pub grants: Vec<String>,
    /// `--image`: an image that already holds the agent, used as is (no dependencies added).
    pub image: Option<String>,
}

/// A run as the CLI asks for it: `moat run`'s or an agent command's.
struct Launch {
    path: Option<PathBuf>,
    /// `moat run`: the command after `--` (empty: moat.yaml's).
    command: Vec<String>,
    interactive: bool,
    /// `moat run --image`: the base image.
    image: Option<String>,
    options: RunOptions,
    agent: Option<AgentLaunch>,
}

pub async fn run(context: &Context, args: RunArgs) -> Result<u8, CliError> {
    let launch = Launch {
        path: args.path,
        command: args.command,
        interactive: args.interactive,
        image: args.image,
        options: args.options,
        agent: None,
    };
    run_launch(context, launch).await
}

/// An agent command's run (`moat <agent>`): the same path as `moat run`.
pub async fn run_agent(
    context: &Context,
    path: Option<PathBuf>,
    options: RunOptions,
    agent: AgentLaunch,
) -> Result<u8, CliError> {
    let launch = Launch {
        path,
        command: Vec::new(),
        interactive: false,
        image: None,
        options,
        agent: Some(agent),
    };
    run_launch(context, launch).await
}

async fn run_launch(context: &Context, args: Launch) -> Result<u8, CliError> {
    let workspace = args.path.clone().unwrap_or_else(|| PathBuf::from("."));
    if !workspace.is_dir() {
        return Err(
            CliError::new(format!("workspace {}: no such folder", workspace.display()))
                .hint("Pass an existing folder: moat run [PATH] -- COMMAND")
                .code(code::USAGE),
        );
    }
    let config = Config::load(&workspace)?;

    let command = if let Some(agent) = &args.agent {
        agent.command.clone()
    } else if args.command.is_empty() {
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

    let mut grants = if args.options.grants.is_empty() {
        config.grants.clone()
    } else {
        args.options.grants.clone()
    };
    if let Some(agent) = &args.agent {
        grants = super::agent::agent_grants(context, grants, &agent.grants)?;
    }
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
    for arg in &args.options.env {
        flag_env.push(parse_flag(arg).map_err(|err| CliError::new(err).code(code::USAGE))?);
    }
    let config_env = config
        .env
        .iter()
        .map(|(name, value)| EnvVar::new(name, value))
        .collect();

    let mut policy = args.options.network.over(&config.network)?;
    if let Some(agent) = &args.agent {
        allow_agent_hosts(&mut policy, agent)?;
    }
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

    let implied = resolved
        .iter()
        .flat_map(|grant| grant.entry.info.implied_dependencies.iter().cloned());
    let image = image_request(
        args.image.as_deref(),
        args.agent.as_ref(),
        &config,
        implied,
        image::base_image,
    );

    let interactive = match &args.agent {
        Some(agent) => !agent.batch,
        None => args.interactive || config.interactive,
    };
    let tty = interactive && StdinTerminal::available();
    let request = RunRequest {
        workspace,
        command,
        name: args.options.name.clone(),
        configured_name: config.name.clone(),
        config_env,
        flag_env,
        interactive,
        tty,
        image,
        policy,
        mounts,
        agent: args.agent.as_ref().map(|agent| agent.name.clone()),
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
            eol: if std::io::stderr().is_terminal() {
                "\r\n"
            } else {
                "\n"
            },
        }),
        upstream,
    };
    let io = RunIo {
        stdout: Box::new(tokio::io::stdout()),
        stderr: Box::new(tokio::io::stderr()),
        // Not tokio's stdin: its blocked read would hold moat at exit until a key press.
        stdin: interactive.then(|| Box::new(stdin_reader()) as _),
        terminal: tty.then(|| Box::new(StdinTerminal::open()) as _),
    };
    let (stop_tx, stop) = watch::channel(false);
    // Registered here, not when a task first polls them: a Ctrl-C the moment the run begins
    // must stop it (and its cleanup) rather than kill moat with the default action. A closed
    // terminal (SIGHUP) stops the run too, instead of leaving its container behind.
    let watch_signal =
        |kind| signal(kind).map_err(|err| CliError::new(format!("cannot watch for Ctrl-C: {err}")));
    let mut interrupt = watch_signal(SignalKind::interrupt())?;
    let mut terminate = watch_signal(SignalKind::terminate())?;
    let mut hangup = watch_signal(SignalKind::hangup())?;
    let signals = tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
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

/// The run's image: an agent's `--image` as is; otherwise the base (`--image`, moat.yaml,
/// `MOAT_BASE_IMAGE`, default, as `base` picks it) with moat.yaml's `dependencies:`, the grants'
/// implied ones and the agent's declared ones.
fn image_request(
    flag: Option<&str>,
    agent: Option<&AgentLaunch>,
    config: &Config,
    implied: impl Iterator<Item = String>,
    base: impl Fn(Option<&str>, Option<&str>) -> String,
) -> ImageRequest {
    if let Some(prebuilt) = agent.and_then(|agent| agent.image.as_deref()) {
        // An image that already holds the agent: as is, nothing added.
        return ImageRequest::new(prebuilt);
    }
    let mut image = ImageRequest::new(base(flag, config.base_image.as_deref()));
    image.dependencies = config.dependencies.clone();
    image.dependencies.extend(implied);
    if let Some(agent) = agent {
        image
            .dependencies
            .extend(agent.dependencies.iter().cloned());
    }
    image
}

/// An agent's declared hosts join the policy's allowed hosts (they matter under the strict
/// policy), checked like `--allow` ones: a plugin could declare anything.
fn allow_agent_hosts(
    policy: &mut crate::proxy::NetworkPolicy,
    agent: &AgentLaunch,
) -> Result<(), CliError> {
    for host in &agent.hosts {
        if !policy.allow.contains(host) {
            policy.allow.push(host.clone());
        }
    }
    crate::proxy::policy::validate(policy)
        .map_err(|err| CliError::new(format!("agent {}: {err}", agent.name)).code(code::USAGE))
}

/// Status lines and warnings on stderr; progress as the runtime draws it on a terminal.
struct TerminalReporter {
    progress: Box<dyn Progress>,
    /// `\r\n` on a terminal: while `-i` holds it raw, a bare `\n` would not return the
    /// cursor (harmless otherwise); `\n` anywhere else.
    eol: &'static str,
}

impl RunReporter for TerminalReporter {
    fn status(&self, line: &str) {
        let dim = anstyle::Style::new().dimmed();
        anstream::eprint!("{dim}{line}{dim:#}{}", self.eol);
    }

    fn warn(&self, line: &str) {
        let yellow = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
        anstream::eprint!("{yellow}warning:{yellow:#} {line}{}", self.eol);
    }

    fn blocked(&self, blocked: &Blocked) {
        let yellow = anstyle::Style::new()
            .bold()
            .fg_color(Some(anstyle::AnsiColor::Yellow.into()));
        anstream::eprint!("{yellow}moat:{yellow:#} {blocked}{}", self.eol);
    }

    fn progress(&self) -> &dyn Progress {
        self.progress.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentLaunch {
        AgentLaunch {
            name: "bot".into(),
            command: vec!["bot".into()],
            dependencies: vec!["node".into(), "npm:@scope/bot-cli".into()],
            hosts: vec!["api.bot.test".into(), "*.bot.test".into()],
            grants: vec!["bot".into()],
            ..AgentLaunch::default()
        }
    }

    fn config() -> Config {
        Config {
            base_image: Some("from-yaml".into()),
            dependencies: vec!["jq".into()],
            ..Config::default()
        }
    }

    fn base(flag: Option<&str>, config: Option<&str>) -> String {
        image::base_image_from(flag, config, None)
    }

    #[test]
    fn an_agents_dependencies_join_the_users_and_the_grants() {
        let implied = vec!["gh".to_owned()].into_iter();
        let image = image_request(None, Some(&agent()), &config(), implied, base);
        assert_eq!(image.base, "from-yaml");
        assert_eq!(
            image.dependencies,
            ["jq", "gh", "node", "npm:@scope/bot-cli"]
        );
        // `moat run` has no agent's.
        let image = image_request(Some("flag"), None, &config(), std::iter::empty(), base);
        assert_eq!(image.base, "flag");
        assert_eq!(image.dependencies, ["jq"]);
    }

    #[test]
    fn an_agents_image_is_used_as_is() {
        let mut agent = agent();
        agent.image = Some("my/agent:1".into());
        let implied = vec!["gh".to_owned()].into_iter();
        let image = image_request(None, Some(&agent), &config(), implied, base);
        assert_eq!(image, ImageRequest::new("my/agent:1"));
    }

    #[test]
    fn an_agents_hosts_are_allowed_once_and_checked() {
        let mut policy = crate::proxy::NetworkPolicy::default();
        policy.allow.push("api.bot.test".into());
        allow_agent_hosts(&mut policy, &agent()).unwrap();
        assert_eq!(policy.allow, ["api.bot.test", "*.bot.test"]);
        let mut bad = agent();
        bad.hosts = vec!["exa mple.test/x".into()];
        let err = allow_agent_hosts(&mut crate::proxy::NetworkPolicy::default(), &bad).unwrap_err();
        assert_eq!(err.exit_code(), code::USAGE);
        assert!(err.message().starts_with("agent bot:"), "{}", err.message());
    }
}
