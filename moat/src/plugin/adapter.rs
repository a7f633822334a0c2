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
    Refreshed, RunStoppedContext, RunStoppedHook, Secret, SecretSet,
};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::sync::Mutex;

use super::error::PluginFault;
use super::pin::PIN_KEY;
use super::process::{CallError, Connection, Timeouts, handshake_with};
use super::transport::OutputHold;

/// How often a plugin that declares `refresh` without an interval is refreshed.
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// `configure_proxy`, `container_env` and `refresh` params, borrowing the credential.
#[derive(Serialize)]
struct CredentialRef<'a> {
    credential: &'a Credential,
}

/// How one call is made.
#[derive(Debug, Default, Clone, Copy)]
struct CallOptions<'a> {
    /// The pin of the credential handed over: the process must run that executable.
    pin: Option<&'a str>,
    /// The call returns a credential (grant, refresh): the process runs a hashed executable, so
    /// the credential can be pinned to it, and its log is held until the caller lets go (see
    /// `release`).
    returns_credential: bool,
}

/// A call's result, with what the caller may still need of it.
struct Exchange<R> {
    result: R,
    held: Option<OutputHold>,
    /// The process that answered (its executable is what a returned credential is pinned to).
    connection: Arc<Connection>,
}

/// The pin a credential carries, if it was granted through a plugin that recorded one.
fn pin_of(credential: &Credential) -> Option<&str> {
    credential.metadata.get(PIN_KEY).map(String::as_str)
}

