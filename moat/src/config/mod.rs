//! `moat.yaml`: a workspace's run configuration.
//!
//! ```yaml
//! name: my-agent                   # run name (--name wins)
//! grants: [github]                 # credentials the run gets
//! dependencies: [python3, git]     # Debian packages baked into the run's image (or node,
//!                                  # npm:<package> for a global npm install)
//! env: {LOG_LEVEL: debug}          # container environment (values are strings; 1 and true too)
//! command: [python3, main.py]      # or a string, run by `/bin/sh -c`
//! base_image: debian:bookworm-slim
//! interactive: false
//! network:
//!   policy: strict                 # permissive (default) or strict
//!   allow: [pypi.org, "*.pythonhosted.org"]
//!   rules:
//!     - "api.github.com deny DELETE /**"
//!     - api.github.com: ["allow GET /repos/**", "deny * /**"]
//!   host_ports: [8080]             # services on the host the container may reach
//! mounts:
//!   - ./data:/data:ro              # "src:dst[:ro|:rw]", src relative to the workspace
//!   - {source: ../cache, target: /cache, read_only: false}
//! ```
//!
//! An absent file is the defaults. Unknown keys, wrong types and invalid values are errors that
//! name the file, line, column and key and say what was expected ([`ConfigError`]). `network` is
//! read into the proxy's own [`NetworkPolicy`] and checked by [`crate::proxy::policy::validate`].
//!
//! [`yaml::from_str`] is the reader, usable for any other YAML file moat reads.

pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::proxy::policy::{self, HostRules, NetworkPolicy, PolicyMode};
use crate::run::validate_name;
pub use yaml::YamlError;

/// The file name looked for in a workspace.
pub const FILE_NAME: &str = "moat.yaml";

/// A workspace's `moat.yaml`, read and checked. Every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The run name (letters, digits, `.`, `_`, `-`).
    #[serde(deserialize_with = "de_run_name")]
    pub name: Option<String>,
    /// Grant names, as `moat grant` stores them.
    #[serde(deserialize_with = "de_names")]
    pub grants: Vec<String>,
    /// Packages to install in the run's image.
    #[serde(deserialize_with = "de_names")]
    pub dependencies: Vec<String>,
    /// Environment variables for the container.
    #[serde(deserialize_with = "de_env")]
    pub env: BTreeMap<String, String>,
    /// What to run when the command line gives nothing.
    pub command: Option<Command>,
    /// The image to start from.
    #[serde(deserialize_with = "de_name")]
    pub base_image: Option<String>,
    /// The network policy.
    #[serde(deserialize_with = "de_network")]
    pub network: NetworkPolicy,
    /// Extra bind mounts.
    pub mounts: Vec<Mount>,
    /// Attach a terminal (like `-i`).
    pub interactive: bool,
}

/// `command:` as an argument vector or as a shell line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    /// `command: [python3, main.py]`: run as is.
    Exec(Vec<String>),
    /// `command: "make test && make lint"`: run by `/bin/sh -c`.
    Shell(String),
}

