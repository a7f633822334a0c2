//! Proving a secret did not leak: into output, logs, or moat's store.

use std::path::{Path, PathBuf};

/// How much text around a leak the failure messages show, each side.
const CONTEXT: usize = 40;

/// Fails if `secret` appears in any of `haystacks` (e.g. `&[&out.stdout, &out.stderr]`), naming
/// which one (by index) and showing where, with the secret itself masked as `<SECRET>`.
///
/// # Panics
///
/// On a leak, or if `secret` is empty (which would prove nothing).
#[track_caller]
pub fn assert_no_secret<H: AsRef<[u8]>>(haystacks: &[H], secret: &str) {
    let named: Vec<(String, &[u8])> = haystacks
        .iter()
        .enumerate()
        .map(|(index, haystack)| {
            (
                format!("haystack #{index} (of {})", haystacks.len()),
                haystack.as_ref(),
            )
        })
        .collect();
    check(
        named.iter().map(|(name, bytes)| (name.as_str(), *bytes)),
        secret,
    );
}

/// Like [`assert_no_secret`] with a name for each haystack, used in the failure message:
/// `&[("stdout", &out.stdout), ("stderr", &out.stderr)]`.
///
/// # Panics
///
/// On a leak, or if `secret` is empty.
#[track_caller]
pub fn assert_no_secret_named<H: AsRef<[u8]>>(haystacks: &[(&str, H)], secret: &str) {
    check(
        haystacks
            .iter()
            .map(|(name, haystack)| (*name, haystack.as_ref())),
        secret,
    );
}

/// Fails if any file under `dir` contains `secret` (see [`files_containing`]), listing them.
///
/// # Panics
///
/// On a leak, or as [`files_containing`] does.
#[track_caller]
pub fn assert_no_secret_in_dir(dir: impl AsRef<Path>, secret: &str) {
    let dir = dir.as_ref();
    let leaks = files_containing(dir, secret);
    if !leaks.is_empty() {
        let list: Vec<String> = leaks
            .iter()
            .map(|path| format!("  {}", path.display()))
            .collect();
        panic!(
            "secret found in plaintext in {} file(s) under {}:\n{}",
            leaks.len(),
            dir.display(),
            list.join("\n")
        );
    }
}

/// Every regular file under `dir` (recursively, not following symlinks) whose bytes contain
/// `secret` verbatim, sorted. Use it to prove a store holds no plaintext token.
///
/// It finds the exact bytes only: a secret stored base64- or hex-encoded is not found.
///
/// # Panics
///
/// If `secret` is empty, `dir` is not a directory (a check of nothing would pass vacuously), or
/// something under it cannot be read.
#[track_caller]
pub fn files_containing(dir: impl AsRef<Path>, secret: &str) -> Vec<PathBuf> {
    let dir = dir.as_ref();
    assert!(
        !secret.is_empty(),
        "looking for an empty secret proves nothing"
    );
    assert!(
        dir.is_dir(),
        "{} is not a directory: nothing to search for the secret",
        dir.display()
    );
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", current.display()));
        for entry in entries {
            let entry =
                entry.unwrap_or_else(|err| panic!("cannot list {}: {err}", current.display()));
            let path = entry.path();
            let kind = entry
                .file_type()
                .unwrap_or_else(|err| panic!("cannot stat {}: {err}", path.display()));
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let bytes = std::fs::read(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
                if find(&bytes, secret.as_bytes()).is_some() {
                    found.push(path);
                }
            }
        }
    }
    found.sort();
    found
}

#[track_caller]
fn check<'a>(haystacks: impl Iterator<Item = (&'a str, &'a [u8])>, secret: &str) {
    assert!(
        !secret.is_empty(),
        "looking for an empty secret proves nothing"
    );
    let leaks: Vec<String> = haystacks
        .filter_map(|(name, bytes)| {
            let at = find(bytes, secret.as_bytes())?;
            let count = count(bytes, secret.as_bytes());
            Some(format!(
                "  {name}: {count} occurrence(s), first at byte {at}: ...{}...",
                excerpt(bytes, at, secret.len())
            ))
        })
        .collect();
    if !leaks.is_empty() {
        panic!("secret leaked:\n{}", leaks.join("\n"));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let mut count = 0;
    let mut rest = haystack;
    while let Some(at) = find(rest, needle) {
        count += 1;
        rest = &rest[at + needle.len()..];
    }
    count
}

/// The text around `haystack[at..at + len]`, with that part replaced by `<SECRET>`.
fn excerpt(haystack: &[u8], at: usize, len: usize) -> String {
    let before = &haystack[at.saturating_sub(CONTEXT)..at];
    let after = &haystack[at + len..(at + len + CONTEXT).min(haystack.len())];
    format!(
        "{}<SECRET>{}",
        String::from_utf8_lossy(before).escape_debug(),
        String::from_utf8_lossy(after).escape_debug()
    )
}
