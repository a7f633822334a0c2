//! Runs: what `moat run` keeps on disk about each run, and the readers the other commands use.
//!
//! | module | job |
//! | --- | --- |
//! | `id` | [`RunId`]: `run_` + 12 hex from the system CSPRNG |
//! | `name` | run names: validation, random `adjective-animal` |
//! | `metadata` | [`RunMetadata`] (`metadata.json`) and the [`RunState`] machine |
//! | `store` | [`RunStore`]: `$MOAT_HOME/runs/<id>/`, create, save, list, resolve, remove |
//! | `logs` | `logs.jsonl`: [`LogWriter`] fed with raw output, [`LogReader`] for tail and follow |
//! | [`audit`] | `audit.jsonl`: the hash-chained [`AuditLog`] (one writer) and [`audit::verify`] |
//! | [`network`] | reading the proxy's `network.jsonl` for `moat trace` |
//! | [`manager`] | the manager: one run from its grants to its exit code, and everything given back |
//! | `container_env` | the container's environment: proxy, CA, placeholders, the user's variables |
//! | `endpoint` | a granted provider's endpoints, answered through the proxy for the run's container |
//! | `proxy_host` | where the run's proxy lives (in this process today; a daemon later) |
//! | `refresh` | renewing credentials before they expire, swapping the run's rules in place |
//! | `terminal` | `moat run -i` on a terminal: raw mode, its size, stdin read without blocking exit |
//!
//! The manager uses only the public API of the storage modules. A run's life on disk, in the
//! order the manager goes through it:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! use moat::home::MoatHome;
//! use moat::run::{AuditEvent, AuditLog, LogWriter, RunId, RunMetadata, RunState, RunStore, Stream};
//!
//! let store = RunStore::new(&MoatHome::at(tmp.path()));
//! let name = store.pick_name(None, Some("my-agent"))?; // --name, then moat.yaml, then random
//! let mut meta = RunMetadata::new(RunId::generate(), name, "/path/to/workspace");
//! meta.command = vec!["curl".into(), "-s".into(), "https://api.github.com/user".into()];
//! meta.grants = vec!["github".into()];
//! let paths = store.create(&meta)?; // runs/<id>/ (0700) and metadata.json
//! let audit = AuditLog::open(&paths.audit)?; // the one writer of audit.jsonl
//! audit.append(&AuditEvent::Credential {
//!     grant: "github".into(),
//!     provider: "github".into(),
//!     source: "store".into(),
//! })?;
//! store.set_state(&mut meta, RunState::Starting)?; // every change saved at once
//! meta.container_id = Some("4f2a…".into());
//! store.set_state(&mut meta, RunState::Running)?;
//!
//! let mut logs = LogWriter::open(&paths.logs)?;
//! logs.write(Stream::Stdout, b"{\"login\":")?; // chunks as the runtime hands them over
//! logs.write(Stream::Stdout, b"\"octocat\"}\n")?;
//! logs.close()?; // flushes a partial last line
//!
//! meta.exit_code = Some(0);
//! audit.append(&AuditEvent::Exec { command: meta.command.clone(), exit_code: Some(0) })?;
//! store.set_state(&mut meta, RunState::Stopped)?;
//! assert_eq!(store.resolve("my-agent")?.state(), RunState::Stopped);
//! assert!(moat::run::audit::verify(&paths.audit)?.tamper.is_none());
//! # Ok(()) }
//! ```

pub mod audit;
pub(crate) mod container_env;
pub(crate) mod endpoint;
pub(crate) mod id;
pub(crate) mod logs;
pub mod manager;
pub(crate) mod metadata;
pub(crate) mod name;
pub mod network;
pub(crate) mod proxy_host;
pub(crate) mod refresh;
pub(crate) mod store;
pub(crate) mod terminal;

pub use audit::{AuditEntry, AuditError, AuditEvent, AuditLog, Tamper, Verification};
pub use endpoint::ProviderEndpoint;
pub use id::RunId;
pub use logs::{LogLine, LogReader, LogWriter, Stream};
pub use metadata::{RunMetadata, RunState, TransitionError};
pub use name::{NameError, random_name, validate_name};
pub use network::{NetworkLog, NetworkRecord};
pub use store::{RunPaths, RunStore, RunStoreError};
