//! Getting a Claude OAuth token (reference-providers §7.2): `CLAUDE_CODE_OAUTH_TOKEN`, else a
//! menu of the ways this machine offers — `claude setup-token` (when the Claude CLI runs and
//! moat has a terminal to hand it), pasting a token, importing Claude Code's own login from
//! `~/.claude/.credentials.json` (when there is one) — then a check against the Messages API.

use std::io::IsTerminal;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use moat_plugin_sdk::{
    ChoiceOption, Credential, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE, Prompt,
    ProviderError, ProviderResult, Secret,
};
use serde::Deserialize;

use super::super::anthropic::api::{self, Auth};
use super::staging::{META_RATE_LIMIT_TIER, META_SUBSCRIPTION};
use super::{ClaudeProvider, NAME};

/// The variable `claude setup-token` tells users to set; read first.
pub const TOKEN_ENV: &str = "CLAUDE_CODE_OAUTH_TOKEN";
const TOKEN_PREFIX: &str = "sk-ant-oat";
const METHOD: &str = "method";
const TOKEN: &str = "token";
const FIX: &str = "moat grant claude";
const CLI_TIMEOUT: Duration = Duration::from_secs(10);

/// The grant paths, as menu values.
pub const SETUP_TOKEN: &str = "setup-token";
/// See [`SETUP_TOKEN`].
pub const PASTE: &str = "paste";
/// See [`SETUP_TOKEN`].
pub const IMPORT: &str = "import";

const TOKEN_HELP: &str = "\
Run 'claude setup-token' (in a terminal, with a Claude subscription) and paste the token it prints
(it starts with sk-ant-oat; line breaks and spaces are removed).";

/// The menu, numbered in this order: `claude setup-token` only when the Claude CLI answers
/// `--version` and there is a terminal to run it on; pasting always; importing only when Claude
/// Code's credentials file exists.
pub fn methods(setup_token: bool, import: bool) -> Vec<ChoiceOption> {
    let mut options = Vec::new();
    if setup_token {
        options.push(ChoiceOption {
            value: SETUP_TOKEN.into(),
            label: "Claude subscription (OAuth token from 'claude setup-token', valid a year)"
                .into(),
        });
    }
    options.push(ChoiceOption {
        value: PASTE.into(),
        label: "Existing OAuth token (paste)".into(),
    });
    if import {
        options.push(ChoiceOption {
            value: IMPORT.into(),
            label: "Import existing Claude Code credentials (~/.claude/.credentials.json; \
                    short-lived, not refreshed)"
                .into(),
        });
    }
    options
}

pub(super) async fn grant(
    provider: &ClaudeProvider,
    request: GrantRequest,
) -> ProviderResult<GrantStep> {
    if let Some(answer) = request.answer(TOKEN) {
        let token = answer.as_secret().map(Secret::expose).unwrap_or_default();
        return finish_token(provider, token, PASTE, Vec::new()).await;
    }
    if let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        let note = format!("Using the OAuth token from the {TOKEN_ENV} environment variable");
        return finish_token(provider, &token, "env", vec![note]).await;
    }
    let method = request
        .answer(METHOD)
        .and_then(|a| a.as_text())
        .map(str::to_owned);
    match method.as_deref() {
        Some(IMPORT) => import(provider).await,
        Some(SETUP_TOKEN) => {
            let mut notes = Vec::new();
            match run_setup_token(&provider.claude_program).await {
                Ok(()) => notes.push("Paste the token 'claude setup-token' printed.".into()),
                // Not fatal: the user may still have a token to paste.
                Err(why) => notes.push(format!("'claude setup-token' did not finish ({why}).")),
            }
            Ok(ask_token(notes))
        }
        Some(_) => Ok(ask_token(Vec::new())),
        None => {
            let setup =
                std::io::stdin().is_terminal() && claude_cli_works(&provider.claude_program).await;
            let import = provider
                .host_home
                .as_deref()
                .is_some_and(|home| credentials_path(home).is_file());
            let options = methods(setup, import);
            if options.len() == 1 {
                return Ok(ask_token(Vec::new()));
            }
            Ok(GrantStep::Ask {
                prompts: vec![Prompt::choice(
                    METHOD,
                    "Choose authentication method:",
                    options,
                )],
                notes: Vec::new(),
            })
        }
    }
}

