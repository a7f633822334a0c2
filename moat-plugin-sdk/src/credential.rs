//! [`Credential`]: what `moat grant` stores and every other call receives.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Metadata key recording how a token was obtained (`env`, `cli`, `pat`, `prompt`, `oauth`, ...).
pub const META_TOKEN_SOURCE: &str = "token_source";

/// A stored credential. The JSON field names match the Go implementation's store, so its files
/// can be read unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "A credential, exactly as the plugin's `grant` returned it; moat stores it encrypted and never looks inside `token`."
)]
pub struct Credential {
    /// The canonical name of the provider that made it (`github`).
    pub provider: String,
    /// The secret itself. It may be a JSON document of the provider's own (several registries, an
    /// OAuth token pair): moat never looks inside.
    pub token: Secret,
    /// Scopes the token was granted with, when the provider knows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// When the token stops working; `None` for tokens without an expiry.
    #[schemars(
        description = "When the token stops working (RFC 3339); absent for tokens without an expiry."
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was granted.
    pub created_at: DateTime<Utc>,
    /// Free-form, non-secret facts about the credential (`token_source`, `login`, ...). Shown by
    /// `moat grant show`, so never put a secret here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Credential {
    /// A credential created now, with no scopes, expiry or metadata.
    pub fn new(provider: impl Into<String>, token: impl Into<Secret>) -> Self {
        Credential {
            provider: provider.into(),
            token: token.into(),
            scopes: Vec::new(),
            expires_at: None,
            created_at: Utc::now(),
            metadata: BTreeMap::new(),
        }
    }

    /// Adds a metadata entry (builder style).
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The `token_source` metadata entry, if any.
    pub fn token_source(&self) -> Option<&str> {
        self.metadata.get(META_TOKEN_SOURCE).map(String::as_str)
    }

    /// True when `expires_at` is in the past.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| at <= Utc::now())
    }
}
