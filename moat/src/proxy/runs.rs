//! The runs the proxy serves, each behind its own random token.
//!
//! A run registers its grants' [`ProxyRules`], its [`NetworkPolicy`] and where its request log
//! goes, and gets a [`RunToken`] (32 random bytes, 64 hex digits) that the container presents as
//! its proxy password. The registry keeps only the SHA-256 of each token, so looking a token up
//! reveals nothing about the others through timing, and a registry dump would hold no usable
//! token. A run's rules can be replaced at once (a credential refresh: requests see the old rules
//! or the new ones, never a mix) and the run removed (its tunnels are refused from their next
//! request on).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use moat_plugin_sdk::{ProxyRules, SecretSet};
use ring::rand::SecureRandom as _;
use tokio::sync::mpsc;

use super::blocked::{BlockReason, Blocked, MAX_BLOCKED_EVENTS};
use super::endpoint::{Endpoint, valid_path};
use super::inject::{CompiledRules, RulesError};
use super::log::RequestLog;
use super::policy::{CompiledPolicy, NetworkPolicy, PolicyError};

/// What a run registers.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// The run's id, for moat's own logs.
    pub id: String,
    /// One [`ProxyRules`] per grant, in grant order.
    pub grants: Vec<ProxyRules>,
    /// The network policy; the grants' hosts are added to its allow list.
    pub policy: NetworkPolicy,
    /// The `network.jsonl` to append to, if any.
    pub log: Option<PathBuf>,
    /// Where to announce refused requests: one [`Blocked`] per host and reason (the proxy
    /// dedupes), so the user learns what a client hid. A closed receiver is ignored.
    pub blocked: Option<mpsc::UnboundedSender<Blocked>>,
    /// Paths the proxy answers itself for this run's container ([`super::endpoint`]).
    pub endpoints: Vec<Endpoint>,
}

/// A run's proxy token: the password of `http://moat:<token>@host:port`. It opens the proxy for
/// that run, so it is kept out of `Debug` output; it is not a provider credential.
#[derive(Clone, PartialEq, Eq)]
pub struct RunToken(String);

