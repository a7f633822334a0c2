//! [`PluginProvider`]: a `moat-provider-<name>` executable behind the same traits as a built-in.
//!
//! `info()` (and the agent's commands, the endpoints, the refresh interval) come from the cached
//! `initialize` answer, so registering and listing never start the process. The first real call
//! starts it (handshake included) and later calls reuse it; after a crash or a timeout the next
//! call starts a fresh one. The optional capabilities are offered exactly as the plugin declared
//! them at `initialize`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::types::error::METHOD_NOT_FOUND_CODE;
use moat_plugin_sdk::protocol::{
    CleanupParams, ContainerEnvResult, ErrorData, InitializeResult, RunStoppedResult, code, method,
};
use moat_plugin_sdk::{
    AgentCommand, AgentProvider, Answer, Capability, CleanupToken, ContainerConfig, ContainerFiles,
    Credential, CredentialProvider, EndpointDecl, EndpointProvider, EndpointRequest,
    EndpointResponse, EnvVar, ErrorKind, GrantRequest, GrantStep, MountsRequest, PrepareOpts,
    ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, RefreshableProvider,
    Refreshed, RunStoppedContext, RunStoppedHook, Secret,
};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::sync::Mutex;

use super::error::PluginFault;
use super::process::{CallError, Connection, Timeouts, handshake};
use super::transport::OutputHold;

/// How often a plugin that declares `refresh` without an interval is refreshed.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// `configure_proxy`, `container_env` and `refresh` params, borrowing the credential.
#[derive(Serialize)]
struct CredentialRef<'a> {
    credential: &'a Credential,
}

/// A plugin executable as a provider.
pub struct PluginProvider {
    path: PathBuf,
    init: InitializeResult,
    timeouts: Timeouts,
    connection: Mutex<Option<Arc<Connection>>>,
    /// Every credential this plugin has been handed or returned, scrubbed from its output
    /// (see [`Connection::remember_secret`]); kept here so a restarted process scrubs them too.
    secrets: std::sync::Mutex<Vec<Secret>>,
}

