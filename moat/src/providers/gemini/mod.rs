//! The Gemini provider (alias `google`): a Gemini API key for `generativelanguage.googleapis.com`
//! (`x-goog-api-key`), or the Gemini CLI's Google login imported and kept fresh (Bearer on
//! `cloudcode-pa.googleapis.com`, the placeholder swapped for the real token on
//! `oauth2.googleapis.com`, where the Gemini CLI checks its token). And the Gemini CLI as an
//! agent (`moat gemini`), staged with placeholder credentials.

mod grant;
mod oauth;

use std::collections::BTreeMap;
use std::time::Duration;

use moat_plugin_sdk::{
    AgentCommand, AgentOption, AgentProvider, Capability, ContainerConfig, Credential,
    CredentialProvider, EnvVar, ErrorKind, GrantRequest, GrantStep, InitFile, McpServer,
    PrepareOpts, ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules,
    RefreshableProvider, Refreshed, Secret, TransformKind, async_trait,
};

use oauth::Tokens;

/// Overrides the Gemini API base URL used to validate a key (default
/// `https://generativelanguage.googleapis.com`), for a local test server.
pub const API_URL_ENV: &str = "MOAT_GEMINI_API_URL";
/// Overrides Google's OAuth base URL (default `https://oauth2.googleapis.com`; moat posts to
/// `<url>/token`), for a local test server.
pub const OAUTH_URL_ENV: &str = "MOAT_GOOGLE_OAUTH_URL";

/// What the container sees instead of a key or an access token.
pub const PLACEHOLDER: &str = "moat-proxy-injected";

const NAME: &str = "gemini";
const ALIAS: &str = "google";
const API_HOST: &str = "generativelanguage.googleapis.com";
const CODE_ASSIST_HOST: &str = "cloudcode-pa.googleapis.com";
const OAUTH_HOST: &str = "oauth2.googleapis.com";
const AGENT_HOSTS: [&str; 3] = [
    "generativelanguage.googleapis.com",
    "*.googleapis.com",
    "oauth2.googleapis.com",
];
const META_AUTH_TYPE: &str = "auth_type";
const AUTH_OAUTH: &str = "oauth";
const AUTH_API_KEY: &str = "api-key";
/// Google access tokens live an hour.
const REFRESH_INTERVAL: Duration = Duration::from_secs(45 * 60);
/// The scopes of the Gemini CLI's login, as its own `oauth_creds.json` lists them.
const SCOPES: [&str; 4] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "openid",
];

/// The built-in Gemini provider.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    api_url: String,
    oauth_url: String,
}

fn url_from_env(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

impl GeminiProvider {
    /// The provider configured from the environment ([`API_URL_ENV`], [`OAUTH_URL_ENV`]).
    pub fn from_env() -> Self {
        GeminiProvider {
            api_url: url_from_env(API_URL_ENV, "https://generativelanguage.googleapis.com"),
            oauth_url: url_from_env(OAUTH_URL_ENV, "https://oauth2.googleapis.com"),
        }
    }
}

fn is_oauth(credential: &Credential) -> bool {
    credential.metadata.get(META_AUTH_TYPE).map(String::as_str) == Some(AUTH_OAUTH)
}

#[async_trait]
impl CredentialProvider for GeminiProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "Gemini API key or OAuth credentials");
        info.aliases = vec![ALIAS.into()];
        info.capabilities = vec![Capability::Agent, Capability::Refresh];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        grant::grant(self, request).await
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        if !is_oauth(credential) {
            return Ok(ProxyRules::new().with(ProxyRule::Credential {
                host: API_HOST.into(),
                header: "x-goog-api-key".into(),
                value: credential.token.clone(),
                grant: NAME.into(),
            }));
        }
        let access = Tokens::of(credential)?.access_token;
        let mut rules = ProxyRules::new()
            .with(ProxyRule::Credential {
                host: CODE_ASSIST_HOST.into(),
                header: "Authorization".into(),
                value: Secret::new(format!("Bearer {}", access.expose())),
                grant: NAME.into(),
            })
            // The Gemini CLI checks its (placeholder) token at tokeninfo: the real one goes out,
            // and an answer echoing it comes back with the placeholder.
            .with(ProxyRule::TokenSubstitution {
                host: OAUTH_HOST.into(),
                placeholder: PLACEHOLDER.into(),
                real: access,
            })
            .with(ProxyRule::ResponseTransform {
                host: OAUTH_HOST.into(),
                kind: TransformKind::ResponseScrub,
            });
        rules.allow_hosts = vec!["*.googleapis.com".into()];
        Ok(rules)
    }

    async fn container_env(&self, credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(if is_oauth(credential) {
            Vec::new()
        } else {
            vec![EnvVar::new(grant::ENV_VAR, PLACEHOLDER)]
        })
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        Some(self)
    }

    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        Some(self)
    }
}

