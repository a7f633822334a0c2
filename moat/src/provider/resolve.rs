//! [`resolve_grants`]: from the grant names a user gave (`--grant github`, `grants:` in
//! moat.yaml) to what a run needs of each: the provider, its stored credential and the proxy rules
//! it asks for. `moat proxy` and `moat run` both start here.
//!
//! Every name is looked up and every credential loaded before anything fails, so the user sees
//! all the grants that are missing or unreadable at once, each with the command that fixes it
//! (`moat grant github --profile work` when a profile is in use). An alias and its provider
//! (`openai`, `codex`) are one grant.

use std::fmt;

use moat_plugin_sdk::{Credential, ErrorKind, ProviderError, ProxyRules};

use super::registry::{Entry, Registry};
use crate::credential::{CredentialStore, StoreError, with_profile};

/// One grant, ready for a run.
pub struct ResolvedGrant {
    /// The registry's entry: the provider, its `info()`, where it comes from.
    pub entry: Entry,
    /// The credential as the store returned it (the token is a `Secret`).
    pub credential: Credential,
    /// What the provider's `configure_proxy` asked the proxy to do with it.
    pub rules: ProxyRules,
}

impl ResolvedGrant {
    /// The provider's canonical name.
    pub fn name(&self) -> &str {
        &self.entry.info.name
    }
}

impl fmt::Debug for ResolvedGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedGrant")
            .field("name", &self.entry.info.name)
            .field("source", &self.entry.source)
            .field("hosts", &self.rules.hosts())
            .finish_non_exhaustive()
    }
}

/// Why one grant cannot be used. Never holds a token.
#[derive(Debug, thiserror::Error)]
pub enum GrantProblem {
    /// No provider (or alias) has this name.
    #[error("{}", error.message)]
    UnknownProvider {
        /// The name as given.
        name: String,
        /// The registry's error, with the list of providers as its hint.
        error: ProviderError,
    },
    /// The provider exists; nothing is stored for it.
    #[error("{grant}: not granted yet (no stored credential)")]
    NotGranted {
        /// The provider's canonical name.
        grant: String,
        /// The command that stores one.
        fix: String,
    },
    /// Something is stored but cannot be read (changed key, corrupted file, unreadable key).
    #[error("{grant}: {error}")]
    Unreadable {
        /// The provider's canonical name.
        grant: String,
        /// The store's error.
        error: StoreError,
        /// The command that stores it again, when that is the fix.
        fix: Option<String>,
    },
    /// The provider refused to give proxy rules for the credential.
    #[error("{grant}: {}", error.message)]
    Rules {
        /// The provider's canonical name.
        grant: String,
        /// The provider's error.
        error: ProviderError,
    },
}

impl GrantProblem {
    /// The command that fixes it, when there is one.
    pub fn fix(&self) -> Option<&str> {
        match self {
            GrantProblem::NotGranted { fix, .. } => Some(fix),
            GrantProblem::Unreadable { fix, .. } => fix.as_deref(),
            GrantProblem::UnknownProvider { .. } | GrantProblem::Rules { .. } => None,
        }
    }

    /// More advice than the command: the registry's list of providers, the store's or the
    /// provider's hint.
    pub fn hint(&self) -> Option<String> {
        match self {
            GrantProblem::UnknownProvider { error, .. } | GrantProblem::Rules { error, .. } => {
                error.hint.clone()
            }
            GrantProblem::Unreadable {
                error, fix: None, ..
            } => error.hint(),
            GrantProblem::NotGranted { .. } | GrantProblem::Unreadable { .. } => None,
        }
    }

    /// The kind of failure, as the SDK's error kinds say it (for exit codes).
    pub fn kind(&self) -> ErrorKind {
        match self {
            GrantProblem::UnknownProvider { .. } => ErrorKind::ProviderNotFound,
            GrantProblem::NotGranted { .. } => ErrorKind::CredentialNotFound,
            GrantProblem::Unreadable { .. } => ErrorKind::Internal,
            GrantProblem::Rules { error, .. } => error.kind,
        }
    }
}

