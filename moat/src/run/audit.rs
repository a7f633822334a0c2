//! `audit.jsonl`: a run's hash-chained audit log, with one writer.
//!
//! One JSON object per line:
//!
//! ```json
//! {"seq":1,"ts":"2026-11-29T12:00:00.123456789Z","type":"credential","prev_hash":"",
//!  "data":{"grant":"github","provider":"github","source":"store"},"hash":"3f…"}
//! ```
//!
//! `hash` is the hex SHA-256 of `seq` (u64 big-endian) ‖ `ts` ‖ `type` ‖ `prev_hash` ‖ `data`
//! exactly as stored in the line; `prev_hash` is the previous entry's hash (`""` for the first);
//! `seq` counts from 1 with no gap. [`verify`] recomputes all of it, so an edited entry, a
//! removed, moved or duplicated line, and a torn last line are found, with the first bad `seq`.
//!
//! A chain alone cannot show that its *last* entries were cut off. So the writer also keeps
//! `audit.head` beside the log (`{"seq":N,"hash":"…"}`, replaced atomically after each append),
//! and [`verify`] checks that the log reaches it. Someone able to rewrite both files and
//! recompute every hash is not stopped by this: that needs a signature or an outside witness.
//!
//! **One writer.** [`AuditLog`] owns the file: it holds an exclusive `flock` on it for its whole
//! life (a second opener, in this process or another, gets [`AuditError::Busy`]), appends are
//! serialized by a mutex, and opening an existing log verifies it first and continues its chain.
//!
//! **Durability.** Every append is one `write` of the whole line followed by `fdatasync`, then the
//! head is replaced (temp file, fsync, rename). Entries are few (one per grant, the container,
//! each policy denial, the exit), and an audit entry that a crash could lose after `append`
//! returned would defeat the log's purpose; an append costs a few milliseconds, so call it off
//! any latency-sensitive path (e.g. `spawn_blocking`).

#![cfg_attr(
    unix,
    expect(unsafe_code, reason = "flock(2): one writer appends at a time")
)]

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

use crate::home::{atomic_write, open_private_append};

/// What the manager records. Never a credential: grant and provider names, where a credential
/// came from, ids, hosts and paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AuditEvent {
    /// `credential`: a grant handed to the run's proxy.
    Credential {
        /// The grant name.
        grant: String,
        /// The provider that serves it.
        provider: String,
        /// Where the credential came from (`store`, a plugin path, …).
        source: String,
    },
    /// `container`: something happened to the run's container (`action`: `created`, …).
    Container {
        /// `created`, `started`, `stopped`, `removed`.
        action: String,
        /// The container id.
        id: String,
        /// Its image.
        image: String,
    },
    /// `policy`: the proxy refused a request.
    Policy {
        /// The host asked for.
        host: String,
        /// The method.
        method: String,
        /// The path.
        path: String,
        /// Why (the rule or policy).
        reason: String,
    },
    /// `exec`: the command and how it ended.
    Exec {
        /// The command.
        command: Vec<String>,
        /// Its exit code, when it exited.
        exit_code: Option<i64>,
    },
}

impl AuditEvent {
    /// The entry's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuditEvent::Credential { .. } => "credential",
            AuditEvent::Container { .. } => "container",
            AuditEvent::Policy { .. } => "policy",
            AuditEvent::Exec { .. } => "exec",
        }
    }
}

/// One entry, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// 1, 2, 3, …
    pub seq: u64,
    /// RFC 3339 UTC with nanoseconds.
    pub ts: String,
    /// `credential`, `container`, `policy`, `exec`.
    pub kind: String,
    /// The previous entry's hash, `""` for the first.
    pub prev_hash: String,
    /// The data object's JSON text, exactly as stored.
    pub data: String,
    /// Hex SHA-256, see [`entry_hash`].
    pub hash: String,
}

impl AuditEntry {
    /// The data as a JSON value.
    pub fn data_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }

    /// The entry's time, if it parses.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.ts)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// One line for people: `github via github (store)`, `created 4f2a… (debian:bookworm-slim)`,
    /// `denied GET example.com/x: not allowed`, `ls -l exited 0`.
    pub fn summary(&self) -> String {
        let data = self.data_value();
        let s = |key: &str| {
            data.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_owned()
        };
        match self.kind.as_str() {
            "credential" => format!("{} via {} ({})", s("grant"), s("provider"), s("source")),
            "container" => format!("{} {} ({})", s("action"), s("id"), s("image")),
            "policy" => format!(
                "denied {} {}{}: {}",
                s("method"),
                s("host"),
                s("path"),
                s("reason")
            ),
            "exec" => {
                let command: Vec<&str> = data
                    .get("command")
                    .and_then(|c| c.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                    .unwrap_or_default();
                match data.get("exit_code").and_then(|c| c.as_i64()) {
                    Some(code) => format!("{} exited {code}", command.join(" ")),
                    None => format!("{} (no exit code)", command.join(" ")),
                }
            }
            _ => self.data.clone(),
        }
    }

    fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("an entry serializes");
        line.push('\n');
        line
    }
}