#[async_trait]
impl AgentProvider for GeminiProvider {
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig> {
        let dir = opts.container_home.join(".gemini");
        // Without a credential the Gemini CLI starts its own Google login.
        let oauth = opts.credential.as_ref().is_none_or(is_oauth);
        let mut init_files = vec![InitFile {
            path: dir.join("settings.json"),
            content: settings_json(oauth, &opts.mcp_servers),
        }];
        if opts.credential.as_ref().is_some_and(is_oauth) {
            let expiry = chrono::Utc::now() + chrono::Duration::days(365);
            init_files.push(InitFile {
                path: dir.join("oauth_creds.json"),
                content: oauth_creds_json(expiry.timestamp_millis()),
            });
        }
        init_files.extend(opts.context_file(dir.join("GEMINI.md")));
        Ok(ContainerConfig::from_init_files(init_files))
    }

    fn commands(&self) -> Vec<AgentCommand> {
        vec![AgentCommand {
            name: NAME.into(),
            about: "Run the Gemini CLI in a container, its credential injected by moat's proxy"
                .into(),
            argv: vec!["gemini".into()],
            options: vec![
                AgentOption::value(
                    "prompt",
                    Some('p'),
                    "PROMPT",
                    "Run this prompt non-interactively (gemini -p) and exit",
                    &["-p", "{value}"],
                )
                .batch(),
            ],
            dependencies: vec!["node".into(), "git".into(), "npm:@google/gemini-cli".into()],
            hosts: AGENT_HOSTS.iter().map(|h| h.to_string()).collect(),
            grants: vec![NAME.into()],
        }]
    }
}

#[async_trait]
impl RefreshableProvider for GeminiProvider {
    fn refresh_interval(&self) -> Duration {
        REFRESH_INTERVAL
    }

    fn can_refresh(&self, credential: &Credential) -> bool {
        is_oauth(credential)
            && Tokens::of(credential).is_ok_and(|tokens| !tokens.refresh_token.is_empty())
    }

