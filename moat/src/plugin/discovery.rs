//! Finding `moat-provider-<name>` executables.
//!
//! The search path is the **absolute** entries of `PATH`, in order, then `$MOAT_HOME/plugins/`.
//! Relative entries (`.`, `bin`, the empty entry) are ignored: they resolve against the current
//! directory, and inside a hostile repository a planted `./moat-provider-github` must not run.
//! The first executable found for a name wins; later ones are reported as shadowed, files that are
//! not executable and names that are not valid provider names are reported too, in the style of
//! `kubectl plugin list`. Directories are walked with `read_dir`; nothing is executed here.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use moat_plugin_sdk::{protocol, validate_name};
use serde::Serialize;

/// A plugin executable, the first one found for its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The provider name (the executable's suffix).
    pub name: String,
    /// The executable, as found on the search path.
    pub path: PathBuf,
}

/// Something wrong with a plugin executable. None of these stops moat; `moat grant providers`
/// shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginWarning {
    /// Named like a plugin but not executable (or unreadable).
    NotExecutable {
        /// The file.
        path: PathBuf,
    },
    /// A symbolic link named like a plugin whose target does not exist.
    Dangling {
        /// The link.
        path: PathBuf,
        /// Where it points (relative targets resolved against the link's folder).
        target: PathBuf,
    },
    /// Named `moat-provider-<x>` where `<x>` is not a valid provider name.
    InvalidName {
        /// The file.
        path: PathBuf,
        /// Why the name is refused.
        reason: String,
    },
    /// Another executable with the same name comes first on the search path.
    Shadowed {
        /// The file that is not used.
        path: PathBuf,
        /// The one that is.
        by: PathBuf,
    },
    /// A provider registered before plugins (a built-in, or a custom YAML one) has this name.
    Hidden {
        /// The plugin that is not used.
        path: PathBuf,
        /// The provider that has the name.
        by: String,
        /// Where that provider comes from (`builtin`, `custom`, `plugin`).
        source: String,
    },
    /// The plugin did not complete the `initialize` handshake.
    HandshakeFailed {
        /// The plugin.
        path: PathBuf,
        /// What went wrong.
        reason: String,
        /// What the user can do about it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        advice: String,
    },
}

impl PluginWarning {
    /// The file the warning is about.
    pub fn path(&self) -> &Path {
        match self {
            PluginWarning::NotExecutable { path }
            | PluginWarning::Dangling { path, .. }
            | PluginWarning::InvalidName { path, .. }
            | PluginWarning::Shadowed { path, .. }
            | PluginWarning::Hidden { path, .. }
            | PluginWarning::HandshakeFailed { path, .. } => path,
        }
    }
}

impl PluginWarning {
    /// The provider name of the file it is about, when the file is named like a plugin.
    pub fn plugin_name(&self) -> Option<&str> {
        plugin_name(self.path().file_name()?.to_str()?)
    }

    /// Whether it says why a plugin cannot be used at all (rather than that another one is used).
    pub fn makes_unusable(&self) -> bool {
        matches!(
            self,
            PluginWarning::NotExecutable { .. }
                | PluginWarning::Dangling { .. }
                | PluginWarning::InvalidName { .. }
                | PluginWarning::HandshakeFailed { .. }
        )
    }

    /// What the user can do about it.
    pub fn advice(&self) -> String {
        let path = self.path().display();
        match self {
            PluginWarning::NotExecutable { .. } => {
                format!(
                    "Make it executable (chmod +x {path}) if it is a moat plugin, or remove it."
                )
            }
            PluginWarning::Dangling { .. } => {
                format!("Reinstall the plugin it points to, or remove the link {path}.")
            }
            PluginWarning::InvalidName { .. } => {
                format!("Rename {path} to moat-provider-<name> with a valid name, or remove it.")
            }
            PluginWarning::Shadowed { .. } => {
                format!("Remove {path}, or reorder PATH if it is the one you want.")
            }
            PluginWarning::Hidden { .. } => {
                format!("Rename {path} to another provider name, or remove it.")
            }
            PluginWarning::HandshakeFailed { advice, .. } if !advice.is_empty() => advice.clone(),
            PluginWarning::HandshakeFailed { .. } => {
                format!("Report this to the plugin's author, or remove {path}.")
            }
        }
    }
}

impl fmt::Display for PluginWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path().display();
        match self {
            PluginWarning::NotExecutable { .. } => write!(
                f,
                "{path} is named like a moat plugin, but it is not executable"
            ),
            PluginWarning::Dangling { target, .. } => write!(
                f,
                "{path} is a symbolic link to {}, which does not exist",
                target.display()
            ),
            PluginWarning::InvalidName { reason, .. } => write!(f, "{path} is ignored: {reason}"),
            PluginWarning::Shadowed { by, .. } => {
                write!(f, "{path} is shadowed by {}", by.display())
            }
            PluginWarning::Hidden { by, source, .. } => {
                let source = match source.as_str() {
                    "builtin" => "built-in",
                    other => other,
                };
                write!(f, "{path} is hidden by the {source} provider {by}")
            }
            PluginWarning::HandshakeFailed { reason, .. } => {
                write!(f, "{path} failed its handshake: {reason}")
            }
        }
    }
}

/// What a walk of the search path found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The plugin executables, first found first.
    pub plugins: Vec<Candidate>,
    /// What is wrong with the other files named like plugins.
    pub warnings: Vec<PluginWarning>,
}