impl RunToken {
    /// A fresh random token (64 lowercase hex digits).
    pub fn generate() -> RunToken {
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random number generator works");
        RunToken(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// An existing token (re-registration after a proxy restart). Must be 32–128 characters of
    /// `[A-Za-z0-9_-]`.
    pub fn new(token: impl Into<String>) -> Result<RunToken, RunError> {
        let token = token.into();
        let valid = (32..=128).contains(&token.len())
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        valid.then_some(RunToken(token)).ok_or(RunError::BadToken)
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn hash(&self) -> TokenHash {
        hash(&self.0)
    }
}

impl fmt::Debug for RunToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RunToken([REDACTED])")
    }
}

/// Why a registration or update was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A grant's rules are invalid.
    #[error("invalid proxy rules: {0}")]
    Rules(#[from] RulesError),
    /// The network policy is invalid.
    #[error("invalid network policy: {0}")]
    Policy(#[from] PolicyError),
    /// The request log cannot be opened.
    #[error("cannot open the request log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No run has this token.
    #[error("no run is registered with this token")]
    UnknownRun,
    /// An endpoint path that is not `/` followed by a path without query or white space.
    #[error("invalid endpoint path {0:?} (want /<path>, without query or white space)")]
    BadEndpoint(String),
    /// A token that is not one moat would issue.
    #[error("invalid run token (want 32 to 128 letters, digits, '-' or '_')")]
    BadToken,
}

pub(crate) type TokenHash = [u8; 32];

fn hash(token: &str) -> TokenHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A registered run.
pub(crate) struct Run {
    pub id: String,
    pub log: Option<RequestLog>,
    pub endpoints: Vec<Endpoint>,
    policy: NetworkPolicy,
    state: RwLock<Arc<RunState>>,
    blocked: Option<BlockedSink>,
}

/// Where a run's [`Blocked`] events go, and which (host, reason) pairs were announced.
struct BlockedSink {
    sender: mpsc::UnboundedSender<Blocked>,
    announced: Mutex<HashSet<(String, BlockReason)>>,
}

/// What requests of a run are checked and rewritten with; replaced as a whole.
pub(crate) struct RunState {
    pub rules: CompiledRules,
    pub policy: CompiledPolicy,
    pub redactor: Arc<SecretSet>,
}

impl RunState {
    fn build(grants: &[ProxyRules], policy: &NetworkPolicy) -> Result<RunState, RunError> {
        let rules = CompiledRules::compile(grants)?;
        let grant_hosts: Vec<&str> = grants.iter().flat_map(ProxyRules::hosts).collect();
        let policy = CompiledPolicy::compile(policy, &grant_hosts)?;
        let redactor = Arc::new(rules.secrets());
        Ok(RunState {
            rules,
            policy,
            redactor,
        })
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Run")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Run {
    /// The rules and policy in force now.
    pub fn state(&self) -> Arc<RunState> {
        Arc::clone(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Announces a refusal to the embedding process, the first time for its host and reason.
    pub fn announce(&self, blocked: Blocked) {
        let Some(sink) = &self.blocked else { return };
        let mut announced = sink.announced.lock().unwrap_or_else(|p| p.into_inner());
        if announced.len() >= MAX_BLOCKED_EVENTS
            || !announced.insert((blocked.host.clone(), blocked.reason))
        {
            return;
        }
        drop(announced);
        let _ = sink.sender.send(blocked);
    }
}

/// Every run the proxy serves.
#[derive(Default)]
pub struct RunRegistry {
    runs: RwLock<HashMap<TokenHash, Arc<Run>>>,
}

impl fmt::Debug for RunRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunRegistry")
            .field("runs", &self.len())
            .finish()
    }
}

impl RunRegistry {
    /// No runs.
    pub fn new() -> RunRegistry {
        RunRegistry::default()
    }

    /// Registers a run under a fresh token. The run is reachable only once everything (rules,
    /// policy, log) is ready.
    pub fn register(&self, spec: RunSpec) -> Result<RunToken, RunError> {
        let token = RunToken::generate();
        self.register_with_token(&token, spec)?;
        Ok(token)
    }

    /// Registers (or re-registers, replacing) a run under a token it already has, so containers
    /// keep their proxy URL across a proxy restart.
    pub fn register_with_token(&self, token: &RunToken, spec: RunSpec) -> Result<(), RunError> {
        let state = RunState::build(&spec.grants, &spec.policy)?;
        if let Some(bad) = spec.endpoints.iter().find(|e| !valid_path(&e.path)) {
            return Err(RunError::BadEndpoint(bad.path.clone()));
        }
        let log = match &spec.log {
            Some(path) => Some(RequestLog::open(path).map_err(|source| RunError::Log {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        let run = Arc::new(Run {
            id: spec.id,
            log,
            endpoints: spec.endpoints,
            policy: spec.policy,
            state: RwLock::new(Arc::new(state)),
            blocked: spec.blocked.map(|sender| BlockedSink {
                sender,
                announced: Mutex::new(HashSet::new()),
            }),
        });
        tracing::debug!(run = %run.id, "proxy run registered");
        self.write().insert(token.hash(), run);
        Ok(())
    }

    /// Replaces a run's rules (after a credential refresh), atomically.
    pub fn replace_rules(&self, token: &RunToken, grants: Vec<ProxyRules>) -> Result<(), RunError> {
        let run = self.get(&token.hash()).ok_or(RunError::UnknownRun)?;
        let state = RunState::build(&grants, &run.policy)?;
        *run.state.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(state);
        tracing::debug!(run = %run.id, "proxy rules replaced");
        Ok(())
    }

    /// Removes a run; its token stops working at once. False if it was not registered.
    pub fn remove(&self, token: &RunToken) -> bool {
        let removed = self.write().remove(&token.hash());
        if let Some(run) = &removed {
            tracing::debug!(run = %run.id, "proxy run removed");
        }
        removed.is_some()
    }

    /// How many runs are registered.
    pub fn len(&self) -> usize {
        self.runs.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// No runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The run a client-supplied token opens.
    pub(crate) fn authenticate(&self, candidate: &str) -> Option<(TokenHash, Arc<Run>)> {
        let key = hash(candidate);
        self.get(&key).map(|run| (key, run))
    }

    pub(crate) fn get(&self, key: &TokenHash) -> Option<Arc<Run>> {
        self.runs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TokenHash, Arc<Run>>> {
        self.runs.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use moat_plugin_sdk::{ProxyRule, Secret};

    use super::*;

    fn rules(value: &str) -> ProxyRules {
        ProxyRules::new().with(ProxyRule::Credential {
            host: "api.example.com".into(),
            header: "Authorization".into(),
            value: Secret::new(value),
            grant: "example".into(),
        })
    }

    #[test]
    fn tokens_are_random_hex_and_never_debug_printed() {
        let a = RunToken::generate();
        let b = RunToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(format!("{a:?}"), "RunToken([REDACTED])");
        assert!(RunToken::new(a.as_str()).is_ok());
        assert!(matches!(RunToken::new("short"), Err(RunError::BadToken)));
        assert!(RunToken::new("x".repeat(31) + " ").is_err());
    }

    #[test]
    fn register_authenticate_replace_remove() {
        let registry = RunRegistry::new();
        let token = registry
            .register(RunSpec {
                id: "r1".into(),
                grants: vec![rules("Bearer one")],
                ..RunSpec::default()
            })
            .unwrap();
        assert_eq!(registry.len(), 1);
        let (_, run) = registry.authenticate(token.as_str()).unwrap();
        assert_eq!(run.id, "r1");
        assert!(registry.authenticate("wrong").is_none());
        assert!(registry.authenticate("").is_none());

        let before = run.state();
        registry
            .replace_rules(&token, vec![rules("Bearer two")])
            .unwrap();
        let after = run.state();
        assert!(!Arc::ptr_eq(&before, &after));
        let view = after.rules.for_host("api.example.com", 443, true);
        assert_eq!(view.credentials[0].value.to_str().unwrap(), "Bearer two");

        assert!(registry.remove(&token));
        assert!(!registry.remove(&token));
        assert!(registry.authenticate(token.as_str()).is_none());
        assert!(matches!(
            registry.replace_rules(&token, vec![]),
            Err(RunError::UnknownRun)
        ));
    }

    #[test]
    fn bad_rules_or_policy_register_nothing() {
        let registry = RunRegistry::new();
        let bad = ProxyRules::new().with(ProxyRule::RemoveHeader {
            host: "bad host".into(),
            name: "x".into(),
        });
        assert!(
            registry
                .register(RunSpec {
                    grants: vec![bad],
                    ..RunSpec::default()
                })
                .is_err()
        );
        let mut policy = NetworkPolicy::default();
        policy.allow.push("a/b".into());
        assert!(
            registry
                .register(RunSpec {
                    policy,
                    ..RunSpec::default()
                })
                .is_err()
        );
        assert!(registry.is_empty());
    }

    #[test]
    fn re_registration_keeps_the_token() {
        let registry = RunRegistry::new();
        let token = RunToken::generate();
        registry
            .register_with_token(&token, RunSpec::default())
            .unwrap();
        registry
            .register_with_token(
                &token,
                RunSpec {
                    id: "again".into(),
                    ..RunSpec::default()
                },
            )
            .unwrap();
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.authenticate(token.as_str()).unwrap().1.id, "again");
    }
}