impl std::fmt::Debug for PluginProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginProvider")
            .field("name", &self.init.info.name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl PluginProvider {
    /// The plugin at `path`, described by a (cached) `initialize` answer. Nothing is started.
    pub fn new(path: impl Into<PathBuf>, init: InitializeResult, timeouts: Timeouts) -> Self {
        PluginProvider {
            path: path.into(),
            init,
            timeouts,
            connection: Mutex::new(None),
            secrets: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Scrubs `secret` from this plugin's output from now on.
    fn guard(&self, secret: &Secret) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        if !secrets.contains(secret) {
            secrets.push(secret.clone());
        }
    }

    /// Lets go of the plugin's held log once every secret known now is scrubbed from it.
    fn release(&self, held: Option<OutputHold>) {
        if let Some(held) = held {
            for secret in self
                .secrets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
            {
                held.remember_secret(secret);
            }
        }
    }

    /// Starts the plugin `name` at `path` now and keeps it running for the calls to come.
    pub async fn start(
        path: impl Into<PathBuf>,
        name: &str,
        timeouts: Timeouts,
    ) -> Result<Self, PluginFault> {
        let path = path.into();
        let (connection, init) = handshake(&path, name, timeouts).await?;
        Ok(PluginProvider {
            path,
            init,
            timeouts,
            connection: Mutex::new(Some(Arc::new(connection))),
            secrets: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.init.info.name
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The plugin's `initialize` answer.
    pub fn initialize_result(&self) -> &InitializeResult {
        &self.init
    }

    /// The timeouts its calls use.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// The process id of the running plugin, if it runs.
    pub async fn pid(&self) -> Option<u32> {
        let slot = self.connection.lock().await;
        slot.as_ref().filter(|c| c.is_alive()).and_then(|c| c.pid())
    }

    /// Ends the plugin process gracefully if it runs (see [`Connection::shutdown`]). A later call
    /// starts it again.
    pub async fn shutdown(&self) {
        let connection = self.connection.lock().await.take();
        if let Some(connection) = connection {
            connection.shutdown().await;
        }
    }

    /// The running connection, started (with its handshake) if there is none.
    async fn connection(&self) -> Result<Arc<Connection>, PluginFault> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(connection.clone());
        }
        let (connection, fresh) = handshake(&self.path, self.name(), self.timeouts).await?;
        if fresh.info != self.init.info {
            tracing::warn!(
                provider = %self.name(),
                "the plugin describes itself differently than when it was listed; \
                 run 'moat grant providers' to refresh"
            );
        }
        let connection = Arc::new(connection);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Calls `method`; a dead or misbehaving plugin is stopped, reaped and reported.
    async fn call<P, R>(&self, method: &str, params: &P, limit: Duration) -> ProviderResult<R>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        self.request(method, params, limit)
            .await
            .map_err(Rejected::into_error)
    }

    /// Like [`call`](Self::call), with "method not found" read as "not implemented, use the
    /// trait's default", as for a built-in that does not override the method.
    async fn call_or_default<P, R>(&self, method: &str, params: &P) -> ProviderResult<R>
    where
        P: Serialize + Sync,
        R: DeserializeOwned + Default,
    {
        match self.request(method, params, self.timeouts.call).await {
            Ok(result) => Ok(result),
            Err(Rejected::NotFound(_)) => Ok(R::default()),
            Err(Rejected::Other(err)) => Err(err),
        }
    }

    async fn request<P, R>(&self, method: &str, params: &P, limit: Duration) -> Result<R, Rejected>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        let (result, _) = self.request_holding(method, params, limit, false).await?;
        Ok(result)
    }

    /// Like [`request`](Self::request); with `hold`, what the plugin logs during the call is
    /// held back until the returned guard is dropped (on failure, until this returns).
    async fn request_holding<P, R>(
        &self,
        method: &str,
        params: &P,
        limit: Duration,
        hold: bool,
    ) -> Result<(R, Option<OutputHold>), Rejected>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        let connection = self
            .connection()
            .await
            .map_err(|fault| Rejected::Other(fault.into()))?;
        for secret in self
            .secrets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            connection.remember_secret(secret);
        }
        let held = hold.then(|| connection.hold_output());
        let failure = match connection.call(method, params, limit).await {
            Ok(result) => return Ok((result, held)),
            Err(CallError::Remote(error)) if error.code() == METHOD_NOT_FOUND_CODE => {
                return Err(Rejected::NotFound(self.remote_error(method, &error)));
            }
            Err(CallError::Remote(error)) => {
                return Err(Rejected::Other(self.remote_error(method, &error)));
            }
            Err(CallError::BadResult(detail)) => {
                let message = format!(
                    "plugin {} ({}) returned an invalid result for {method}: {detail}",
                    self.name(),
                    self.path.display()
                );
                let hint = "This is a fault in the plugin, not in moat: report it to its author.";
                return Err(Rejected::Other(
                    ProviderError::new(ErrorKind::Internal, message).with_hint(hint),
                ));
            }
            Err(CallError::Fatal(failure)) => failure,
        };
        {
            let mut slot = self.connection.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &connection)) {
                *slot = None;
            }
        }
        let fault = connection.fail(method, failure).await;
        Err(Rejected::Other(fault.into()))
    }

    /// A JSON-RPC error as a provider error: "method not found" is `unsupported`, a provider
    /// error carries its own kind and hint, anything else is internal.
    /// `text` with every credential this plugin has handled replaced by `[REDACTED]`: what a
    /// plugin says is shown to the user, and a careless plugin may quote a token.
    fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        super::transport::redact_secrets(&secrets, text).into_owned()
    }

    /// Remembers every secret in `rules`, in whatever form the proxy will send it.
    fn guard_rules(&self, rules: &ProxyRules) {
        for rule in &rules.rules {
            match rule {
                ProxyRule::Credential { value, .. } => self.guard(value),
                ProxyRule::TokenSubstitution { real, .. } => self.guard(real),
                _ => {}
            }
        }
    }

    fn remote_error(&self, method: &str, error: &ErrorObjectOwned) -> ProviderError {
        let error = self.redacted(error);
        self.describe_remote_error(method, &error)
    }

    /// The plugin's error with its message and data scrubbed of known secrets.
    fn redacted(&self, error: &ErrorObjectOwned) -> ErrorObjectOwned {
        let data = error.data().map(|raw| self.redact(raw.get()));
        let data = data.and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        ErrorObjectOwned::owned(error.code(), self.redact(error.message()), data)
    }

    fn describe_remote_error(&self, method: &str, error: &ErrorObjectOwned) -> ProviderError {
        let name = self.name();
        match error.code() {
            METHOD_NOT_FOUND_CODE => ProviderError::new(
                ErrorKind::Unsupported,
                format!("provider {name} does not implement {method}"),
            )
            .with_hint("A newer version of the plugin may implement it."),
            code::PROVIDER_ERROR => {
                let data = error
                    .data()
                    .and_then(|raw| serde_json::from_str::<ErrorData>(raw.get()).ok());
                match data {
                    Some(data) => ProviderError {
                        kind: data.kind,
                        message: error.message().to_string(),
                        hint: data.hint,
                    },
                    None => ProviderError::new(ErrorKind::Internal, error.message()),
                }
            }
            code::CANCELLED => ProviderError::new(
                ErrorKind::Cancelled,
                format!("provider {name} cancelled {method}"),
            ),
            code::UNSUPPORTED_VERSION => ProviderError::new(
                ErrorKind::Unsupported,
                format!("provider {name}: {}", error.message()),
            ),
            other => ProviderError::new(
                ErrorKind::Internal,
                format!(
                    "plugin {name} ({}) failed in {method}: {} (JSON-RPC error {other})",
                    self.path.display(),
                    error.message()
                ),
            ),
        }
    }

    fn has(&self, capability: Capability) -> bool {
        self.init.info.has(capability)
    }
}

