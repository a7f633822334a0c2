//! [`MoatHome`]: where moat keeps its state, plus the filesystem helpers every writer of that state
//! uses.
//!
//! The home is `$MOAT_HOME`, else `$HOME/.moat`. It holds secrets (encrypted credentials, the
//! fallback encryption key), so the helpers here are strict on purpose:
//!
//! - [`ensure_private_dir`] leaves every directory it creates at `0700`, whatever the umask.
//! - [`atomic_write`] never exposes a half-written file and never lets a file exist, even for an
//!   instant, with wider permissions than asked: the temporary file is *created* with the final
//!   mode, then renamed over the target.
//! - [`atomic_create_new`] is the same for files that must never be overwritten (a freshly
//!   generated key): the complete file appears under its name, or nothing happens.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors locating the home or naming a profile.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HomeError {
    /// Neither `MOAT_HOME` nor `HOME` is set.
    #[error("cannot locate the moat home: neither MOAT_HOME nor HOME is set")]
    NoHome,
    /// A profile name that does not match `^[a-zA-Z0-9][a-zA-Z0-9_-]*$`.
    #[error(
        "invalid profile name {0:?}: must start with a letter or digit and contain only letters, \
         digits, hyphens, and underscores"
    )]
    InvalidProfile(String),
}

/// The moat state directory (`$MOAT_HOME`, default `~/.moat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoatHome {
    root: PathBuf,
}

impl MoatHome {
    /// `$MOAT_HOME` if set and non-empty, else `$HOME/.moat`.
    pub fn from_env() -> Result<MoatHome, HomeError> {
        Self::from_vars(std::env::var_os("MOAT_HOME"), std::env::var_os("HOME"))
    }

    /// [`MoatHome::from_env`] with the variables passed in, so it can be tested without touching
    /// the process environment.
    fn from_vars(
        moat_home: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<MoatHome, HomeError> {
        let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty());
        if let Some(root) = non_empty(moat_home) {
            return Ok(MoatHome::at(root));
        }
        non_empty(home)
            .map(|home| MoatHome::at(PathBuf::from(home).join(".moat")))
            .ok_or(HomeError::NoHome)
    }