fn ask_token(notes: Vec<String>) -> GrantStep {
    GrantStep::Ask {
        prompts: vec![
            Prompt::secret(TOKEN, "Claude OAuth token")
                .with_help(TOKEN_HELP)
                .with_env(TOKEN_ENV),
        ],
        notes,
    }
}

/// A pasted (or `CLAUDE_CODE_OAUTH_TOKEN`) token: whitespace removed, prefix checked, validated.
async fn finish_token(
    provider: &ClaudeProvider,
    token: &str,
    source: &str,
    mut notes: Vec<String>,
) -> ProviderResult<GrantStep> {
    // A token wrapped by the terminal comes back in pieces: join them.
    let token: String = token.chars().filter(|c| !c.is_whitespace()).collect();
    if token.is_empty() {
        return Err(
            ProviderError::new(ErrorKind::InvalidInput, "no OAuth token was entered").with_hint(
                format!("Run '{FIX}' and paste the token 'claude setup-token' prints"),
            ),
        );
    }
    if !token.starts_with(TOKEN_PREFIX) {
        let hint = if token.starts_with("sk-ant-api") {
            "That is an API key: store it with 'moat grant anthropic'.".to_owned()
        } else {
            format!("Run 'claude setup-token' and paste the token it prints, then '{FIX}'")
        };
        return Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!("a Claude OAuth token must start with \"{TOKEN_PREFIX}\""),
        )
        .with_hint(hint));
    }
    let token = Secret::new(token);
    api::validate(&provider.api_url, Auth::OAuth(&token), FIX).await?;
    notes.push("Anthropic accepted the OAuth token".into());
    let credential = Credential::new(NAME, token).with_metadata(META_TOKEN_SOURCE, source);
    Ok(GrantStep::Done { credential, notes })
}

/// `~/.claude/.credentials.json`.
pub fn credentials_path(home: &Path) -> std::path::PathBuf {
    home.join(".claude/.credentials.json")
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "claudeAiOauth")]
    oauth: Option<OauthEntry>,
}

/// Claude Code's login. The refresh token is not even read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OauthEntry {
    access_token: Option<String>,
    /// Milliseconds since the epoch.
    expires_at: Option<i64>,
    #[serde(default)]
    scopes: Vec<String>,
    subscription_type: Option<String>,
    rate_limit_tier: Option<String>,
}

/// Claude Code's own login, if it has not expired: the access token with its expiry, scopes,
/// subscription type and rate-limit tier (never the refresh token).
async fn import(provider: &ClaudeProvider) -> ProviderResult<GrantStep> {
    let credential = read_import(provider.host_home.as_deref(), Utc::now())?;
    api::validate(&provider.api_url, Auth::OAuth(&credential.token), FIX).await?;
    let mut notes = vec!["Anthropic accepted the imported OAuth token".to_owned()];
    if let Some(at) = credential.expires_at {
        notes.push(format!(
            "This token expires at {} and moat cannot refresh it; 'claude setup-token' gives \
             one valid for a year.",
            at.format("%Y-%m-%d %H:%M UTC")
        ));
    }
    Ok(GrantStep::Done { credential, notes })
}