impl Serialize for AuditEntry {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let data = RawValue::from_string(self.data.clone()).map_err(serde::ser::Error::custom)?;
        Stored {
            seq: self.seq,
            ts: self.ts.clone(),
            kind: self.kind.clone(),
            prev_hash: self.prev_hash.clone(),
            data,
            hash: self.hash.clone(),
        }
        .serialize(serializer)
    }
}

/// A line of the file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    seq: u64,
    ts: String,
    #[serde(rename = "type")]
    kind: String,
    prev_hash: String,
    data: Box<RawValue>,
    hash: String,
}

/// `audit.head`: the last entry the writer appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The hex SHA-256 of `seq` (u64 big-endian) ‖ `ts` ‖ `kind` ‖ `prev_hash` ‖ `data`.
pub fn entry_hash(seq: u64, ts: &str, kind: &str, prev_hash: &str, data: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(seq.to_be_bytes());
    hasher.update(ts.as_bytes());
    hasher.update(kind.as_bytes());
    hasher.update(prev_hash.as_bytes());
    hasher.update(data.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The head file of the log at `path`: `audit.head` beside `audit.jsonl`.
pub fn head_path(path: &Path) -> PathBuf {
    path.with_extension("head")
}

/// What went wrong with an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading or writing failed.
    #[error("audit log {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another writer holds the log.
    #[error("audit log {} is already open for writing (by this or another moat process)", path.display())]
    Busy {
        /// The file.
        path: PathBuf,
    },
    /// The existing log does not verify, so it is not continued.
    #[error("audit log {} does not verify: {tamper}", path.display())]
    Tampered {
        /// The file.
        path: PathBuf,
        /// The first problem.
        tamper: Tamper,
    },
}

/// The first problem [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{what} (seq {seq})")]
pub struct Tamper {
    /// The first entry that is wrong or missing.
    pub seq: u64,
    /// What is wrong.
    pub what: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Every line that parses as an entry, in file order (for display, even after a problem).
    pub entries: Vec<AuditEntry>,
    /// The first problem; `None` when the chain is intact.
    pub tamper: Option<Tamper>,
}

/// Checks the log at `path` (and its head): every hash recomputed, every `prev_hash` link, `seq`
/// from 1 without gaps, no torn last line, and the head reached. An absent log is an I/O error
/// (`NotFound`).
pub fn verify(path: &Path) -> io::Result<Verification> {
    let bytes = fs::read(path)?;
    let mut entries = Vec::new();
    let mut tamper: Option<Tamper> = None;
    let mut flag = |seq: u64, what: String| {
        if tamper.is_none() {
            tamper = Some(Tamper { seq, what });
        }
    };
    let mut prev_hash = String::new();
    let mut expected = 1u64;
    let mut parts: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let torn = parts.pop().filter(|last| !last.is_empty());
    for (index, raw) in parts.iter().enumerate() {
        let line_no = index + 1;
        let stored: Stored = match serde_json::from_slice(raw) {
            Ok(stored) => stored,
            Err(_) => {
                flag(
                    expected,
                    format!("line {line_no} is not a valid audit entry"),
                );
                expected += 1;
                continue;
            }
        };
        let entry = AuditEntry {
            seq: stored.seq,
            ts: stored.ts,
            kind: stored.kind,
            prev_hash: stored.prev_hash,
            data: stored.data.get().to_owned(),
            hash: stored.hash,
        };
        if entry.seq != expected {
            flag(
                expected,
                format!(
                    "line {line_no} holds entry {} where entry {expected} belongs (an entry was \
                     removed, moved or repeated)",
                    entry.seq
                ),
            );
        } else if entry.prev_hash != prev_hash {
            flag(
                entry.seq,
                format!(
                    "entry {}'s prev_hash is not the hash of the entry before it",
                    entry.seq
                ),
            );
        } else if !entry.data.starts_with('{') {
            flag(
                entry.seq,
                format!("entry {}'s data is not an object", entry.seq),
            );
        } else if entry_hash(
            entry.seq,
            &entry.ts,
            &entry.kind,
            &entry.prev_hash,
            &entry.data,
        ) != entry.hash
        {
            flag(
                entry.seq,
                format!(
                    "entry {} was changed: its hash does not match its content",
                    entry.seq
                ),
            );
        }
        prev_hash = entry.hash.clone();
        expected += 1;
        entries.push(entry);
    }
    let last = expected - 1;
    if torn.is_some() {
        flag(
            expected,
            format!("the last line is incomplete (the log was cut after entry {last})"),
        );
    }
    match read_head(path)? {
        Some(Err(())) => flag(
            last + 1,
            format!("{} is not valid", head_path(path).display()),
        ),
        None if last > 0 => flag(
            last + 1,
            format!("{} is missing", head_path(path).display()),
        ),
        None => {}
        Some(Ok(head)) if head.seq > last => flag(
            last + 1,
            format!(
                "the log ends at entry {last} but its head says {}: entries were removed from \
                 the end",
                head.seq
            ),
        ),
        // A crash between an append and the head's update leaves the head one entry behind.
        Some(Ok(head)) if head.seq + 1 < last => flag(
            head.seq + 1,
            format!("entries after {} were added without the writer", head.seq),
        ),
        Some(Ok(head)) => {
            let at = match head.seq {
                0 => String::new(),
                seq => entries
                    .get(seq as usize - 1)
                    .map(|e| e.hash.clone())
                    .unwrap_or_default(),
            };
            if at != head.hash {
                flag(
                    head.seq.max(1),
                    format!("the head does not match entry {}", head.seq),
                );
            }
        }
    }
    Ok(Verification { entries, tamper })
}

/// The head: `None` when there is none, `Some(Err(()))` when it does not parse.
fn read_head(path: &Path) -> io::Result<Option<Result<Head, ()>>> {
    match fs::read(head_path(path)) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|_| ()))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// The writer of one run's audit log. `Send + Sync`: share it behind an `Arc`.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Opens the log at `path` for appending: creates it (`0600`) with an empty head, or verifies
    /// an existing one and continues its chain. Holds an exclusive lock on it until dropped.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = open_private_append(path).map_err(io)?;
        lock_exclusive(&file).map_err(|err| {
            if err.kind() == io::ErrorKind::WouldBlock {
                AuditError::Busy {
                    path: path.to_path_buf(),
                }
            } else {
                io(err)
            }
        })?;
        // An empty log is verified too: its head may say entries were there.
        let verification = verify(path).map_err(io)?;
        if let Some(tamper) = verification.tamper {
            return Err(AuditError::Tampered {
                path: path.to_path_buf(),
                tamper,
            });
        }
        let (seq, last_hash) = match verification.entries.last() {
            Some(last) => (last.seq, last.hash.clone()),
            None => {
                write_head(path, 0, "").map_err(io)?;
                (0, String::new())
            }
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                seq,
                last_hash,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many entries the log has.
    pub fn len(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).seq
    }

    /// Whether the log has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `event`, durably (see the module's notes), and returns the entry written.
    pub fn append(&self, event: &AuditEvent) -> Result<AuditEntry, AuditError> {
        let data = serde_json::to_string(event).expect("an event serializes");
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let seq = inner.seq + 1;
        let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let kind = event.kind().to_owned();
        let hash = entry_hash(seq, &ts, &kind, &inner.last_hash, &data);
        let entry = AuditEntry {
            seq,
            ts,
            kind,
            prev_hash: inner.last_hash.clone(),
            data,
            hash,
        };
        let io = |source| AuditError::Io {
            path: self.path.clone(),
            source,
        };
        inner
            .file
            .write_all(entry.to_line().as_bytes())
            .and_then(|()| inner.file.sync_data())
            .map_err(io)?;
        inner.seq = seq;
        inner.last_hash = entry.hash.clone();
        write_head(&self.path, seq, &entry.hash).map_err(io)?;
        Ok(entry)
    }
}

fn write_head(path: &Path, seq: u64, hash: &str) -> io::Result<()> {
    let head = serde_json::to_vec(&Head {
        seq,
        hash: hash.to_owned(),
    })
    .expect("a head serializes");
    atomic_write(&head_path(path), &head, 0o600)
}

#[cfg(unix)]
fn lock_exclusive(file: &File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd as _;
    // SAFETY: flock on a descriptor we own; no memory is passed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn lock_exclusive(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests;
