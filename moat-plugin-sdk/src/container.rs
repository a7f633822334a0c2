//! What a provider adds to the container: environment, mounts, files, agent configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Credential;

/// One environment variable for the container. Values are placeholders, never real secrets: the
/// proxy swaps in the real credential on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EnvVar {
    /// Variable name (`GH_TOKEN`).
    pub name: String,
    /// Value (`ghp_moatProxyInjectedPlaceholder000000000000`).
    pub value: String,
}

impl EnvVar {
    /// A `name=value` pair.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvVar {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Mount {
    /// Absolute path on the host.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: PathBuf,
    /// Mounted read-only (the default, and what credentials-adjacent files should use).
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// A file written into the container by its init process before the command starts, for tools
/// that write to the same folder and so cannot have it bind-mounted (`~/.config/gh/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitFile {
    /// Absolute path in the container; must be under the container's home.
    pub path: PathBuf,
    /// File contents (UTF-8 text). Never a real secret.
    pub content: String,
}

/// Arguments of [`CredentialProvider::mounts`](crate::CredentialProvider::mounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(description = "`mounts` params.")]
pub struct MountsRequest {
    /// The stored credential.
    pub credential: Credential,
    /// The home folder of the container's user (`/home/moatuser`).
    pub container_home: PathBuf,
}

/// What a provider puts into the container besides environment variables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerFiles {
    /// Bind mounts.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Files written by the container's init.
    #[serde(default)]
    pub init_files: Vec<InitFile>,
    /// Handed back to [`CredentialProvider::cleanup`](crate::CredentialProvider::cleanup) when the
    /// run ends (for example a staging folder to delete). Opaque to moat.
    #[schemars(
        description = "Handed back to `cleanup` when the run ends (for example a staging folder to delete). Opaque to moat."
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupToken>,
}

/// An opaque value a provider hands out with its mounts and gets back at cleanup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct CleanupToken(pub String);

/// An MCP server reached over HTTP, relayed by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct McpServer {
    /// Server URL.
    pub url: String,
    /// Headers sent to it; credential values are `moat-stub-<grant>` stubs the proxy replaces.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// Arguments of [`AgentProvider::prepare_container`](crate::AgentProvider::prepare_container).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(description = "`prepare_container` params.")]
pub struct PrepareOpts {
    /// The agent's own credential, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// The home folder of the container's user.
    pub container_home: PathBuf,
    /// The host folder mounted at `/workspace` (an agent keeps per-project state by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<PathBuf>,
    /// The names of every grant of the run, this agent's own included, so that an agent can
    /// adapt to what else the run holds (an API key next to a subscription login).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// MCP servers configured for the run, by name.
    #[serde(default)]
    pub mcp_servers: BTreeMap<String, McpServer>,
    /// Rendered markdown describing the run, for the agent's instruction file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_context: Option<String>,
    /// The agent's own options from `moat.yaml` (its section, as JSON), validated by the agent.
    #[serde(default)]
    pub options: serde_json::Value,
}

impl PrepareOpts {
    /// The run's [`runtime_context`](Self::runtime_context) as the agent's instruction file at
    /// `path` (`~/.claude/CLAUDE.md`, `~/.codex/AGENTS.md`, ...); `None` when there is no context.
    pub fn context_file(&self, path: PathBuf) -> Option<InitFile> {
        let context = self.runtime_context.as_deref()?;
        (!context.trim().is_empty()).then(|| InitFile {
            path,
            content: context.to_owned(),
        })
    }
}

/// What an agent adds to the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerConfig {
    /// Environment variables.
    #[serde(default)]
    pub env: Vec<EnvVar>,
    /// Mounts and init files, with a cleanup token (a staging folder, typically).
    #[serde(default)]
    pub files: ContainerFiles,
    /// Variables other providers set that the agent must not find in the container's
    /// environment (an API key that would override its login); they are removed after every
    /// provider's environment is in, before `moat.yaml` `env` and `-e` (the user still wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withhold_env: Vec<String>,
}

