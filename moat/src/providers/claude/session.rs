//! Claude Code's sessions of a workspace: kept on the host in `~/.claude/projects/<slug>`
//! (mounted in the container where Claude Code writes them for `/workspace`), and the newest one
//! of a run recorded as its `claude_session_id` (`moat claude --resume <run>`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// Where Claude Code keeps `/workspace`'s sessions, under the container's home.
pub const CONTAINER_PROJECT: &str = ".claude/projects/-workspace";

/// The `provider_meta` key of the session id.
pub const META_SESSION_ID: &str = "claude_session_id";

/// Claude Code's folder name for a project: the absolute path with every character outside
/// `[A-Za-z0-9]` replaced by `-`.
pub fn slug(workspace: &Path) -> String {
    workspace
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// `<host home>/.claude/projects/<slug of workspace>`.
pub fn host_project_dir(host_home: &Path, workspace: &Path) -> PathBuf {
    host_home.join(".claude/projects").join(slug(workspace))
}

/// The id (file stem) of the newest `<uuid>.jsonl` in `dir` modified at or after `since`.
pub fn newest_session(dir: &Path, since: DateTime<Utc>) -> Option<String> {
    let since: SystemTime = since.into();
    let mut best: Option<(SystemTime, String)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !is_session_id(stem) {
            continue;
        }
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        // File times can be a little coarser than the run's clock.
        if modified + std::time::Duration::from_secs(2) < since {
            continue;
        }
        if best.as_ref().is_none_or(|(at, _)| modified > *at) {
            best = Some((modified, stem.to_owned()));
        }
    }
    best.map(|(_, id)| id)
}

/// A UUID as Claude Code names sessions (hex and dashes, 36 characters).
fn is_session_id(stem: &str) -> bool {
    stem.len() == 36 && stem.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slug_replaces_everything_but_letters_and_digits() {
        assert_eq!(
            slug(Path::new("/home/me/my_project.v2")),
            "-home-me-my-project-v2"
        );
        assert_eq!(
            host_project_dir(Path::new("/h"), Path::new("/w/x")),
            PathBuf::from("/h/.claude/projects/-w-x")
        );
    }

    #[test]
    fn the_newest_session_modified_since_the_start_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let start = Utc::now() - chrono::Duration::seconds(60);
        assert_eq!(newest_session(dir.path(), start), None);
        let old = "11111111-1111-1111-1111-111111111111";
        let new = "22222222-2222-2222-2222-222222222222";
        std::fs::write(dir.path().join(format!("{old}.jsonl")), "{}").unwrap();
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(format!("{old}.jsonl")))
            .unwrap();
        file.set_modified(SystemTime::now() - std::time::Duration::from_secs(30))
            .unwrap();
        std::fs::write(dir.path().join(format!("{new}.jsonl")), "{}").unwrap();
        std::fs::write(dir.path().join("notes.jsonl"), "{}").unwrap();
        std::fs::write(
            dir.path().join("33333333-3333-3333-3333-333333333333.txt"),
            "",
        )
        .unwrap();
        assert_eq!(newest_session(dir.path(), start).as_deref(), Some(new));
        // Nothing modified since a later start.
        let later = Utc::now() + chrono::Duration::seconds(60);
        assert_eq!(newest_session(dir.path(), later), None);
        assert_eq!(newest_session(&dir.path().join("missing"), start), None);
    }
}
