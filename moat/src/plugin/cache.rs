//! `$MOAT_HOME/cache/plugins.json`: what each plugin binary answered to `initialize`, keyed by the
//! binary's identity, so that listing providers (and every other command) does not start plugins
//! that have not changed.
//!
//! The identity is the canonical path with the file's size, modification time (ns), change time
//! (ns) and inode: replacing, rebuilding or touching the binary invalidates its entry. A plugin that
//! failed its handshake is remembered as failed (never as good) for [`FAILURE_RETRY`], so a broken
//! plugin does not slow down every command; it is asked again after that, as soon as its binary
//! changes, or when `moat grant <name>` asks for it; the listing says that a failure is cached.
//!
//! The file is written atomically with mode 0600. A missing, unreadable or corrupt cache is an
//! empty cache; a cache that cannot be written costs only speed.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use moat_plugin_sdk::protocol::InitializeResult;
use serde::{Deserialize, Serialize};

use crate::home::{MoatHome, atomic_write, ensure_private_dir};

/// Where the cache lives under the home.
pub const CACHE_FILE: &str = "cache/plugins.json";

/// How long a failed handshake is remembered before the plugin is asked again.
pub const FAILURE_RETRY: Duration = Duration::from_secs(5 * 60);

/// The cache file's format version; another version is ignored (and rewritten).
const FORMAT: u32 = 1;

/// What identifies one build of a plugin binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryIdentity {
    /// The canonical path (symlinks resolved).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch (0 where unknown).
    #[serde(default)]
    pub ctime_ns: i64,
    /// Inode number (0 where unknown).
    #[serde(default)]
    pub inode: u64,
}

impl BinaryIdentity {
    /// The identity of the file `path` points to.
    pub fn of(path: &Path) -> io::Result<Self> {
        let canonical = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&canonical)?;
        #[cfg(unix)]
        let (mtime_ns, ctime_ns, inode) = {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
            (
                ns(meta.mtime(), meta.mtime_nsec()),
                ns(meta.ctime(), meta.ctime_nsec()),
                meta.ino(),
            )
        };
        #[cfg(not(unix))]
        let (mtime_ns, ctime_ns, inode) = {
            let mtime = meta
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            (mtime, 0, 0)
        };
        Ok(BinaryIdentity {
            path: canonical,
            size: meta.len(),
            mtime_ns,
            ctime_ns,
            inode,
        })
    }
}

/// What the cache knows about one binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// It completed its handshake with this answer.
    Ok(Box<InitializeResult>),
    /// It failed its handshake recently, for this reason, and this is what the user can do.
    Failed(String, String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    #[serde(default)]
    plugins: BTreeMap<PathBuf, Entry>,
}

