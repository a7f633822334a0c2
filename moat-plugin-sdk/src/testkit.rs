//! Test doubles for code that uses providers.
//!
//! [`MockProvider`] implements every capability, answers from a script set with a fluent builder,
//! and records the calls it received:
//!
//! ```
//! use moat_plugin_sdk::testkit::MockProvider;
//! use moat_plugin_sdk::{Capability, CredentialProvider};
//!
//! let mock = MockProvider::new("mock").alias("mk").agent();
//! assert_eq!(mock.info().aliases, vec!["mk".to_string()]);
//! assert!(mock.info().has(Capability::Agent));
//! assert!(mock.as_agent().is_some());
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    AgentCommand, AgentProvider, Capability, CleanupToken, ContainerConfig, ContainerFiles,
    Credential, CredentialProvider, EndpointDecl, EndpointProvider, EndpointRequest,
    EndpointResponse, EnvVar, GrantRequest, GrantStep, MountsRequest, PrepareOpts, ProviderInfo,
    ProviderResult, ProxyRule, ProxyRules, RefreshableProvider, Refreshed, RunStoppedContext,
    RunStoppedHook, Secret,
};

type GrantScript = Arc<dyn Fn(&GrantRequest) -> ProviderResult<GrantStep> + Send + Sync>;

/// A provider whose answers are set by a builder. By default it grants the token `mock-token`
/// at once and injects `Authorization: Bearer <token>` on `<name>.example.test`.
#[derive(Clone)]
pub struct MockProvider {
    info: ProviderInfo,
    grant: GrantScript,
    rules: Option<ProxyRules>,
    env: Vec<EnvVar>,
    files: ContainerFiles,
    staged: Option<ContainerConfig>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl MockProvider {
    /// A mock named `name` with only the credential capability.
    pub fn new(name: &str) -> Self {
        let provider = name.to_string();
        MockProvider {
            info: ProviderInfo::new(name, format!("Mock provider {name}")),
            grant: Arc::new(move |_| {
                let credential = Credential::new(provider.clone(), "mock-token");
                Ok(GrantStep::Done {
                    credential,
                    notes: vec![],
                })
            }),
            rules: None,
            env: Vec::new(),
            files: ContainerFiles::default(),
            staged: None,
            calls: Arc::default(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.info.description = description.into();
        self
    }

    /// Adds an alias.
    pub fn alias(mut self, alias: &str) -> Self {
        self.info.aliases.push(alias.into());
        self
    }

    /// Adds an implied dependency.
    pub fn implies(mut self, dependency: &str) -> Self {
        self.info.implied_dependencies.push(dependency.into());
        self
    }

    /// Stores credentials under `key` instead of the name.
    pub fn store_key(mut self, key: &str) -> Self {
        self.info.store_key = Some(key.into());
        self
    }

    /// Answers every grant step with `script(request)`.
    pub fn grant_with(
        mut self,
        script: impl Fn(&GrantRequest) -> ProviderResult<GrantStep> + Send + Sync + 'static,
    ) -> Self {
        self.grant = Arc::new(script);
        self
    }

    /// Returns these rules from `configure_proxy` instead of the default.
    pub fn rules(mut self, rules: ProxyRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// Adds a container environment variable.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push(EnvVar::new(name, value));
        self
    }

    /// Returns these files from `mounts`.
    pub fn files(mut self, files: ContainerFiles) -> Self {
        self.files = files;
        self
    }

    /// Declares the agent capability and returns `config` from `prepare_container` (without
    /// it, `prepare_container` answers with the `env` and `files` set for the other calls).
    pub fn staged(mut self, config: ContainerConfig) -> Self {
        self.staged = Some(config);
        self.agent()
    }

    /// Declares the agent capability.
    pub fn agent(self) -> Self {
        self.capability(Capability::Agent)
    }

    /// Declares the endpoint capability.
    pub fn endpoint(self) -> Self {
        self.capability(Capability::Endpoint)
    }

    /// Declares the refresh capability.
    pub fn refreshable(self) -> Self {
        self.capability(Capability::Refresh)
    }

    /// Declares the run-stopped hook.
    pub fn run_stopped_hook(self) -> Self {
        self.capability(Capability::RunStopped)
    }

    fn capability(mut self, capability: Capability) -> Self {
        if !self.info.has(capability) {
            self.info.capabilities.push(capability);
        }
        self
    }

    /// The methods called so far, in order (`grant`, `configure_proxy`, ...).
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("mock call log").clone()
    }

    fn record(&self, method: &str) {
        self.calls
            .lock()
            .expect("mock call log")
            .push(method.to_string());
    }
}

#[async_trait]
impl CredentialProvider for MockProvider {
    fn info(&self) -> ProviderInfo {
        self.info.clone()
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        self.record("grant");
        (self.grant)(&request)
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        self.record("configure_proxy");
        Ok(self.rules.clone().unwrap_or_else(|| {
            ProxyRules::new().with(ProxyRule::Credential {
                host: format!("{}.example.test", self.info.name),
                header: "Authorization".into(),
                value: Secret::new(format!("Bearer {}", credential.token.expose())),
                grant: self.info.name.clone(),
            })
        }))
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        self.record("container_env");
        Ok(self.env.clone())
    }

    async fn mounts(&self, _: MountsRequest) -> ProviderResult<ContainerFiles> {
        self.record("mounts");
        Ok(self.files.clone())
    }

    async fn cleanup(&self, token: CleanupToken) -> ProviderResult<()> {
        self.record(&format!("cleanup:{}", token.0));
        Ok(())
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        self.info.has(Capability::Agent).then_some(self as _)
    }

    fn as_endpoint(&self) -> Option<&dyn EndpointProvider> {
        self.info.has(Capability::Endpoint).then_some(self as _)
    }

    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        self.info.has(Capability::Refresh).then_some(self as _)
    }

    fn as_run_stopped(&self) -> Option<&dyn RunStoppedHook> {
        self.info.has(Capability::RunStopped).then_some(self as _)
    }
}

#[async_trait]
impl AgentProvider for MockProvider {
    async fn prepare_container(&self, _: PrepareOpts) -> ProviderResult<ContainerConfig> {
        self.record("prepare_container");
        Ok(self.staged.clone().unwrap_or_else(|| ContainerConfig {
            env: self.env.clone(),
            files: self.files.clone(),
            withhold_env: Vec::new(),
        }))
    }

