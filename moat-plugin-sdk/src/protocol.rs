//! Protocol v1: the messages moat and a `moat-provider-<name>` executable exchange.
//!
//! One JSON-RPC 2.0 message per line on the plugin's stdin (host → plugin) and stdout
//! (plugin → host); stderr carries logs. `schema/README.md` is the specification; these types
//! are its source of truth, and `schema/v1/` is generated from them.
//!
//! Every params and result type is an object with named fields and tolerates unknown fields,
//! so either side can grow optional fields within a major version.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    AgentCommand, CleanupToken, ContainerConfig, ContainerFiles, Credential, EndpointDecl,
    EndpointRequest, EndpointResponse, EnvVar, ErrorKind, GrantRequest, GrantStep, MountsRequest,
    PrepareOpts, ProviderInfo, ProxyRules, Refreshed, RunStoppedContext,
};

/// The protocol major this SDK speaks. An integer, independent of any crate version: it changes
/// only when a change would break an existing plugin or host.
pub const PROTOCOL_VERSION: u32 = 1;

/// The argument moat passes to a plugin executable. Run without it, a plugin explains itself and
/// exits instead of waiting on stdin.
pub const PLUGIN_FLAG: &str = "--moat-plugin";

/// Set (to `1`) in the plugin's environment by moat, alongside [`PLUGIN_FLAG`].
pub const PLUGIN_ENV: &str = "MOAT_PLUGIN";

/// The executable name prefix: `moat-provider-<name>` provides `<name>`.
pub const EXECUTABLE_PREFIX: &str = "moat-provider-";

/// The longest line either side accepts (16 MiB). A longer line is a protocol error.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Method and notification names.
pub mod method {
    /// Handshake; always the first request.
    pub const INITIALIZE: &str = "initialize";
    /// [`CredentialProvider::grant`](crate::CredentialProvider::grant).
    pub const GRANT: &str = "grant";
    /// [`CredentialProvider::configure_proxy`](crate::CredentialProvider::configure_proxy).
    pub const CONFIGURE_PROXY: &str = "configure_proxy";
    /// [`CredentialProvider::container_env`](crate::CredentialProvider::container_env).
    pub const CONTAINER_ENV: &str = "container_env";
    /// [`CredentialProvider::mounts`](crate::CredentialProvider::mounts).
    pub const MOUNTS: &str = "mounts";
    /// [`CredentialProvider::cleanup`](crate::CredentialProvider::cleanup).
    pub const CLEANUP: &str = "cleanup";
    /// [`RefreshableProvider::refresh`](crate::RefreshableProvider::refresh).
    pub const REFRESH: &str = "refresh";
    /// [`AgentProvider::prepare_container`](crate::AgentProvider::prepare_container).
    pub const PREPARE_CONTAINER: &str = "prepare_container";
    /// [`EndpointProvider::endpoint`](crate::EndpointProvider::endpoint).
    pub const ENDPOINT: &str = "endpoint";
    /// [`RunStoppedHook::run_stopped`](crate::RunStoppedHook::run_stopped).
    pub const RUN_STOPPED: &str = "run_stopped";
    /// The host is done; the plugin answers, then exits when stdin closes.
    pub const SHUTDOWN: &str = "shutdown";
    /// Notification, host → plugin: abandon the request with this id.
    pub const CANCEL: &str = "$/cancel";
    /// Notification, plugin → host: a log record (also accepted as JSON lines on stderr).
    pub const LOG: &str = "$/log";
}

/// `initialize` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitializeParams {
    /// Every protocol major the host speaks, newest first.
    pub protocol_versions: Vec<u32>,
    /// The host's version (`moat 0.1.0`), for diagnostics only.
    #[serde(default)]
    pub host_version: String,
}

/// `initialize` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitializeResult {
    /// The protocol major the plugin picked from the host's list.
    pub protocol_version: u32,
    /// The provider's identity and declared capabilities.
    pub info: ProviderInfo,
    /// The agent's commands, when it declares [`Capability::Agent`](crate::Capability::Agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_commands: Vec<AgentCommand>,
    /// The endpoint paths, when it declares [`Capability::Endpoint`](crate::Capability::Endpoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointDecl>,
    /// Seconds between refreshes, when it declares [`Capability::Refresh`](crate::Capability::Refresh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval_secs: Option<u64>,
    /// The plugin's own version (its crate or package version), for diagnostics only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_version: Option<String>,
}

/// `grant` params.
pub type GrantParams = GrantRequest;
/// `grant` result.
pub type GrantResult = GrantStep;

/// Params of every method that takes just the stored credential (`configure_proxy`,
/// `container_env`, `refresh`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CredentialParams {
    /// The stored credential.
    pub credential: Credential,
}

/// `configure_proxy` result.
pub type ConfigureProxyResult = ProxyRules;

/// `container_env` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerEnvResult {
    /// The variables.
    #[serde(default)]
    pub env: Vec<EnvVar>,
}

/// `mounts` params.
pub type MountsParams = MountsRequest;
/// `mounts` result.
pub type MountsResult = ContainerFiles;

/// `cleanup` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CleanupParams {
    /// The token `mounts` returned.
    pub token: CleanupToken,
}

/// Result of methods with nothing to return (`cleanup`, `shutdown`): an empty object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Empty {}

/// `refresh` result.
pub type RefreshResult = Refreshed;
/// `prepare_container` params.
pub type PrepareContainerParams = PrepareOpts;
/// `prepare_container` result.
pub type PrepareContainerResult = ContainerConfig;
/// `endpoint` params.
pub type EndpointParams = EndpointRequest;
/// `endpoint` result.
pub type EndpointResult = EndpointResponse;
/// `run_stopped` params.
pub type RunStoppedParams = RunStoppedContext;

/// `run_stopped` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunStoppedResult {
    /// Entries stored under `provider_meta` in the run's metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// `$/cancel` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelParams {
    /// The id of the request to abandon.
    pub id: serde_json::Value,
}

/// `$/log` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogParams {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
    /// The message. Never a secret.
    pub message: String,
}

/// JSON-RPC error codes moat uses beyond the standard ones (`-32700` parse error, `-32600`
/// invalid request, `-32601` method not found = unsupported, `-32602` invalid params, `-32603`
/// internal error).
pub mod code {
    /// A provider error; `data` is an [`ErrorData`](super::ErrorData).
    pub const PROVIDER_ERROR: i32 = -32000;
    /// No protocol major in common; `data.kind` is `unsupported`.
    pub const UNSUPPORTED_VERSION: i32 = -32001;
    /// The request was cancelled by `$/cancel`.
    pub const CANCELLED: i32 = -32800;
}

/// `error.data` of a provider error: the machine-readable [`ErrorKind`] and the user's hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorData {
    /// The error's category.
    pub kind: ErrorKind,
    /// What the user should do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
