use std::collections::BTreeMap;
use std::path::Path;

use moat_plugin_sdk::{Answer, ErrorKind, McpServer, Secret};
use serde_json::{Value, json};

use super::staging::*;
use super::*;

fn provider(home: Option<&Path>) -> ClaudeProvider {
    ClaudeProvider::new("https://127.0.0.1:9", home.map(Path::to_path_buf))
        .with_claude_program("/nonexistent/claude")
}

fn opts(grants: &[&str], workspace: Option<&Path>) -> PrepareOpts {
    PrepareOpts {
        credential: None,
        container_home: "/home/moatuser".into(),
        workspace: workspace.map(Path::to_path_buf),
        grants: grants.iter().map(|g| (*g).to_owned()).collect(),
        mcp_servers: BTreeMap::from([(
            "docs".to_owned(),
            McpServer {
                url: "http://moat-proxy:1/mcp/t/docs".into(),
                headers: BTreeMap::from([("Authorization".into(), "moat-stub-docs".into())]),
            },
        )]),
        runtime_context: Some("# This run\nmoat run abc\n".into()),
        options: Value::Null,
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

fn json_file(config: &ContainerConfig, path: &str) -> Value {
    serde_json::from_str(file(config, path).unwrap_or_else(|| panic!("{path} not staged"))).unwrap()
}

#[tokio::test]
async fn rules_bearer_beta_no_api_key_and_the_oauth_403_answers() {
    let credential = Credential::new(NAME, "sk-ant-oat01-real");
    let rules = provider(None)
        .configure_proxy(&credential)
        .await
        .unwrap()
        .rules;
    assert_eq!(rules.len(), 5, "{rules:?}");
    assert!(rules.iter().all(|r| r.host() == "api.anthropic.com"));
    match &rules[0] {
        ProxyRule::Credential {
            header,
            value,
            grant,
            ..
        } => {
            assert_eq!(header, "Authorization");
            assert_eq!(value.expose(), "Bearer sk-ant-oat01-real");
            assert_eq!(grant, "claude");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(&rules[1], ProxyRule::ExtraHeader { name, value, .. }
        if name == "anthropic-beta" && value == "oauth-2025-04-20")
    );
    assert!(matches!(&rules[2], ProxyRule::RemoveHeader { name, .. } if name == "x-api-key"));
    let answers: Vec<(String, u16, u16, String)> = rules[3..]
        .iter()
        .map(|rule| match rule {
            ProxyRule::ReplaceResponse {
                paths,
                status,
                answer,
                method,
                ..
            } => {
                assert_eq!(method, "*");
                assert_eq!(answer.content_type, "application/json");
                (paths.join(","), *status, answer.status, answer.body.clone())
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        answers,
        vec![
            (
                "/api/oauth/profile".into(),
                403,
                200,
                r#"{"id":"","email":"","name":""}"#.into()
            ),
            (
                "/api/oauth/usage".into(),
                403,
                200,
                r#"{"usage":{}}"#.into()
            ),
        ]
    );
    assert!(
        provider(None)
            .container_env(&credential)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_credentials_file_holds_the_placeholder_expiry_scopes_and_subscription() {
    let mut credential = Credential::new(NAME, "sk-ant-oat01-real")
        .with_metadata(META_SUBSCRIPTION, "pro")
        .with_metadata(META_RATE_LIMIT_TIER, "tier-x");
    credential.scopes = vec!["user:inference".into()];
    let expiry = chrono::Utc::now() + chrono::Duration::hours(3);
    credential.expires_at = Some(expiry);
    let mut options = opts(&["claude"], None);
    options.credential = Some(credential.clone());
    let config = provider(None).prepare_container(options).await.unwrap();
    let creds = json_file(&config, "/home/moatuser/.claude/.credentials.json");
    assert_eq!(
        creds,
        json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-moat-proxy-injected-placeholder-not-a-real-token",
            "expiresAt": expiry.timestamp_millis(),
            "scopes": ["user:inference"],
            "subscriptionType": "pro",
            "rateLimitTier": "tier-x",
        }})
    );
    // A pasted token: far expiry, the default scopes and subscription, no tier.
    let pasted = credentials_json(&Credential::new(NAME, "sk-ant-oat01-real"));
    let oauth = &pasted["claudeAiOauth"];
    let in_a_year = (chrono::Utc::now() + chrono::Duration::days(364)).timestamp_millis();
    assert!(oauth["expiresAt"].as_i64().unwrap() > in_a_year, "{pasted}");
    assert_eq!(oauth["scopes"], json!(DEFAULT_SCOPES));
    assert_eq!(oauth["subscriptionType"], "max");
    assert!(oauth.get("rateLimitTier").is_none());
    // Nothing staged holds the token.
    for staged in &config.files.init_files {
        assert!(
            !staged.content.contains("sk-ant-oat01-real"),
            "{}",
            staged.path.display()
        );
    }
    assert!(
        config
            .env
            .iter()
            .all(|v| !v.value.contains("sk-ant-oat01-real"))
    );
}

#[tokio::test]
async fn claude_json_onboarding_trust_mcp_and_only_allow_listed_host_keys() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".claude.json"),
        json!({
            "userID": "u-1",
            "oauthAccount": {"emailAddress": "me@example.com"},
            "numStartups": 7,
            "projects": {"/home/me/secret-project": {"history": ["private"]}},
            "mcpServers": {"host-only": {"command": "x"}},
            "primaryApiKey": "sk-ant-api03-host-key",
        })
        .to_string(),
    )
    .unwrap();
    let config = provider(Some(home.path()))
        .prepare_container(opts(&["claude"], None))
        .await
        .unwrap();
    let claude = json_file(&config, "/home/moatuser/.claude.json");
    assert_eq!(
        claude,
        json!({
            "userID": "u-1",
            "oauthAccount": {"emailAddress": "me@example.com"},
            "numStartups": 7,
            "hasCompletedOnboarding": true,
            "theme": "dark",
            "bypassPermissionsModeAccepted": true,
            "projects": {"/workspace": {
                "hasTrustDialogAccepted": true,
                "hasCompletedProjectOnboarding": true,
                "allowedTools": [],
            }},
            "mcpServers": {"docs": {
                "type": "http",
                "url": "http://moat-proxy:1/mcp/t/docs",
                "headers": {"Authorization": "moat-stub-docs"},
            }},
        })
    );
    let settings = json_file(&config, "/home/moatuser/.claude/settings.json");
    assert_eq!(settings["permissions"]["defaultMode"], "bypassPermissions");
    assert_eq!(
        file(&config, "/home/moatuser/.claude/CLAUDE.md"),
        Some("# This run\nmoat run abc\n")
    );
    // Without runtime context, no CLAUDE.md.
    let mut bare = opts(&["claude"], None);
    bare.runtime_context = None;
    let config = provider(None).prepare_container(bare).await.unwrap();
    assert!(file(&config, "/home/moatuser/.claude/CLAUDE.md").is_none());
}

#[tokio::test]
async fn with_the_api_key_too_it_is_withheld_and_given_to_shell_commands_only() {
    let alone = provider(None)
        .prepare_container(opts(&["claude"], None))
        .await
        .unwrap();
    assert!(alone.withhold_env.is_empty());
    assert!(alone.env.is_empty());
    assert!(file(&alone, "/home/moatuser/.claude/anthropic-env.sh").is_none());

    let both = provider(None)
        .prepare_container(opts(&["github", "claude", "anthropic"], None))
        .await
        .unwrap();
    assert_eq!(both.withhold_env, vec!["ANTHROPIC_API_KEY".to_owned()]);
    assert_eq!(
        both.env,
        vec![EnvVar::new(
            "BASH_ENV",
            "/home/moatuser/.claude/anthropic-env.sh"
        )]
    );
    assert_eq!(
        file(&both, "/home/moatuser/.claude/anthropic-env.sh").unwrap(),
        "# Generated by moat. With both the claude and anthropic grants, the API key is kept out\n\
         # of the container's environment (it would override Claude Code's subscription login)\n\
         # and given to shell commands here; the proxy puts the real key on the wire.\n\
         export ANTHROPIC_API_KEY=moat-proxy-injected\n\
         claude() { env -u ANTHROPIC_API_KEY -u BASH_ENV claude \"$@\"; }\n"
    );
}

#[tokio::test]
async fn the_workspaces_sessions_folder_is_mounted_and_the_newest_session_recorded() {
    let home = tempfile::tempdir().unwrap();
    let workspace = Path::new("/work/my project");
    let config = provider(Some(home.path()))
        .prepare_container(opts(&["claude"], Some(workspace)))
        .await
        .unwrap();
    let host_dir = home.path().join(".claude/projects/-work-my-project");
    assert!(host_dir.is_dir(), "created for the mount");
    assert_eq!(
        config.files.mounts,
        vec![moat_plugin_sdk::Mount {
            source: host_dir.clone(),
            target: "/home/moatuser/.claude/projects/-workspace".into(),
            read_only: false,
        }]
    );
    let started_at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let context = || RunStoppedContext {
        run_id: "run_1".into(),
        workspace: workspace.to_path_buf(),
        started_at,
        exit_code: Some(0),
    };
    let p = provider(Some(home.path()));
    assert!(p.run_stopped(context()).await.unwrap().is_empty());
    let id = "0c6f3e1a-5b7d-4c1e-9f00-123456789abc";
    std::fs::write(host_dir.join(format!("{id}.jsonl")), "{}\n").unwrap();
    let meta = p.run_stopped(context()).await.unwrap();
    assert_eq!(
        meta,
        BTreeMap::from([("claude_session_id".to_owned(), id.to_owned())])
    );
}

#[test]
fn the_agent_command_is_declared_as_data() {
    let command = agent_command();
    assert_eq!(command.name, "claude");
    assert_eq!(command.argv, ["claude", "--dangerously-skip-permissions"]);
    assert_eq!(
        command.dependencies,
        ["node", "git", "npm:@anthropic-ai/claude-code"]
    );
    assert_eq!(
        command.hosts,
        ["api.anthropic.com", "claude.ai", "*.claude.ai"]
    );
    assert_eq!(command.grants, ["claude", "anthropic"]);
    let by_long = |long: &str| command.options.iter().find(|o| o.long == long).unwrap();
    let prompt = by_long("prompt");
    assert_eq!((prompt.short, prompt.batch), (Some('p'), true));
    assert_eq!(prompt.argv, ["-p", "{value}"]);
    assert_eq!(by_long("continue").argv, ["--continue"]);
    assert_eq!(by_long("continue").conflicts_with, ["resume"]);
    let resume = by_long("resume");
    assert_eq!(resume.run_meta.as_deref(), Some("claude_session_id"));
    assert_eq!(resume.argv, ["--resume", "{value}"]);
    assert_eq!(resume.conflicts_with, ["continue"]);
}

#[tokio::test]
async fn a_pasted_token_loses_its_whitespace_and_must_be_an_oauth_token() {
    let ask = |token: &str| {
        GrantRequest::default().with_answer("token", Answer::Secret(Secret::new(token)))
    };
    let err = provider(None)
        .grant(ask("sk-ant-api03-a-key"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidInput);
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("moat grant anthropic")
    );
    // Whitespace (a wrapped paste) is removed before the check: this one reaches validation,
    // which fails on the unreachable test URL.
    let err = provider(None)
        .grant(ask("sk-ant-oat01-abc\n  def "))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network, "{err}");
    assert!(!err.to_string().contains("abc"), "{err}");
}

#[tokio::test]
async fn choosing_setup_token_runs_the_cli_then_asks_for_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let program = dir.path().join("claude");
    std::fs::write(
        &program,
        format!("#!/bin/sh\necho \"$@\" > '{}'\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = provider(None).with_claude_program(program.display().to_string());
    let request =
        GrantRequest::default().with_answer("method", Answer::Choice("setup-token".into()));
    match p.grant(request).await.unwrap() {
        GrantStep::Ask { prompts, notes } => {
            assert_eq!(prompts[0].id, "token");
            assert_eq!(prompts[0].kind, moat_plugin_sdk::PromptKind::Secret);
            assert!(notes[0].contains("Paste the token"), "{notes:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        "setup-token"
    );
    // A CLI that is not there: said, and the token is still asked.
    let request =
        GrantRequest::default().with_answer("method", Answer::Choice("setup-token".into()));
    match provider(None).grant(request).await.unwrap() {
        GrantStep::Ask { prompts, notes } => {
            assert_eq!(prompts[0].id, "token");
            assert!(notes[0].contains("did not finish"), "{notes:?}");
        }
        other => panic!("{other:?}"),
    }
}
