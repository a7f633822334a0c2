//! The Claude provider: a Claude subscription's OAuth token (`claude setup-token`, pasted, or
//! Claude Code's own login imported) for `api.anthropic.com`, and the `moat claude` agent.
//!
//! On the wire: `Authorization: Bearer <token>`, `anthropic-beta: oauth-2025-04-20`, a client's
//! `x-api-key` removed, and the OAuth profile and usage endpoints' 403 (setup-tokens lack the
//! `user:profile` scope) answered with empty documents Claude Code copes with. In the container:
//! no variable, only staged files with a placeholder token ([`staging`]).

pub mod grant;
pub mod session;
pub mod staging;

use std::collections::BTreeMap;
use std::path::PathBuf;

use moat_plugin_sdk::{
    AgentCommand, AgentOption, AgentProvider, Capability, ContainerConfig, Credential,
    CredentialProvider, EnvVar, GrantRequest, GrantStep, PrepareOpts, ProviderInfo, ProviderResult,
    ProxyRule, ProxyRules, ResponseAnswer, RunStoppedContext, RunStoppedHook, async_trait,
};

use self::session::{META_SESSION_ID, host_project_dir, newest_session};
use super::anthropic::api::{self, API_HOST, OAUTH_BETA};

pub(crate) const NAME: &str = "claude";

/// The built-in Claude provider.
#[derive(Debug, Clone)]
pub struct ClaudeProvider {
    api_url: String,
    /// The host user's home (`HOME`): Claude Code's credentials, settings and sessions.
    host_home: Option<PathBuf>,
    claude_program: String,
}

impl ClaudeProvider {
    /// The provider configured from the environment (`MOAT_ANTHROPIC_API_URL`, `HOME`).
    pub fn from_env() -> Self {
        ClaudeProvider::new(
            api::api_url_from_env(),
            std::env::var_os("HOME").map(Into::into),
        )
    }

    /// A provider validating against `api_url`, with the host user's home `host_home`.
    pub fn new(api_url: impl Into<String>, host_home: Option<PathBuf>) -> Self {
        ClaudeProvider {
            api_url: api_url.into().trim_end_matches('/').to_owned(),
            host_home,
            claude_program: "claude".into(),
        }
    }

    /// The same provider running `program` as the Claude CLI (for tests).
    pub fn with_claude_program(mut self, program: impl Into<String>) -> Self {
        self.claude_program = program.into();
        self
    }
}

/// `moat claude [PATH] [-p PROMPT] [-c | -r RUN]`.
pub fn agent_command() -> AgentCommand {
    let prompt = AgentOption::value(
        "prompt",
        Some('p'),
        "PROMPT",
        "Run this prompt non-interactively and print the answer",
        &["-p", "{value}"],
    )
    .batch();
    let cont = AgentOption::flag(
        "continue",
        Some('c'),
        "Continue the most recent conversation in this workspace",
        &["--continue"],
    )
    .conflicts_with(&["resume"]);
    let resume = AgentOption::value(
        "resume",
        Some('r'),
        "RUN",
        "Resume the conversation of an earlier run (its name or id, or Claude's session id)",
        &["--resume", "{value}"],
    )
    .run_meta(META_SESSION_ID)
    .conflicts_with(&["continue"]);
    AgentCommand {
        name: NAME.into(),
        about: "Run Claude Code in a container, its credentials added on the wire".into(),
        argv: vec!["claude".into(), "--dangerously-skip-permissions".into()],
        options: vec![prompt, cont, resume],
        dependencies: vec![
            "node".into(),
            "git".into(),
            "npm:@anthropic-ai/claude-code".into(),
        ],
        hosts: vec![API_HOST.into(), "claude.ai".into(), "*.claude.ai".into()],
        grants: vec![NAME.into(), super::anthropic::NAME.into()],
    }
}

/// The OAuth profile and usage endpoints answer 403 to a setup-token (no `user:profile` scope);
/// Claude Code copes with an empty document, not with the error.
fn oauth_workaround() -> Vec<ProxyRule> {
    let replace = |path: &str, body: &str| ProxyRule::ReplaceResponse {
        host: API_HOST.into(),
        method: "*".into(),
        paths: vec![path.into()],
        status: 403,
        answer: ResponseAnswer {
            status: 200,
            content_type: "application/json".into(),
            body: body.into(),
        },
    };
    vec![
        replace("/api/oauth/profile", r#"{"id":"","email":"","name":""}"#),
        replace("/api/oauth/usage", r#"{"usage":{}}"#),
    ]
}

#[async_trait]
impl CredentialProvider for ClaudeProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(NAME, "Claude subscription (OAuth token)");
        info.capabilities = vec![Capability::Agent, Capability::RunStopped];
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        grant::grant(self, request).await
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let mut rules = ProxyRules::new()
            .with(ProxyRule::Credential {
                host: API_HOST.into(),
                header: "Authorization".into(),
                value: format!("Bearer {}", credential.token.expose()).into(),
                grant: NAME.into(),
            })
            .with(ProxyRule::ExtraHeader {
                host: API_HOST.into(),
                name: "anthropic-beta".into(),
                value: OAUTH_BETA.into(),
            })
            .with(ProxyRule::RemoveHeader {
                host: API_HOST.into(),
                name: "x-api-key".into(),
            });
        for rule in oauth_workaround() {
            rules = rules.with(rule);
        }
        Ok(rules)
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        // Claude Code logs in from the staged `.credentials.json`.
        Ok(Vec::new())
    }

    fn as_agent(&self) -> Option<&dyn AgentProvider> {
        Some(self)
    }

    fn as_run_stopped(&self) -> Option<&dyn RunStoppedHook> {
        Some(self)
    }
}

#[async_trait]
impl AgentProvider for ClaudeProvider {
    async fn prepare_container(&self, opts: PrepareOpts) -> ProviderResult<ContainerConfig> {
        staging::stage(&opts, opts.credential.as_ref(), self.host_home.as_deref())
    }

    fn commands(&self) -> Vec<AgentCommand> {
        vec![agent_command()]
    }
}

#[async_trait]
impl RunStoppedHook for ClaudeProvider {
    /// The newest session Claude Code wrote for the workspace during the run.
    async fn run_stopped(
        &self,
        context: RunStoppedContext,
    ) -> ProviderResult<BTreeMap<String, String>> {
        let mut meta = BTreeMap::new();
        if let Some(home) = &self.host_home {
            let dir = host_project_dir(home, &context.workspace);
            if let Some(id) = newest_session(&dir, context.started_at) {
                meta.insert(META_SESSION_ID.to_owned(), id);
            }
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests;
