//! The `moat` binary: register the providers (built-ins, then plugins), then hand over to the CLI.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use moat::cli::Cli;
use moat::plugin::{PluginConfig, Plugins};
use moat::provider::Registry;
use moat::providers::aws::AwsProvider;
use moat::providers::github::GithubProvider;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbosity());
    moat::plugin::set_log_verbosity(cli.verbosity());

    // Explicit registration, in precedence order: built-ins first, so nothing can shadow them.
    let mut registry = Registry::new();
    registry.register_builtin(Arc::new(GithubProvider::from_env()));
    registry.register_builtin(Arc::new(AwsProvider::from_env()));

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
    runtime.block_on(async {
        // Then plugins: `moat-provider-<name>` on the absolute PATH entries and in
        // $MOAT_HOME/plugins. A name already taken hides the plugin (built-ins win). Cached
        // plugins are not started; new or changed ones are asked in parallel, then stopped.
        // `moat grant <name>` needs only moat-provider-<name>, started once.
        let config = PluginConfig::from_env();
        let plugins = match cli.grant_target() {
            Some(name) => Plugins::load_for_grant(&mut registry, &config, &name).await,
            None => Plugins::load(&mut registry, &config).await,
        };
        let code = cli.run(registry, plugins.report().clone()).await;
        // Plugins started by the command: shutdown, end of file, then kill; always reaped.
        plugins.shutdown().await;
        code
    })
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