    async fn refresh(&self, credential: &Credential) -> ProviderResult<Refreshed> {
        if !self.can_refresh(credential) {
            return Err(ProviderError::new(
                ErrorKind::RefreshNotSupported,
                "only imported Gemini CLI logins can be refreshed (an API key does not expire)",
            ));
        }
        let tokens = Tokens::of(credential)?;
        let source = credential.token_source().unwrap_or("oauth").to_string();
        let mut renewed = self
            .refreshed_credential(tokens.refresh_token, &source)
            .await?;
        // Keep what the grant recorded (login facts) beside the new token.
        for (key, value) in &credential.metadata {
            if key != "refresh_token" {
                renewed
                    .metadata
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
        }
        if renewed.scopes.is_empty() {
            renewed.scopes = credential.scopes.clone();
        }
        let rules = self.configure_proxy(&renewed).await?;
        Ok(Refreshed {
            credential: renewed,
            rules,
        })
    }
}

/// `~/.gemini/settings.json`: which login the Gemini CLI uses, and the run's MCP servers through
/// moat's relay.
fn settings_json(oauth: bool, mcp_servers: &BTreeMap<String, McpServer>) -> String {
    let selected = if oauth {
        "oauth-personal"
    } else {
        "gemini-api-key"
    };
    let mut settings = serde_json::json!({
        "security": { "auth": { "selectedType": selected } },
    });
    if !mcp_servers.is_empty() {
        let servers: serde_json::Map<String, serde_json::Value> = mcp_servers
            .iter()
            .map(|(name, server)| {
                let mut entry = serde_json::json!({ "httpUrl": server.url });
                if !server.headers.is_empty() {
                    entry["headers"] = serde_json::json!(server.headers);
                }
                (name.clone(), entry)
            })
            .collect();
        settings["mcpServers"] = serde_json::Value::Object(servers);
    }
    format!("{settings:#}\n")
}

/// `~/.gemini/oauth_creds.json` with placeholder tokens and a far expiry, so the Gemini CLI
/// believes it is logged in and never refreshes by itself (moat does, on the host).
fn oauth_creds_json(expiry_ms: i64) -> String {
    let creds = serde_json::json!({
        "access_token": PLACEHOLDER,
        "refresh_token": PLACEHOLDER,
        "scope": SCOPES.join(" "),
        "token_type": "Bearer",
        "expiry_date": expiry_ms,
    });
    format!("{creds:#}\n")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn provider() -> GeminiProvider {
        GeminiProvider {
            api_url: "https://127.0.0.1:9".into(),
            oauth_url: "https://127.0.0.1:9".into(),
        }
    }

    fn key_credential() -> Credential {
        Credential::new(NAME, "AIzaRealKey").with_metadata(META_AUTH_TYPE, AUTH_API_KEY)
    }

    fn oauth_credential() -> Credential {
        let tokens = Tokens {
            access_token: Secret::new("ya29.real-access"),
            refresh_token: Secret::new("1//real-refresh"),
        };
        Credential::new(NAME, tokens.to_secret().unwrap())
            .with_metadata(META_AUTH_TYPE, AUTH_OAUTH)
            .with_metadata("token_source", "oauth")
    }

    fn opts(credential: Option<Credential>) -> PrepareOpts {
        PrepareOpts {
            credential,
            container_home: "/home/moatuser".into(),
            workspace: None,
            grants: vec![NAME.into()],
            mcp_servers: BTreeMap::new(),
            runtime_context: None,
            options: serde_json::Value::Null,
        }
    }

    fn file<'a>(config: &'a ContainerConfig, path: &str) -> Option<&'a str> {
        config
            .files
            .init_files
            .iter()
            .find(|f| f.path == Path::new(path))
            .map(|f| f.content.as_str())
    }

    fn json(text: Option<&str>) -> serde_json::Value {
        serde_json::from_str(text.expect("the file is staged")).unwrap()
    }

    #[test]
    fn info_has_the_alias_and_the_capabilities() {
        let info = provider().info();
        assert_eq!(info.name, "gemini");
        assert_eq!(info.aliases, vec!["google"]);
        assert_eq!(info.store_key(), "gemini");
        assert!(info.has(Capability::Agent) && info.has(Capability::Refresh));
    }

    #[tokio::test]
    async fn a_key_goes_in_x_goog_api_key_on_the_gemini_api() {
        let rules = provider().configure_proxy(&key_credential()).await.unwrap();
        assert_eq!(
            rules,
            ProxyRules::new().with(ProxyRule::Credential {
                host: "generativelanguage.googleapis.com".into(),
                header: "x-goog-api-key".into(),
                value: Secret::new("AIzaRealKey"),
                grant: "gemini".into(),
            })
        );
        let env = provider().container_env(&key_credential()).await.unwrap();
        assert_eq!(
            env,
            vec![EnvVar::new("GEMINI_API_KEY", "moat-proxy-injected")]
        );
    }

    #[tokio::test]
    async fn oauth_is_bearer_on_code_assist_and_substitution_on_the_oauth_host() {
        let rules = provider()
            .configure_proxy(&oauth_credential())
            .await
            .unwrap();
        let mut expected = ProxyRules::new()
            .with(ProxyRule::Credential {
                host: "cloudcode-pa.googleapis.com".into(),
                header: "Authorization".into(),
                value: Secret::new("Bearer ya29.real-access"),
                grant: "gemini".into(),
            })
            .with(ProxyRule::TokenSubstitution {
                host: "oauth2.googleapis.com".into(),
                placeholder: "moat-proxy-injected".into(),
                real: Secret::new("ya29.real-access"),
            })
            .with(ProxyRule::ResponseTransform {
                host: "oauth2.googleapis.com".into(),
                kind: TransformKind::ResponseScrub,
            });
        expected.allow_hosts = vec!["*.googleapis.com".into()];
        assert_eq!(rules, expected);
        // The refresh token never reaches the proxy.
        let json = serde_json::to_string(&rules).unwrap();
        assert!(!json.contains("real-refresh"), "{json}");
        assert!(
            provider()
                .container_env(&oauth_credential())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn oauth_staging_has_placeholder_tokens_and_the_oauth_login() {
        let config = provider()
            .prepare_container(opts(Some(oauth_credential())))
            .await
            .unwrap();
        assert_eq!(
            config.files.init_files.len(),
            2,
            "{:?}",
            config.files.init_files
        );
        assert_eq!(
            json(file(&config, "/home/moatuser/.gemini/settings.json")),
            serde_json::json!({ "security": { "auth": { "selectedType": "oauth-personal" } } })
        );
        let creds = json(file(&config, "/home/moatuser/.gemini/oauth_creds.json"));
        assert_eq!(creds["access_token"], "moat-proxy-injected");
        assert_eq!(creds["refresh_token"], "moat-proxy-injected");
        assert_eq!(creds["token_type"], "Bearer");
        assert_eq!(creds["scope"].as_str().unwrap().split(' ').count(), 4);
        let expiry = creds["expiry_date"].as_i64().unwrap();
        let in_a_year = (chrono::Utc::now() + chrono::Duration::days(365)).timestamp_millis();
        assert!((in_a_year - expiry).abs() < 60_000, "{expiry}");
        for file in &config.files.init_files {
            assert!(!file.content.contains("real"), "{}", file.path.display());
        }
    }

    #[tokio::test]
    async fn key_staging_selects_the_api_key_and_adds_mcp_and_gemini_md() {
        let mut opts = opts(Some(key_credential()));
        opts.runtime_context = Some("# Run\n".into());
        opts.mcp_servers.insert(
            "docs".into(),
            McpServer {
                url: "http://moat-proxy:1/mcp/t/docs".into(),
                headers: BTreeMap::from([("Authorization".into(), "moat-stub-oauth:docs".into())]),
            },
        );
        let config = provider().prepare_container(opts).await.unwrap();
        assert_eq!(
            json(file(&config, "/home/moatuser/.gemini/settings.json")),
            serde_json::json!({
                "security": { "auth": { "selectedType": "gemini-api-key" } },
                "mcpServers": { "docs": {
                    "httpUrl": "http://moat-proxy:1/mcp/t/docs",
                    "headers": { "Authorization": "moat-stub-oauth:docs" },
                } },
            })
        );
        assert!(file(&config, "/home/moatuser/.gemini/oauth_creds.json").is_none());
        assert_eq!(
            file(&config, "/home/moatuser/.gemini/GEMINI.md"),
            Some("# Run\n")
        );
        // No credential: the Gemini CLI's own login.
        let config = provider()
            .prepare_container(super::tests::opts(None))
            .await
            .unwrap();
        assert_eq!(
            json(file(&config, "/home/moatuser/.gemini/settings.json"))["security"]["auth"]["selectedType"],
            "oauth-personal"
        );
    }

    #[tokio::test]
    async fn only_oauth_with_a_refresh_token_refreshes() {
        let p = provider();
        assert!(p.can_refresh(&oauth_credential()));
        assert!(!p.can_refresh(&key_credential()));
        let err = p.refresh(&key_credential()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RefreshNotSupported);
        let empty = Tokens {
            access_token: Secret::new("a"),
            refresh_token: Secret::new(""),
        };
        let no_refresh = Credential::new(NAME, empty.to_secret().unwrap())
            .with_metadata(META_AUTH_TYPE, AUTH_OAUTH);
        assert!(!p.can_refresh(&no_refresh));
        // The token endpoint is unreachable: a network error, retried later by the run.
        let err = p.refresh(&oauth_credential()).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Network, "{err}");
    }

    /// A plain-HTTP token endpoint answering one request with `status` and `body`; the request
    /// it received comes back through the handle.
    async fn token_endpoint(status: u16, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_string)
                        })
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&seen).to_string()
        });
        (url, task)
    }

    fn provider_at(oauth_url: String) -> GeminiProvider {
        GeminiProvider {
            api_url: "https://127.0.0.1:9".into(),
            oauth_url,
        }
    }

    #[tokio::test]
    async fn refresh_renews_the_access_token_keeps_the_refresh_token_and_re_emits_the_rules() {
        let (url, request) = token_endpoint(
            200,
            r#"{"access_token":"ya29.renewed","expires_in":3599,"scope":"openid","token_type":"Bearer"}"#,
        )
        .await;
        let old = oauth_credential().with_metadata("login", "someone@example.com");
        let refreshed = provider_at(url).refresh(&old).await.unwrap();
        let request = request.await.unwrap();
        assert!(request.starts_with("POST /token "), "{request}");
        assert!(request.contains("grant_type=refresh_token"), "{request}");
        assert!(
            request.contains("refresh_token=1%2F%2Freal-refresh"),
            "{request}"
        );
        assert!(request.contains("client_id=681255809395-"), "{request}");

        let renewed = &refreshed.credential;
        let tokens = Tokens::of(renewed).unwrap();
        assert_eq!(tokens.access_token.expose(), "ya29.renewed");
        assert_eq!(tokens.refresh_token.expose(), "1//real-refresh");
        assert_eq!(renewed.metadata["auth_type"], "oauth");
        assert_eq!(renewed.metadata["login"], "someone@example.com");
        assert_eq!(renewed.scopes, vec!["openid"]);
        let lifetime = renewed.expires_at.unwrap() - renewed.created_at;
        assert_eq!(lifetime.num_seconds(), 3599);
        assert_eq!(
            refreshed.rules,
            provider().configure_proxy(renewed).await.unwrap()
        );
        assert!(
            serde_json::to_string(&refreshed.rules)
                .unwrap()
                .contains("ya29.renewed")
        );
    }

    #[tokio::test]
    async fn a_revoked_refresh_token_says_so_and_what_to_run() {
        let (url, _request) = token_endpoint(
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        )
        .await;
        let err = provider_at(url)
            .refresh(&oauth_credential())
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::TokenRevoked);
        assert!(err.message.contains("refresh token revoked"), "{err}");
        assert!(
            err.hint.as_deref().unwrap().contains("moat grant gemini"),
            "{err:?}"
        );
        assert!(!err.to_string().contains("real-refresh"), "{err}");
    }

    #[test]
    fn the_agent_command_is_declared() {
        let commands = provider().commands();
        assert_eq!(commands.len(), 1);
        let command = &commands[0];
        assert_eq!(command.name, "gemini");
        assert_eq!(command.argv, vec!["gemini"]);
        assert_eq!(
            command.dependencies,
            vec!["node", "git", "npm:@google/gemini-cli"]
        );
        assert_eq!(
            command.hosts,
            vec![
                "generativelanguage.googleapis.com",
                "*.googleapis.com",
                "oauth2.googleapis.com"
            ]
        );
        assert_eq!(command.grants, vec!["gemini"]);
        let prompt = &command.options[0];
        assert_eq!((prompt.long.as_str(), prompt.short), ("prompt", Some('p')));
        assert_eq!(prompt.argv, vec!["-p", "{value}"]);
        assert!(prompt.batch);
    }
}
