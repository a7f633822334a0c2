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

/// The log level moat asks a plugin to write, set by moat in the plugin's environment from its
/// own verbosity: one of [`LOG_LEVELS`] (`info` by default, `debug` with `-v`, `trace` with
/// `-vv`). A value the user set in moat's environment is passed on unchanged.
pub const LOG_ENV: &str = "MOAT_PLUGIN_LOG";

/// The values of [`LOG_ENV`], most severe first. A plugin writes records at that level and above.
pub const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

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
    #[schemars(description = "With the `agent` capability: the CLI commands it adds.")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_commands: Vec<AgentCommand>,
    /// The endpoint paths, when it declares [`Capability::Endpoint`](crate::Capability::Endpoint).
    #[schemars(
        description = "With the `endpoint` capability: the path prefixes the proxy forwards to it."
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointDecl>,
    /// Seconds between refreshes, when it declares [`Capability::Refresh`](crate::Capability::Refresh).
    #[schemars(
        description = "With the `refresh` capability: the longest time between refreshes, in seconds (absent or 0: 300)."
    )]
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
    /// A request other than `initialize` (or `shutdown`) arrived before a successful
    /// `initialize`; `data.kind` is `invalid_input`.
    pub const NOT_INITIALIZED: i32 = -32002;
    /// The request was cancelled by `$/cancel` (or abandoned because stdin closed); `data.kind`
    /// is `cancelled`.
    pub const CANCELLED: i32 = -32800;
}

/// `error.data` of a provider error: the machine-readable [`ErrorKind`] and the user's hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "`error.data` of a provider error: the machine-readable `kind` and the user's hint."
)]
pub struct ErrorData {
    /// The error's category.
    pub kind: ErrorKind,
    /// What the user should do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The JSON Schema of one protocol message, as committed under `schema/v1/` in the moat
/// repository.
#[derive(Debug, Clone)]
pub struct MessageSchema {
    /// The file name (`grant.params.json`, `grant.result.json`, `error-data.json`, ...).
    pub file: &'static str,
    /// The schema (JSON Schema 2020-12).
    pub schema: schemars::Schema,
}

/// Every message's schema, generated from these types: one params and one result schema per
/// method, plus `error-data`, `cancel.params` and `log.params`.
///
/// What moat sends (params, `$/cancel`) is described as it is serialized: a field marked
/// required is always there. What moat receives (results, `error.data`, `$/log`) is described as
/// it is deserialized: a field not marked required may be left out. Unknown fields are allowed
/// everywhere. The host and conformance checks validate plugin output against these.
pub fn schemas() -> Vec<MessageSchema> {
    vec![
        sent::<InitializeParams>("initialize.params.json", "`initialize` params"),
        received::<InitializeResult>("initialize.result.json", "`initialize` result"),
        sent::<GrantParams>("grant.params.json", "`grant` params"),
        received::<GrantResult>("grant.result.json", "`grant` result"),
        sent::<CredentialParams>("configure_proxy.params.json", "`configure_proxy` params"),
        received::<ConfigureProxyResult>("configure_proxy.result.json", "`configure_proxy` result"),
        sent::<CredentialParams>("container_env.params.json", "`container_env` params"),
        received::<ContainerEnvResult>("container_env.result.json", "`container_env` result"),
        sent::<MountsParams>("mounts.params.json", "`mounts` params"),
        received::<MountsResult>("mounts.result.json", "`mounts` result"),
        sent::<CleanupParams>("cleanup.params.json", "`cleanup` params"),
        received::<Empty>("cleanup.result.json", "`cleanup` result"),
        sent::<CredentialParams>("refresh.params.json", "`refresh` params"),
        received::<RefreshResult>("refresh.result.json", "`refresh` result"),
        sent::<PrepareContainerParams>(
            "prepare_container.params.json",
            "`prepare_container` params",
        ),
        received::<PrepareContainerResult>(
            "prepare_container.result.json",
            "`prepare_container` result",
        ),
        sent::<EndpointParams>("endpoint.params.json", "`endpoint` params"),
        received::<EndpointResult>("endpoint.result.json", "`endpoint` result"),
        sent::<RunStoppedParams>("run_stopped.params.json", "`run_stopped` params"),
        received::<RunStoppedResult>("run_stopped.result.json", "`run_stopped` result"),
        sent::<Empty>("shutdown.params.json", "`shutdown` params"),
        received::<Empty>("shutdown.result.json", "`shutdown` result"),
        sent::<CancelParams>(
            "cancel.params.json",
            "`$/cancel` params (notification, host to plugin)",
        ),
        received::<LogParams>(
            "log.params.json",
            "`$/log` params (notification, plugin to host)",
        ),
        received::<ErrorData>("error-data.json", "`error.data` of a provider error"),
    ]
}

/// A message moat sends: described as serialized.
fn sent<T: JsonSchema>(file: &'static str, title: &str) -> MessageSchema {
    let settings = schemars::generate::SchemaSettings::draft2020_12().for_serialize();
    titled(
        file,
        title,
        settings.into_generator().into_root_schema_for::<T>(),
    )
}

/// A message moat receives: described as deserialized.
fn received<T: JsonSchema>(file: &'static str, title: &str) -> MessageSchema {
    let settings = schemars::generate::SchemaSettings::draft2020_12().for_deserialize();
    titled(
        file,
        title,
        settings.into_generator().into_root_schema_for::<T>(),
    )
}

fn titled(file: &'static str, title: &str, mut schema: schemars::Schema) -> MessageSchema {
    schema.insert("title".into(), format!("moat protocol v1: {title}").into());
    let mut value = serde_json::Value::from(schema);
    for_json_readers(&mut value);
    if let Some(defs) = value
        .get_mut("$defs")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (name, reader_rule) in OPEN_ENUMS {
            if let Some(def) = defs.get_mut(*name) {
                open_enum(def, reader_rule);
            }
        }
    }
    let schema = schemars::Schema::try_from(value).expect("a schema stays a JSON object");
    MessageSchema { file, schema }
}

