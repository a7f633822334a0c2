//! [`RunStore`]: the runs under `$MOAT_HOME/runs/<run-id>/`.
//!
//! ```text
//! runs/                 0700
//!   run_0123456789ab/   0700, created with the run
//!     metadata.json     0600, pretty JSON, replaced atomically after every change
//!     logs.jsonl        0600, the container's output as it arrives
//!     network.jsonl     0600, the proxy's request log
//!     audit.jsonl       0600, the hash-chained audit log, and audit.head beside it
//! ```
//!
//! A run is named on the command line by its id, an id prefix (`run_01`) or its name, tried in
//! that order ([`RunStore::resolve`]); with no argument, the newest run ([`RunStore::newest`]).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::id::{PREFIX, RunId};
use super::metadata::{RunMetadata, RunState, TransitionError};
use super::name::{NameError, random_name, random_suffix, validate_name};
use crate::home::{MoatHome, atomic_write, ensure_private_dir};

/// The files of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    /// `runs/<id>/`.
    pub dir: PathBuf,
    /// `metadata.json`.
    pub metadata: PathBuf,
    /// `logs.jsonl`.
    pub logs: PathBuf,
    /// `network.jsonl`.
    pub network: PathBuf,
    /// `audit.jsonl`.
    pub audit: PathBuf,
}

/// What went wrong with the run store.
#[derive(Debug, thiserror::Error)]
pub enum RunStoreError {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// `metadata.json` is not valid.
    #[error("{} is not valid run metadata: {source}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// No run matches the argument.
    #[error("no run matches {arg:?} (an id, an id prefix starting with {PREFIX:?}, or a name)")]
    NotFound {
        /// What was asked for.
        arg: String,
    },
    /// There are no runs at all.
    #[error("there are no runs yet")]
    NoRuns,
    /// Several runs match the argument (newest first).
    #[error("{} runs match {arg:?}: {}", matches.len(), summary(matches))]
    Ambiguous {
        /// What was asked for.
        arg: String,
        /// The runs it matches, newest first.
        matches: Vec<RunMetadata>,
    },
    /// A run with this id already has a directory.
    #[error("run {0} already exists")]
    Exists(RunId),
    /// A run of that name has not ended.
    #[error("a run named {name:?} is still {state} ({id})")]
    NameInUse {
        /// The name.
        name: String,
        /// The run holding it.
        id: RunId,
        /// Its state.
        state: RunState,
    },
    /// A bad name.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An illegal state change.
    #[error(transparent)]
    Transition(#[from] TransitionError),
}

fn summary(runs: &[RunMetadata]) -> String {
    runs.iter()
        .map(|r| format!("{} ({})", r.id, r.name))
        .collect::<Vec<_>>()
        .join(", ")
}

impl RunStoreError {
    /// What to run next, for the CLI.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunStoreError::NotFound { .. } => Some("Run 'moat list' to see the runs.".into()),
            RunStoreError::NoRuns => Some("Start one with 'moat run -- <command>'.".into()),
            RunStoreError::Ambiguous { matches, .. } => matches.first().map(|newest| {
                format!(
                    "Name one by its id, e.g. '{}' (the newest); 'moat list' shows them all.",
                    newest.id
                )
            }),
            RunStoreError::NameInUse { id, .. } => Some(format!(
                "Stop it with 'moat stop {id}', or choose another name with --name."
            )),
            RunStoreError::Corrupt { path, .. } => Some(format!(
                "Remove {} to forget that run.",
                path.parent().unwrap_or(path).display()
            )),
            _ => None,
        }
    }

    /// The run asked for is not there (or there are none).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RunStoreError::NotFound { .. } | RunStoreError::NoRuns)
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RunStoreError + '_ {
    move |source| RunStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The runs under a moat home.
#[derive(Debug, Clone)]
pub struct RunStore {
    root: PathBuf,
}

impl RunStore {
    /// The runs of `home` (`<home>/runs`). Nothing is created until a run is.
    pub fn new(home: &MoatHome) -> RunStore {
        RunStore {
            root: home.root().join("runs"),
        }
    }