impl Command {
    /// The argument vector to run: a shell line becomes `["/bin/sh", "-c", line]`.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec(argv) => argv.clone(),
            Command::Shell(line) => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// On the host: absolute, or relative to the workspace as written (made absolute by
    /// [`Config::load`] and [`Config::parse`]).
    pub source: PathBuf,
    /// In the container: an absolute path.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Why `moat.yaml` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid: where and why.
    #[error(transparent)]
    Invalid(#[from] YamlError),
}

impl Config {
    /// Reads `<workspace>/moat.yaml`; an absent file gives the defaults.
    pub fn load(workspace: &Path) -> Result<Config, ConfigError> {
        let path = workspace.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Reads `text` as the content of `file` (named in errors); relative mount sources are
    /// resolved against `file`'s directory (the workspace).
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = yaml::from_str(text, file).map_err(|mut err| {
            if let Some((key, want)) = expected(&err.key).filter(|(_, w)| !err.message.contains(w))
            {
                err.message = format!("{}; `{key}` takes {want}", err.message);
            }
            err
        })?;
        let workspace = file.parent().unwrap_or(Path::new(""));
        for mount in &mut config.mounts {
            if mount.source.is_relative() {
                mount.source = workspace.join(&mount.source);
            }
        }
        Ok(config)
    }
}

/// What a key takes, for error messages, by key path with list indices dropped: the key as
/// shown and the description.
fn expected(key: &str) -> Option<(String, &'static str)> {
    let mut bare = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => bare.push(c),
            _ => {}
        }
    }
    // A variable's value is reported under its name (`env.FOO`).
    if bare.starts_with("env.") {
        bare.truncate(3);
    }
    let want = match bare.as_str() {
        "name" => "a run name, e.g. `name: my-agent`",
        "grants" => "a list of grant names, e.g. `grants: [github]`",
        "dependencies" => "a list of package names, e.g. `dependencies: [python3, git]`",
        "env" => "a mapping of variable names to string values, e.g. `env: {DEBUG: \"1\"}`",
        "command" => "a list of strings, or one string run by /bin/sh -c",
        "base_image" => "an image reference, e.g. `base_image: debian:bookworm-slim`",
        "interactive" => "true or false",
        "network" => "a mapping with policy, allow, rules and host_ports",
        "network.policy" => "permissive or strict",
        "network.allow" => {
            "a list of host patterns, e.g. `allow: [api.github.com, \"*.npmjs.org\"]`"
        }
        "network.rules" => {
            "a list of \"HOST allow|deny METHOD /glob\" strings or {HOST: [\"allow|deny METHOD /glob\", ...]} mappings"
        }
        "network.host_ports" => "a list of port numbers (1-65535)",
        "mounts" => {
            "a list of \"source:target[:ro]\" strings or {source, target, read_only} mappings"
        }
        _ => return None,
    };
    Some((bare, want))
}

fn de_name<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(de)?;
    if value.as_ref().is_some_and(|v| v.trim().is_empty()) {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(value)
}

fn de_run_name<'de, D: Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(de)?;
    if let Some(name) = &name {
        validate_name(name).map_err(de::Error::custom)?;
    }
    Ok(name)
}

fn de_names<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(de)?;
    if names.iter().any(|n| n.trim().is_empty()) {
        return Err(de::Error::custom("an entry is empty"));
    }
    Ok(names)
}

fn de_env<'de, D: Deserializer<'de>>(de: D) -> Result<BTreeMap<String, String>, D::Error> {
    let env = BTreeMap::<String, String>::deserialize(de)?;
    for name in env.keys() {
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(de::Error::custom(format!(
                "invalid variable name {name:?} (letters, digits and '_', not starting with a digit)"
            )));
        }
    }
    Ok(env)
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, or one string run by /bin/sh -c")
            }
            fn visit_str<E: de::Error>(self, line: &str) -> Result<Command, E> {
                if line.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(Command::Shell(line.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<String>()? {
                    argv.push(arg);
                }
                if argv.is_empty() {
                    return Err(de::Error::custom("the command is empty"));
                }
                Ok(Command::Exec(argv))
            }
        }
        de.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            source: String,
            target: String,
            #[serde(default)]
            read_only: bool,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Mount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"source:target[:ro]\" or {source, target, read_only}")
            }
            fn visit_str<E: de::Error>(self, spec: &str) -> Result<Mount, E> {
                let parts: Vec<&str> = spec.split(':').collect();
                let (source, target, read_only) = match parts.as_slice() {
                    [s, t] => (*s, *t, false),
                    [s, t, "ro"] => (*s, *t, true),
                    [s, t, "rw"] => (*s, *t, false),
                    [_, _, mode] => {
                        return Err(E::custom(format!(
                            "invalid mount {spec:?}: mode {mode:?} is not ro or rw"
                        )));
                    }
                    _ => {
                        return Err(E::custom(format!(
                            "invalid mount {spec:?}: want \"source:target\" or \"source:target:ro\""
                        )));
                    }
                };
                mount(source, target, read_only)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Mount, A::Error> {
                let long = Long::deserialize(de::value::MapAccessDeserializer::new(map))?;
                mount(&long.source, &long.target, long.read_only)
            }
        }
        de.deserialize_any(V)
    }
}

