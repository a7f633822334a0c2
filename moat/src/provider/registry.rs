//! [`Registry`]: every provider moat knows in this process, by name and alias.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use moat_plugin_sdk::{
    AgentProvider, CredentialProvider, EndpointProvider, ErrorKind, ProviderError, ProviderInfo,
    validate_name,
};
use serde::Serialize;

/// Where a provider comes from. A fact the host knows, not something a provider may claim about
/// itself, so it lives in the registry rather than in [`ProviderInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderSource {
    /// Compiled into moat.
    Builtin,
    /// Declared in a YAML file of the user's (`$MOAT_HOME/providers/`).
    Custom {
        /// The YAML file.
        path: PathBuf,
    },
    /// Declared in YAML shipped inside moat (the bundled catalogue). Unlike `Builtin`, it ranks
    /// last: a custom file or a plugin of the same name replaces it.
    Bundled,
    /// A `moat-provider-<name>` executable.
    Plugin {
        /// The executable.
        path: PathBuf,
    },
}

impl fmt::Display for ProviderSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderSource::Builtin => f.write_str("builtin"),
            ProviderSource::Custom { .. } => f.write_str("custom"),
            ProviderSource::Bundled => f.write_str("bundled"),
            ProviderSource::Plugin { path } => write!(f, "plugin ({})", path.display()),
        }
    }
}

impl ProviderSource {
    /// `builtin`, `custom`, `bundled` or `plugin`: the word listings show.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderSource::Builtin => "builtin",
            ProviderSource::Custom { .. } => "custom",
            ProviderSource::Bundled => "bundled",
            ProviderSource::Plugin { .. } => "plugin",
        }
    }

    /// The file it comes from, for custom providers and plugins.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            ProviderSource::Custom { path } | ProviderSource::Plugin { path } => Some(path),
            ProviderSource::Builtin | ProviderSource::Bundled => None,
        }
    }
}

/// One registered provider with the facts captured at registration.
#[derive(Clone)]
pub struct Entry {
    /// The provider.
    pub provider: Arc<dyn CredentialProvider>,
    /// Its `info()`, taken once at registration.
    pub info: ProviderInfo,
    /// Where it came from.
    pub source: ProviderSource,
}

/// Why a registration was refused. The caller decides what to do with it: `main` lets built-ins
/// win and reports the shadowed provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The provider's name is not a valid provider name.
    #[error("{0}")]
    InvalidName(String),
    /// Another provider, or an alias, already has this name.
    #[error("provider name {name:?} is already taken by {taken_by} ({holder_source})")]
    NameTaken {
        /// The contested name.
        name: String,
        /// The canonical name of the provider holding it.
        taken_by: String,
        /// Where that provider came from.
        holder_source: ProviderSource,
    },
}

/// Every provider known to this process. A value, not a global: `main` builds it (built-ins first,
/// then YAML, then plugins) and passes it down, and tests build their own.
#[derive(Default, Clone)]
pub struct Registry {
    entries: BTreeMap<String, Entry>,
    aliases: BTreeMap<String, String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a provider and its declared aliases. The first provider to claim a name keeps it:
    /// a later provider with a taken name is refused whole; a taken alias is skipped with a
    /// warning (the provider stays reachable by its own name).
    pub fn register(
        &mut self,
        provider: Arc<dyn CredentialProvider>,
        source: ProviderSource,
    ) -> Result<(), RegistryError> {
        let name = provider.info().name;
        for (alias, err) in self.register_reporting(provider, source)? {
            tracing::warn!(provider = %name, "alias {alias:?} skipped: {err}");
        }
        Ok(())
    }

    /// [`register`](Self::register), returning the aliases that were skipped (and why) instead
    /// of logging them, for a caller that reports them itself.
    pub fn register_reporting(
        &mut self,
        provider: Arc<dyn CredentialProvider>,
        source: ProviderSource,
    ) -> Result<Vec<(String, RegistryError)>, RegistryError> {
        let info = provider.info();
        validate_name(&info.name).map_err(RegistryError::InvalidName)?;
        if let Some(holder) = self.holder_of(&info.name) {
            return Err(RegistryError::NameTaken {
                name: info.name.clone(),
                taken_by: holder.info.name.clone(),
                holder_source: holder.source.clone(),
            });
        }
        let name = info.name.clone();
        let aliases = info.aliases.clone();
        self.entries.insert(
            name.clone(),
            Entry {
                provider,
                info,
                source,
            },
        );
        let mut skipped = Vec::new();
        for alias in aliases {
            if let Err(err) = self.register_alias(&alias, &name) {
                skipped.push((alias, err));
            }
        }
        Ok(skipped)
    }

    /// Registers a built-in provider. Built-ins are registered first and have distinct names, so a
    /// failure is a programming error.
    pub fn register_builtin(&mut self, provider: Arc<dyn CredentialProvider>) {
        if let Err(err) = self.register(provider, ProviderSource::Builtin) {
            panic!("built-in provider registration failed: {err}");
        }
    }

    /// Makes `alias` resolve to the registered provider `canonical`.
    pub fn register_alias(&mut self, alias: &str, canonical: &str) -> Result<(), RegistryError> {
        validate_name(alias).map_err(RegistryError::InvalidName)?;
        if let Some(holder) = self.holder_of(alias) {
            return Err(RegistryError::NameTaken {
                name: alias.to_string(),
                taken_by: holder.info.name.clone(),
                holder_source: holder.source.clone(),
            });
        }
        self.aliases
            .insert(alias.to_string(), canonical.to_string());
        Ok(())
    }

