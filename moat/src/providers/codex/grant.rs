//! Getting an OpenAI API key: `OPENAI_API_KEY`, then a hidden prompt. Whatever the source, the key
//! is checked against `GET /v1/models` before it is kept.

use std::time::Duration;

use moat_plugin_sdk::{
    Credential, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE, Prompt, ProviderError,
    ProviderResult, Secret,
};

use super::{CodexProvider, NAME};

const SOURCE_ENV: &str = "env";
const SOURCE_PROMPT: &str = "prompt";

pub(super) const ENV_VAR: &str = "OPENAI_API_KEY";
const KEY: &str = "api_key";
const KEY_PREFIX: &str = "sk-";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(30);
const HINT_VALID_KEY: &str =
    "Run 'moat grant openai' and enter a valid key from https://platform.openai.com/api-keys";

const KEY_HELP: &str = "\
Create an API key at https://platform.openai.com/api-keys (a project key works).
moat checks it once against the OpenAI API, then keeps it encrypted; the container
only ever sees a placeholder.";

pub(super) async fn grant(
    provider: &CodexProvider,
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
                "no OpenAI API key was entered",
            )
            .with_hint(HINT_VALID_KEY));
        }
        if !key.starts_with(KEY_PREFIX) {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!("OpenAI API key must start with \"{KEY_PREFIX}\""),
            )
            .with_hint(HINT_VALID_KEY));
        }
        return finish(provider, Secret::new(key), SOURCE_PROMPT, Vec::new()).await;
    }

    if let Some(key) = std::env::var(ENV_VAR)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
    {
        let note = format!("Using API key from {ENV_VAR} environment variable");
        return finish(provider, Secret::new(key), SOURCE_ENV, vec![note]).await;
    }

    let prompt = Prompt::secret(KEY, "OpenAI API key")
        .with_help(KEY_HELP)
        .with_env(ENV_VAR);
    Ok(GrantStep::Ask {
        prompts: vec![prompt],
        notes: Vec::new(),
    })
}

/// Validates `key` and wraps it into the credential.
async fn finish(
    provider: &CodexProvider,
    key: Secret,
    source: &str,
    mut notes: Vec<String>,
) -> ProviderResult<GrantStep> {
    validate(&provider.api_url, &key).await?;
    notes.push("OpenAI API key is valid".into());
    let credential = Credential::new(NAME, key).with_metadata(META_TOKEN_SOURCE, source);
    Ok(GrantStep::Done { credential, notes })
}

/// `GET /v1/models` with the key. Errors never include the key.
async fn validate(api_url: &str, key: &Secret) -> ProviderResult<()> {
    let client = crate::http::client(VALIDATE_TIMEOUT)
        .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
    let url = format!("{api_url}/v1/models");
    let response = client
        .get(&url)
        .bearer_auth(key.expose())
        .send()
        .await
        .map_err(|err| {
            ProviderError::new(
                ErrorKind::Network,
                format!("cannot reach the OpenAI API at {url}: {}", crate::http::error_chain(&err)),
            )
            .with_hint("Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs TLS), then run 'moat grant openai' again")
        })?;
    match response.status().as_u16() {
        200..=299 => Ok(()),
        401 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            "OpenAI rejected the API key (401 Unauthorized)",
        )
        .with_hint(HINT_VALID_KEY)),
        403 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            "OpenAI refused the API key (403 Forbidden)",
        )
        .with_hint(
            "The key may lack the permission to list models, or its organisation or region is not allowed. \
             Check its permissions at https://platform.openai.com/api-keys, then run 'moat grant openai'",
        )),
        429 => Err(ProviderError::new(
            ErrorKind::Network,
            "OpenAI rate limited the API key (429): the key is valid but its quota is exceeded",
        )
        .with_hint(
            "Check the plan and billing of the key's organisation at https://platform.openai.com/settings/organization/billing, \
             then run 'moat grant openai' again",
        )),
        status => Err(ProviderError::new(
            ErrorKind::Network,
            format!("OpenAI answered {status} to {url}"),
        )
        .with_hint("Try again later; if it persists, check https://status.openai.com")),
    }
}
