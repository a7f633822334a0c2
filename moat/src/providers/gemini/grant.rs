//! Getting a Gemini credential: `GEMINI_API_KEY`; else, when the Gemini CLI is logged in on this
//! machine, a choice between importing its Google login and an API key; else an API key prompt.
//! An API key is checked against `GET /v1beta/models`; an imported login is refreshed once at
//! Google's token endpoint, which proves its refresh token works.

use std::time::Duration;

use moat_plugin_sdk::{
    ChoiceOption, Credential, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE, Prompt,
    ProviderError, ProviderResult, Secret,
};

use super::oauth::{self, Tokens};
use super::{AUTH_API_KEY, AUTH_OAUTH, GeminiProvider, META_AUTH_TYPE, NAME};

pub(super) const ENV_VAR: &str = "GEMINI_API_KEY";
const KEY: &str = "api_key";
const METHOD: &str = "method";
const METHOD_OAUTH: &str = "oauth";
const METHOD_KEY: &str = "api_key";
const SOURCE_ENV: &str = "env";
const SOURCE_PROMPT: &str = "prompt";
const SOURCE_OAUTH: &str = "oauth";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);
const HINT_VALID_KEY: &str =
    "Run 'moat grant gemini' and enter a valid key from https://aistudio.google.com/apikey";

const KEY_HELP: &str = "\
Create a Gemini API key at https://aistudio.google.com/apikey.
moat checks it once against the Gemini API, then keeps it encrypted; the container
only ever sees a placeholder.";

const TIP: &str = "Tip: to use your Google account instead of an API key, log in with the Gemini CLI \
(npm install -g @google/gemini-cli && gemini), then run 'moat grant gemini' again.";

pub(super) async fn grant(
    provider: &GeminiProvider,
    request: GrantRequest,
) -> ProviderResult<GrantStep> {
    if let Some(answer) = request.answer(KEY) {
        let key = answer
            .as_secret()
            .map(|s| s.expose().trim())
            .unwrap_or_default();
        if key.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "no Gemini API key was entered",
            )
            .with_hint(HINT_VALID_KEY));
        }
        return finish_key(provider, Secret::new(key), SOURCE_PROMPT, Vec::new()).await;
    }

    if let Some(key) = std::env::var(ENV_VAR)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
    {
        let note = format!("Using API key from {ENV_VAR} environment variable");
        return finish_key(provider, Secret::new(key), SOURCE_ENV, vec![note]).await;
    }

    match request.answer(METHOD).and_then(|a| a.as_text()) {
        Some(METHOD_OAUTH) => return import(provider).await,
        Some(METHOD_KEY) => return Ok(ask_key(Vec::new())),
        Some(other) => {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!("unknown authentication method {other:?}"),
            ));
        }
        None => {}
    }

    if oauth::read_cli_creds().is_some() {
        let shown = oauth::cli_creds_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let prompt = Prompt::choice(
            METHOD,
            "Choose authentication method:",
            vec![
                ChoiceOption {
                    value: METHOD_OAUTH.into(),
                    label: "Import Gemini CLI credentials (recommended)".into(),
                },
                ChoiceOption {
                    value: METHOD_KEY.into(),
                    label: "Gemini API key".into(),
                },
            ],
        );
        return Ok(GrantStep::Ask {
            prompts: vec![prompt],
            notes: vec![format!("Found Gemini CLI credentials in {shown}")],
        });
    }
    Ok(ask_key(vec![TIP.into()]))
}

fn ask_key(notes: Vec<String>) -> GrantStep {
    let prompt = Prompt::secret(KEY, "Gemini API key")
        .with_help(KEY_HELP)
        .with_env(ENV_VAR);
    GrantStep::Ask {
        prompts: vec![prompt],
        notes,
    }
}

/// Imports the Gemini CLI's login: one real refresh, then both tokens are kept.
async fn import(provider: &GeminiProvider) -> ProviderResult<GrantStep> {
    let creds = oauth::read_cli_creds().ok_or_else(|| {
        ProviderError::new(
            ErrorKind::CredentialNotFound,
            "no Gemini CLI credentials found (~/.gemini/oauth_creds.json)",
        )
        .with_hint(oauth::HINT_REGRANT)
    })?;
    let refresh_token = creds
        .refresh_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidCredential,
                "the Gemini CLI credentials hold no refresh token, so moat could not keep them fresh",
            )
            .with_hint(oauth::HINT_REGRANT)
        })?;
    let credential = provider
        .refreshed_credential(refresh_token, SOURCE_OAUTH)
        .await?;
    Ok(GrantStep::Done {
        credential,
        notes: vec![
            "Imported Gemini CLI credentials; moat refreshes the access token while runs last"
                .into(),
        ],
    })
}

impl GeminiProvider {
    /// A credential holding a fresh access token obtained with `refresh_token`.
    pub(super) async fn refreshed_credential(
        &self,
        refresh_token: Secret,
        source: &str,
    ) -> ProviderResult<Credential> {
        let refreshed = oauth::refresh(&self.oauth_url, &refresh_token).await?;
        let tokens = Tokens {
            access_token: refreshed.access_token,
            refresh_token: refreshed.refresh_token.unwrap_or(refresh_token),
        };
        let mut credential = Credential::new(NAME, tokens.to_secret()?)
            .with_metadata(META_AUTH_TYPE, AUTH_OAUTH)
            .with_metadata(META_TOKEN_SOURCE, source);
        credential.scopes = refreshed.scopes;
        credential.expires_at = refreshed.expires_in.map(|secs| {
            credential.created_at + chrono::Duration::seconds(secs.min(i64::MAX as u64) as i64)
        });
        Ok(credential)
    }
}

async fn finish_key(
    provider: &GeminiProvider,
    key: Secret,
    source: &str,
    mut notes: Vec<String>,
) -> ProviderResult<GrantStep> {
    validate_key(&provider.api_url, &key).await?;
    notes.push("Gemini API key is valid".into());
    let credential = Credential::new(NAME, key)
        .with_metadata(META_AUTH_TYPE, AUTH_API_KEY)
        .with_metadata(META_TOKEN_SOURCE, source);
    Ok(GrantStep::Done { credential, notes })
}

/// `GET /v1beta/models` with the key in `x-goog-api-key` (not in the URL, where it could end up
/// in an error message). Errors never include the key.
async fn validate_key(api_url: &str, key: &Secret) -> ProviderResult<()> {
    let client = crate::http::client(VALIDATE_TIMEOUT)
        .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
    let url = format!("{api_url}/v1beta/models");
    let response = client
        .get(&url)
        .header("x-goog-api-key", key.expose())
        .send()
        .await
        .map_err(|err| {
            ProviderError::new(
                ErrorKind::Network,
                format!("cannot reach the Gemini API at {url}: {}", crate::http::error_chain(&err)),
            )
            .with_hint("Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs TLS), then run 'moat grant gemini' again")
        })?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        // Google answers 400 API_KEY_INVALID to a key it does not know.
        status @ (400 | 401 | 403) => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("Google rejected the Gemini API key ({status})"),
        )
        .with_hint(HINT_VALID_KEY)),
        429 => Err(ProviderError::new(
            ErrorKind::Network,
            "Google rate limited the Gemini API key (429): the key is valid but its quota is exceeded",
        )
        .with_hint("Check the key's quota at https://aistudio.google.com, then run 'moat grant gemini' again")),
        status => Err(ProviderError::new(
            ErrorKind::Network,
            format!("the Gemini API answered {status} to {url}"),
        )
        .with_hint("Try again later")),
    }
}