    /// The canonical name for `name`: an alias maps to its provider; a registered or unknown name
    /// is returned as is (the seed's `ResolveName`).
    pub fn resolve_name<'a>(&'a self, name: &'a str) -> &'a str {
        if self.entries.contains_key(name) {
            return name;
        }
        self.aliases.get(name).map(String::as_str).unwrap_or(name)
    }

    /// The provider called `name` (or aliased so).
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(self.resolve_name(name))
    }

    /// Like [`get`](Self::get), with an error that lists what is available and how to see more.
    pub fn lookup(&self, name: &str) -> Result<&Entry, ProviderError> {
        self.get(name).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::ProviderNotFound,
                format!("unknown provider: {name}"),
            )
            .with_hint(format!(
                "Available providers: {}\nRun 'moat grant providers' to see where each comes from.",
                self.names().join(", ")
            ))
        })
    }

    /// The agent capability of provider `name`.
    pub fn get_agent(&self, name: &str) -> Option<&dyn AgentProvider> {
        self.get(name).and_then(|entry| entry.provider.as_agent())
    }

    /// The endpoint capability of provider `name`.
    pub fn get_endpoint(&self, name: &str) -> Option<&dyn EndpointProvider> {
        self.get(name)
            .and_then(|entry| entry.provider.as_endpoint())
    }

    /// Every provider, sorted by name.
    pub fn all(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Every agent provider, sorted by name.
    pub fn agents(&self) -> impl Iterator<Item = (&Entry, &dyn AgentProvider)> {
        self.all()
            .filter_map(|entry| entry.provider.as_agent().map(|agent| (entry, agent)))
    }

    /// Sorted canonical names, for error messages.
    pub fn names(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }

    /// The aliases that resolve to `canonical`, sorted.
    pub fn aliases_of(&self, canonical: &str) -> Vec<&str> {
        let aliases = self
            .aliases
            .iter()
            .filter(|(_, target)| target.as_str() == canonical);
        aliases.map(|(alias, _)| alias.as_str()).collect()
    }

    /// The provider that `name` (as a name or an alias) already belongs to.
    fn holder_of(&self, name: &str) -> Option<&Entry> {
        self.entries
            .get(name)
            .or_else(|| self.aliases.get(name).and_then(|c| self.entries.get(c)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_plugin_sdk::testkit::MockProvider;

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.register_builtin(Arc::new(MockProvider::new("alpha").alias("al")));
        registry.register_builtin(Arc::new(MockProvider::new("agent-x").agent()));
        registry.register_builtin(Arc::new(MockProvider::new("endpoint-y").endpoint()));
        registry
    }

    #[test]
    fn lookup_by_name_and_alias() {
        let registry = registry();
        assert_eq!(registry.get("alpha").unwrap().info.name, "alpha");
        assert_eq!(registry.get("al").unwrap().info.name, "alpha");
        assert_eq!(registry.resolve_name("al"), "alpha");
        assert_eq!(registry.resolve_name("nope"), "nope");
        assert_eq!(registry.aliases_of("alpha"), vec!["al"]);
    }

    #[test]
    fn capability_queries() {
        let registry = registry();
        assert!(registry.get_agent("agent-x").is_some());
        assert!(registry.get_agent("alpha").is_none());
        assert!(registry.get_endpoint("endpoint-y").is_some());
        let agents: Vec<_> = registry
            .agents()
            .map(|(e, _)| e.info.name.as_str())
            .collect();
        assert_eq!(agents, vec!["agent-x"]);
    }

    #[test]
    fn names_are_sorted_and_unknown_lists_them() {
        let registry = registry();
        assert_eq!(registry.names(), vec!["agent-x", "alpha", "endpoint-y"]);
        let err = registry.lookup("gamma").err().unwrap();
        assert_eq!(err.kind, ErrorKind::ProviderNotFound);
        let text = err.to_string();
        assert!(text.contains("unknown provider: gamma"), "{text}");
        assert!(text.contains("agent-x, alpha, endpoint-y"), "{text}");
        assert!(text.contains("moat grant providers"), "{text}");
    }

    #[test]
    fn first_registration_wins() {
        let mut registry = registry();
        let plugin = ProviderSource::Plugin {
            path: "/bin/moat-provider-alpha".into(),
        };
        let err = registry
            .register(Arc::new(MockProvider::new("alpha")), plugin)
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NameTaken { ref taken_by, holder_source: ProviderSource::Builtin, .. } if taken_by == "alpha")
        );
        // A name taken as an alias is taken too.
        let plugin = ProviderSource::Plugin { path: "/x".into() };
        assert!(
            registry
                .register(Arc::new(MockProvider::new("al")), plugin)
                .is_err()
        );
    }

    #[test]
    fn colliding_alias_is_skipped_not_fatal() {
        let mut registry = registry();
        let source = ProviderSource::Custom {
            path: "/p.yaml".into(),
        };
        registry
            .register(Arc::new(MockProvider::new("gamma").alias("alpha")), source)
            .unwrap();
        assert_eq!(registry.resolve_name("alpha"), "alpha");
        assert!(registry.get("gamma").is_some());
    }

    #[test]
    fn invalid_names_are_refused() {
        let mut registry = Registry::new();
        let err = registry.register(
            Arc::new(MockProvider::new("Bad/Name")),
            ProviderSource::Builtin,
        );
        assert!(matches!(err, Err(RegistryError::InvalidName(_))));
    }
}
