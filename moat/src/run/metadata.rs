//! [`RunMetadata`]: what `metadata.json` says about a run, and the [`RunState`] machine.
//!
//! ```text
//! created → starting → running → stopping → stopped
//!    │          │         │  └──────────────→ stopped   (the command exited by itself)
//!    │          └─────────┼────→ stopping             (cancelled while starting)
//!    └────────────────────┼────→ stopping             (cancelled before starting)
//!  any state but stopped ─┴────→ failed               (terminal)
//! ```
//!
//! The state changes only through [`RunMetadata::transition`], which refuses an illegal step and
//! stamps `started_at` (entering `running`) and `stopped_at` (entering `stopped` or `failed`).
//! Nothing secret belongs here: grant *names*, never tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::id::RunId;
use crate::proxy::NetworkPolicy;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// The directory and metadata exist; nothing started.
    Created,
    /// Image, network, proxy registration and container being set up.
    Starting,
    /// The command runs.
    Running,
    /// Being stopped (Ctrl-C, `moat stop`).
    Stopping,
    /// Ended: the command exited or was stopped (see `exit_code`).
    Stopped,
    /// Ended by an error (see `error`). Terminal.
    Failed,
}

impl RunState {
    /// The lowercase name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::Starting => "starting",
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Stopped => "stopped",
            RunState::Failed => "failed",
        }
    }

    /// `stopped` or `failed`: nothing will happen to the run any more.
    pub fn is_ended(self) -> bool {
        matches!(self, RunState::Stopped | RunState::Failed)
    }

    /// Whether `self → to` is a legal step.
    pub fn can_become(self, to: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, to),
            (Created, Starting | Stopping)
                | (Starting, Running | Stopping)
                | (Running, Stopping | Stopped)
                | (Stopping, Stopped)
                | (Created | Starting | Running | Stopping, Failed)
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An illegal state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a run cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The state it was in.
    pub from: RunState,
    /// The state asked for.
    pub to: RunState,
}

/// `metadata.json`. Build one with [`RunMetadata::new`], then fill in what is known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetadata {
    /// The run's name (`--name`, `moat.yaml`, or random).
    pub name: String,
    /// The run's id.
    pub id: RunId,
    /// The workspace on the host (mounted at `/workspace`).
    pub workspace: PathBuf,
    /// The command run in the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Grant names (never credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
    /// The image the container runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The container, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// The run's network policy.
    #[serde(default)]
    pub network: NetworkPolicy,
    state: RunState,
    /// A terminal is attached.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    /// The agent command the run is (`moat <agent>`), when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// When the run was created.
    pub created_at: DateTime<Utc>,
    /// When it entered `running`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it entered `stopped` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    /// The command's exit code, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// What went wrong, for `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `moat run` process that owns the run (its proxy and its cleanup), so that `moat stop`
    /// can tell a live run from one whose process died.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_pid: Option<u32>,
    /// What providers' `run_stopped` hooks returned (e.g. a session id). Never a credential.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_meta: BTreeMap<String, String>,
}

impl RunMetadata {
    /// A run in state `created`, created now.
    pub fn new(id: RunId, name: impl Into<String>, workspace: impl Into<PathBuf>) -> RunMetadata {
        RunMetadata {
            name: name.into(),
            id,
            workspace: workspace.into(),
            command: Vec::new(),
            grants: Vec::new(),
            image: None,
            container_id: None,
            network: NetworkPolicy::default(),
            state: RunState::Created,
            interactive: false,
            agent: None,
            created_at: Utc::now(),
            started_at: None,
            stopped_at: None,
            exit_code: None,
            error: None,
            owner_pid: None,
            provider_meta: BTreeMap::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// Moves to `to` if that is a legal step, stamping `started_at` on entering `running` and
    /// `stopped_at` on entering `stopped` or `failed`. Does not save: [`super::RunStore::set_state`]
    /// does both.
    pub fn transition(&mut self, to: RunState) -> Result<(), TransitionError> {
        if !self.state.can_become(to) {
            return Err(TransitionError {
                from: self.state,
                to,
            });
        }
        let now = Utc::now();
        match to {
            RunState::Running => self.started_at = Some(now),
            RunState::Stopped | RunState::Failed => self.stopped_at = Some(now),
            _ => {}
        }
        self.state = to;
        Ok(())
    }

    /// Moves to `failed` with `error`, from any state that has not ended.
    pub fn fail(&mut self, error: impl Into<String>) -> Result<(), TransitionError> {
        self.transition(RunState::Failed)?;
        self.error = Some(error.into());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;

    const ALL: [RunState; 6] = [Created, Starting, Running, Stopping, Stopped, Failed];

    #[test]
    fn legal_transitions_are_exactly_these() {
        let legal = [
            (Created, Starting),
            (Created, Stopping),
            (Created, Failed),
            (Starting, Running),
            (Starting, Stopping),
            (Starting, Failed),
            (Running, Stopping),
            (Running, Stopped),
            (Running, Failed),
            (Stopping, Stopped),
            (Stopping, Failed),
        ];
        for from in ALL {
            for to in ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
        for state in ALL {
            assert_eq!(state.is_ended(), matches!(state, Stopped | Failed));
        }
    }

    #[test]
    fn transition_stamps_times_and_refuses_illegal_steps() {
        let mut meta = RunMetadata::new(RunId::generate(), "n", "/w");
        assert_eq!(meta.state(), Created);
        assert_eq!(
            meta.transition(Running),
            Err(TransitionError {
                from: Created,
                to: Running
            })
        );
        meta.transition(Starting).unwrap();
        assert!(meta.started_at.is_none());
        meta.transition(Running).unwrap();
        assert!(meta.started_at.is_some() && meta.stopped_at.is_none());
        meta.transition(Stopped).unwrap();
        assert!(meta.stopped_at.is_some());
        assert_eq!(meta.fail("late").unwrap_err().from, Stopped);
        assert_eq!(meta.error, None);

        let mut meta = RunMetadata::new(RunId::generate(), "n", "/w");
        meta.fail("image missing").unwrap();
        assert_eq!(
            (meta.state(), meta.error.as_deref()),
            (Failed, Some("image missing"))
        );
        assert!(meta.stopped_at.is_some());
        assert_eq!(
            TransitionError {
                from: Failed,
                to: Running
            }
            .to_string(),
            "a run cannot go from failed to running"
        );
    }

    #[test]
    fn json_omits_empty_fields_and_round_trips() {
        let mut meta = RunMetadata::new(RunId::parse("run_0123456789ab").unwrap(), "n", "/w");
        let json = serde_json::to_value(&meta).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["created_at", "id", "name", "network", "state", "workspace"]
        );
        assert_eq!(json["state"], "created");
        meta.command = vec!["true".into()];
        meta.exit_code = Some(3);
        meta.provider_meta.insert("session".into(), "abc".into());
        let back: RunMetadata =
            serde_json::from_value(serde_json::to_value(&meta).unwrap()).unwrap();
        assert_eq!(back, meta);
    }
}