    /// A home at an explicit directory (tests, `--home`-style overrides).
    pub fn at(root: impl Into<PathBuf>) -> MoatHome {
        MoatHome { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where credentials live: `<root>/credentials`, or `<root>/credentials/profiles/<p>` for a
    /// profile.
    pub fn credentials_dir(&self, profile: Option<&Profile>) -> PathBuf {
        let base = self.root.join("credentials");
        match profile {
            Some(p) => base.join("profiles").join(p.as_str()),
            None => base,
        }
    }
}

/// A validated profile name (`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`). Profiles keep separate sets of
/// credentials; the name becomes a directory, hence the strict alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Profile(String);

impl Profile {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Profile, HomeError> {
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if valid {
            Ok(Profile(name.to_owned()))
        } else {
            Err(HomeError::InvalidProfile(name.to_owned()))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Profile {
    type Err = HomeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::new(s)
    }
}

impl AsRef<str> for Profile {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Creates `path` and any missing parents, then makes every directory it created, and `path`
/// itself, mode `0700` (explicitly, so the umask cannot widen or narrow it). Existing parents are
/// left alone.
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    // The missing ancestors, outermost last.
    let mut missing = Vec::new();
    let mut cursor = Some(path);
    while let Some(dir) = cursor {
        if dir.as_os_str().is_empty() || dir.exists() {
            break;
        }
        missing.push(dir);
        cursor = dir.parent();
    }

    fs::create_dir_all(path)?;
    if !path.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", path.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for dir in missing.iter().rev() {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
        if missing.is_empty() {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes`, atomically: a temporary file in the same directory is created
/// with `mode` from the start, written, fsynced and renamed over `path`, then the directory is
/// fsynced. A reader sees the old content or the new one, never a mix; a crash leaves at most a
/// stray `.<name>.tmp-*` file. `mode` is ignored on non-Unix systems.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = write_temp_sibling(path, bytes, mode)?;
    let result = fs::rename(&tmp, path).and_then(|()| sync_parent_dir(path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Like [`atomic_write`], but only if `path` does not exist yet: returns `Ok(false)`, leaving the
/// existing file untouched, if it does. The complete content appears under `path` in one step (a
/// hard link from the fsynced temporary file), so a concurrent reader never sees a partial file.
pub fn atomic_create_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<bool> {
    let tmp = write_temp_sibling(path, bytes, mode)?;
    let linked = match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Filesystems without hard links: fall back to check-then-rename. Callers that need
        // this to be race-free across processes hold a lock around it.
        Err(_) if path.exists() => Ok(false),
        Err(_) => fs::rename(&tmp, path).map(|()| true),
    };
    let _ = fs::remove_file(&tmp);
    let created = linked?;
    if created {
        sync_parent_dir(path)?;
    }
    Ok(created)
}

/// Opens `path` for appending, creating it `0600`; an existing file is made `0600` too (it may
/// have been created with looser permissions). For logs that hold a run's private data.
pub fn open_private_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    set_exact_mode(&file, 0o600)?;
    Ok(file)
}

/// Creates a fresh temporary file next to `path` with `mode`, writes and fsyncs `bytes`, and
/// returns its path. On failure the temporary file is removed.
fn write_temp_sibling(path: &Path, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let dir = parent_dir(path);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut attempts = 0;
    let (tmp, mut file) = loop {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(tmp_name);
        match open_new(&tmp, mode) {
            Ok(file) => break (tmp, file),
            // A stale file from a crashed process that had the same pid: try the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 100 => attempts += 1,
            Err(e) => return Err(e),
        }
    };

    let written = set_exact_mode(&file, mode)
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all());
    drop(file);
    match written {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Opens `path` for writing, failing if it exists, with `mode` applied at creation.
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)
}

/// Sets `mode` exactly, undoing whatever the umask removed at creation.
fn set_exact_mode(file: &File, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = (file, mode);
        Ok(())
    }
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `path`'s directory durable. A no-op where directories cannot be
/// opened (Windows).
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(parent_dir(path))?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

/// A file's permission bits, for the tests of every module that writes private files.
#[cfg(all(test, unix))]
pub(crate) fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_prefers_moat_home_then_home() {
        let home = MoatHome::from_vars(Some("/x/moat".into()), Some("/home/u".into())).unwrap();
        assert_eq!(home.root(), Path::new("/x/moat"));
        let home = MoatHome::from_vars(Some("".into()), Some("/home/u".into())).unwrap();
        assert_eq!(home.root(), Path::new("/home/u/.moat"));
        let home = MoatHome::from_vars(None, Some("/home/u".into())).unwrap();
        assert_eq!(home.root(), Path::new("/home/u/.moat"));
        assert_eq!(
            MoatHome::from_vars(None, Some("".into())),
            Err(HomeError::NoHome)
        );
        assert_eq!(MoatHome::from_vars(None, None), Err(HomeError::NoHome));
    }

    #[test]
    fn credentials_dir_layout() {
        let home = MoatHome::at("/m");
        assert_eq!(home.credentials_dir(None), Path::new("/m/credentials"));
        let p = Profile::new("work").unwrap();
        assert_eq!(
            home.credentials_dir(Some(&p)),
            Path::new("/m/credentials/profiles/work")
        );
    }

    #[test]
    fn profile_validation() {
        for ok in ["a", "work", "Work_2", "9-lives", "a-b_c"] {
            let p = Profile::new(ok).unwrap();
            assert_eq!(p.as_str(), ok);
            assert_eq!(p.to_string(), ok);
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "..", "a.b", "é", "a\0"] {
            assert_eq!(
                Profile::new(bad),
                Err(HomeError::InvalidProfile(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            Profile::new("a/b").unwrap_err().to_string(),
            "invalid profile name \"a/b\": must start with a letter or digit and contain only \
             letters, digits, hyphens, and underscores"
        );
        assert_eq!("x".parse::<Profile>().unwrap().as_str(), "x");
    }

    #[cfg(unix)]
    #[test]
    fn ensure_private_dir_makes_created_dirs_0700() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let existing = tmp.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();

        let leaf = existing.join("a/b");
        ensure_private_dir(&leaf).unwrap();
        assert_eq!(mode_of(&existing.join("a")), 0o700);
        assert_eq!(mode_of(&leaf), 0o700);
        assert_eq!(mode_of(&existing), 0o755, "existing parents are left alone");

        // An existing leaf is tightened.
        fs::set_permissions(&leaf, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&leaf).unwrap();
        assert_eq!(mode_of(&leaf), 0o700);
    }

    #[test]
    fn ensure_private_dir_rejects_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file).is_err());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f.txt");
        atomic_write(&path, b"one", 0o600).unwrap();
        atomic_write(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("f.txt")]);
        #[cfg(unix)]
        assert_eq!(mode_of(&path), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_sets_the_exact_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        atomic_write(&path, b"x", 0o644).unwrap();
        assert_eq!(mode_of(&path), 0o644);
        atomic_write(&path, b"y", 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_cleanly() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(atomic_write(&tmp.path().join("nope/f"), b"x", 0o600).is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn open_private_append_makes_the_file_0600_and_appends() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("log");
        fs::write(&path, b"a").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        open_private_append(&path).unwrap().write_all(b"b").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ab");
        assert_eq!(mode_of(&path), 0o600);
        let fresh = tmp.path().join("fresh");
        open_private_append(&fresh).unwrap();
        assert_eq!(mode_of(&fresh), 0o600);
    }

    #[test]
    fn atomic_create_new_never_overwrites() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("key");
        assert!(atomic_create_new(&path, b"first", 0o600).unwrap());
        assert!(!atomic_create_new(&path, b"second", 0o600).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        #[cfg(unix)]
        assert_eq!(mode_of(&path), 0o600);
    }
}
