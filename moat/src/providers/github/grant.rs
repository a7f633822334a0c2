//! Getting a GitHub token: `GITHUB_TOKEN`/`GH_TOKEN`, then the gh CLI (after asking), then a
//! pasted token. Whatever the source, the token is checked against `GET /user` before it is kept.

use std::process::Stdio;
use std::time::Duration;

use moat_plugin_sdk::{
    Answer, Credential, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE, Prompt,
    ProviderError, ProviderResult, Secret,
};
use serde::Deserialize;

use super::{GithubProvider, NAME};

pub(super) const SOURCE_CLI: &str = "cli";
const SOURCE_ENV: &str = "env";
const SOURCE_PAT: &str = "pat";

const ENV_VARS: [&str; 2] = ["GITHUB_TOKEN", "GH_TOKEN"];
const USE_GH: &str = "use_gh";
const TOKEN: &str = "token";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);
const GH_TIMEOUT: Duration = Duration::from_secs(10);
const HINT_VALID_TOKEN: &str = "Run 'moat grant github' and enter a valid GitHub token";

const PAT_HELP: &str = "\
Create a fine-grained personal access token at https://github.com/settings/personal-access-tokens/new
with access to the repositories the agent should work on (Contents: read and write, Pull requests:
read and write, Metadata: read). Classic tokens work too.";

pub(super) async fn grant(
    provider: &GithubProvider,
    request: GrantRequest,
) -> ProviderResult<GrantStep> {
    if let Some(answer) = request.answer(TOKEN) {
        let token = answer
            .as_secret()
            .map(|s| s.expose().trim())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(
                ProviderError::new(ErrorKind::InvalidInput, "no GitHub token was entered")
                    .with_hint(HINT_VALID_TOKEN),
            );
        }
        return finish(provider, Secret::new(token), SOURCE_PAT, Vec::new()).await;
    }

    for var in ENV_VARS {
        if let Some(token) = std::env::var(var)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            let note = format!("Using token from {var} environment variable");
            return finish(provider, Secret::new(token), SOURCE_ENV, vec![note]).await;
        }
    }

    let use_gh = request.answer(USE_GH).and_then(Answer::as_confirm);
    if use_gh != Some(false) {
        match gh_auth_token(&provider.gh_program).await {
            Some(token) if use_gh == Some(true) => {
                return finish(provider, token, SOURCE_CLI, Vec::new()).await;
            }
            Some(_) => {
                let prompt = Prompt::confirm(USE_GH, "Use token from gh CLI?", true);
                return Ok(GrantStep::Ask {
                    prompts: vec![prompt],
                    notes: vec!["Found gh CLI authentication".into()],
                });
            }
            None => {}
        }
    }

    let prompt = Prompt::secret(TOKEN, "GitHub token")
        .with_help(PAT_HELP)
        .with_env(ENV_VARS[0]);
    let mut notes = Vec::new();
    if use_gh.is_none() && gh_installed(&provider.gh_program) {
        notes.push(
            "The gh CLI is installed but returned no token; 'gh auth login' would let moat use it."
                .into(),
        );
    }
    Ok(GrantStep::Ask {
        prompts: vec![prompt],
        notes,
    })
}

/// Validates `token` and wraps it into the credential.
async fn finish(
    provider: &GithubProvider,
    token: Secret,
    source: &str,
    mut notes: Vec<String>,
) -> ProviderResult<GrantStep> {
    let login = validate(&provider.api_url, &token).await?;
    notes.push(format!("Authenticated as: {login}"));
    let credential = Credential::new(NAME, token)
        .with_metadata(META_TOKEN_SOURCE, source)
        .with_metadata("login", login);
    Ok(GrantStep::Done { credential, notes })
}

#[derive(Deserialize)]
struct User {
    login: String,
}

/// `GET /user` with the token; the login on success. Errors never include the token.
async fn validate(api_url: &str, token: &Secret) -> ProviderResult<String> {
    let client = crate::http::client(VALIDATE_TIMEOUT)
        .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
    let url = format!("{api_url}/user");
    let response = client
        .get(&url)
        .bearer_auth(token.expose())
        .header("Accept", "application/vnd.github+json")
        .send()
        .await
        .map_err(|err| {
            ProviderError::new(ErrorKind::Network, format!("cannot reach the GitHub API at {url}: {}", chain(&err)))
                .with_hint("Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs TLS), then run 'moat grant github' again")
        })?;
    match response.status().as_u16() {
        200 => {
            let user: User = response.json().await.map_err(|err| {
                ProviderError::new(
                    ErrorKind::Network,
                    format!("unexpected answer from {url}: {err}"),
                )
            })?;
            Ok(user.login)
        }
        401 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            "GitHub rejected the token (401 Bad credentials)",
        )
        .with_hint(HINT_VALID_TOKEN)),
        403 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            "GitHub refused the token (403 Forbidden)",
        )
        .with_hint("Ensure your token is valid and has appropriate permissions")),
        status => Err(ProviderError::new(
            ErrorKind::Network,
            format!("GitHub answered {status} to {url}"),
        )
        .with_hint("Try again later; if it persists, check https://www.githubstatus.com")),
    }
}

/// The error and its causes on one line (reqwest hides the TLS cause behind "error sending request").
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The token `gh auth token` prints, if gh is installed and logged in.
pub(super) async fn gh_auth_token(program: &str) -> Option<Secret> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(["auth", "token"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(GH_TIMEOUT, command.output())
        .await
        .ok()?
        .ok()?;
    let token = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !token.is_empty()).then(|| Secret::new(token))
}

fn gh_installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
