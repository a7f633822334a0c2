//! [`ProviderInfo`]: what a provider says about itself.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A provider's identity and the facts listings need. Plain data, so a plugin answers it at
/// `initialize` and moat can cache it without starting the plugin again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderInfo {
    /// Canonical name: lowercase letters, digits and `-` (`github`, `brave-search`). It is what
    /// `moat grant <name>` takes and what the executable is called after (`moat-provider-<name>`).
    pub name: String,
    /// One line for `moat grant providers` (`GitHub token`).
    pub description: String,
    /// Other names that resolve to this provider (`gl` for `gitlab`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Tools the container needs to use the credential (`gh`, `git`); added to the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub implied_dependencies: Vec<String>,
    /// The file stem the credential is stored under, when it differs from `name` (kept for
    /// compatibility with existing stores). Use [`ProviderInfo::store_key`] to read it.
    #[schemars(
        description = "The file stem the credential is stored under, when it differs from `name` (rarely needed)."
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_key: Option<String>,
    /// The optional capabilities implemented, beyond [`CredentialProvider`](crate::CredentialProvider).
    #[schemars(
        description = "The optional capabilities implemented, beyond `grant` and `configure_proxy`."
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    /// Options `moat grant <name>` accepts on its command line (`--role <arn>`); their values
    /// reach [`grant`](crate::CredentialProvider::grant) in
    /// [`GrantRequest::options`](crate::GrantRequest::options). moat refuses any other option.
    #[schemars(
        description = "Options `moat grant <name>` accepts on its command line (`--role <arn>`); their values reach `grant` in `options`. moat refuses any other option."
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_options: Vec<GrantOption>,
}

/// A command-line option of `moat grant <provider>`: `--<name> <VALUE>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GrantOption {
    /// The long flag without dashes (`role` for `--role`): lowercase letters, digits and `-`.
    pub name: String,
    /// One line for `moat grant <provider> --help`.
    pub help: String,
    /// The value's placeholder in help (`ARN`).
    pub value_name: String,
}

impl GrantOption {
    /// `--<name> <VALUE>`, explained by `help`.
    pub fn new(
        name: impl Into<String>,
        value_name: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        GrantOption {
            name: name.into(),
            help: help.into(),
            value_name: value_name.into(),
        }
    }
}

impl ProviderInfo {
    /// Info with a name and a description and nothing else.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        ProviderInfo {
            name: name.into(),
            description: description.into(),
            aliases: Vec::new(),
            implied_dependencies: Vec::new(),
            store_key: None,
            capabilities: Vec::new(),
            grant_options: Vec::new(),
        }
    }

    /// The file stem of the stored credential: `store_key`, else `name`.
    pub fn store_key(&self) -> &str {
        self.store_key.as_deref().unwrap_or(&self.name)
    }

    /// True when the provider declares `capability`.
    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// An optional capability, beyond the credential contract every provider implements.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// [`AgentProvider`](crate::AgentProvider): runs an AI agent in the container.
    #[schemars(
        description = "Runs an AI agent in the container (`agent_commands`, `prepare_container`)."
    )]
    Agent,
    /// [`EndpointProvider`](crate::EndpointProvider): serves HTTP endpoints through the proxy.
    #[schemars(description = "Serves HTTP endpoints through the proxy (`endpoints`, `endpoint`).")]
    Endpoint,
    /// [`RefreshableProvider`](crate::RefreshableProvider): renews its credential during a run.
    #[schemars(description = "Renews its credential during a run (`refresh`).")]
    Refresh,
    /// [`RunStoppedHook`](crate::RunStoppedHook): wants to know when a run ends.
    #[schemars(description = "Wants to know when a run ends (`run_stopped`).")]
    RunStopped,
    /// A capability newer than this version of the protocol types; ignored. Not a wire value
    /// (left out of the schema): it is what any unknown capability reads as.
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// Checks a provider or alias name: lowercase ASCII letters, digits and `-`, starting with a
/// letter, at most 64 characters. Such names are safe as file names and as executable suffixes.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok_start = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok_start && ok_chars && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "invalid provider name {name:?}: use lowercase letters, digits and '-', starting with a letter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("alpha").is_ok());
        assert!(validate_name("brave-search2").is_ok());
        for bad in ["", "GitHub", "../x", "a/b", "1abc", "a b", "oauth:x"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_key_defaults_to_the_name() {
        let mut info = ProviderInfo::new("codex", "OpenAI");
        assert_eq!(info.store_key(), "codex");
        info.store_key = Some("openai".into());
        assert_eq!(info.store_key(), "openai");
    }
}
