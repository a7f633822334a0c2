//! The command line: parse, call the library, print. One module per command.

mod agent;
mod audit;
mod error;
mod grant;
mod list;
mod logs;
mod network;
mod plugin;
mod prompt;
mod provider;
mod proxy;
mod revoke;
mod run;
mod runs;
mod status;
mod stop;
mod table;
mod trace;

use std::process::ExitCode;

use std::collections::BTreeSet;
use std::ffi::OsString;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub use error::{CliError, CliResult, code};

use crate::credential::{CredentialStore, KeyConfig};
use crate::declared::DeclaredWarning;
use crate::home::{MoatHome, Profile};
use crate::plugin::PluginReport;
use crate::provider::Registry;

const AFTER_HELP: &str = "\
Credentials are stored encrypted under $MOAT_HOME (default ~/.moat); the key lives in the system
keyring, or in $MOAT_HOME/encryption.key when MOAT_KEYRING_BACKEND=file.

Exit codes: 0 success, 1 failure (and an audit log that does not verify), 2 usage error
(and a run argument that matches several runs), 3 provider, credential or run not found,
4 credential rejected, 5 input needed but unavailable, 6 credential store unreadable.

Examples:
  moat run --grant github -- curl -s https://api.github.com/user
                               the command in a container; the token added on the wire
  moat grant github            store a GitHub token (from GITHUB_TOKEN, the gh CLI, or a prompt)
  moat grant providers         list the providers and where each comes from
  moat provider new acme       write a starter YAML provider file for a service
  moat grant list --json       list stored credentials as JSON
  moat revoke github           delete the stored GitHub credential
  moat list                    the runs, newest first
  moat logs -f                 follow the newest run's output until it ends
  moat audit my-run            verify a run's audit log and show its events";

/// Run commands and AI coding agents in containers, with credentials injected on the wire by a
/// proxy so the agent never sees a token.
#[derive(Debug, Parser)]
#[command(name = "moat", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Use a separate set of credentials (letters, digits, '-' and '_').
    #[arg(long, global = true, env = "MOAT_PROFILE", value_name = "NAME")]
    profile: Option<String>,

    /// More log output on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a command in a container, its credentials added on the wire by moat's proxy.
    Run(run::RunArgs),
    /// Store a credential for a provider, or inspect providers and stored credentials.
    Grant(grant::GrantArgs),
    /// Delete a stored credential.
    Revoke(revoke::RevokeArgs),
    /// Run the credential-injecting proxy on its own (for trying rules with curl on the host).
    Proxy(proxy::ProxyArgs),
    /// Tools for plugin authors: check a moat-provider-<name> executable against the protocol.
    Plugin(plugin::PluginArgs),
    /// Declared providers: write a starter YAML provider file, or check one.
    Provider(provider::ProviderArgs),
    /// List runs, newest first.
    List(list::ListArgs),
    /// Whether the container engine answers, the active runs, disk kept by ended runs, and
    /// containers left behind.
    Status(status::StatusArgs),
    /// Show a run's output (the last lines, or followed while it runs).
    Logs(logs::LogsArgs),
    /// Show the requests a run made through the proxy.
    Trace(trace::TraceArgs),
    /// Verify a run's hash-chained audit log and show its events.
    Audit(audit::AuditArgs),
    /// Stop a running run (from another terminal).
    Stop(stop::StopArgs),
    /// Delete an ended run's record (metadata, logs, audit log).
    Destroy(stop::DestroyArgs),
    /// An agent command (`moat <agent>`), built from the registry by [`Cli::try_parse_with`].
    #[command(skip)]
    Agent(agent::AgentInvocation),
}