/// Why a call gave no result.
enum Rejected {
    /// JSON-RPC "method not found".
    NotFound(ProviderError),
    /// Anything else.
    Other(ProviderError),
}

impl Rejected {
    fn into_error(self) -> ProviderError {
        match self {
            Rejected::NotFound(err) | Rejected::Other(err) => err,
        }
    }
}

#[async_trait]
impl CredentialProvider for PluginProvider {
    fn info(&self) -> ProviderInfo {
        self.init.info.clone()
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        let limit = self.timeouts.for_grant(request.interactive);
        let answers = request.answers.values();
        answers
            .filter_map(Answer::as_secret)
            .for_each(|secret| self.guard(secret));
        // What a grant returns gets stored: it is checked against the protocol's schema first,
        // so a plugin that returns something malformed is told exactly which field is wrong.
        // The plugin's log is held during the call: it may log the token it returns before moat
        // knows it, so it is let go only once that token is remembered.
        let (answer, held): (serde_json::Value, _) = self
            .request_holding(method::GRANT, &request, limit, true)
            .await
            .map_err(Rejected::into_error)?;
        if let Some(token) = answer
            .pointer("/credential/token")
            .and_then(serde_json::Value::as_str)
        {
            self.guard(&Secret::from(token));
        }
        self.release(held);
        let malformed = |problems: Vec<String>| {
            ProviderError::new(
                ErrorKind::Internal,
                format!(
                    "plugin {} returned a grant result that breaks protocol v1 ({}); nothing was stored",
                    self.name(),
                    problems.join("; ")
                ),
            )
            .with_hint(format!(
                "This is a bug in the plugin. Its author can run 'moat plugin check {}' for details.",
                self.path.display()
            ))
        };
        super::schema::validate("grant.result.json", &answer).map_err(malformed)?;
        let step: GrantStep = serde_json::from_value(answer)
            .map_err(|_| malformed(vec!["it does not read as a grant step".into()]))?;
        if let GrantStep::Done { credential, .. } = &step {
            self.guard(&credential.token);
        }
        // Notes and questions are shown to the user as the plugin wrote them: scrub them.
        Ok(match step {
            GrantStep::Done { credential, notes } => {
                let notes = notes.iter().map(|note| self.redact(note)).collect();
                GrantStep::Done { credential, notes }
            }
            GrantStep::Ask { prompts, notes } => {
                let notes = notes.iter().map(|note| self.redact(note)).collect();
                let prompts = prompts
                    .into_iter()
                    .map(|prompt| moat_plugin_sdk::Prompt {
                        message: self.redact(&prompt.message),
                        help: prompt.help.as_deref().map(|help| self.redact(help)),
                        ..prompt
                    })
                    .collect();
                GrantStep::Ask { prompts, notes }
            }
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        self.guard(&credential.token);
        let params = CredentialRef { credential };
        let rules: ProxyRules = self
            .call(method::CONFIGURE_PROXY, &params, self.timeouts.call)
            .await?;
        self.guard_rules(&rules);
        Ok(rules)
    }

    async fn container_env(&self, credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        self.guard(&credential.token);
        let params = CredentialRef { credential };
        let result: ContainerEnvResult =
            self.call_or_default(method::CONTAINER_ENV, &params).await?;
        Ok(result.env)
    }

    async fn mounts(&self, request: MountsRequest) -> ProviderResult<ContainerFiles> {
        self.guard(&request.credential.token);
        self.call_or_default(method::MOUNTS, &request).await
    }

    async fn cleanup(&self, token: CleanupToken) -> ProviderResult<()> {
        let params = CleanupParams { token };
        let _: Option<IgnoredAny> = self.call_or_default(method::CLEANUP, &params).await?;
        Ok(())
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        self.has(Capability::Agent)
            .then_some(self as &dyn AgentProvider)
    }

    fn as_endpoint(&self) -> Option<&dyn EndpointProvider> {
        self.has(Capability::Endpoint)
            .then_some(self as &dyn EndpointProvider)
    }

    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        self.has(Capability::Refresh)
            .then_some(self as &dyn RefreshableProvider)
    }

    fn as_run_stopped(&self) -> Option<&dyn RunStoppedHook> {
        self.has(Capability::RunStopped)
            .then_some(self as &dyn RunStoppedHook)
    }
}

#[async_trait]
impl AgentProvider for PluginProvider {
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig> {
        if let Some(credential) = &opts.credential {
            self.guard(&credential.token);
        }
        self.call(method::PREPARE_CONTAINER, &opts, self.timeouts.call)
            .await
    }

