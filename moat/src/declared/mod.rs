//! Declared providers: a provider written as a YAML file instead of code.
//!
//! Most services need only "this header, with this prefix, on these hosts, from this variable";
//! a YAML file says that, and an executable plugin is needed only for logic data cannot express.
//!
//! - `file`: the format ([`ProviderFile`]), read and checked by [`parse`], a plain function of
//!   the text and its path; its JSON Schema ([`json_schema`]).
//! - `provider`: [`DeclaredProvider`], the `CredentialProvider` trait implemented from a file:
//!   the grant (variables, then the host-driven hidden prompt, then the declared validation),
//!   header-mode or substitution-mode rules, the container's placeholder.
//! - this module: loading into the [`Registry`] in precedence order, and the
//!   [`DeclaredWarning`]s `moat grant providers` shows. [`register_user_files`] runs after the
//!   built-ins and before plugins, [`register_bundled`] (the catalogue compiled into moat) after
//!   plugins: what a user installed on purpose beats what ships by default.
//! - `starter`: the commented file `moat provider new` writes.
//!
//! Nothing here names a provider: the catalogue's files are handed in by `main`.

mod file;
mod provider;
mod starter;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use file::{
    Description, EnvName, FileError, HeaderName, Host, Inject, Method, Name, Prefix, ProviderFile,
    Status, TOKEN_VARIABLE, Validate, ValidateUrl, json_schema, parse,
};
pub use provider::{DeclaredProvider, HEADER_PLACEHOLDER, api_url_env, substitution_placeholder};
pub use starter::starter;

use crate::provider::{ProviderSource, Registry, RegistryError};

/// Where user provider files live under the home.
pub const PROVIDERS_DIR: &str = "providers";

/// A provider file larger than this is refused (a provider is a few hundred bytes).
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// A provider file compiled into moat (the bundled catalogue).
#[derive(Debug, Clone, Copy)]
pub struct Bundled {
    /// Its file name, for messages (`acme.yaml`).
    pub file: &'static str,
    /// Its text.
    pub text: &'static str,
}

/// Something a provider file did not get to do. None of these stops moat; `moat grant providers`
/// shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeclaredWarning {
    /// The file could not be read or is not a valid provider file.
    Broken {
        /// The file.
        path: PathBuf,
        /// Why, with line, column and key when known.
        reason: String,
    },
    /// Another user file, read first (files are read in name order), declares the same name.
    Duplicate {
        /// The file that is not used.
        path: PathBuf,
        /// The provider name.
        name: String,
        /// The file that is used.
        winner: PathBuf,
    },
    /// A provider registered earlier (a built-in, a custom file, a plugin) has the name.
    Hidden {
        /// The file that is not used (`None` for the bundled catalogue).
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        /// The provider name.
        name: String,
        /// The provider that has the name (maybe as an alias).
        by: String,
        /// Where that one comes from (`builtin`, `custom`, `plugin`).
        source: String,
        /// Its file, when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        by_path: Option<PathBuf>,
    },
    /// An alias already taken by another provider: the provider is registered without it.
    AliasSkipped {
        /// The file (`None` for the bundled catalogue).
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<PathBuf>,
        /// The provider declaring the alias.
        name: String,
        /// The alias.
        alias: String,
        /// The provider that has it.
        by: String,
        /// Where that one comes from.
        source: String,
    },
}

impl DeclaredWarning {
    /// Whether it says a user file could not be read at all.
    pub fn is_broken(&self) -> bool {
        matches!(self, DeclaredWarning::Broken { .. })
    }

    /// The user file it is about (`None` for the bundled catalogue).
    pub fn path(&self) -> Option<&Path> {
        match self {
            DeclaredWarning::Broken { path, .. } | DeclaredWarning::Duplicate { path, .. } => {
                Some(path)
            }
            DeclaredWarning::Hidden { path, .. } | DeclaredWarning::AliasSkipped { path, .. } => {
                path.as_deref()
            }
        }
    }
}

/// `path` or "the bundled catalogue".
fn origin(path: Option<&Path>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "bundled catalogue".into(),
    }
}

impl fmt::Display for DeclaredWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclaredWarning::Broken { path, reason } => write!(
                f,
                "{}; not loaded (check it with 'moat provider check {}')",
                located(path, reason),
                path.display()
            ),
            DeclaredWarning::Duplicate { path, name, winner } => write!(
                f,
                "{}: not loaded: provider {name} is also declared by {}, which wins (files are \
                 read in name order)",
                path.display(),
                winner.display()
            ),
            DeclaredWarning::Hidden {
                path,
                name,
                by,
                source,
                by_path,
            } => {
                let holder = match by_path {
                    Some(p) => format!("{source} provider {by} ({})", p.display()),
                    None => format!("{source} provider {by}"),
                };
                let origin = origin(path.as_deref());
                if by == name {
                    write!(f, "{origin}: provider {name} is hidden: the {holder} wins")
                } else {
                    write!(
                        f,
                        "{origin}: provider {name} is hidden: {name} is an alias of the {holder}, which wins"
                    )
                }
            }
            DeclaredWarning::AliasSkipped {
                path,
                name,
                alias,
                by,
                source,
            } => write!(
                f,
                "{}: alias {alias} of provider {name} is not used: the {source} provider {by} \
                 has that name, and wins; use '{name}'",
                origin(path.as_deref())
            ),
        }
    }
}

