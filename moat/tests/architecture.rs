//! The invariants of ARCHITECTURE.md that a machine can check, over the source tree as text.
//!
//! 1. **No provider is named outside its own room.** Every provider name (the folders of
//!    `moat/src/providers/`, and the `plugins/moat-provider-<name>` folders) may appear in code
//!    only in `moat/src/providers/`, `plugins/` and `moat/src/main.rs`. Everywhere else in
//!    `moat/src` and `moat-plugin-sdk/src` it may not be an identifier (`github`, `GithubProvider`,
//!    `GITHUB_TOKEN`: any word of a snake_case or CamelCase name) nor a word of a string literal
//!    *without white space* (`"github"`, `"api.github.com"`, `"moat-provider-gitlab"`,
//!    `"GITHUB_TOKEN"`): those are values code can compare, look up or send. Not counted:
//!    comments (docs and examples are for people), string literals with white space in them
//!    (help text and hints: `"moat grant github"` teaches a command, it decides nothing), and
//!    test code (`#[cfg(test)] mod ... { }` blocks and `tests.rs` files), which uses real names
//!    as sample data. The rule can be fooled on purpose; it is there to catch the honest
//!    `if name == "github"` that a reviewer might miss.
//! 2. **Each module imports only the floors below it** (the table in [`LAYERS`]): a `crate::x`
//!    or `moat::x` path in a module's code, comments left out. In particular the proxy imports
//!    none of `provider/`, `providers/`, `plugin/`, `credential/`, `cli/`, `run/`, `runtime/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// For each top-level module of `moat/src`, the modules it must never import (the floors of
/// ARCHITECTURE.md, from the bottom up).
#[rustfmt::skip]
const LAYERS: &[(&str, &[&str])] = &[
    ("home",       &["cli", "config", "credential", "declared", "http", "plugin", "provider", "providers", "proxy", "run", "runtime"]),
    ("http",       &["cli", "config", "credential", "declared", "home", "plugin", "provider", "providers", "proxy", "run", "runtime"]),
    ("credential", &["cli", "config", "declared", "plugin", "provider", "providers", "proxy", "run", "runtime"]),
    ("provider",   &["cli", "config", "declared", "plugin", "providers", "proxy", "run", "runtime"]),
    ("providers",  &["cli", "config", "declared", "plugin", "proxy", "run", "runtime"]),
    ("declared",   &["cli", "credential", "plugin", "providers", "proxy", "run", "runtime"]),
    ("plugin",     &["cli", "config", "credential", "declared", "providers", "proxy", "run", "runtime"]),
    ("proxy",      &["cli", "config", "credential", "declared", "plugin", "provider", "providers", "run", "runtime"]),
    ("runtime",    &["cli", "config", "credential", "declared", "plugin", "provider", "providers", "proxy", "run"]),
    ("run",        &["cli", "config", "declared", "plugin", "providers"]),
    ("config",     &["cli", "credential", "declared", "plugin", "provider", "providers", "runtime"]),
    ("cli",        &["providers"]),
    ("fuzzing",    &["cli", "provider", "providers", "run", "runtime"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Rust source as identifiers, string literals (their raw text) and punctuation, each with its
/// line; comments dropped. Just enough lexing for this test: nested block comments, raw strings,
/// byte strings, char literals and lifetimes.
fn lex(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count_lines =
        |from: usize, to: usize| chars[from..to].iter().filter(|c| **c == '\n').count();
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let (start, mut depth) = (i, 0);
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count_lines(start, i);
        } else if c == '"' || ((c == 'r' || c == 'b') && is_string_start(&chars, i)) {
            let start = i;
            let at = line;
            // Prefix: b, r, br, then hashes.
            while chars[i] == 'b' || chars[i] == 'r' {
                i += 1;
            }
            let raw = chars[start..i].contains(&'r');
            let mut hashes = 0;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1; // the opening quote
            let body = i;
            loop {
                if !raw && chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if chars[i] == '"'
                    && chars[i + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|c| **c == '#')
                        .count()
                        == hashes
                {
                    break;
                }
                i += 1;
            }
            let content: String = chars[body..i].iter().collect();
            i += 1 + hashes;
            line += count_lines(start, i);
            tokens.push((Token::Str(content), at));
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1; // a lifetime: its name lexes as an identifier
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Ident(chars[start..i].iter().collect()), line));
        } else if c.is_ascii_digit() {
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
        } else {
            tokens.push((Token::Punct(c), line));
            i += 1;
        }
    }
    tokens
}

