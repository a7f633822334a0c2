//! The Anthropic provider: an API key for `api.anthropic.com` (`x-api-key`), from
//! `ANTHROPIC_API_KEY` or a hidden prompt, checked against the Messages API before it is kept.
//!
//! The container gets `ANTHROPIC_API_KEY=moat-proxy-injected`; the proxy puts the real key in
//! `x-api-key`. Granted without `claude`, it also stages Claude Code's onboarding files (no login
//! of its own: the key is the login), so `moat claude` works with an API key alone. Granted with
//! `claude`, the claude provider keeps the key out of the container's environment and gives it to
//! shell commands only (see `providers/claude`).

pub mod api;

use moat_plugin_sdk::{
    AgentCommand, AgentProvider, Capability, ContainerConfig, Credential, CredentialProvider,
    EnvVar, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE, PrepareOpts, Prompt,
    ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, Secret, async_trait,
};

use self::api::{API_HOST, Auth};

/// What the container sees in `ANTHROPIC_API_KEY`.
pub const KEY_PLACEHOLDER: &str = "moat-proxy-injected";
/// The variable the key comes from, and the one the container gets.
pub const KEY_ENV: &str = "ANTHROPIC_API_KEY";

pub(crate) const NAME: &str = "anthropic";
const KEY_PREFIX: &str = "sk-ant-";
const ANSWER: &str = "api_key";
const FIX: &str = "moat grant anthropic";
const KEY_HELP: &str = "\
Create an API key at https://console.anthropic.com/settings/keys (it starts with sk-ant-).";

/// The built-in Anthropic API key provider.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    api_url: String,
    /// The host user's home, for Claude Code's settings staged when `claude` is not granted.
    home: Option<std::path::PathBuf>,
}

impl AnthropicProvider {
    /// The provider configured from the environment ([`api::API_URL_ENV`], `HOME`).
    pub fn from_env() -> Self {
        AnthropicProvider::new(
            api::api_url_from_env(),
            std::env::var_os("HOME").map(Into::into),
        )
    }

    /// A provider validating against `api_url`, reading the host's Claude Code files under `home`.
    pub fn new(api_url: impl Into<String>, home: Option<std::path::PathBuf>) -> Self {
        AnthropicProvider {
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            home,
        }
    }

    async fn finish(
        &self,
        key: &str,
        source: &str,
        mut notes: Vec<String>,
    ) -> ProviderResult<GrantStep> {
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        if key.is_empty() {
            return Err(
                ProviderError::new(ErrorKind::InvalidInput, "no API key was entered")
                    .with_hint(format!("Run '{FIX}' and enter an Anthropic API key")),
            );
        }
        if !key.starts_with(KEY_PREFIX) {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!("an Anthropic API key must start with \"{KEY_PREFIX}\""),
            )
            .with_hint(KEY_HELP));
        }
        let key = Secret::new(key);
        api::validate(&self.api_url, Auth::ApiKey(&key), FIX).await?;
        notes.push("Anthropic accepted the API key".into());
        let credential = Credential::new(NAME, key).with_metadata(META_TOKEN_SOURCE, source);
        Ok(GrantStep::Done { credential, notes })
    }
}

#[async_trait]
impl CredentialProvider for AnthropicProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "Anthropic API key");
        info.capabilities = vec![Capability::Agent];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        if let Some(answer) = request.answer(ANSWER) {
            let key = answer.as_secret().map(|s| s.expose()).unwrap_or_default();
            return self.finish(key, "prompt", Vec::new()).await;
        }
        if let Some(key) = std::env::var(KEY_ENV).ok().filter(|k| !k.trim().is_empty()) {
            let note = format!("Using the API key from the {KEY_ENV} environment variable");
            return self.finish(&key, "env", vec![note]).await;
        }
        let prompt = Prompt::secret(ANSWER, "Anthropic API key")
            .with_help(KEY_HELP)
            .with_env(KEY_ENV);
        Ok(GrantStep::Ask {
            prompts: vec![prompt],
            notes: Vec::new(),
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new().with(ProxyRule::Credential {
            host: API_HOST.into(),
            header: "x-api-key".into(),
            value: credential.token.clone(),
            grant: NAME.into(),
        }))
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(vec![EnvVar::new(KEY_ENV, KEY_PLACEHOLDER)])
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        Some(self)
    }
}

#[async_trait]
impl AgentProvider for AnthropicProvider {
    /// Claude Code's onboarding files when the run has no `claude` grant (which stages them
    /// itself, with its login).
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig> {
        if opts.grants.iter().any(|g| g == super::claude::NAME) {
            return Ok(ContainerConfig::default());
        }
        super::claude::staging::stage(&opts, None, self.home.as_deref())
    }

    fn commands(&self) -> Vec<AgentCommand> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> AnthropicProvider {
        AnthropicProvider::new("https://127.0.0.1:9", None)
    }

    #[tokio::test]
    async fn the_key_goes_in_x_api_key_on_the_api_host_only() {
        let credential = Credential::new(NAME, "sk-ant-api03-real");
        let rules = provider().configure_proxy(&credential).await.unwrap();
        assert_eq!(rules.rules.len(), 1);
        match &rules.rules[0] {
            ProxyRule::Credential {
                host,
                header,
                value,
                grant,
            } => {
                assert_eq!(host, "api.anthropic.com");
                assert_eq!(header, "x-api-key");
                assert_eq!(value.expose(), "sk-ant-api03-real");
                assert_eq!(grant, "anthropic");
            }
            other => panic!("unexpected rule {other:?}"),
        }
        let env = provider().container_env(&credential).await.unwrap();
        assert_eq!(
            env,
            vec![EnvVar::new("ANTHROPIC_API_KEY", "moat-proxy-injected")]
        );
    }

    #[tokio::test]
    async fn a_key_without_the_prefix_is_refused_before_any_request() {
        let request = GrantRequest::default().with_answer(
            ANSWER,
            moat_plugin_sdk::Answer::Secret(Secret::new("sk-proj-x")),
        );
        let err = provider().grant(request).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.to_string().contains("must start with \"sk-ant-\""),
            "{err}"
        );
    }

    #[tokio::test]
    async fn with_claude_granted_nothing_is_staged_without_it_claudes_onboarding_is() {
        let opts = |grants: &[&str]| PrepareOpts {
            credential: None,
            container_home: "/home/moatuser".into(),
            workspace: None,
            grants: grants.iter().map(|g| (*g).to_owned()).collect(),
            mcp_servers: Default::default(),
            runtime_context: None,
            options: serde_json::Value::Null,
        };
        let with = provider()
            .prepare_container(opts(&["claude", "anthropic"]))
            .await
            .unwrap();
        assert_eq!(with, ContainerConfig::default());
        let alone = provider()
            .prepare_container(opts(&["anthropic"]))
            .await
            .unwrap();
        let paths: Vec<String> = alone
            .files
            .init_files
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert!(
            paths.contains(&"/home/moatuser/.claude.json".to_owned()),
            "{paths:?}"
        );
        assert!(
            !paths.iter().any(|p| p.ends_with(".credentials.json")),
            "no login file without the claude grant: {paths:?}"
        );
        assert!(alone.withhold_env.is_empty());
    }
}