    fn commands(&self) -> Vec<AgentCommand> {
        self.init.agent_commands.clone()
    }
}

#[async_trait]
impl EndpointProvider for PluginProvider {
    fn endpoints(&self) -> Vec<EndpointDecl> {
        self.init.endpoints.clone()
    }

    async fn endpoint(&self, request: EndpointRequest) -> ProviderResult<EndpointResponse> {
        self.guard(&request.credential.token);
        self.call(method::ENDPOINT, &request, self.timeouts.call)
            .await
    }
}

#[async_trait]
impl RefreshableProvider for PluginProvider {
    fn refresh_interval(&self) -> Duration {
        self.init
            .refresh_interval_secs
            .filter(|s| *s > 0)
            .map_or(DEFAULT_REFRESH_INTERVAL, Duration::from_secs)
    }

    async fn refresh(&self, credential: &Credential) -> ProviderResult<Refreshed> {
        self.guard(&credential.token);
        let params = CredentialRef { credential };
        // Held like grant's: the new token may be logged before moat knows it.
        let (refreshed, held): (Refreshed, _) = self
            .request_holding(method::REFRESH, &params, self.timeouts.call, true)
            .await
            .map_err(Rejected::into_error)?;
        self.guard(&refreshed.credential.token);
        self.guard_rules(&refreshed.rules);
        self.release(held);
        Ok(refreshed)
    }
}

#[async_trait]
impl RunStoppedHook for PluginProvider {
    async fn run_stopped(
        &self,
        context: RunStoppedContext,
    ) -> ProviderResult<BTreeMap<String, String>> {
        let result: RunStoppedResult = self
            .call(method::RUN_STOPPED, &context, self.timeouts.call)
            .await?;
        Ok(result.metadata)
    }
}
