//! Endpoints a provider serves to the container through the proxy, and run-lifecycle data.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Credential, ProxyRules};

/// A path prefix the proxy forwards to the provider (`/_aws/credentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointDecl {
    /// Path prefix, starting with `/_<provider>/`.
    pub path: String,
    /// One line describing it, for diagnostics.
    pub description: String,
}

/// A request from the container to one of the provider's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointRequest {
    /// The stored credential.
    pub credential: Credential,
    /// The run whose container sent the request (a provider may key caches or session names by
    /// it). Empty from hosts older than this field.
    #[serde(default)]
    pub run_id: String,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers (the proxy's own authorization removed).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body as UTF-8 text (endpoints exchange small JSON documents).
    #[serde(default)]
    pub body: String,
}

/// The provider's answer to an [`EndpointRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "The `endpoint` result: the HTTP response the proxy returns to the container."
)]
pub struct EndpointResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body as UTF-8 text.
    #[serde(default)]
    pub body: String,
}

/// The result of a refresh: the renewed credential and the rules that use it, which replace the
/// old rules atomically in the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Refreshed {
    /// The renewed credential; moat stores it.
    pub credential: Credential,
    /// Rules for the renewed credential.
    pub rules: ProxyRules,
}

/// Facts about a run that has just stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunStoppedContext {
    /// The run's id.
    pub run_id: String,
    /// The host folder mounted as `/workspace`.
    pub workspace: std::path::PathBuf,
    /// When the container started.
    pub started_at: DateTime<Utc>,
    /// The command's exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}