fn is_string_start(chars: &[char], i: usize) -> bool {
    // Only at the start of a word: `br"`, `r#"`, `b"`, `r"`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return false;
    }
    let mut j = i;
    while j < chars.len() && (chars[j] == 'b' || chars[j] == 'r') && j < i + 2 {
        j += 1;
    }
    while j < chars.len() && chars[j] == '#' {
        j += 1;
    }
    chars.get(j) == Some(&'"') && j > i
}

/// The tokens outside `#[cfg(test)] mod name { ... }` blocks.
fn without_test_modules(tokens: Vec<(Token, usize)>) -> Vec<(Token, usize)> {
    let cfg_test: Vec<Token> = ["#", "[", "cfg", "(", "test", ")", "]"]
        .iter()
        .map(|s| match *s {
            "cfg" | "test" => Token::Ident((*s).to_owned()),
            p => Token::Punct(p.chars().next().unwrap()),
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let starts_test = tokens[i..]
            .iter()
            .take(cfg_test.len())
            .map(|(t, _)| t)
            .eq(cfg_test.iter());
        let then_mod = matches!(tokens.get(i + cfg_test.len()), Some((Token::Ident(m), _)) if m == "mod")
            && matches!(
                tokens.get(i + cfg_test.len() + 2),
                Some((Token::Punct('{'), _))
            );
        if starts_test && then_mod {
            let mut j = i + cfg_test.len() + 2;
            let mut depth = 0;
            loop {
                match tokens[j].0 {
                    Token::Punct('{') => depth += 1,
                    Token::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(tokens[i].clone());
            i += 1;
        }
    }
    out
}

/// The lowercase words of an identifier: `GithubProvider` → github, provider; `GITHUB_TOKEN` →
/// github, token.
fn ident_words(ident: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in ident.split('_').filter(|p| !p.is_empty()) {
        let mut word = String::new();
        let chars: Vec<char> = part.chars().collect();
        for (k, c) in chars.iter().enumerate() {
            let boundary = k > 0
                && c.is_uppercase()
                && (chars[k - 1].is_lowercase()
                    || chars.get(k + 1).is_some_and(|n| n.is_lowercase()));
            if boundary && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            word.extend(c.to_lowercase());
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    words
}

fn string_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// `name` (words joined by `-`) stands in `words` as consecutive words.
fn names(words: &[String], name: &str) -> bool {
    let wanted: Vec<&str> = name.split('-').collect();
    words
        .windows(wanted.len())
        .any(|w| w.iter().map(String::as_str).eq(wanted.iter().copied()))
}

fn provider_names() -> BTreeSet<String> {
    let root = root();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("moat/src/providers")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.insert(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for entry in std::fs::read_dir(root.join("plugins")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(provider) = name.strip_prefix("moat-provider-") {
            found.insert(provider.to_owned());
        }
    }
    found
}

/// Violations of rule 1 in one file's text.
fn provider_mentions(text: &str, providers: &BTreeSet<String>) -> Vec<(usize, String)> {
    let mut hits = Vec::new();
    for (token, line) in without_test_modules(lex(text)) {
        let words = match &token {
            Token::Ident(ident) => ident_words(ident),
            Token::Str(s) if !s.chars().any(char::is_whitespace) => string_words(s),
            _ => continue,
        };
        for provider in providers {
            if names(&words, provider) {
                hits.push((line, format!("{provider} in {token:?}")));
            }
        }
    }
    hits
}

#[test]
fn no_provider_is_named_outside_providers_plugins_and_main() {
    let root = root();
    let providers = provider_names();
    assert!(providers.contains("github"), "{providers:?}");
    assert!(providers.contains("gitlab"), "{providers:?}");
    let mut files = Vec::new();
    rust_files(&root.join("moat/src"), &mut files);
    rust_files(&root.join("moat-plugin-sdk/src"), &mut files);
    let allowed = |path: &Path| {
        path.starts_with(root.join("moat/src/providers")) || path == root.join("moat/src/main.rs")
    };
    let mut found = Vec::new();
    for path in files.iter().filter(|p| !allowed(p)) {
        if path.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (line, what) in provider_mentions(&text, &providers) {
            found.push(format!(
                "{}:{line}: {what}",
                path.strip_prefix(&root).unwrap().display()
            ));
        }
    }
    assert!(
        found.is_empty(),
        "a provider is named outside moat/src/providers/, plugins/ and main.rs (ARCHITECTURE.md, \
         'Invariants'); ask the registry or the provider's rules instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_provider_rule_sees_code_not_prose() {
    let providers = BTreeSet::from(["github".to_owned(), "claude-code".to_owned()]);
    let lines = |text: &str| -> Vec<usize> {
        provider_mentions(text, &providers)
            .into_iter()
            .map(|(l, _)| l)
            .collect()
    };
    // Caught: identifiers and values.
    assert_eq!(lines("if name == \"github\" {}"), [1]);
    assert_eq!(lines("let x = GithubProvider::new();"), [1]);
    assert_eq!(lines("std::env::var(\"GITHUB_TOKEN\")"), [1]);
    assert_eq!(lines("\nlet host = \"api.github.com\";"), [2]);
    assert_eq!(lines("let p = r#\"moat-provider-github\"#;"), [1]);
    assert_eq!(lines("const CLAUDE_CODE_HOME: &str = \"x\";"), [1]);
    assert_eq!(lines("fn f(claude: u8) {}"), Vec::<usize>::new());
    // Not counted: comments, prose, test modules, other words.
    assert!(lines("// if name == \"github\"\n/* GithubProvider /* nested */ */").is_empty());
    assert!(lines("const HELP: &str = \"moat grant github\";").is_empty());
    assert!(lines("#[cfg(test)]\nmod tests {\n fn t() { let _ = \"github\"; }\n}").is_empty());
    assert!(lines("let g = \"githubber\"; let c = 'g'; fn f<'github>() {}").len() == 1);
    // After a test module, code counts again.
    assert_eq!(
        lines("#[cfg(test)]\nmod tests { }\nlet x = \"github\";"),
        [3]
    );
}

/// The modules a file's code names through `crate::x` or `moat::x` (comments left out).
fn imported_modules(text: &str) -> BTreeSet<String> {
    let tokens: Vec<Token> = lex(text).into_iter().map(|(t, _)| t).collect();
    let mut found = BTreeSet::new();
    for w in tokens.windows(4) {
        if let [
            Token::Ident(krate),
            Token::Punct(':'),
            Token::Punct(':'),
            Token::Ident(module),
        ] = w
            && (krate == "crate" || krate == "moat")
        {
            found.insert(module.clone());
        }
    }
    found
}

#[test]
fn each_module_imports_only_the_floors_below_it() {
    let src = root().join("moat/src");
    let mut found = Vec::new();
    for (module, forbidden) in LAYERS {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            for used in imported_modules(&text) {
                if forbidden.contains(&used.as_str()) {
                    let path = path
                        .strip_prefix(root())
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    found.push(format!("{path}: {module}/ uses {used}/"));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "imports against the floors of ARCHITECTURE.md:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_module_has_a_row() {
    let src = root().join("moat/src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_suffix(';'))
        .filter_map(|l| l.rsplit_once("mod ").map(|(_, name)| name))
        .collect();
    let rows: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    assert_eq!(
        declared, rows,
        "lib.rs's modules and the LAYERS table differ"
    );
}

#[test]
fn the_import_check_sees_paths_not_words() {
    let used = imported_modules(
        "use crate::proxy::Proxy;\n// crate::cli::Cli\nlet x = moat::run::RunId::new();",
    );
    assert_eq!(used, BTreeSet::from(["proxy".to_owned(), "run".to_owned()]));
}
