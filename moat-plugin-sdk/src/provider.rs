//! The provider traits: one contract for built-ins, plugins and test doubles.
//!
//! Every argument and result is plain data ([`serde`] + [`schemars`]), which is what lets the same
//! trait be implemented in-process by a built-in, by moat's adapter around a
//! `moat-provider-<name>` executable, and by that executable itself through the SDK.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    AgentCommand, CleanupToken, ContainerConfig, ContainerFiles, Credential, EndpointDecl,
    EndpointRequest, EndpointResponse, EnvVar, GrantRequest, GrantStep, MountsRequest, PrepareOpts,
    ProviderInfo, ProviderResult, ProxyRules, Refreshed, RunStoppedContext,
};

/// What every provider implements: get a credential, and say how to use it.
///
/// A run calls, for each granted provider: [`configure_proxy`](Self::configure_proxy) (rules for
/// the proxy), [`container_env`](Self::container_env), [`mounts`](Self::mounts), and at the end
/// [`cleanup`](Self::cleanup) with the token `mounts` returned. `moat grant` calls
/// [`grant`](Self::grant) until it returns [`GrantStep::Done`].
///
/// Optional capabilities are reached through the `as_*` methods, which return `None` unless a
/// provider overrides them; this replaces Go's type assertions and works the same across a
/// process boundary.
#[async_trait]
pub trait CredentialProvider: Send + Sync {
    /// Name, description, aliases, implied dependencies and declared capabilities.
    fn info(&self) -> ProviderInfo;

    /// One step of acquiring a credential: return [`GrantStep::Ask`] with questions, or validate
    /// what you have and return [`GrantStep::Done`]. Never read the terminal: ask.
    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep>;

    /// The proxy rules that apply `credential` on the wire.
    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules>;

    /// Environment variables for the container: placeholders, never the real token.
    async fn container_env(&self, _credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(Vec::new())
    }

    /// Mounts and init files for the container, with an optional cleanup token.
    async fn mounts(&self, _request: MountsRequest) -> ProviderResult<ContainerFiles> {
        Ok(ContainerFiles::default())
    }

    /// Called once when the run ends with the token [`mounts`](Self::mounts) returned.
    async fn cleanup(&self, _token: CleanupToken) -> ProviderResult<()> {
        Ok(())
    }

    /// The agent capability, if implemented.
    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        None
    }

    /// The endpoint capability, if implemented.
    fn as_endpoint(&self) -> Option<&dyn EndpointProvider> {
        None
    }

    /// The refresh capability, if implemented.
    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        None
    }

    /// The run-stopped hook, if implemented.
    fn as_run_stopped(&self) -> Option<&dyn RunStoppedHook> {
        None
    }
}

/// A provider that runs an AI agent (Claude Code, Codex, Gemini CLI) in the container.
#[async_trait]
pub trait AgentProvider: CredentialProvider {
    /// Stage the agent's configuration: files, mounts, environment.
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig>;

    /// The commands this agent adds to moat's CLI (`moat claude`). Declarative: the core builds them.
    fn commands(&self) -> Vec<AgentCommand>;
}

/// A provider that serves HTTP endpoints to the container through the proxy (AWS's credential
/// endpoint).
#[async_trait]
pub trait EndpointProvider: CredentialProvider {
    /// The path prefixes to forward.
    fn endpoints(&self) -> Vec<EndpointDecl>;

    /// Answer one request.
    async fn endpoint(&self, request: EndpointRequest) -> ProviderResult<EndpointResponse>;
}

/// A provider whose credential can be renewed while a run goes on.
#[async_trait]
pub trait RefreshableProvider: CredentialProvider {
    /// How often to refresh.
    fn refresh_interval(&self) -> Duration;

    /// Whether this particular credential can be refreshed (a token from an environment variable
    /// usually cannot). Plugins answer `true` and return
    /// [`ErrorKind::RefreshNotSupported`](crate::ErrorKind::RefreshNotSupported) from `refresh`.
    fn can_refresh(&self, _credential: &Credential) -> bool {
        true
    }

    /// Renew the credential and return it with the rules that use it.
    async fn refresh(&self, credential: &Credential) -> ProviderResult<Refreshed>;
}

/// A provider that wants to know when a run has stopped.
#[async_trait]
pub trait RunStoppedHook: CredentialProvider {
    /// Called exactly once per run after the container exits; the returned entries are stored in
    /// the run's metadata under `provider_meta`.
    async fn run_stopped(
        &self,
        context: RunStoppedContext,
    ) -> ProviderResult<BTreeMap<String, String>>;
}
