//! Out-of-process providers: `moat-provider-<name>` executables speaking protocol v1 (JSON-RPC 2.0,
//! one message per line on stdio; see `schema/README.md`).
//!
//! - `discovery`: find the executables on the absolute entries of `PATH`, then in
//!   `$MOAT_HOME/plugins/`; report the ones that are not executable or are shadowed.
//! - `process`: start one, talk to it through a JSON-RPC `client` over its stdio (read by
//!   `transport`), with a timeout on every call; stop it gracefully or kill it, always reap it.
//! - `adapter`: [`PluginProvider`], the traits implemented by calling the plugin, so the
//!   registry, the CLI and the manager cannot tell it from a built-in.
//! - `cache`: the `initialize` answers by binary identity, so listings do not start plugins.
//! - `schema`: answers checked against protocol v1's JSON Schema.
//! - [`pin`]: credentials granted through a plugin go back only to the same executable.
//! - `check`: the conformance check behind `moat plugin check`, for plugin authors.
//!
//! A plugin's failure travels one way, as a value: `transport::stdout` turns the end of the
//! plugin's stdout or a protocol violation into a [`Failure`]; the `client`'s reader hands it to
//! every waiting caller; [`Connection::call`](process::Connection::call) stops and reaps the
//! process and returns the [`PluginFault`] (with the stderr tail); the `adapter` turns that into
//! the [`ProviderError`](moat_plugin_sdk::ProviderError) the CLI shows.
//!
//! [`Plugins::load`] ties them together for `main`: discover, take what the cache knows, ask the
//! new or changed binaries in parallel (then stop them), register the rest after the built-ins,
//! and keep a [`PluginReport`] of everything that went wrong for `moat grant providers`.
//! [`Plugins::load_for_grant`] is `moat grant <name>`'s: only `moat-provider-<name>`, started once
//! and kept for the grant (the full load only for a name no plugin file has, which may be an
//! alias).

pub(crate) mod adapter;
pub(crate) mod cache;
pub(crate) mod check;
pub(crate) mod client;
pub(crate) mod discovery;
pub(crate) mod error;
pub mod pin;
pub(crate) mod process;
pub(crate) mod schema;
pub(crate) mod transport;

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use moat_plugin_sdk::protocol::InitializeResult;
use serde::Serialize;
use tokio::task::JoinSet;

pub use adapter::PluginProvider;
pub use cache::{BinaryIdentity, Cached, InfoCache};
pub use discovery::{Candidate, Discovery, PluginWarning, discover, search_dirs};
pub use error::{ExitReport, Failure, PluginFault};
pub use process::{Connection, Timeouts, handshake};

use crate::home::MoatHome;
use crate::provider::{ProviderSource, Registry, RegistryError};

/// The level plugins are asked to log at (`MOAT_PLUGIN_LOG`), set once from moat's `-v` count.
static PLUGIN_LOG_LEVEL: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Sets the level plugins are asked to log at from moat's verbosity: `info` by default (moat shows
/// their warnings and errors, and keeps the rest for the report of a failure), `debug` with `-v`,
/// `trace` with `-vv`. Called once by `main`; later calls change nothing.
pub fn set_log_verbosity(verbosity: u8) {
    let level = match verbosity {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let _ = PLUGIN_LOG_LEVEL.set(level);
}

/// The `MOAT_PLUGIN_LOG` value to start a plugin with, or `None` when the user set one in moat's
/// environment (it is passed on unchanged).
pub(crate) fn plugin_log_level() -> Option<&'static str> {
    let set_by_user =
        std::env::var_os(moat_plugin_sdk::protocol::LOG_ENV).is_some_and(|value| !value.is_empty());
    (!set_by_user).then(|| PLUGIN_LOG_LEVEL.get().copied().unwrap_or("info"))
}

/// Where plugins live under the home.
pub const PLUGINS_DIR: &str = "plugins";

/// Where to look for plugins and how long to wait for them.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    /// The `PATH` value to search (only its absolute entries are used).
    pub path_var: Option<OsString>,
    /// moat's home: `plugins/` is searched after `PATH` and the cache lives in `cache/`. Without
    /// one, only `PATH` is searched and nothing is cached.
    pub home: Option<MoatHome>,
    /// Call limits.
    pub timeouts: Timeouts,
}

impl PluginConfig {
    /// `PATH`, `MOAT_HOME` (if it can be located) and [`Timeouts::from_env`].
    pub fn from_env() -> Self {
        PluginConfig {
            path_var: std::env::var_os("PATH"),
            home: MoatHome::from_env().ok(),
            timeouts: Timeouts::from_env(),
        }
    }