/// A command an agent adds to the CLI (`moat claude`), declared as data; the core builds it.
///
/// moat turns it into a subcommand `moat <name> [PATH] [OPTIONS] [-- ARGS...]`: a run of the
/// workspace `PATH` (default `.`) whose container command is [`argv`](Self::argv), then the words
/// of each option given, then `ARGS`. The run's image gets [`dependencies`](Self::dependencies),
/// its network policy allows [`hosts`](Self::hosts) even when strict, and when the user names no
/// grant the first of [`grants`](Self::grants) that is stored is used. Nothing else about the
/// agent is known to the CLI: a plugin declaring a command gets the same `moat <name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCommand {
    /// Subcommand name (a provider name: lowercase letters, digits and `-`).
    pub name: String,
    /// One-line help.
    pub about: String,
    /// The program run in the container, before the options' words and the user's arguments.
    pub argv: Vec<String>,
    /// The command's own options (`-p PROMPT`), each adding words to the command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<AgentOption>,
    /// What the agent's image needs besides the base image, as `moat.yaml` `dependencies:`
    /// entries (`node`, `git`, `npm:<package>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    /// Hosts the agent must reach (`api.example.com`, `*.example.com`), allowed under the strict
    /// network policy too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Grants the agent can use, in order of preference: when the user names none of them, the
    /// first one with a stored credential is added to the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

/// One option of an [`AgentCommand`] (`-p, --prompt <PROMPT>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentOption {
    /// Long name, without the dashes (`prompt`).
    pub long: String,
    /// Short name, one ASCII letter (`p`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short: Option<char>,
    /// One-line help.
    pub help: String,
    /// The value's name in the help (`PROMPT`); absent, the option is a flag without a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_name: Option<String>,
    /// The words added to the container's command line when the option is given; the word
    /// `{value}` is replaced by the option's value (`["-p", "{value}"]`).
    pub argv: Vec<String>,
    /// Given, the run is not interactive (a one-shot prompt rather than a session).
    #[serde(default, skip_serializing_if = "is_false")]
    pub batch: bool,
    /// Long names of the options this one cannot be combined with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
    /// The value names a moat run (name or id), and `{value}` becomes that run's `provider_meta`
    /// entry with this key (`--resume <run>` → the agent's session id recorded by `run_stopped`).
    /// A value that names no run but is a UUID is taken as the agent's own id and passed as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_meta: Option<String>,
}

impl AgentOption {
    /// `--<long>` (and `-<short>`) without a value, adding `argv` when given.
    pub fn flag(long: &str, short: Option<char>, help: &str, argv: &[&str]) -> Self {
        AgentOption {
            long: long.into(),
            short,
            help: help.into(),
            value_name: None,
            argv: argv.iter().map(|word| (*word).to_owned()).collect(),
            batch: false,
            conflicts_with: Vec::new(),
            run_meta: None,
        }
    }

    /// `--<long> <VALUE_NAME>`, adding `argv` with `{value}` replaced by the value.
    pub fn value(
        long: &str,
        short: Option<char>,
        value_name: &str,
        help: &str,
        argv: &[&str],
    ) -> Self {
        AgentOption {
            value_name: Some(value_name.into()),
            ..AgentOption::flag(long, short, help, argv)
        }
    }

    /// Makes the run non-interactive when given (a one-shot prompt).
    pub fn batch(mut self) -> Self {
        self.batch = true;
        self
    }

    /// Refuses this option together with the options named `longs`.
    pub fn conflicts_with(mut self, longs: &[&str]) -> Self {
        self.conflicts_with = longs.iter().map(|long| (*long).to_owned()).collect();
        self
    }

    /// Reads the value as a moat run and substitutes its `provider_meta.<key>`.
    pub fn run_meta(mut self, key: &str) -> Self {
        self.run_meta = Some(key.into());
        self
    }
}

impl ContainerConfig {
    /// Only init files: no environment, mounts, cleanup or withheld variables.
    pub fn from_init_files(init_files: Vec<InitFile>) -> Self {
        ContainerConfig {
            files: ContainerFiles {
                init_files,
                ..ContainerFiles::default()
            },
            ..ContainerConfig::default()
        }
    }
}

fn is_false(value: &bool) -> bool {
    !value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_context_file_exists_only_with_a_context() {
        let mut opts = PrepareOpts {
            credential: None,
            container_home: "/home/moatuser".into(),
            workspace: None,
            grants: Vec::new(),
            mcp_servers: BTreeMap::new(),
            runtime_context: None,
            options: serde_json::Value::Null,
        };
        let path = PathBuf::from("/home/moatuser/.codex/AGENTS.md");
        assert_eq!(opts.context_file(path.clone()), None);
        opts.runtime_context = Some(" \n".into());
        assert_eq!(opts.context_file(path.clone()), None);
        opts.runtime_context = Some("# This run\n".into());
        assert_eq!(
            opts.context_file(path.clone()),
            Some(InitFile {
                path,
                content: "# This run\n".into()
            })
        );
    }
}
