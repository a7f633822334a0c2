//! The provider: a personal access token sent as `PRIVATE-TOKEN` to gitlab.com.

use std::time::Duration;

use moat_plugin_sdk::{
    Credential, CredentialProvider, EnvVar, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE,
    Prompt, ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, Secret,
    async_trait,
};
use serde::Deserialize;

/// Overrides the GitLab base URL used to validate tokens (default `https://gitlab.com`), for a
/// self-managed instance or a local test server.
pub const URL_ENV: &str = "MOAT_GITLAB_URL";
/// Extra PEM trust roots, the same variable moat itself honours.
pub const EXTRA_CA_ENV: &str = "MOAT_EXTRA_CA_CERTS";

/// What the container sees in `GITLAB_TOKEN`: shaped like a GitLab PAT, useless without the proxy.
pub const TOKEN_PLACEHOLDER: &str = "glpat-moatProxyInjectedPlaceholder0000";

const NAME: &str = "gitlab";
const HEADER: &str = "PRIVATE-TOKEN";
const HOSTS: [&str; 2] = ["gitlab.com", "*.gitlab.com"];
const ENV_VARS: [&str; 2] = ["GITLAB_TOKEN", "GL_TOKEN"];
const TOKEN: &str = "token";
const HINT: &str = "Run 'moat grant gitlab' and enter a valid GitLab personal access token";
const PAT_HELP: &str = "Create a personal access token at https://gitlab.com/-/user_settings/personal_access_tokens \
with the scopes the agent needs (api, or read_api and write_repository).";

/// The GitLab provider.
pub struct GitlabProvider {
    base_url: String,
}

impl GitlabProvider {
    /// Configured from [`URL_ENV`].
    pub fn from_env() -> Self {
        let base_url = std::env::var(URL_ENV).ok().filter(|url| !url.is_empty());
        let base_url = base_url.unwrap_or_else(|| "https://gitlab.com".into());
        GitlabProvider {
            base_url: base_url.trim_end_matches('/').into(),
        }
    }

    async fn validate(&self, token: &Secret) -> ProviderResult<String> {
        #[derive(Deserialize)]
        struct User {
            username: String,
        }
        let url = format!("{}/api/v4/user", self.base_url);
        let network = |what: String| {
            ProviderError::new(ErrorKind::Network, what).with_hint(
                "Check your network (and MOAT_EXTRA_CA_CERTS), then run 'moat grant gitlab' again",
            )
        };
        let response = client()?
            .get(&url)
            .header(HEADER, token.expose())
            .send()
            .await
            .map_err(|err| network(format!("cannot reach GitLab at {url}: {err}")))?;
        match response.status().as_u16() {
            200 => {
                let user: User = response
                    .json()
                    .await
                    .map_err(|err| network(format!("unexpected answer from {url}: {err}")))?;
                Ok(user.username)
            }
            401 | 403 => Err(ProviderError::new(
                ErrorKind::InvalidCredential,
                "GitLab rejected the token",
            )
            .with_hint(HINT)),
            status => Err(network(format!("GitLab answered {status} to {url}"))),
        }
    }
}

fn client() -> ProviderResult<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("moat-provider-gitlab/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(10));
    if let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).map_err(|err| {
            ProviderError::internal(format!(
                "cannot read {EXTRA_CA_ENV} file {}: {err}",
                path.to_string_lossy()
            ))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            ProviderError::internal(format!("{EXTRA_CA_ENV} holds no usable certificate: {err}"))
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|err| ProviderError::internal(format!("cannot set up HTTPS: {err}")))
}

#[async_trait]
impl CredentialProvider for GitlabProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "GitLab personal access token");
        info.aliases = vec!["gl".into()];
        info.implied_dependencies = vec!["git".into()];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        let mut notes = Vec::new();
        let (token, source) = if let Some(answer) = request.answer(TOKEN) {
            (
                answer
                    .as_secret()
                    .map(|s| s.expose().trim().to_string())
                    .unwrap_or_default(),
                "prompt",
            )
        } else if let Some((var, token)) = ENV_VARS.iter().find_map(|var| {
            std::env::var(var)
                .ok()
                .filter(|t| !t.trim().is_empty())
                .map(|t| (var, t))
        }) {
            notes.push(format!("Using token from {var} environment variable"));
            (token.trim().to_string(), "env")
        } else {
            let prompt = Prompt::secret(TOKEN, "GitLab token")
                .with_help(PAT_HELP)
                .with_env(ENV_VARS[0]);
            return Ok(GrantStep::Ask {
                prompts: vec![prompt],
                notes,
            });
        };
        if token.is_empty() {
            return Err(
                ProviderError::new(ErrorKind::InvalidInput, "no GitLab token was entered")
                    .with_hint(HINT),
            );
        }
        let token = Secret::new(token);
        let username = self.validate(&token).await?;
        notes.push(format!("Authenticated as: {username}"));
        let credential = Credential::new(NAME, token)
            .with_metadata(META_TOKEN_SOURCE, source)
            .with_metadata("login", username);
        Ok(GrantStep::Done { credential, notes })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let rules = HOSTS.iter().map(|host| ProxyRule::Credential {
            host: host.to_string(),
            header: HEADER.into(),
            value: credential.token.clone(),
            grant: NAME.into(),
        });
        Ok(ProxyRules {
            rules: rules.collect(),
            allow_hosts: Vec::new(),
        })
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(vec![EnvVar::new("GITLAB_TOKEN", TOKEN_PLACEHOLDER)])
    }
}