    /// `$MOAT_HOME/plugins`.
    pub fn plugins_dir(&self) -> Option<PathBuf> {
        self.home.as_ref().map(|home| home.root().join(PLUGINS_DIR))
    }
}

/// Everything wrong with the plugins found, for `moat grant providers`. Empty when all is well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PluginReport {
    /// One entry per problem, in search order.
    pub warnings: Vec<PluginWarning>,
}

/// The plugins registered by [`Plugins::load`], and what went wrong with the others.
#[derive(Debug, Default)]
pub struct Plugins {
    providers: Vec<Arc<PluginProvider>>,
    report: PluginReport,
}

impl Plugins {
    /// Discovers plugins and registers each into `registry` as [`ProviderSource::Plugin`], after
    /// whatever it already holds: a name already taken (by a built-in, a custom provider or an
    /// alias) hides the plugin. Plugins whose binary is in the cache are not started; the others
    /// are started in parallel for their handshake (each within [`Timeouts::initialize`]) and
    /// stopped again. Never fails: problems end up in [`report`](Self::report).
    pub async fn load(registry: &mut Registry, config: &PluginConfig) -> Plugins {
        let plugins_dir = config.plugins_dir();
        let dirs = search_dirs(config.path_var.as_deref(), plugins_dir.as_deref());
        let discovery = discover(&dirs);
        let mut warnings = discovery.warnings;
        let mut cache = match &config.home {
            Some(home) => InfoCache::for_home(home),
            None => InfoCache::disabled(),
        };

        let mut ready: Vec<(Candidate, InitializeResult)> = Vec::new();
        let mut to_ask: Vec<(Candidate, Option<BinaryIdentity>)> = Vec::new();
        let mut failed: Vec<PluginWarning> = Vec::new();
        for candidate in discovery.plugins {
            if let Some(holder) = registry.get(&candidate.name) {
                warnings.push(PluginWarning::Hidden {
                    path: candidate.path,
                    by: holder.info.name.clone(),
                    source: source_kind(&holder.source).to_string(),
                });
                continue;
            }
            let identity = BinaryIdentity::of(&candidate.path).ok();
            match identity.as_ref().and_then(|id| cache.lookup(id)) {
                Some(Cached::Ok(init)) if init.info.name == candidate.name => {
                    ready.push((candidate, *init));
                }
                Some(Cached::Failed(reason, advice)) => {
                    failed.push(PluginWarning::HandshakeFailed {
                        path: candidate.path,
                        reason: format!(
                            "{reason} (a cached failure: asked again when the file changes, \
                             after {} minutes, or now with 'moat grant {}')",
                            cache::FAILURE_RETRY.as_secs() / 60,
                            candidate.name
                        ),
                        advice,
                    });
                }
                _ => to_ask.push((candidate, identity)),
            }
        }

        if !to_ask.is_empty() {
            let mut asking = JoinSet::new();
            for (candidate, identity) in to_ask {
                let timeouts = config.timeouts;
                asking.spawn(async move {
                    let answer = handshake(&candidate.path, &candidate.name, timeouts).await;
                    let answer = match answer {
                        Ok((connection, init)) => {
                            connection.shutdown().await;
                            Ok(init)
                        }
                        Err(fault) => Err(fault),
                    };
                    (candidate, identity, answer)
                });
            }
            while let Some(joined) = asking.join_next().await {
                let Ok((candidate, identity, answer)) = joined else {
                    continue;
                };
                match answer {
                    Ok(init) => {
                        if let Some(identity) = identity {
                            cache.record_ok(identity, init.clone());
                        }
                        ready.push((candidate, init));
                    }
                    Err(fault) => {
                        tracing::debug!("{fault}");
                        let (reason, advice) = (fault.reason(), fault.advice());
                        if let Some(identity) = identity {
                            cache.record_failure(identity, reason.clone(), advice.clone());
                        }
                        failed.push(PluginWarning::HandshakeFailed {
                            path: candidate.path,
                            reason,
                            advice,
                        });
                    }
                }
            }
            cache.prune();
        }
        if let Err(err) = cache.save() {
            tracing::debug!("cannot write the plugin cache: {err}");
        }

        ready.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let mut providers = Vec::new();
        for (candidate, init) in ready {
            let provider = Arc::new(PluginProvider::new(
                candidate.path.clone(),
                init,
                config.timeouts,
            ));
            match register(registry, provider.clone(), candidate.path) {
                None => providers.push(provider),
                Some(warning) => warnings.push(warning),
            }
        }
        failed.sort_by(|a, b| a.path().cmp(b.path()));
        warnings.extend(failed);
        for warning in &warnings {
            tracing::debug!("plugin warning: {warning}");
        }
        Plugins {
            providers,
            report: PluginReport { warnings },
        }
    }