/// A plugin executable as a provider.
pub struct PluginProvider {
    path: PathBuf,
    init: InitializeResult,
    timeouts: Timeouts,
    connection: Mutex<Option<Arc<Connection>>>,
    /// Every credential this plugin has been handed or returned, scrubbed from its output
    /// (see [`Connection::remember_secrets`]); kept here so a restarted process scrubs them too.
    secrets: std::sync::Mutex<SecretSet>,
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
            secrets: std::sync::Mutex::new(super::process::environment_secrets()),
        }
    }

    /// Scrubs `secret` from this plugin's output from now on.
    fn guard(&self, secret: &Secret) {
        self.secrets().insert(secret);
    }

    fn secrets(&self) -> std::sync::MutexGuard<'_, SecretSet> {
        self.secrets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses to hand a credential pinned to another executable to this process.
    fn check_pin(&self, connection: &Connection, pinned: &str) -> ProviderResult<()> {
        let actual = self.hash_of(connection)?;
        if actual == pinned {
            return Ok(());
        }
        let short = |digest: &str| digest.chars().take(12).collect::<String>();
        Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!(
                "the {name} credential was granted through another {prefix}{name} than the one \
                 at {path} now (sha256 {then}… then, {now}… now); moat did not hand it over",
                name = self.name(),
                prefix = moat_plugin_sdk::protocol::EXECUTABLE_PREFIX,
                path = self.path.display(),
                then = short(pinned),
                now = short(actual),
            ),
        )
        .with_hint(format!(
            "If you updated the plugin, run 'moat grant {name}' again. If you did not, find out \
             who changed {path}.",
            name = self.name(),
            path = self.path.display()
        )))
    }

    /// Records in `credential` the executable it was granted (or refreshed) through.
    fn pin(&self, credential: &mut Credential, connection: &Connection) -> ProviderResult<()> {
        let digest = self.hash_of(connection)?;
        credential
            .metadata
            .insert(PIN_KEY.to_string(), digest.to_string());
        Ok(())
    }

    /// The hash the process was started with; every call that needs one asks for a hashed start.
    fn hash_of<'c>(&self, connection: &'c Connection) -> ProviderResult<&'c str> {
        connection.binary_sha256().ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Internal,
                format!(
                    "plugin {} ({}) was started without being hashed",
                    self.name(),
                    self.path.display()
                ),
            )
        })
    }

    /// Lets go of the plugin's held log once every secret known now is scrubbed from it.
    fn release(&self, held: Option<OutputHold>) {
        if let Some(held) = held {
            held.remember_secrets(&self.secrets());
        }
    }

    /// Starts the plugin `name` at `path` now and keeps it running for the calls to come. Its
    /// executable is hashed first, so credentials can be pinned to it (see [`super::pin`]).
    pub async fn start(
        path: impl Into<PathBuf>,
        name: &str,
        timeouts: Timeouts,
    ) -> Result<Self, PluginFault> {
        let path = path.into();
        let (connection, init) = handshake_with(&path, name, timeouts, true).await?;
        Ok(PluginProvider {
            path,
            init,
            timeouts,
            connection: Mutex::new(Some(Arc::new(connection))),
            secrets: std::sync::Mutex::new(super::process::environment_secrets()),
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

    /// The running connection, started (with its handshake) if there is none. With `hashed`, a
    /// process started from a hashed executable (see [`super::pin`]): one that runs unhashed is
    /// replaced (it finishes what it is doing, then shuts down).
    async fn connection(&self, hashed: bool) -> Result<Arc<Connection>, PluginFault> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref().filter(|c| c.is_alive()) {
            if !hashed || connection.binary_sha256().is_some() {
                return Ok(connection.clone());
            }
            if let Some(unhashed) = slot.take() {
                tokio::spawn(async move { unhashed.shutdown().await });
            }
        }
        let (connection, fresh) =
            handshake_with(&self.path, self.name(), self.timeouts, hashed).await?;
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

    /// Calls `method`; a dead or misbehaving plugin is stopped, reaped and reported. `pin` is the
    /// pin of the credential in `params`, if it has one (see [`super::pin`]).
    async fn call<P, R>(
        &self,
        method: &str,
        params: &P,
        limit: Duration,
        pin: Option<&str>,
    ) -> ProviderResult<R>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        let options = CallOptions {
            pin,
            returns_credential: false,
        };
        self.exchange(method, params, limit, options)
            .await
            .map(|exchange| exchange.result)
            .map_err(Rejected::into_error)
    }

    /// Like [`call`](Self::call), with "method not found" read as "not implemented, use the
    /// trait's default", as for a built-in that does not override the method.
    async fn call_or_default<P, R>(
        &self,
        method: &str,
        params: &P,
        pin: Option<&str>,
    ) -> ProviderResult<R>
    where
        P: Serialize + Sync,
        R: DeserializeOwned + Default,
    {
        let options = CallOptions {
            pin,
            returns_credential: false,
        };
        match self
            .exchange(method, params, self.timeouts.call, options)
            .await
        {
            Ok(exchange) => Ok(exchange.result),
            Err(Rejected::NotFound(_)) => Ok(R::default()),
            Err(Rejected::Other(err)) => Err(err),
        }
    }

    /// One call, on the running process (started if needed): the pin checked first, the known
    /// secrets handed to its output scrubber, its log held if asked.
    async fn exchange<P, R>(
        &self,
        method: &str,
        params: &P,
        limit: Duration,
        options: CallOptions<'_>,
    ) -> Result<Exchange<R>, Rejected>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        let hashed = options.pin.is_some() || options.returns_credential;
        let connection = self
            .connection(hashed)
            .await
            .map_err(|fault| Rejected::Other(fault.into()))?;
        if let Some(pin) = options.pin {
            self.check_pin(&connection, pin).map_err(Rejected::Other)?;
        }
        connection.remember_secrets(&self.secrets());
        let held = options.returns_credential.then(|| connection.hold_output());
        let fault = match connection.call(method, params, limit).await {
            Ok(result) => {
                return Ok(Exchange {
                    result,
                    held,
                    connection,
                });
            }
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
            Err(CallError::Fatal(fault)) => fault,
        };
        {
            let mut slot = self.connection.lock().await;
            if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &connection)) {
                *slot = None;
            }
        }
        Err(Rejected::Other(fault.into()))
    }

    /// A JSON-RPC error as a provider error: "method not found" is `unsupported`, a provider
    /// error carries its own kind and hint, anything else is internal.
    /// `text` with every credential this plugin has handled replaced by `[REDACTED]`: what a
    /// plugin says is shown to the user, and a careless plugin may quote a token.
    fn redact(&self, text: &str) -> String {
        self.secrets().redact(text).into_owned()
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
        let options = CallOptions {
            pin: None,
            returns_credential: true,
        };
        let Exchange {
            result: answer,
            held,
            connection,
        } = self
            .exchange::<_, serde_json::Value>(method::GRANT, &request, limit, options)
            .await
            .map_err(Rejected::into_error)?;
        if let Some(token) = answer
            .pointer("/credential/token")
            .and_then(serde_json::Value::as_str)
        {
            self.guard(&Secret::from(token));
        }
        // A prompt's variable is one the plugin reads: its value is a secret from now on,
        // whatever its name (in what it logged during this step, its notes, every later step).
        let prompt_envs = answer
            .get("prompts")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|prompt| prompt.get("env")?.as_str());
        for secret in prompt_envs.filter_map(super::process::env_secret) {
            self.guard(&secret);
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
        // Notes and questions are shown to the user as the plugin wrote them: scrub them.
        Ok(match step {
            GrantStep::Done {
                mut credential,
                notes,
            } => {
                self.pin(&mut credential, &connection)?;
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
            .call(
                method::CONFIGURE_PROXY,
                &params,
                self.timeouts.call,
                pin_of(credential),
            )
            .await?;
        self.guard_rules(&rules);
        Ok(rules)
    }

    async fn container_env(&self, credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        self.guard(&credential.token);
        let params = CredentialRef { credential };
        let result: ContainerEnvResult = self
            .call_or_default(method::CONTAINER_ENV, &params, pin_of(credential))
            .await?;
        Ok(result.env)
    }

    async fn mounts(&self, request: MountsRequest) -> ProviderResult<ContainerFiles> {
        self.guard(&request.credential.token);
        let pin = pin_of(&request.credential);
        self.call_or_default(method::MOUNTS, &request, pin).await
    }

    async fn cleanup(&self, token: CleanupToken) -> ProviderResult<()> {
        let params = CleanupParams { token };
        let _: Option<IgnoredAny> = self.call_or_default(method::CLEANUP, &params, None).await?;
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
        let pin = opts.credential.as_ref().and_then(pin_of);
        self.call(method::PREPARE_CONTAINER, &opts, self.timeouts.call, pin)
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
        let pin = pin_of(&request.credential);
        self.call(method::ENDPOINT, &request, self.timeouts.call, pin)
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
        let options = CallOptions {
            pin: pin_of(credential),
            returns_credential: true,
        };
        let Exchange {
            result: mut refreshed,
            held,
            connection,
        } = self
            .exchange::<_, Refreshed>(method::REFRESH, &params, self.timeouts.call, options)
            .await
            .map_err(Rejected::into_error)?;
        self.guard(&refreshed.credential.token);
        self.guard_rules(&refreshed.rules);
        self.release(held);
        // Pinned to the executable that refreshed it, like a granted one.
        self.pin(&mut refreshed.credential, &connection)?;
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
            .call(method::RUN_STOPPED, &context, self.timeouts.call, None)
            .await?;
        Ok(result.metadata)
    }
}