impl Cli {
    /// Parses `args` against moat's own commands and every agent command the providers in
    /// `registry` declare (built-in or plugin: `moat <agent>`). moat's own commands win a name
    /// conflict. `moat --help` lists the agent commands of `registry`.
    pub fn try_parse_with(
        registry: &Registry,
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<Cli, clap::Error> {
        let base = Cli::command();
        let mut taken: BTreeSet<String> = base
            .get_subcommands()
            .flat_map(|sub| {
                std::iter::once(sub.get_name().to_owned())
                    .chain(sub.get_all_aliases().map(str::to_owned))
            })
            .collect();
        taken.insert("help".into());
        let agents = agent::AgentCommands::from_registry(registry, &taken);
        let matches = agents.augment(base).try_get_matches_from(args)?;
        if let Some((name, sub)) = matches.subcommand()
            && agents.get(name).is_some()
        {
            return Ok(Cli {
                global: GlobalArgs::from_arg_matches(&matches)?,
                command: Command::Agent(agents.invocation(name, sub)?),
            });
        }
        Cli::from_arg_matches(&matches)
    }

    /// The provider `moat grant <provider>` grants (without a `:scope`), for loading only the
    /// plugin it needs; `None` for every other command.
    pub fn grant_target(&self) -> Option<String> {
        match &self.command {
            Command::Grant(args) => args.target(),
            _ => None,
        }
    }

    /// How verbose logging should be (`-v` count).
    pub fn verbosity(&self) -> u8 {
        self.global.verbose
    }

    /// Runs the parsed command against `registry`, with moat's home and key storage taken from
    /// the environment, and returns moat's exit code. `plugins` says what went wrong while
    /// discovering plugins, `declared` what went wrong with provider files (both shown by `moat
    /// grant providers`).
    pub async fn run(
        self,
        registry: Registry,
        plugins: PluginReport,
        declared: Vec<DeclaredWarning>,
    ) -> ExitCode {
        let home = match MoatHome::from_env() {
            Ok(home) => home,
            Err(err) => {
                let hint = "Set MOAT_HOME to the folder moat should keep its state in.";
                return CliError::new(err.to_string()).hint(hint).report();
            }
        };
        self.run_in(registry, plugins, declared, home, KeyConfig::from_env())
            .await
    }

    /// [`run`](Self::run) with an explicit home and key storage and no plugin report (for tests
    /// and embedding).
    pub async fn run_with(self, registry: Registry, home: MoatHome, keys: KeyConfig) -> ExitCode {
        self.run_in(registry, PluginReport::default(), Vec::new(), home, keys)
            .await
    }

    /// [`run`](Self::run) with everything explicit.
    pub async fn run_in(
        self,
        registry: Registry,
        plugins: PluginReport,
        declared: Vec<DeclaredWarning>,
        home: MoatHome,
        keys: KeyConfig,
    ) -> ExitCode {
        match self.dispatch(registry, plugins, declared, home, keys).await {
            Ok(code) => ExitCode::from(code),
            Err(err) => err.report(),
        }
    }

    async fn dispatch(
        self,
        registry: Registry,
        plugins: PluginReport,
        declared: Vec<DeclaredWarning>,
        home: MoatHome,
        keys: KeyConfig,
    ) -> Result<u8, CliError> {
        let profile = match self.global.profile.as_deref().filter(|p| !p.is_empty()) {
            Some(name) => Some(
                Profile::new(name)
                    .map_err(|err| CliError::new(err.to_string()).code(code::USAGE))?,
            ),
            None => None,
        };
        let store = CredentialStore::open(&home, profile.as_ref(), keys);
        let context = Context {
            registry,
            plugins,
            declared,
            home,
            profile,
            store,
        };
        // A provider asked for may be declared in a file that did not load: say which files.
        let names_providers = matches!(
            self.command,
            Command::Run(_) | Command::Grant(_) | Command::Proxy(_)
        );
        let broken: Vec<String> = context
            .declared
            .iter()
            .filter(|warning| warning.is_broken())
            .map(ToString::to_string)
            .collect();
        let explain = move |err: CliError| {
            if names_providers && err.exit_code() == code::NOT_FOUND && !broken.is_empty() {
                err.append_hint(format!(
                    "These provider files could not be read; if it is declared in one of them:\n  {}",
                    broken.join("\n  ")
                ))
            } else {
                err
            }
        };
        let done = match self.command {
            // The command's own exit code is moat's.
            Command::Run(args) => return run::run(&context, args).await.map_err(explain),
            Command::Grant(args) => grant::run(&context, args).await,
            Command::Revoke(args) => revoke::run(&context, args),
            Command::Proxy(args) => proxy::run(&context, args).await,
            Command::Plugin(args) => plugin::run(args).await,
            Command::Provider(args) => provider::run(&context, args).await,
            Command::List(args) => list::run(&context, args),
            Command::Status(args) => status::run(&context, args).await,
            Command::Logs(args) => logs::run(&context, args),
            // `-v` is the global flag: it also turns on debug logging on stderr.
            Command::Trace(args) => trace::run(&context, args, self.global.verbose > 0),
            Command::Audit(args) => audit::run(&context, args),
            Command::Stop(args) => stop::stop(&context, args).await,
            Command::Destroy(args) => stop::destroy(&context, args).await,
            Command::Agent(invocation) => return agent::run(&context, invocation).await,
        };
        done.map(|()| 0).map_err(explain)
    }
}

/// What every command works with.
struct Context {
    registry: Registry,
    /// What went wrong while discovering plugins.
    plugins: PluginReport,
    /// What went wrong with provider files.
    declared: Vec<DeclaredWarning>,
    home: MoatHome,
    profile: Option<Profile>,
    store: CredentialStore,
}

impl Context {
    /// ` (profile: p)` when a profile is in use, for confirmations.
    fn profile_suffix(&self) -> String {
        self.profile
            .as_ref()
            .map(|p| format!(" (profile: {p})"))
            .unwrap_or_default()
    }

    /// The store key for a name given on the command line: a provider or alias resolves through
    /// the registry; an unknown name is taken as a store key, so credentials of a provider that
    /// is no longer installed can still be shown and revoked.
    fn store_key_for(&self, name: &str) -> String {
        match self.registry.get(name) {
            Some(entry) => entry.info.store_key().to_string(),
            None => name.to_string(),
        }
    }
}