/// The enumerations a reader must accept unknown values of (`schema/README.md` §9), with what a
/// reader does with one. Their schemas accept any string besides the listed values, so that a
/// reader validating with them tolerates a value added later in v1.
const OPEN_ENUMS: &[(&str, &str)] = &[
    (
        "Capability",
        "Any other string: a capability added later in v1; readers ignore it.",
    ),
    (
        "ErrorKind",
        "Any other string: a kind added later in v1; readers treat it as `internal`.",
    ),
];

/// `{"oneOf": [consts]}` becomes `{"anyOf": [{"oneOf": [consts]}, {"type": "string"}]}`.
fn open_enum(def: &mut serde_json::Value, reader_rule: &str) {
    let Some(object) = def.as_object_mut() else {
        return;
    };
    let Some(known) = object.remove("oneOf") else {
        return;
    };
    object.insert(
        "anyOf".into(),
        serde_json::json!([
            { "oneOf": known },
            { "type": "string", "description": reader_rule },
        ]),
    );
}

/// Descriptions come from the Rust doc comments: intra-doc links (`` [`Foo`](crate::Foo) ``,
/// `` [`Foo`] ``) are reduced to their text, for readers of JSON.
fn for_json_readers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, member) in object.iter_mut() {
                match member {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = strip_doc_links(text);
                    }
                    other => for_json_readers(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(for_json_readers),
        _ => {}
    }
}

/// `` [`A`](crate::A) `` and `` [`A`] `` become `` `A` ``; other text is kept.
fn strip_doc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start + 2..].find("`]") else {
            break;
        };
        let code = &rest[start + 1..start + 2 + len + 1];
        out.push_str(&rest[..start]);
        out.push_str(code);
        rest = &rest[start + 2 + len + 2..];
        if rest.starts_with('(')
            && let Some(end) = rest.find(')')
        {
            rest = &rest[end + 1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn doc_links_become_code() {
        assert_eq!(
            super::strip_doc_links("See [`Foo`](crate::Foo) and [`Bar::baz`], [x](y)."),
            "See `Foo` and `Bar::baz`, [x](y)."
        );
    }
}
