//! Runs: what `moat run` keeps on disk about each run, and the readers the other commands use.
//!
//! | module | job |
//! | --- | --- |
//! | [`id`] | [`RunId`]: `run_` + 12 hex from the system CSPRNG |
//! | [`name`] | run names: validation, random `adjective-animal` |
//! | [`metadata`] | [`RunMetadata`] (`metadata.json`) and the [`RunState`] machine |
//! | [`store`] | [`RunStore`]: `$MOAT_HOME/runs/<id>/`, create, save, list, resolve, remove |
//! | [`logs`] | `logs.jsonl`: [`LogWriter`] fed with raw output, [`LogReader`] for tail and follow |
//! | [`audit`] | `audit.jsonl`: the hash-chained [`AuditLog`] (one writer) and [`audit::verify`] |
//! | [`network`] | reading the proxy's `network.jsonl` for `moat trace` |
//!
//! The manager that drives a run lives beside these files and uses only their public API.

pub mod audit;
pub mod id;
pub mod logs;
pub mod metadata;
pub mod name;
pub mod network;
pub mod store;

pub use audit::{AuditEntry, AuditError, AuditEvent, AuditLog, Tamper, Verification};
pub use id::RunId;
pub use logs::{LogLine, LogReader, LogWriter, Stream};
pub use metadata::{RunMetadata, RunState, TransitionError};
pub use name::{NameError, random_name, validate_name};
pub use network::{NetworkLog, NetworkRecord};
pub use store::{RunPaths, RunStore, RunStoreError};