    /// What `moat grant <name>` needs: only `moat-provider-<name>`, started once. A name already
    /// registered (a built-in) needs no plugin. The plugin found for `name` is started now,
    /// hashed, and kept running for the grant, unless the cache knows its binary answered well
    /// (then the grant starts it); a cached failure is asked again (the user asked for this
    /// plugin). Only a name no plugin file has (an alias, or nothing) costs the full
    /// [`load`](Self::load). The report holds only what concerns `name`.
    pub async fn load_for_grant(
        registry: &mut Registry,
        config: &PluginConfig,
        name: &str,
    ) -> Plugins {
        if registry.get(name).is_some() {
            return Plugins::default();
        }
        let plugins_dir = config.plugins_dir();
        let dirs = search_dirs(config.path_var.as_deref(), plugins_dir.as_deref());
        let discovery = discover(&dirs);
        let mut warnings: Vec<PluginWarning> = discovery
            .warnings
            .into_iter()
            .filter(|w| w.makes_unusable() && w.plugin_name() == Some(name))
            .collect();
        let Some(candidate) = discovery.plugins.into_iter().find(|c| c.name == name) else {
            if warnings.is_empty() {
                return Plugins::load(registry, config).await;
            }
            return Plugins {
                providers: Vec::new(),
                report: PluginReport { warnings },
            };
        };
        let mut cache = match &config.home {
            Some(home) => InfoCache::for_home(home),
            None => InfoCache::disabled(),
        };
        let identity = BinaryIdentity::of(&candidate.path).ok();
        let cached = identity.as_ref().and_then(|id| cache.lookup(id));
        let provider = match cached {
            Some(Cached::Ok(init)) if init.info.name == candidate.name => Some(
                PluginProvider::new(candidate.path.clone(), *init, config.timeouts),
            ),
            _ => match PluginProvider::start(&candidate.path, &candidate.name, config.timeouts)
                .await
            {
                Ok(provider) => {
                    if let Some(identity) = identity {
                        cache.record_ok(identity, provider.initialize_result().clone());
                    }
                    Some(provider)
                }
                Err(fault) => {
                    tracing::debug!("{fault}");
                    let (reason, advice) = (fault.reason(), fault.advice());
                    if let Some(identity) = identity {
                        cache.record_failure(identity, reason.clone(), advice.clone());
                    }
                    warnings.push(PluginWarning::HandshakeFailed {
                        path: candidate.path.clone(),
                        reason,
                        advice,
                    });
                    None
                }
            },
        };
        if let Err(err) = cache.save() {
            tracing::debug!("cannot write the plugin cache: {err}");
        }
        let mut providers = Vec::new();
        if let Some(provider) = provider {
            let provider = Arc::new(provider);
            warnings.extend(register(registry, provider.clone(), candidate.path));
            // Started or not, it is shut down with the others.
            providers.push(provider);
        }
        Plugins {
            providers,
            report: PluginReport { warnings },
        }
    }

    /// What went wrong.
    pub fn report(&self) -> &PluginReport {
        &self.report
    }

    /// The registered plugins.
    pub fn providers(&self) -> &[Arc<PluginProvider>] {
        &self.providers
    }

    /// Shuts down every plugin that was started, in parallel.
    pub async fn shutdown(&self) {
        let mut stopping = JoinSet::new();
        for provider in &self.providers {
            let provider = provider.clone();
            stopping.spawn(async move { provider.shutdown().await });
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// Registers a plugin's provider; a name already taken (or not valid) is a warning, not an error.
fn register(
    registry: &mut Registry,
    provider: Arc<PluginProvider>,
    path: PathBuf,
) -> Option<PluginWarning> {
    let source = ProviderSource::Plugin { path: path.clone() };
    match registry.register(provider, source) {
        Ok(()) => None,
        Err(RegistryError::NameTaken {
            taken_by,
            holder_source,
            ..
        }) => Some(PluginWarning::Hidden {
            path,
            by: taken_by,
            source: source_kind(&holder_source).to_string(),
        }),
        Err(RegistryError::InvalidName(reason)) => {
            Some(PluginWarning::InvalidName { path, reason })
        }
    }
}

/// `builtin`, `custom`, `bundled` or `plugin`.
fn source_kind(source: &ProviderSource) -> &'static str {
    source.kind()
}
