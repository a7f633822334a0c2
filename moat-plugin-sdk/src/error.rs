//! [`ProviderError`]: one error type with a machine-readable kind and a human hint.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a provider call failed. Travels on the wire as `data.kind`; callers match on it, never on
/// message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No provider of that name.
    ProviderNotFound,
    /// Nothing stored for that provider.
    CredentialNotFound,
    /// The stored credential has expired.
    CredentialExpired,
    /// The upstream rejected the credential (bad token, missing scope).
    InvalidCredential,
    /// A refresh token was revoked upstream; a new grant is needed.
    TokenRevoked,
    /// The credential cannot be refreshed.
    RefreshNotSupported,
    /// A question needed an answer and no one could give it (`--no-input`, no terminal).
    NeedsInput,
    /// An argument was malformed.
    InvalidInput,
    /// The provider does not implement this method or capability.
    Unsupported,
    /// The upstream could not be reached.
    Network,
    /// The call was cancelled.
    Cancelled,
    /// Anything else: a bug or an environment problem. Kinds unknown to this version read as this.
    #[serde(other)]
    Internal,
}

/// A failed provider call: what went wrong and, when there is one, what the user should do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderError {
    /// The category, for code.
    pub kind: ErrorKind,
    /// What went wrong, for people. Never contains a secret.
    pub message: String,
    /// What to do about it (`Run 'moat grant github' and enter a valid GitHub token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ProviderError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint (builder style).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(what: impl fmt::Display) -> Self {
        ProviderError::new(
            ErrorKind::Unsupported,
            format!("{what} is not supported by this provider"),
        )
    }

    /// Shorthand for [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        ProviderError::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n\n{hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

/// Result of every provider call.
pub type ProviderResult<T> = Result<T, ProviderError>;
