//! The Codex provider (alias `openai`): an OpenAI API key for `api.openai.com` (Bearer), and the
//! Codex CLI as an agent (`moat codex`), staged with placeholder credentials.
//!
//! The credential is stored under `openai`, so `moat grant openai` and `moat grant codex` share
//! it. Only API keys are supported: the reference's grant sources are `OPENAI_API_KEY` and the
//! prompt, not the ChatGPT-login `~/.codex/auth.json`.

mod grant;

use moat_plugin_sdk::{
    AgentCommand, AgentOption, AgentProvider, Capability, ContainerConfig, Credential,
    CredentialProvider, EnvVar, GrantRequest, GrantStep, InitFile, McpServer, PrepareOpts,
    ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, Secret, async_trait,
};

/// Overrides the OpenAI API base URL used to validate a key (default `https://api.openai.com`),
/// for a local test server. Combine with `MOAT_EXTRA_CA_CERTS` when it uses a private CA.
pub const API_URL_ENV: &str = "MOAT_OPENAI_API_URL";

/// What the container sees in `OPENAI_API_KEY` and `~/.codex/auth.json`: shaped like a key so
/// tools accept it, and useless anywhere but through moat's proxy.
pub const KEY_PLACEHOLDER: &str =
    "sk-moat-proxy-injected-placeholder-0000000000000000000000000000000000000000";

const NAME: &str = "codex";
const ALIAS: &str = "openai";
const API_HOST: &str = "api.openai.com";
/// Where moat mounts the workspace in the container.
const WORKSPACE: &str = "/workspace";
/// Hosts the Codex CLI reaches besides the API (login pages, its web backend), allowed under the
/// strict policy with the grant.
const AGENT_HOSTS: [&str; 6] = [
    "api.openai.com",
    "*.openai.com",
    "auth.openai.com",
    "platform.openai.com",
    "chatgpt.com",
    "*.chatgpt.com",
];

/// The built-in Codex (OpenAI) provider.
#[derive(Debug, Clone)]
pub struct CodexProvider {
    api_url: String,
}

impl CodexProvider {
    /// The provider configured from the environment ([`API_URL_ENV`]).
    pub fn from_env() -> Self {
        let api_url = std::env::var(API_URL_ENV)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "https://api.openai.com".to_string());
        CodexProvider {
            api_url: api_url.trim_end_matches('/').to_string(),
        }
    }
}

#[async_trait]
impl CredentialProvider for CodexProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "OpenAI API key, for moat codex (also: openai)");
        info.aliases = vec![ALIAS.into()];
        // Where the Go implementation stored it: `moat grant openai` and `codex` share one file.
        info.store_key = Some(ALIAS.into());
        info.capabilities = vec![Capability::Agent];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        grant::grant(self, request).await
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let mut rules = ProxyRules::new().with(ProxyRule::Credential {
            host: API_HOST.into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: NAME.into(),
        });
        rules.allow_hosts = AGENT_HOSTS.iter().map(|h| h.to_string()).collect();
        Ok(rules)
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(vec![EnvVar::new(grant::ENV_VAR, KEY_PLACEHOLDER)])
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        Some(self)
    }
}

#[async_trait]
impl AgentProvider for CodexProvider {
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig> {
        let require_approval = require_approval(&opts.options)?;
        let dir = opts.container_home.join(".codex");
        let mut init_files = vec![
            InitFile {
                path: dir.join("auth.json"),
                content: auth_json(),
            },
            InitFile {
                path: dir.join("config.toml"),
                content: config_toml(require_approval, &opts.mcp_servers),
            },
        ];
        init_files.extend(opts.context_file(dir.join("AGENTS.md")));
        Ok(ContainerConfig::from_init_files(init_files))
    }

    fn commands(&self) -> Vec<AgentCommand> {
        vec![AgentCommand {
            name: NAME.into(),
            about: "Run the OpenAI Codex CLI in a container, its API key injected by moat's proxy"
                .into(),
            argv: vec!["codex".into()],
            options: vec![
                AgentOption::value(
                    "prompt",
                    Some('p'),
                    "PROMPT",
                    "Run this prompt non-interactively (codex exec) and exit",
                    &["exec", "{value}"],
                )
                .batch(),
            ],
            dependencies: vec!["node".into(), "git".into(), "npm:@openai/codex".into()],
            hosts: AGENT_HOSTS.iter().map(|h| h.to_string()).collect(),
            grants: vec![NAME.into()],
        }]
    }
}