/// Registers every `*.yaml` and `*.yml` file of `dir` (not recursive, in file name order) as a
/// custom provider. A missing folder is no provider and no warning. A broken file, a name
/// declared twice, a name or alias already taken: each is a warning, and the other files load.
pub fn register_user_files(registry: &mut Registry, dir: &Path) -> Vec<DeclaredWarning> {
    let mut warnings = Vec::new();
    let mut loaded: Vec<(String, PathBuf)> = Vec::new();
    for path in provider_files(dir, &mut warnings) {
        let file = match read_file(&path) {
            Ok(file) => file,
            Err(reason) => {
                warnings.push(DeclaredWarning::Broken { path, reason });
                continue;
            }
        };
        if let Some((_, winner)) = loaded.iter().find(|(name, _)| name == file.name.as_str()) {
            warnings.push(DeclaredWarning::Duplicate {
                name: file.name.to_string(),
                winner: winner.clone(),
                path,
            });
            continue;
        }
        let name = file.name.to_string();
        let source = ProviderSource::Custom { path: path.clone() };
        if register_one(registry, file, source, Some(&path), &mut warnings) {
            loaded.push((name, path));
        }
    }
    warnings
}

/// Registers the bundled catalogue, after everything else: a name already taken hides the
/// bundled provider, with a warning.
pub fn register_bundled(registry: &mut Registry, bundled: &[Bundled]) -> Vec<DeclaredWarning> {
    let mut warnings = Vec::new();
    for entry in bundled {
        match parse(entry.text, Path::new(entry.file)) {
            Ok(file) => {
                register_one(registry, file, ProviderSource::Bundled, None, &mut warnings);
            }
            // Tests parse every bundled file; this is for a build that skipped them.
            Err(err) => warnings.push(DeclaredWarning::Broken {
                path: PathBuf::from(entry.file),
                reason: without_file(&err),
            }),
        }
    }
    warnings
}

/// `path` and a reason from [`read_file`]: `file:3:9: key ...` when the reason starts with a
/// line and column, else `file: reason`.
pub fn located(path: &Path, reason: &str) -> String {
    let mut parts = reason.splitn(3, ':');
    let number = |part: Option<&str>| {
        part.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    };
    let at = if number(parts.next()) && number(parts.next()) && parts.next().is_some() {
        ":"
    } else {
        ": "
    };
    format!("{}{at}{reason}", path.display())
}

/// Reads and parses one provider file; the reason is one line to put after the file's path
/// (`3:9: key `hosts[0]`: ...`, `cannot read it: ...`).
pub fn read_file(path: &Path) -> Result<ProviderFile, String> {
    let size = std::fs::metadata(path)
        .map_err(|err| format!("cannot read it: {err}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{size} bytes is too large for a provider file (at most {MAX_FILE_BYTES})"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read it: {err}"))?;
    parse(&text, path).map_err(|err| without_file(&err))
}

/// A parse error as the warning shows it after the file: `line:column: key `k`: message`.
fn without_file(err: &FileError) -> String {
    let full = err.to_string();
    let file = err.file.display().to_string();
    let rest = full.strip_prefix(&file).unwrap_or(&full);
    rest.trim_start_matches([':', ' ']).to_string()
}

/// The provider files of `dir`, sorted by file name.
fn provider_files(dir: &Path, warnings: &mut Vec<DeclaredWarning>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(err) => {
            warnings.push(DeclaredWarning::Broken {
                path: dir.to_path_buf(),
                reason: format!("cannot list the folder: {err}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            let yaml = path
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml");
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            // Follows links: a link to a provider file counts, a folder named x.yaml does not.
            yaml && !hidden && !path.is_dir()
        })
        .collect();
    files.sort();
    files
}

/// Registers `file`; true when it was.
fn register_one(
    registry: &mut Registry,
    file: ProviderFile,
    source: ProviderSource,
    path: Option<&Path>,
    warnings: &mut Vec<DeclaredWarning>,
) -> bool {
    let name = file.name.to_string();
    let provider = Arc::new(DeclaredProvider::from_env(file));
    match registry.register_reporting(provider, source) {
        Ok(skipped) => {
            for (alias, err) in skipped {
                if let RegistryError::NameTaken {
                    taken_by,
                    holder_source,
                    ..
                } = err
                {
                    warnings.push(DeclaredWarning::AliasSkipped {
                        path: path.map(Path::to_path_buf),
                        name: name.clone(),
                        alias,
                        by: taken_by,
                        source: holder_source.kind().to_string(),
                    });
                }
            }
            true
        }
        Err(RegistryError::NameTaken {
            taken_by,
            holder_source,
            ..
        }) => {
            warnings.push(DeclaredWarning::Hidden {
                path: path.map(Path::to_path_buf),
                name,
                by: taken_by,
                source: holder_source.kind().to_string(),
                by_path: holder_source.path().map(Path::to_path_buf),
            });
            false
        }
        // A parsed file's name is valid; kept for completeness.
        Err(RegistryError::InvalidName(reason)) => {
            warnings.push(DeclaredWarning::Broken {
                path: path.map_or_else(|| PathBuf::from("bundled"), Path::to_path_buf),
                reason,
            });
            false
        }
    }
}

#[cfg(test)]
mod tests;