/// The directories to search: the absolute entries of `path_var` (a `PATH` value), in order, then
/// `plugins_dir`. Duplicates (the same directory twice, or through a symlink such as `/bin` →
/// `/usr/bin`) are searched once.
pub fn search_dirs(path_var: Option<&OsStr>, plugins_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut seen = HashSet::new();
    let from_path = path_var.into_iter().flat_map(std::env::split_paths);
    for dir in from_path.chain(plugins_dir.map(Path::to_path_buf)) {
        if !dir.is_absolute() {
            if !dir.as_os_str().is_empty() {
                tracing::debug!(dir = %dir.display(), "relative PATH entry not searched for plugins");
            }
            continue;
        }
        let key = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        if seen.insert(key) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Walks `dirs` in order for `moat-provider-<name>` files.
pub fn discover(dirs: &[PathBuf]) -> Discovery {
    let mut discovery = Discovery::default();
    let mut first: BTreeMap<String, PathBuf> = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<(String, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let file_name = entry.file_name();
                let name = plugin_name(file_name.to_str()?)?;
                Some((name.to_string(), entry.path()))
            })
            .collect();
        found.sort();
        for (name, path) in found {
            if let Err(reason) = validate_name(&name) {
                discovery
                    .warnings
                    .push(PluginWarning::InvalidName { path, reason });
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_dir() => continue,
                Ok(meta) if is_executable(&meta) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    // It was listed, so it is a link to nothing (or it was removed just now).
                    if let Ok(target) = std::fs::read_link(&path) {
                        let target = path
                            .parent()
                            .map_or(target.clone(), |dir| dir.join(&target));
                        discovery
                            .warnings
                            .push(PluginWarning::Dangling { path, target });
                    }
                    continue;
                }
                _ => {
                    discovery
                        .warnings
                        .push(PluginWarning::NotExecutable { path });
                    continue;
                }
            }
            if let Some(by) = first.get(&name) {
                let by = by.clone();
                discovery
                    .warnings
                    .push(PluginWarning::Shadowed { path, by });
                continue;
            }
            first.insert(name.clone(), path.clone());
            discovery.plugins.push(Candidate { name, path });
        }
    }
    discovery
}

/// `<name>` for a file called `moat-provider-<name>` (`.exe` stripped on Windows).
fn plugin_name(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix(protocol::EXECUTABLE_PREFIX)?;
    let rest = rest
        .strip_suffix(std::env::consts::EXE_SUFFIX)
        .filter(|_| !std::env::consts::EXE_SUFFIX.is_empty())
        .unwrap_or(rest);
    Some(rest)
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file()
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn touch(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        path
    }

    #[test]
    fn relative_and_duplicate_entries_are_dropped() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let link = b.path().join("link");
        #[cfg(unix)]
        std::os::unix::fs::symlink(a.path(), &link).unwrap();
        let path = std::env::join_paths([
            a.path().to_path_buf(),
            PathBuf::from("."),
            PathBuf::from(""),
            PathBuf::from("bin"),
            link.clone(),
            a.path().to_path_buf(),
        ])
        .unwrap();
        let plugins = b.path().join("plugins");
        let dirs = search_dirs(Some(&path), Some(&plugins));
        assert_eq!(dirs, vec![a.path().to_path_buf(), plugins]);
        assert!(search_dirs(None, None).is_empty());
        assert!(search_dirs(Some(&OsString::from("relative:.")), None).is_empty());
    }

    #[test]
    fn first_executable_wins_and_the_rest_is_reported() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let a_x = touch(a.path(), "moat-provider-x", 0o755);
        let a_y = touch(a.path(), "moat-provider-y", 0o644);
        let b_x = touch(b.path(), "moat-provider-x", 0o755);
        let b_y = touch(b.path(), "moat-provider-y", 0o755);
        let bad = touch(b.path(), "moat-provider-Bad", 0o755);
        touch(b.path(), "moat-provider", 0o755);
        touch(b.path(), "moat-provider-", 0o755);
        touch(b.path(), "unrelated", 0o755);
        std::fs::create_dir(b.path().join("moat-provider-dir")).unwrap();

        let found = discover(&[a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(
            found.plugins,
            vec![
                Candidate {
                    name: "x".into(),
                    path: a_x.clone()
                },
                Candidate {
                    name: "y".into(),
                    path: b_y
                },
            ]
        );
        assert_eq!(found.warnings.len(), 4, "{:#?}", found.warnings);
        assert!(
            found
                .warnings
                .contains(&PluginWarning::NotExecutable { path: a_y.clone() })
        );
        assert!(found.warnings.contains(&PluginWarning::Shadowed {
            path: b_x.clone(),
            by: a_x.clone()
        }));
        assert!(found.warnings.iter().any(|w| w.path() == bad));
        // The empty name is invalid too.
        assert!(found.warnings.iter().any(|w| matches!(w, PluginWarning::InvalidName { path, .. } if path.ends_with("moat-provider-"))));

        let text: Vec<String> = found.warnings.iter().map(ToString::to_string).collect();
        assert!(text.contains(&format!(
            "{} is named like a moat plugin, but it is not executable",
            a_y.display()
        )));
        assert!(text.contains(&format!(
            "{} is shadowed by {}",
            b_x.display(),
            a_x.display()
        )));
    }

    #[test]
    fn warnings_read_like_kubectl() {
        let hidden = PluginWarning::Hidden {
            path: "/p/moat-provider-github".into(),
            by: "github".into(),
            source: "builtin".into(),
        };
        assert_eq!(
            hidden.to_string(),
            "/p/moat-provider-github is hidden by the built-in provider github"
        );
        let failed = PluginWarning::HandshakeFailed {
            path: "/p/moat-provider-x".into(),
            reason: "timed out after 5s".into(),
            advice: String::new(),
        };
        assert_eq!(
            failed.to_string(),
            "/p/moat-provider-x failed its handshake: timed out after 5s"
        );
        let json = serde_json::to_value(&hidden).unwrap();
        assert_eq!(json["kind"], "hidden");
        assert_eq!(json["by"], "github");
    }
}