/// `codex.require_approval` from `moat.yaml` (default false: the container is the sandbox).
fn require_approval(options: &serde_json::Value) -> ProviderResult<bool> {
    match options.get("require_approval") {
        None | Some(serde_json::Value::Null) => Ok(false),
        Some(serde_json::Value::Bool(value)) => Ok(*value),
        Some(other) => Err(ProviderError::new(
            moat_plugin_sdk::ErrorKind::InvalidInput,
            format!("codex.require_approval must be true or false, not {other}"),
        )
        .with_hint("Fix the codex section of moat.yaml")),
    }
}

/// `~/.codex/auth.json`: the placeholder key, so Codex starts logged in with an API key.
fn auth_json() -> String {
    let value = serde_json::json!({ grant::ENV_VAR: KEY_PLACEHOLDER });
    format!("{value:#}\n")
}

/// A TOML basic string. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`) are valid TOML.
fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// `~/.codex/config.toml`: no approval prompts and no inner sandbox (the container is the
/// sandbox) unless approval is required; the whole environment for shell commands (the proxy
/// and CA variables live there); `/workspace` trusted; the run's MCP servers through moat's relay.
fn config_toml(
    require_approval: bool,
    mcp_servers: &std::collections::BTreeMap<String, McpServer>,
) -> String {
    let (approval, sandbox) = if require_approval {
        ("on-request", "workspace-write")
    } else {
        ("never", "danger-full-access")
    };
    let mut out = String::from(
        "# Generated by moat for this run; do not edit.\n\
         # Changes are lost when the run ends: configure Codex in moat.yaml instead.\n",
    );
    out.push_str(&format!("approval_policy = {}\n", toml_string(approval)));
    out.push_str(&format!("sandbox_mode = {}\n", toml_string(sandbox)));
    out.push_str("\n[shell_environment_policy]\ninherit = \"all\"\n");
    out.push_str(&format!(
        "\n[projects.{}]\ntrust_level = \"trusted\"\n",
        toml_string(WORKSPACE)
    ));
    for (name, server) in mcp_servers {
        out.push_str(&format!("\n[mcp_servers.{}]\n", toml_string(name)));
        out.push_str(&format!("url = {}\n", toml_string(&server.url)));
        if !server.headers.is_empty() {
            let headers: Vec<String> = server
                .headers
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_string(k), toml_string(v)))
                .collect();
            out.push_str(&format!("http_headers = {{ {} }}\n", headers.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use std::path::Path;

    use super::*;

    fn provider() -> CodexProvider {
        CodexProvider {
            api_url: "https://127.0.0.1:9".into(),
        }
    }

    fn opts() -> PrepareOpts {
        PrepareOpts {
            credential: Some(Credential::new(NAME, "sk-real-key")),
            container_home: "/home/moatuser".into(),
            workspace: None,
            grants: vec![NAME.into()],
            mcp_servers: BTreeMap::new(),
            runtime_context: None,
            options: serde_json::Value::Null,
        }
    }

    fn file<'a>(config: &'a ContainerConfig, path: &str) -> &'a str {
        config
            .files
            .init_files
            .iter()
            .find(|f| f.path == Path::new(path))
            .map(|f| f.content.as_str())
            .unwrap_or_else(|| panic!("no {path} in {:?}", config.files.init_files))
    }

    #[test]
    fn info_names_the_alias_and_the_shared_store_key() {
        let info = provider().info();
        assert_eq!(info.name, "codex");
        assert_eq!(info.aliases, vec!["openai"]);
        assert_eq!(info.store_key(), "openai");
        assert!(info.has(Capability::Agent));
        assert!(!info.description.is_empty());
    }

    #[tokio::test]
    async fn rules_put_the_key_as_bearer_on_the_api_only() {
        let credential = Credential::new(NAME, "sk-real-key");
        let rules = provider().configure_proxy(&credential).await.unwrap();
        assert_eq!(rules.rules.len(), 1);
        match &rules.rules[0] {
            ProxyRule::Credential {
                host,
                header,
                value,
                grant,
            } => {
                assert_eq!(host, "api.openai.com");
                assert_eq!(header, "Authorization");
                assert_eq!(value.expose(), "Bearer sk-real-key");
                assert_eq!(grant, "codex");
            }
            other => panic!("unexpected rule {other:?}"),
        }
        assert!(rules.allow_hosts.contains(&"*.chatgpt.com".to_string()));
    }

    #[tokio::test]
    async fn the_container_sees_only_the_placeholder() {
        let credential = Credential::new(NAME, "sk-real-key");
        let env = provider().container_env(&credential).await.unwrap();
        assert_eq!(env, vec![EnvVar::new("OPENAI_API_KEY", KEY_PLACEHOLDER)]);
        assert!(KEY_PLACEHOLDER.starts_with("sk-moat-proxy-injected-placeholder-"));
        assert!(KEY_PLACEHOLDER.ends_with(&"0".repeat(40)));
        assert_eq!(
            KEY_PLACEHOLDER.len(),
            "sk-moat-proxy-injected-placeholder-".len() + 40
        );
    }

    #[tokio::test]
    async fn staging_writes_auth_and_config_with_placeholders() {
        let config = provider().prepare_container(opts()).await.unwrap();
        assert_eq!(
            config.files.init_files.len(),
            2,
            "no AGENTS.md without a context"
        );
        let auth: serde_json::Value =
            serde_json::from_str(file(&config, "/home/moatuser/.codex/auth.json")).unwrap();
        assert_eq!(
            auth,
            serde_json::json!({ "OPENAI_API_KEY": KEY_PLACEHOLDER })
        );
        assert_eq!(
            file(&config, "/home/moatuser/.codex/config.toml"),
            "# Generated by moat for this run; do not edit.\n\
             # Changes are lost when the run ends: configure Codex in moat.yaml instead.\n\
             approval_policy = \"never\"\n\
             sandbox_mode = \"danger-full-access\"\n\
             \n[shell_environment_policy]\ninherit = \"all\"\n\
             \n[projects.\"/workspace\"]\ntrust_level = \"trusted\"\n"
        );
        for file in &config.files.init_files {
            assert!(
                !file.content.contains("sk-real-key"),
                "{}",
                file.path.display()
            );
        }
        assert!(config.env.is_empty() && config.withhold_env.is_empty());
        assert!(config.files.mounts.is_empty() && config.files.cleanup.is_none());
    }

    #[tokio::test]
    async fn staging_adds_mcp_servers_approval_and_agents_md() {
        let mut opts = opts();
        opts.runtime_context = Some("# This run\nYou are in a moat container.\n".into());
        opts.options = serde_json::json!({ "require_approval": true });
        opts.mcp_servers.insert(
            "docs \"v2\"".into(),
            McpServer {
                url: "http://moat-proxy:8080/mcp/tok/docs".into(),
                headers: BTreeMap::from([("Authorization".into(), "moat-stub-oauth:docs".into())]),
            },
        );
        opts.mcp_servers.insert(
            "plain".into(),
            McpServer {
                url: "http://moat-proxy:8080/mcp/tok/plain".into(),
                headers: BTreeMap::new(),
            },
        );
        let config = provider().prepare_container(opts).await.unwrap();
        let toml = file(&config, "/home/moatuser/.codex/config.toml");
        assert!(
            toml.contains("approval_policy = \"on-request\"\n"),
            "{toml}"
        );
        assert!(
            toml.contains("sandbox_mode = \"workspace-write\"\n"),
            "{toml}"
        );
        assert!(
            toml.ends_with(
                "\n[mcp_servers.\"docs \\\"v2\\\"\"]\n\
                 url = \"http://moat-proxy:8080/mcp/tok/docs\"\n\
                 http_headers = { \"Authorization\" = \"moat-stub-oauth:docs\" }\n\
                 \n[mcp_servers.\"plain\"]\n\
                 url = \"http://moat-proxy:8080/mcp/tok/plain\"\n"
            ),
            "{toml}"
        );
        assert_eq!(
            file(&config, "/home/moatuser/.codex/AGENTS.md"),
            "# This run\nYou are in a moat container.\n"
        );
    }

    #[tokio::test]
    async fn a_malformed_option_is_an_error() {
        let mut opts = opts();
        opts.options = serde_json::json!({ "require_approval": "yes" });
        let err = provider().prepare_container(opts).await.unwrap_err();
        assert_eq!(err.kind, moat_plugin_sdk::ErrorKind::InvalidInput);
        assert!(err.message.contains("require_approval"), "{err}");
    }

    #[test]
    fn the_agent_command_is_declared() {
        let commands = provider().commands();
        assert_eq!(commands.len(), 1);
        let command = &commands[0];
        assert_eq!(command.name, "codex");
        assert_eq!(command.argv, vec!["codex"]);
        assert_eq!(
            command.dependencies,
            vec!["node", "git", "npm:@openai/codex"]
        );
        assert_eq!(command.grants, vec!["codex"]);
        assert_eq!(
            command.hosts,
            vec![
                "api.openai.com",
                "*.openai.com",
                "auth.openai.com",
                "platform.openai.com",
                "chatgpt.com",
                "*.chatgpt.com"
            ]
        );
        let prompt = &command.options[0];
        assert_eq!((prompt.long.as_str(), prompt.short), ("prompt", Some('p')));
        assert_eq!(prompt.value_name.as_deref(), Some("PROMPT"));
        assert_eq!(prompt.argv, vec!["exec", "{value}"]);
        assert!(prompt.batch);
        // The declaration is what a plugin would send: it survives the wire.
        let json = serde_json::to_value(command).unwrap();
        let back: AgentCommand = serde_json::from_value(json).unwrap();
        assert_eq!(&back, command);
    }
}