impl Default for CacheFile {
    fn default() -> Self {
        CacheFile {
            version: FORMAT,
            plugins: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    identity: BinaryIdentity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    initialize: Option<InitializeResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Failure {
    reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    advice: String,
    at: DateTime<Utc>,
}

/// The info cache, loaded once per moat process and saved when it changed.
#[derive(Debug, Default)]
pub struct InfoCache {
    file: Option<PathBuf>,
    doc: CacheFile,
    dirty: bool,
}

impl InfoCache {
    /// The cache of `home` (`<home>/cache/plugins.json`).
    pub fn for_home(home: &MoatHome) -> Self {
        Self::load(home.root().join(CACHE_FILE))
    }

    /// The cache stored in `file`; empty when it is missing or unreadable.
    pub fn load(file: PathBuf) -> Self {
        let doc = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(doc) if doc.version == FORMAT => doc,
                Ok(_) => CacheFile::default(),
                Err(err) => {
                    tracing::debug!(path = %file.display(), "ignoring the plugin cache: {err}");
                    CacheFile::default()
                }
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => CacheFile::default(),
            Err(err) => {
                tracing::debug!(path = %file.display(), "cannot read the plugin cache: {err}");
                CacheFile::default()
            }
        };
        InfoCache {
            file: Some(file),
            doc,
            dirty: false,
        }
    }

    /// A cache that remembers nothing (no home).
    pub fn disabled() -> Self {
        InfoCache::default()
    }

    /// What is known about the binary with `identity`, if that exact binary was seen.
    pub fn lookup(&self, identity: &BinaryIdentity) -> Option<Cached> {
        let entry = self.doc.plugins.get(&identity.path)?;
        if &entry.identity != identity {
            return None;
        }
        if let Some(initialize) = &entry.initialize {
            return Some(Cached::Ok(Box::new(initialize.clone())));
        }
        let failure = entry.failure.as_ref()?;
        let age = Utc::now().signed_duration_since(failure.at);
        let fresh = age.to_std().is_ok_and(|age| age < FAILURE_RETRY);
        fresh.then(|| Cached::Failed(failure.reason.clone(), failure.advice.clone()))
    }

    /// Remembers a successful handshake.
    pub fn record_ok(&mut self, identity: BinaryIdentity, initialize: InitializeResult) {
        self.insert(Entry {
            identity,
            initialize: Some(initialize),
            failure: None,
        });
    }

    /// Remembers a failed handshake (never as good).
    pub fn record_failure(&mut self, identity: BinaryIdentity, reason: String, advice: String) {
        let failure = Failure {
            reason,
            advice,
            at: Utc::now(),
        };
        self.insert(Entry {
            identity,
            initialize: None,
            failure: Some(failure),
        });
    }

    fn insert(&mut self, entry: Entry) {
        self.doc.plugins.insert(entry.identity.path.clone(), entry);
        self.dirty = true;
    }

    /// Forgets binaries that no longer exist.
    pub fn prune(&mut self) {
        let before = self.doc.plugins.len();
        self.doc.plugins.retain(|path, _| path.exists());
        self.dirty |= self.doc.plugins.len() != before;
    }

    /// Writes the cache if it changed: atomically, mode 0600, in a 0700 directory.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = file.parent() {
            ensure_private_dir(dir)?;
        }
        let mut bytes = serde_json::to_vec_pretty(&self.doc).map_err(io::Error::other)?;
        bytes.push(b'\n');
        atomic_write(file, &bytes, 0o600)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use moat_plugin_sdk::ProviderInfo;

    use super::*;

    fn init(name: &str) -> InitializeResult {
        InitializeResult {
            protocol_version: 1,
            info: ProviderInfo::new(name, "test"),
            agent_commands: vec![],
            endpoints: vec![],
            refresh_interval_secs: None,
            plugin_version: None,
        }
    }

    #[test]
    fn entries_survive_a_round_trip_and_die_with_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("moat-provider-a");
        std::fs::write(&bin, "one").unwrap();
        let file = dir.path().join("cache/plugins.json");

        let mut cache = InfoCache::load(file.clone());
        let id = BinaryIdentity::of(&bin).unwrap();
        assert_eq!(cache.lookup(&id), None);
        cache.record_ok(id.clone(), init("a"));
        cache.save().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let cache = InfoCache::load(file.clone());
        assert_eq!(cache.lookup(&id), Some(Cached::Ok(Box::new(init("a")))));

        std::fs::write(&bin, "two, longer").unwrap();
        let changed = BinaryIdentity::of(&bin).unwrap();
        assert_ne!(changed, id);
        assert_eq!(cache.lookup(&changed), None);
    }

    #[test]
    fn failures_are_remembered_as_failures() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("moat-provider-b");
        std::fs::write(&bin, "x").unwrap();
        let mut cache = InfoCache::load(dir.path().join("c.json"));
        let id = BinaryIdentity::of(&bin).unwrap();
        cache.record_failure(id.clone(), "timed out after 5s".into(), "wait".into());
        assert_eq!(
            cache.lookup(&id),
            Some(Cached::Failed("timed out after 5s".into(), "wait".into()))
        );
        // An old failure is retried.
        let entry = cache.doc.plugins.get_mut(&id.path).unwrap();
        entry.failure.as_mut().unwrap().at = Utc::now() - chrono::Duration::hours(1);
        assert_eq!(cache.lookup(&id), None);
    }

    #[test]
    fn a_corrupt_cache_is_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plugins.json");
        std::fs::write(&file, "{not json").unwrap();
        let mut cache = InfoCache::load(file.clone());
        assert!(cache.doc.plugins.is_empty());
        let bin = dir.path().join("moat-provider-c");
        std::fs::write(&bin, "x").unwrap();
        cache.record_ok(BinaryIdentity::of(&bin).unwrap(), init("c"));
        std::fs::remove_file(&bin).unwrap();
        cache.prune();
        cache.save().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(!text.contains("moat-provider-c"), "{text}");
    }
}