/// The credential from `<home>/.claude/.credentials.json`, refused when absent, unreadable or
/// expired at `now`.
pub fn read_import(home: Option<&Path>, now: DateTime<Utc>) -> ProviderResult<Credential> {
    let not_found = |why: String| {
        ProviderError::new(ErrorKind::CredentialNotFound, why).with_hint(format!(
            "Log in with 'claude' first, or choose another way: {FIX}"
        ))
    };
    let home = home.ok_or_else(|| not_found("HOME is not set".into()))?;
    let path = credentials_path(home);
    let text = std::fs::read_to_string(&path)
        .map_err(|err| not_found(format!("cannot read {}: {err}", path.display())))?;
    let file: CredentialsFile = serde_json::from_str(&text).map_err(|err| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            format!(
                "{} is not Claude Code's credentials file: {err}",
                path.display()
            ),
        )
    })?;
    let entry = file
        .oauth
        .ok_or_else(|| not_found(format!("{} holds no claudeAiOauth login", path.display())))?;
    let token = entry
        .access_token
        .filter(|t| t.starts_with(TOKEN_PREFIX))
        .ok_or_else(|| not_found(format!("{} holds no OAuth access token", path.display())))?;
    let expires_at = entry
        .expires_at
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    if let Some(at) = expires_at
        && at <= now
    {
        return Err(ProviderError::new(
            ErrorKind::CredentialExpired,
            format!(
                "the Claude Code login in {} expired at {}",
                path.display(),
                at.format("%Y-%m-%d %H:%M UTC")
            ),
        )
        .with_hint(format!(
            "Run 'claude' once to renew it, or use 'claude setup-token' and paste: {FIX}"
        )));
    }
    let mut credential =
        Credential::new(NAME, Secret::new(token)).with_metadata(META_TOKEN_SOURCE, IMPORT);
    credential.expires_at = expires_at;
    credential.scopes = entry.scopes;
    if let Some(subscription) = entry.subscription_type {
        credential = credential.with_metadata(META_SUBSCRIPTION, subscription);
    }
    if let Some(tier) = entry.rate_limit_tier {
        credential = credential.with_metadata(META_RATE_LIMIT_TIER, tier);
    }
    Ok(credential)
}

/// `claude --version` answers.
async fn claude_cli_works(program: &str) -> bool {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    matches!(
        tokio::time::timeout(CLI_TIMEOUT, command.status()).await,
        Ok(Ok(status)) if status.success()
    )
}

/// Runs `claude setup-token` attached to moat's terminal (its browser login and its output are
/// the user's; nothing is scraped). A non-zero exit is reported, not fatal.
async fn run_setup_token(program: &str) -> Result<(), String> {
    let status = tokio::process::Command::new(program)
        .arg("setup-token")
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|err| err.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("it exited with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(options: &[ChoiceOption]) -> Vec<&str> {
        options.iter().map(|o| o.value.as_str()).collect()
    }

    #[test]
    fn the_menu_offers_only_what_this_machine_can_do() {
        assert_eq!(values(&methods(true, true)), [SETUP_TOKEN, PASTE, IMPORT]);
        assert_eq!(values(&methods(false, true)), [PASTE, IMPORT]);
        assert_eq!(values(&methods(true, false)), [SETUP_TOKEN, PASTE]);
        assert_eq!(values(&methods(false, false)), [PASTE]);
    }

    fn write_credentials(home: &Path, expires_at: i64) {
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        let file = serde_json::json!({"claudeAiOauth": {
            "accessToken": "sk-ant-oat01-imported",
            "refreshToken": "sk-ant-ort01-never-kept",
            "expiresAt": expires_at,
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "pro",
            "rateLimitTier": "default_claude_pro",
        }});
        std::fs::write(credentials_path(home), file.to_string()).unwrap();
    }

    #[test]
    fn an_import_keeps_expiry_scopes_and_subscription_never_the_refresh_token() {
        let home = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let expiry = now + chrono::Duration::hours(5);
        write_credentials(home.path(), expiry.timestamp_millis());
        let credential = read_import(Some(home.path()), now).unwrap();
        assert_eq!(credential.token.expose(), "sk-ant-oat01-imported");
        assert_eq!(
            credential.expires_at.map(|at| at.timestamp_millis()),
            Some(expiry.timestamp_millis())
        );
        assert_eq!(credential.scopes, ["user:inference", "user:profile"]);
        assert_eq!(credential.metadata[META_SUBSCRIPTION], "pro");
        assert_eq!(
            credential.metadata[META_RATE_LIMIT_TIER],
            "default_claude_pro"
        );
        assert_eq!(credential.token_source(), Some(IMPORT));
        let all = serde_json::to_string(&credential.metadata).unwrap();
        assert!(!all.contains("never-kept"));
    }

    #[test]
    fn an_expired_or_missing_import_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let err = read_import(Some(home.path()), Utc::now()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CredentialNotFound);
        write_credentials(
            home.path(),
            (Utc::now() - chrono::Duration::minutes(1)).timestamp_millis(),
        );
        let err = read_import(Some(home.path()), Utc::now()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::CredentialExpired);
        assert!(err.to_string().contains("expired"), "{err}");
    }
}