/// Every grant that cannot be used, in the order they were asked for.
#[derive(Debug)]
pub struct GrantsError {
    /// At least one.
    pub problems: Vec<GrantProblem>,
}

impl fmt::Display for GrantsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} grants cannot be used:", all.len())?;
                for problem in all {
                    write!(f, "\n  - {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for GrantsError {}

impl GrantsError {
    /// What to do: every fix command, then every other hint, one per line.
    pub fn hint(&self) -> Option<String> {
        let fixes: Vec<&str> = self.problems.iter().filter_map(GrantProblem::fix).collect();
        let mut lines = Vec::new();
        match fixes.as_slice() {
            [] => {}
            [one] => lines.push(format!("To fix it, run: {one}")),
            many => {
                lines.push("To fix them, run:".to_owned());
                lines.extend(many.iter().map(|fix| format!("  {fix}")));
            }
        }
        for hint in self.problems.iter().filter_map(GrantProblem::hint) {
            if !lines.contains(&hint) {
                lines.push(hint);
            }
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }
}

/// Resolves `names` (providers or aliases, in order, duplicates and aliases of one provider
/// counted once): looks each up in `registry`, loads and decrypts its credential from `store`,
/// and asks the provider for its proxy rules. Fails with every problem found, not the first.
pub async fn resolve_grants(
    registry: &Registry,
    store: &CredentialStore,
    names: &[String],
) -> Result<Vec<ResolvedGrant>, GrantsError> {
    let mut problems = Vec::new();
    let mut loaded: Vec<(Entry, Credential)> = Vec::new();
    for name in names {
        let entry = match registry.lookup(name) {
            Ok(entry) => entry,
            Err(error) => {
                if !problems.iter().any(
                    |p| matches!(p, GrantProblem::UnknownProvider { name: n, .. } if n == name),
                ) {
                    problems.push(GrantProblem::UnknownProvider {
                        name: name.clone(),
                        error,
                    });
                }
                continue;
            }
        };
        let grant = &entry.info.name;
        if loaded.iter().any(|(e, _)| &e.info.name == grant)
            || problems.iter().any(|p| problem_grant(p) == Some(grant))
        {
            continue;
        }
        match store.load(entry.info.store_key()) {
            Ok(credential) => loaded.push((entry.clone(), credential)),
            Err(error) => {
                let fix = grant_command(grant, store);
                problems.push(match error {
                    StoreError::NotFound { .. } => GrantProblem::NotGranted {
                        grant: grant.clone(),
                        fix,
                    },
                    StoreError::Corrupted { .. }
                    | StoreError::Decrypt { .. }
                    | StoreError::InvalidContent { .. } => GrantProblem::Unreadable {
                        grant: grant.clone(),
                        error,
                        fix: Some(fix),
                    },
                    error => GrantProblem::Unreadable {
                        grant: grant.clone(),
                        error,
                        fix: None,
                    },
                });
            }
        }
    }
    if !problems.is_empty() {
        return Err(GrantsError { problems });
    }

    let mut resolved = Vec::with_capacity(loaded.len());
    for (entry, credential) in loaded {
        match entry.provider.configure_proxy(&credential).await {
            Ok(rules) => resolved.push(ResolvedGrant {
                entry,
                credential,
                rules,
            }),
            Err(error) => problems.push(GrantProblem::Rules {
                grant: entry.info.name.clone(),
                error,
            }),
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(GrantsError { problems })
    }
}

fn problem_grant(problem: &GrantProblem) -> Option<&String> {
    match problem {
        GrantProblem::NotGranted { grant, .. }
        | GrantProblem::Unreadable { grant, .. }
        | GrantProblem::Rules { grant, .. } => Some(grant),
        GrantProblem::UnknownProvider { .. } => None,
    }
}

/// `moat grant <provider>`, with `--profile <p>` when the store is a profile's.
fn grant_command(provider: &str, store: &CredentialStore) -> String {
    with_profile(format!("moat grant {provider}"), store.profile())
}
