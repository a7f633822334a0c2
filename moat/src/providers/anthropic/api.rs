//! Checking an Anthropic credential against the Messages API (`POST /v1/messages`, one token),
//! for the API key (`x-api-key`) and the Claude OAuth token (`Authorization: Bearer` with the
//! OAuth beta header). Shared by the `anthropic` and `claude` providers.

use std::time::Duration;

use moat_plugin_sdk::{ErrorKind, ProviderError, ProviderResult, Secret};

/// Overrides the Anthropic API base URL (default `https://api.anthropic.com`), for a gateway or a
/// local test server. Combine with `MOAT_EXTRA_CA_CERTS` when it uses a private CA.
pub const API_URL_ENV: &str = "MOAT_ANTHROPIC_API_URL";

/// The real API host, where the proxy rules apply.
pub const API_HOST: &str = "api.anthropic.com";

/// The `anthropic-beta` value that lets an OAuth token call the API.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The model of the validation request (the cheapest; one output token).
const VALIDATION_MODEL: &str = "claude-haiku-4-5-20251001";
const API_VERSION: &str = "2023-06-01";
const TIMEOUT: Duration = Duration::from_secs(30);

/// The API base URL from [`API_URL_ENV`], without a trailing slash.
pub fn api_url_from_env() -> String {
    std::env::var(API_URL_ENV)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| format!("https://{API_HOST}"))
        .trim_end_matches('/')
        .to_string()
}

/// How the validation request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// An API key, in `x-api-key`.
    ApiKey(&'a Secret),
    /// A Claude OAuth token, as `Authorization: Bearer` with [`OAUTH_BETA`].
    OAuth(&'a Secret),
}

/// Sends a one-token `POST /v1/messages` with `auth`. Ok when the API accepted the credential;
/// the errors say why not, with the command that fixes it (`fix`), and never hold the secret.
pub async fn validate(api_url: &str, auth: Auth<'_>, fix: &str) -> ProviderResult<()> {
    let client = crate::http::client(TIMEOUT)
        .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
    let url = format!("{api_url}/v1/messages");
    let body = serde_json::json!({
        "model": VALIDATION_MODEL,
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let mut request = client
        .post(&url)
        .header("anthropic-version", API_VERSION)
        .json(&body);
    request = match auth {
        Auth::ApiKey(key) => request.header("x-api-key", key.expose()),
        Auth::OAuth(token) => request
            .bearer_auth(token.expose())
            .header("anthropic-beta", OAUTH_BETA)
            .header("anthropic-dangerous-direct-browser-access", "true"),
    };
    let response = request.send().await.map_err(|err| {
        ProviderError::new(
            ErrorKind::Network,
            format!("cannot reach the Anthropic API at {url}: {}", chain(&err)),
        )
        .with_hint(format!(
            "Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs TLS), \
             then run '{fix}' again"
        ))
    })?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    // What the API said, the credential cut out should an upstream echo it.
    let secret = match auth {
        Auth::ApiKey(secret) | Auth::OAuth(secret) => secret.expose(),
    };
    let said = api_message(&text, secret);
    let what = match auth {
        Auth::ApiKey(_) => "API key",
        Auth::OAuth(_) => "OAuth token",
    };
    match status {
        200..=299 => Ok(()),
        // The credential was accepted; the request was refused for another reason.
        429 => Ok(()),
        400 if text.to_ascii_lowercase().contains("credit") => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("the Anthropic account has insufficient credits (400: {said})"),
        )
        .with_hint(
            "Add credits at https://console.anthropic.com/settings/billing, or use a Claude \
             subscription: moat grant claude",
        )),
        400 => Ok(()),
        401 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("Anthropic rejected the {what} (401: {said})"),
        )
        .with_hint(format!("Run '{fix}' and enter a valid {what}"))),
        403 if matches!(auth, Auth::OAuth(_)) && text.contains("OAuth") => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("Anthropic refused the OAuth token (403: {said})"),
        )
        .with_hint(
            "The Anthropic OAuth endpoint may have changed: try updating moat, or create a new \
             token with 'claude setup-token' and run 'moat grant claude' again",
        )),
        403 => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("Anthropic refused the {what} (403: {said})"),
        )
        .with_hint(format!(
            "Ensure the {what} is valid and allowed to use the Messages API, then run '{fix}'"
        ))),
        status => Err(ProviderError::new(
            ErrorKind::Network,
            format!("the Anthropic API answered {status} to {url}"),
        )
        .with_hint(format!(
            "Try again later ('{fix}'); if it persists, check https://status.anthropic.com"
        ))),
    }
}

/// The `error.message` of an API error body, or `no details`, with `secret` cut out (should an
/// upstream echo it), then cut short.
fn api_message(body: &str, secret: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "no details".into());
    let message = if secret.is_empty() {
        message
    } else {
        message.replace(secret, "[REDACTED]")
    };
    message.chars().take(300).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_are_reduced_to_their_message() {
        let body = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(api_message(body, "sk-ant-x"), "invalid x-api-key");
        assert_eq!(api_message("<html>", "sk-ant-x"), "no details");
        let echo = r#"{"error":{"message":"bad key sk-ant-api03-secret here"}}"#;
        assert_eq!(
            api_message(echo, "sk-ant-api03-secret"),
            "bad key [REDACTED] here"
        );
    }

    #[tokio::test]
    async fn an_unreachable_api_is_a_network_error_naming_the_fix() {
        let key = Secret::new("sk-ant-api03-x");
        let err = validate(
            "https://127.0.0.1:9",
            Auth::ApiKey(&key),
            "moat grant anthropic",
        )
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Network);
        assert!(err.to_string().contains("moat grant anthropic"), "{err}");
        assert!(!err.to_string().contains("sk-ant-api03-x"));
    }
}