    /// `<home>/runs`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files of run `id` (whether or not they exist).
    pub fn paths(&self, id: &RunId) -> RunPaths {
        let dir = self.root.join(id.as_str());
        RunPaths {
            metadata: dir.join("metadata.json"),
            logs: dir.join("logs.jsonl"),
            network: dir.join("network.jsonl"),
            audit: dir.join("audit.jsonl"),
            dir,
        }
    }

    /// The name for a new run: `explicit` (`--name`), else `configured` (`moat.yaml`), else a
    /// random `adjective-animal` that no stored run has (a `-<4 hex>` suffix after 3 tries). A
    /// given name is refused while a run of that name has not ended.
    pub fn pick_name(
        &self,
        explicit: Option<&str>,
        configured: Option<&str>,
    ) -> Result<String, RunStoreError> {
        let runs = self.list()?;
        if let Some(name) = explicit.or(configured) {
            validate_name(name)?;
            if let Some(live) = runs
                .iter()
                .find(|r| r.name == name && !r.state().is_ended())
            {
                return Err(RunStoreError::NameInUse {
                    name: name.to_owned(),
                    id: live.id.clone(),
                    state: live.state(),
                });
            }
            return Ok(name.to_owned());
        }
        let taken = |name: &str| runs.iter().any(|r| r.name == name);
        let mut name = random_name();
        for _ in 0..2 {
            if !taken(&name) {
                return Ok(name);
            }
            name = random_name();
        }
        while taken(&name) {
            name = format!("{}-{}", random_name(), random_suffix());
        }
        Ok(name)
    }