    fn commands(&self) -> Vec<AgentCommand> {
        vec![AgentCommand {
            name: self.info.name.clone(),
            about: format!("Run the {} agent", self.info.name),
            argv: vec![self.info.name.clone()],
            options: Vec::new(),
            dependencies: Vec::new(),
            hosts: Vec::new(),
            grants: vec![self.info.name.clone()],
        }]
    }
}

#[async_trait]
impl EndpointProvider for MockProvider {
    fn endpoints(&self) -> Vec<EndpointDecl> {
        vec![EndpointDecl {
            path: format!("/_{}/", self.info.name),
            description: "mock endpoint".into(),
        }]
    }

    async fn endpoint(&self, request: EndpointRequest) -> ProviderResult<EndpointResponse> {
        self.record("endpoint");
        Ok(EndpointResponse {
            status: 200,
            headers: BTreeMap::new(),
            body: request.path,
        })
    }
}

#[async_trait]
impl RefreshableProvider for MockProvider {
    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn refresh(&self, credential: &Credential) -> ProviderResult<Refreshed> {
        self.record("refresh");
        let credential = Credential::new(credential.provider.clone(), "mock-token-refreshed");
        let rules = self.configure_proxy(&credential).await?;
        Ok(Refreshed { credential, rules })
    }
}

#[async_trait]
impl RunStoppedHook for MockProvider {
    async fn run_stopped(
        &self,
        context: RunStoppedContext,
    ) -> ProviderResult<BTreeMap<String, String>> {
        self.record("run_stopped");
        Ok(BTreeMap::from([("run_id".to_string(), context.run_id)]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, ErrorKind, Prompt, ProviderError};

    #[tokio::test]
    async fn default_mock_grants_and_records_calls() {
        let mock = MockProvider::new("m");
        let GrantStep::Done { credential, .. } = mock.grant(GrantRequest::default()).await.unwrap()
        else {
            panic!("expected done");
        };
        assert_eq!(credential.token.expose(), "mock-token");
        let rules = mock.configure_proxy(&credential).await.unwrap();
        assert_eq!(rules.hosts(), vec!["m.example.test"]);
        assert_eq!(mock.calls(), vec!["grant", "configure_proxy"]);
        assert!(mock.as_agent().is_none());
    }

    #[tokio::test]
    async fn scripted_grant_asks_then_fails() {
        let mock = MockProvider::new("m").grant_with(|req| match req.answer("token") {
            None => Ok(GrantStep::Ask {
                prompts: vec![Prompt::secret("token", "Token")],
                notes: vec![],
            }),
            Some(Answer::Secret(_)) => Err(ProviderError::new(ErrorKind::InvalidCredential, "bad")),
            Some(_) => unreachable!(),
        });
        assert!(matches!(
            mock.grant(GrantRequest::default()).await,
            Ok(GrantStep::Ask { .. })
        ));
        let answered = GrantRequest::default().with_answer("token", Answer::Secret("x".into()));
        assert_eq!(
            mock.grant(answered).await.unwrap_err().kind,
            ErrorKind::InvalidCredential
        );
    }

    #[tokio::test]
    async fn capabilities_follow_the_builder() {
        let mock = MockProvider::new("m")
            .agent()
            .endpoint()
            .refreshable()
            .run_stopped_hook();
        assert!(mock.as_agent().is_some() && mock.as_endpoint().is_some());
        let refreshed = mock
            .as_refreshable()
            .unwrap()
            .refresh(&Credential::new("m", "t"))
            .await
            .unwrap();
        assert_eq!(refreshed.credential.token.expose(), "mock-token-refreshed");
    }
}
