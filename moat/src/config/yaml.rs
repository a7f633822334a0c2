//! YAML files read into typed values, with errors that say where: file, line, column, the key
//! path (`network.host_ports[1]`) and what was wrong.
//!
//! Built on `serde-saphyr` (a pure-Rust YAML parser, fuzzed and panic-free, no intermediate value
//! tree, errors with locations) and `serde_path_to_error` (which key the error happened under).
//! Any `Deserialize` type works; `#[serde(deny_unknown_fields)]` turns a misspelt key into an
//! error naming it and the keys that exist.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_saphyr::MessageFormatter as _;

/// Why a YAML file could not be read into its type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct YamlError {
    /// The file, as given.
    pub file: PathBuf,
    /// 1-based line of the offending node (0 when unknown).
    pub line: u64,
    /// 1-based column of the offending node (0 when unknown).
    pub column: u64,
    /// The key path, `network.rules[2]`; empty for the document itself.
    pub key: String,
    /// What was wrong (and, where known, what was expected).
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": key `{}`: {}", self.key, self.message)
        }
    }
}

/// Reads `text` (the content of `file`, named in errors) as a `T`. An empty document, or one of
/// only comments, is read as an empty mapping, so a type whose fields all have defaults accepts it.
pub fn from_str<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, YamlError> {
    let blank = text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
    let text = if blank { "{}" } else { text };
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|err| {
            path = err.path().to_string();
            err.into_inner()
        })
    });
    result.map_err(|err| {
        let location = err.location();
        let message = serde_saphyr::DefaultMessageFormatter
            .format_message(err.without_snippet())
            .chars()
            // The message may quote the file: no control character reaches the terminal.
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        YamlError {
            file: file.to_path_buf(),
            line: location.as_ref().map_or(0, |l| l.line()),
            column: location.as_ref().map_or(0, |l| l.column()),
            key: if path == "." { String::new() } else { path },
            message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, serde::Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        name: String,
        ports: Vec<u16>,
        env: BTreeMap<String, String>,
    }

    fn err(text: &str) -> YamlError {
        from_str::<Doc>(text, Path::new("/w/x.yaml")).unwrap_err()
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        let e = err("name: a\nports: [1, 70000]\n");
        assert_eq!((e.line, e.column, e.key.as_str()), (2, 12, "ports[1]"));
        assert_eq!(
            e.to_string(),
            format!("/w/x.yaml:2:12: key `ports[1]`: {}", e.message)
        );
        let e = err("name: a\nbogus: 1\n");
        assert_eq!((e.line, e.column, e.key.as_str()), (2, 1, "bogus"));
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
        assert!(e.message.contains("name, ports, env"), "{e}");
        let e = err("- a\n");
        assert_eq!((e.line, e.key.as_str()), (1, ""));
        assert!(e.to_string().starts_with("/w/x.yaml:1:1: "), "{e}");
        let e = err("name: [\n");
        assert!(e.line >= 1, "{e:?}");
    }

    #[test]
    fn blank_documents_are_empty_mappings() {
        for text in ["", "\n\n", "# only a comment\n  # and another\n"] {
            assert_eq!(
                from_str::<Doc>(text, Path::new("x")).unwrap(),
                Doc::default()
            );
        }
    }
}
