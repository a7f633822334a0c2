//! The `moat` binary: register the providers (built-ins, the user's provider files, plugins, the
//! bundled catalogue), then hand over to the CLI.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use moat::cli::Cli;
use moat::declared::{self, Bundled};
use moat::home::MoatHome;
use moat::plugin::{PluginConfig, Plugins};
use moat::provider::Registry;
use moat::providers::anthropic::AnthropicProvider;
use moat::providers::aws::AwsProvider;
use moat::providers::claude::ClaudeProvider;
use moat::providers::codex::CodexProvider;
use moat::providers::gemini::GeminiProvider;
use moat::providers::github::GithubProvider;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // Explicit registration, in precedence order: built-ins first, so nothing can shadow them.
    // They are registered before the command line is parsed: their agent commands (`moat
    // <agent>`) are subcommands.
    let mut registry = Registry::new();
    registry.register_builtin(Arc::new(GithubProvider::from_env()));
    registry.register_builtin(Arc::new(ClaudeProvider::from_env()));
    registry.register_builtin(Arc::new(AnthropicProvider::from_env()));
    registry.register_builtin(Arc::new(CodexProvider::from_env()));
    registry.register_builtin(Arc::new(GeminiProvider::from_env()));
    registry.register_builtin(Arc::new(AwsProvider::from_env()));
    // Then the user's provider files ($MOAT_HOME/providers/*.yaml|*.yml): what the user wrote
    // beats any plugin and the bundled catalogue. A broken file is a warning, never fatal.
    let mut declared_warnings = match MoatHome::from_env() {
        Ok(home) => {
            declared::register_user_files(&mut registry, &home.root().join(declared::PROVIDERS_DIR))
        }
        Err(_) => Vec::new(),
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start moat's runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<OsString> = std::env::args_os().collect();
    let config = PluginConfig::from_env();

    // Plugins are loaded only once the command line is known, and a plugin's agent command
    // (`moat <plugin-agent>`) is found without starting every plugin on every invocation: the
    // line is parsed against moat's commands and the built-ins' agent commands first; only when
    // that fails on the subcommand (a word that may be a plugin's agent command) or shows the
    // top-level help (which lists them) are plugins loaded, which takes their `initialize`
    // answers from the cache (`plugin/cache.rs`, keyed by binary identity) and starts only the
    // new or changed ones, then the line is parsed again with their commands.
    let (cli, preloaded) = match Cli::try_parse_with(&registry, &args) {
        Ok(cli) => {
            init_logging(cli.verbosity());
            (cli, None)
        }
        Err(err) if may_be_plugin_command(&err) => {
            let verbosity = verbosity_of(&args);
            init_logging(verbosity);
            moat::plugin::set_log_verbosity(verbosity);
            let plugins = runtime.block_on(Plugins::load(&mut registry, &config));
            match Cli::try_parse_with(&registry, &args) {
                Ok(cli) => (cli, Some(plugins)),
                Err(err) => {
                    runtime.block_on(plugins.shutdown());
                    err.exit()
                }
            }
        }
        Err(err) => err.exit(),
    };
    moat::plugin::set_log_verbosity(cli.verbosity());

    runtime.block_on(async {
        // Then plugins: `moat-provider-<name>` on the absolute PATH entries and in
        // $MOAT_HOME/plugins. A name already taken hides the plugin (built-ins win). Cached
        // plugins are not started; new or changed ones are asked in parallel, then stopped.
        // `moat grant <name>` needs only moat-provider-<name>, started once.
        let plugins = match (preloaded, cli.grant_target()) {
            (Some(plugins), _) => plugins,
            (None, Some(name)) => Plugins::load_for_grant(&mut registry, &config, &name).await,
            (None, None) => Plugins::load(&mut registry, &config).await,
        };
        // Last, the bundled catalogue: a name already taken (a built-in, a user file, a plugin)
        // hides the bundled provider, with a warning.
        let bundled: Vec<Bundled> = moat::providers::catalogue::FILES
            .iter()
            .map(|&(file, text)| Bundled { file, text })
            .collect();
        declared_warnings.extend(declared::register_bundled(&mut registry, &bundled));
        for warning in &declared_warnings {
            tracing::debug!("provider file warning: {warning}");
        }
        let code = cli
            .run(registry, plugins.report().clone(), declared_warnings)
            .await;
        // Plugins started by the command: shutdown, end of file, then kill; always reaped.
        plugins.shutdown().await;
        code
    })
}

/// A parse failure a plugin's agent command could resolve: an unknown subcommand, or the
/// top-level help (which should list plugins' agent commands too).
fn may_be_plugin_command(err: &clap::Error) -> bool {
    use clap::error::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::InvalidSubcommand
            | ErrorKind::UnknownArgument
            | ErrorKind::DisplayHelp
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// The `-v` count of a command line clap could not parse yet (before `--`).
fn verbosity_of(args: &[OsString]) -> u8 {
    let mut count = 0u8;
    for arg in args.iter().skip(1) {
        let Some(arg) = arg.to_str() else { continue };
        if arg == "--" {
            break;
        }
        if arg == "--verbose" {
            count = count.saturating_add(1);
        } else if let Some(flags) = arg.strip_prefix('-')
            && !flags.is_empty()
            && flags.bytes().all(|b| b == b'v')
        {
            count = count.saturating_add(u8::try_from(flags.len()).unwrap_or(u8::MAX));
        }
    }
    count
}

/// Logs go to stderr: `-v` is debug for moat, `-vv` trace; `RUST_LOG` overrides both. Colour
/// only on a terminal and never with `NO_COLOR`.
fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0 => "moat=warn",
        1 => "moat=debug,moat_plugin_sdk=debug",
        _ => "moat=trace,moat_plugin_sdk=trace,info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // jsonrpsee traces every message it sends and receives, and plugin messages carry
    // credentials: never, whatever RUST_LOG says.
    let filter = match "jsonrpsee=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    // bollard traces request bodies, and a container's create body holds its env (the run's
    // proxy token): never, either.
    let filter = match "bollard=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let color = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .with_target(false)
        .init();
}
