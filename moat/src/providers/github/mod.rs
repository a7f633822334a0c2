//! The GitHub provider: a token for `api.github.com` (Bearer) and `github.com` (git over HTTPS,
//! which accepts only Basic `x-access-token:<token>`).

mod grant;

use std::time::Duration;

use base64::Engine as _;
use moat_plugin_sdk::{
    Capability, Credential, CredentialProvider, EnvVar, ErrorKind, GrantRequest, GrantStep,
    ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, RefreshableProvider,
    Refreshed, Secret, async_trait,
};

/// Overrides the GitHub API base URL (default `https://api.github.com`), for GitHub Enterprise or
/// a local test server. Combine with `MOAT_EXTRA_CA_CERTS` when it uses a private CA.
pub const API_URL_ENV: &str = "MOAT_GITHUB_API_URL";

/// What the container sees in `GH_TOKEN`: shaped like a classic PAT so tools accept it, and
/// useless anywhere but through moat's proxy.
pub const TOKEN_PLACEHOLDER: &str = "ghp_moatProxyInjectedPlaceholder000000000000";

const NAME: &str = "github";
const API_HOST: &str = "api.github.com";
const GIT_HOST: &str = "github.com";
/// Tokens from the gh CLI rotate when the user re-authenticates gh; env and pasted tokens do not.
const REFRESH_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// The built-in GitHub provider.
#[derive(Debug, Clone)]
pub struct GithubProvider {
    api_url: String,
    gh_program: String,
}

impl GithubProvider {
    /// The provider configured from the environment ([`API_URL_ENV`]).
    pub fn from_env() -> Self {
        let api_url = std::env::var(API_URL_ENV)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "https://api.github.com".to_string());
        GithubProvider {
            api_url: api_url.trim_end_matches('/').to_string(),
            gh_program: "gh".into(),
        }
    }
}

#[async_trait]
impl CredentialProvider for GithubProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "GitHub token");
        info.implied_dependencies = vec!["gh".into(), "git".into()];
        info.capabilities = vec![Capability::Refresh];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        grant::grant(self, request).await
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let token = credential.token.expose();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let rule = |host: &str, value: String| ProxyRule::Credential {
            host: host.into(),
            header: "Authorization".into(),
            value: Secret::new(value),
            grant: NAME.into(),
        };
        Ok(ProxyRules::new()
            .with(rule(API_HOST, format!("Bearer {token}")))
            .with(rule(GIT_HOST, format!("Basic {basic}"))))
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(vec![
            EnvVar::new("GH_TOKEN", TOKEN_PLACEHOLDER),
            // Without a terminal, git would otherwise hang asking for a password on a 401.
            EnvVar::new("GIT_TERMINAL_PROMPT", "0"),
        ])
    }

    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        Some(self)
    }
}

#[async_trait]
impl RefreshableProvider for GithubProvider {
    fn refresh_interval(&self) -> Duration {
        REFRESH_INTERVAL
    }

    fn can_refresh(&self, credential: &Credential) -> bool {
        credential.token_source() == Some(grant::SOURCE_CLI)
    }

    async fn refresh(&self, credential: &Credential) -> ProviderResult<Refreshed> {
        if !self.can_refresh(credential) {
            return Err(ProviderError::new(
                ErrorKind::RefreshNotSupported,
                "only GitHub tokens from the gh CLI can be refreshed",
            ));
        }
        let token = grant::gh_auth_token(&self.gh_program)
            .await
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::TokenRevoked,
                    "the gh CLI no longer returns a token",
                )
                .with_hint("Run 'gh auth login', then 'moat grant github'")
            })?;
        let mut renewed = credential.clone();
        renewed.token = token;
        renewed.created_at = chrono::Utc::now();
        let rules = self.configure_proxy(&renewed).await?;
        Ok(Refreshed {
            credential: renewed,
            rules,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> GithubProvider {
        GithubProvider {
            api_url: "https://127.0.0.1:9".into(),
            gh_program: "/nonexistent/gh".into(),
        }
    }

    #[tokio::test]
    async fn rules_use_bearer_for_the_api_and_basic_for_git() {
        let credential = Credential::new(NAME, "ghp_realtoken");
        let rules = provider().configure_proxy(&credential).await.unwrap();
        let values: Vec<(String, String)> = rules
            .rules
            .iter()
            .map(|rule| match rule {
                ProxyRule::Credential {
                    host, value, grant, ..
                } => {
                    assert_eq!(grant, NAME);
                    (host.clone(), value.expose().to_string())
                }
                other => panic!("unexpected rule {other:?}"),
            })
            .collect();
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghp_realtoken");
        assert_eq!(
            values,
            vec![
                ("api.github.com".into(), "Bearer ghp_realtoken".into()),
                ("github.com".into(), format!("Basic {basic}")),
            ]
        );
    }

    #[tokio::test]
    async fn container_sees_only_the_placeholder() {
        let credential = Credential::new(NAME, "ghp_realtoken");
        let env = provider().container_env(&credential).await.unwrap();
        assert!(env.iter().all(|var| !var.value.contains("ghp_realtoken")));
        assert_eq!(env[0], EnvVar::new("GH_TOKEN", TOKEN_PLACEHOLDER));
    }

    #[tokio::test]
    async fn only_gh_cli_tokens_refresh() {
        let p = provider();
        let from_env = Credential::new(NAME, "t").with_metadata("token_source", "env");
        let from_cli = Credential::new(NAME, "t").with_metadata("token_source", "cli");
        assert!(!p.can_refresh(&from_env));
        assert!(p.can_refresh(&from_cli));
        let err = p.refresh(&from_env).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RefreshNotSupported);
        // The gh binary is gone: a clear error, not a panic.
        let err = p.refresh(&from_cli).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::TokenRevoked);
    }
}