fn mount<E: de::Error>(source: &str, target: &str, read_only: bool) -> Result<Mount, E> {
    if source.is_empty() {
        return Err(E::custom("the mount's source is empty"));
    }
    if !target.starts_with('/') {
        return Err(E::custom(format!(
            "the mount's target {target:?} is not an absolute path in the container"
        )));
    }
    Ok(Mount {
        source: PathBuf::from(source),
        target: target.to_owned(),
        read_only,
    })
}

/// Parses a rule written `"HOST allow|deny METHOD|* /glob"` (a `moat.yaml` rules entry, or a
/// `--rule` flag) into one host entry, checked.
pub fn parse_rule(rule: &str) -> Result<HostRules, String> {
    let Some((host, rest)) = rule.trim().split_once(char::is_whitespace) else {
        return Err(format!(
            "invalid rule {rule:?}: want \"HOST allow|deny METHOD /glob\""
        ));
    };
    let entry = HostRules {
        host: host.to_owned(),
        rules: vec![rest.trim().to_owned()],
    };
    check_entry(&entry)?;
    Ok(entry)
}

/// Adds `entry`'s rules to `rules`, after those already there for the same host (first match
/// wins, so order is kept).
pub fn merge_rules(rules: &mut Vec<HostRules>, entry: HostRules) {
    match rules.iter_mut().find(|r| r.host == entry.host) {
        Some(existing) => existing.rules.extend(entry.rules),
        None => rules.push(entry),
    }
}

fn check_entry(entry: &HostRules) -> Result<(), String> {
    policy::validate(&NetworkPolicy {
        rules: vec![entry.clone()],
        ..NetworkPolicy::default()
    })
    .map_err(|err| err.to_string())
}

/// `network:`, read entry by entry so each bad one is reported where it is.
fn de_network<'de, D: Deserializer<'de>>(de: D) -> Result<NetworkPolicy, D::Error> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Raw {
        policy: PolicyMode,
        #[serde(deserialize_with = "de_allow")]
        allow: Vec<String>,
        rules: Vec<RuleEntry>,
        #[serde(deserialize_with = "de_ports")]
        host_ports: Vec<u16>,
    }
    let raw = Raw::deserialize(de)?;
    let mut rules = Vec::new();
    for entry in raw.rules {
        merge_rules(&mut rules, entry.0);
    }
    let network = NetworkPolicy {
        policy: raw.policy,
        allow: raw.allow,
        rules,
        host_ports: raw.host_ports,
    };
    policy::validate(&network).map_err(de::Error::custom)?;
    Ok(network)
}

fn de_allow<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    /// One host pattern, checked where it is written.
    struct Host(String);
    impl<'de> Deserialize<'de> for Host {
        fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
            let host = String::deserialize(de)?;
            policy::validate(&NetworkPolicy {
                allow: vec![host.clone()],
                ..NetworkPolicy::default()
            })
            .map_err(de::Error::custom)?;
            Ok(Host(host))
        }
    }
    Ok(Vec::<Host>::deserialize(de)?
        .into_iter()
        .map(|h| h.0)
        .collect())
}

fn de_ports<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<u16>, D::Error> {
    let ports = Vec::<u16>::deserialize(de)?;
    if ports.contains(&0) {
        return Err(de::Error::custom("port 0 is not a port"));
    }
    Ok(ports)
}

/// One `rules:` entry: a `"HOST allow|deny METHOD /glob"` string or a `{HOST: [rule, ...]}`
/// mapping.
struct RuleEntry(HostRules);

impl<'de> Deserialize<'de> for RuleEntry {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RuleEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a \"HOST allow|deny METHOD /glob\" string or a {HOST: [\"allow|deny METHOD /glob\", ...]} mapping",
                )
            }
            fn visit_str<E: de::Error>(self, rule: &str) -> Result<RuleEntry, E> {
                parse_rule(rule).map(RuleEntry).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RuleEntry, A::Error> {
                let Some((host, rules)) = map.next_entry::<String, Vec<String>>()? else {
                    return Err(de::Error::custom("an empty mapping: want {HOST: [rules]}"));
                };
                if map.next_key::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "one host per entry: write each host as its own list item",
                    ));
                }
                let entry = HostRules { host, rules };
                check_entry(&entry).map_err(de::Error::custom)?;
                Ok(RuleEntry(entry))
            }
        }
        de.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests;