    /// Creates the run's directory (`0700`; an existing one is an error) and saves `meta` in it.
    /// Returns its paths. On failure nothing is left behind.
    pub fn create(&self, meta: &RunMetadata) -> Result<RunPaths, RunStoreError> {
        ensure_private_dir(&self.root).map_err(io_err(&self.root))?;
        let paths = self.paths(&meta.id);
        match fs::create_dir(&paths.dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RunStoreError::Exists(meta.id.clone()));
            }
            Err(err) => return Err(io_err(&paths.dir)(err)),
        }
        let result = ensure_private_dir(&paths.dir)
            .map_err(io_err(&paths.dir))
            .and_then(|()| self.save(meta));
        if let Err(err) = result {
            let _ = fs::remove_dir_all(&paths.dir);
            return Err(err);
        }
        Ok(paths)
    }

    /// Replaces the run's `metadata.json` (pretty JSON, `0600`, atomic).
    pub fn save(&self, meta: &RunMetadata) -> Result<(), RunStoreError> {
        let path = self.paths(&meta.id).metadata;
        let mut json = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        json.push(b'\n');
        atomic_write(&path, &json, 0o600).map_err(io_err(&path))
    }

    /// [`RunMetadata::transition`] then [`save`](Self::save): every state change is on disk.
    pub fn set_state(&self, meta: &mut RunMetadata, to: RunState) -> Result<(), RunStoreError> {
        meta.transition(to)?;
        self.save(meta)
    }

    /// [`RunMetadata::fail`] then [`save`](Self::save).
    pub fn fail(
        &self,
        meta: &mut RunMetadata,
        error: impl Into<String>,
    ) -> Result<(), RunStoreError> {
        meta.fail(error)?;
        self.save(meta)
    }

    /// Reads run `id`'s metadata.
    pub fn load(&self, id: &RunId) -> Result<RunMetadata, RunStoreError> {
        let path = self.paths(id).metadata;
        let bytes = fs::read(&path).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                RunStoreError::NotFound {
                    arg: id.to_string(),
                }
            } else {
                io_err(&path)(err)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|source| RunStoreError::Corrupt { path, source })
    }

    /// Every run, newest first (by `created_at`, then id). A directory whose metadata cannot be
    /// read is skipped with a warning, so one damaged run does not hide the others.
    pub fn list(&self) -> Result<Vec<RunMetadata>, RunStoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err(&self.root)(err)),
        };
        let mut runs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&self.root))?;
            let Some(id) = entry.file_name().to_str().and_then(RunId::parse) else {
                continue;
            };
            match self.load(&id) {
                Ok(meta) => runs.push(meta),
                Err(err) => tracing::warn!(run = %id, %err, "skipping a run that cannot be read"),
            }
        }
        runs.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(runs)
    }

    /// The newest run.
    pub fn newest(&self) -> Result<RunMetadata, RunStoreError> {
        self.list()?.into_iter().next().ok_or(RunStoreError::NoRuns)
    }

    /// The run `arg` names: an exact id, else an id prefix (`run_…`), else an exact name. Several
    /// matches are an error listing them, newest first.
    pub fn resolve(&self, arg: &str) -> Result<RunMetadata, RunStoreError> {
        if let Some(id) = RunId::parse(arg)
            && self.paths(&id).dir.is_dir()
        {
            return self.load(&id);
        }
        let runs = self.list()?;
        let matches: Vec<RunMetadata> = if arg.starts_with(PREFIX) {
            runs.into_iter()
                .filter(|r| r.id.as_str().starts_with(arg))
                .collect()
        } else {
            runs.into_iter().filter(|r| r.name == arg).collect()
        };
        match matches.len() {
            0 => Err(RunStoreError::NotFound {
                arg: arg.to_owned(),
            }),
            1 => Ok(matches.into_iter().next().expect("one match")),
            _ => Err(RunStoreError::Ambiguous {
                arg: arg.to_owned(),
                matches,
            }),
        }
    }

    /// [`resolve`](Self::resolve) `arg`, or the [`newest`](Self::newest) run without one.
    pub fn resolve_or_newest(&self, arg: Option<&str>) -> Result<RunMetadata, RunStoreError> {
        match arg {
            Some(arg) => self.resolve(arg),
            None => self.newest(),
        }
    }

    /// Deletes run `id`'s directory and everything in it.
    pub fn remove(&self, id: &RunId) -> Result<(), RunStoreError> {
        let dir = self.paths(id).dir;
        fs::remove_dir_all(&dir).map_err(|err| {
            if err.kind() == io::ErrorKind::NotFound {
                RunStoreError::NotFound {
                    arg: id.to_string(),
                }
            } else {
                io_err(&dir)(err)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Utc};

    fn store() -> (tempfile::TempDir, RunStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = RunStore::new(&MoatHome::at(dir.path()));
        (dir, store)
    }

    /// A run `age_minutes` old.
    fn add(store: &RunStore, id: &str, name: &str, age_minutes: i64) -> RunMetadata {
        let mut meta = RunMetadata::new(RunId::parse(id).unwrap(), name, "/w");
        meta.created_at = Utc::now() - Duration::minutes(age_minutes);
        store.create(&meta).unwrap();
        meta
    }

    #[cfg(unix)]
    use crate::home::mode_of as mode;

    #[test]
    fn create_save_load_with_private_modes() {
        let (_dir, store) = store();
        let mut meta = add(&store, "run_000000000001", "a", 0);
        let paths = store.paths(&meta.id);
        #[cfg(unix)]
        {
            assert_eq!(mode(store.root()), 0o700);
            assert_eq!(mode(&paths.dir), 0o700);
            assert_eq!(mode(&paths.metadata), 0o600);
        }
        let text = fs::read_to_string(&paths.metadata).unwrap();
        assert!(text.starts_with("{\n  \""), "pretty JSON: {text}");
        assert_eq!(store.load(&meta.id).unwrap(), meta);

        store.set_state(&mut meta, RunState::Starting).unwrap();
        assert_eq!(store.load(&meta.id).unwrap().state(), RunState::Starting);
        assert!(matches!(
            store.set_state(&mut meta, RunState::Stopped),
            Err(RunStoreError::Transition(_))
        ));
        store.fail(&mut meta, "boom").unwrap();
        let back = store.load(&meta.id).unwrap();
        assert_eq!(
            (back.state(), back.error.as_deref()),
            (RunState::Failed, Some("boom"))
        );

        assert!(matches!(store.create(&meta), Err(RunStoreError::Exists(_))));
        store.remove(&meta.id).unwrap();
        assert!(!paths.dir.exists());
        assert!(store.remove(&meta.id).unwrap_err().is_not_found());
        assert!(store.load(&meta.id).unwrap_err().is_not_found());
    }

    #[test]
    fn list_is_newest_first_and_skips_damaged_runs() {
        let (_dir, store) = store();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.newest(), Err(RunStoreError::NoRuns)));
        add(&store, "run_00000000000a", "old", 30);
        add(&store, "run_00000000000b", "new", 1);
        add(&store, "run_00000000000c", "mid", 10);
        let damaged = store.root().join("run_00000000000d");
        fs::create_dir(&damaged).unwrap();
        fs::write(damaged.join("metadata.json"), "{").unwrap();
        fs::create_dir(store.root().join("not-a-run")).unwrap();
        let names: Vec<String> = store.list().unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["new", "mid", "old"]);
        assert_eq!(store.newest().unwrap().name, "new");
        let err = store.resolve("run_00000000000d").unwrap_err();
        assert!(matches!(err, RunStoreError::Corrupt { .. }), "{err}");
        assert!(err.hint().unwrap().contains("run_00000000000d"));
    }

    #[test]
    fn resolve_by_id_then_prefix_then_name() {
        let (_dir, store) = store();
        add(&store, "run_aaaa00000001", "alpha", 20);
        add(&store, "run_aaaa00000002", "beta", 10);
        add(&store, "run_bbbb00000003", "beta", 5);
        // A name that is another run's id is never matched as a name: names cannot be ids.
        let by = |arg: &str| store.resolve(arg).map(|r| r.id.to_string());
        assert_eq!(by("run_aaaa00000001").unwrap(), "run_aaaa00000001");
        assert_eq!(by("run_b").unwrap(), "run_bbbb00000003");
        assert_eq!(by("alpha").unwrap(), "run_aaaa00000001");
        assert_eq!(by("run_aaaa00000001").unwrap(), "run_aaaa00000001");

        match store.resolve("run_aaaa") {
            Err(RunStoreError::Ambiguous { matches, .. }) => {
                let ids: Vec<&str> = matches.iter().map(|r| r.id.as_str()).collect();
                assert_eq!(ids, ["run_aaaa00000002", "run_aaaa00000001"]);
            }
            other => panic!("{other:?}"),
        }
        let err = store.resolve("beta").unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 runs match \"beta\": run_bbbb00000003 (beta), run_aaaa00000002 (beta)"
        );
        assert!(err.hint().unwrap().contains("run_bbbb00000003"));
        for missing in ["gamma", "run_c", "run_cccc00000000"] {
            let err = store.resolve(missing).unwrap_err();
            assert!(err.is_not_found(), "{missing}: {err}");
            assert!(err.hint().unwrap().contains("moat list"));
        }
        assert_eq!(
            store.resolve_or_newest(None).unwrap().id.as_str(),
            "run_bbbb00000003"
        );
        assert_eq!(
            store.resolve_or_newest(Some("alpha")).unwrap().name,
            "alpha"
        );
    }

    #[test]
    fn pick_name_prefers_flag_then_config_then_random() {
        let (_dir, store) = store();
        assert_eq!(store.pick_name(Some("flag"), Some("cfg")).unwrap(), "flag");
        assert_eq!(store.pick_name(None, Some("cfg")).unwrap(), "cfg");
        let random = store.pick_name(None, None).unwrap();
        validate_name(&random).unwrap();
        assert!(matches!(
            store.pick_name(Some("run_x"), None),
            Err(RunStoreError::Name(_))
        ));

        // A live run holds its name; an ended one does not.
        let mut live = add(&store, "run_000000000001", "busy", 1);
        let err = store.pick_name(Some("busy"), None).unwrap_err();
        assert!(matches!(err, RunStoreError::NameInUse { .. }), "{err}");
        assert!(err.hint().unwrap().contains("moat stop run_000000000001"));
        store.fail(&mut live, "x").unwrap();
        assert_eq!(store.pick_name(Some("busy"), None).unwrap(), "busy");
    }
}
