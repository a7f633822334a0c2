//! A stand-in for the Anthropic API (`api.anthropic.com`), as much of it as moat and a stand-in
//! Claude Code call. It never echoes a credential: it says which one it recognised.

use serde_json::json;

use crate::ca::TestCa;
use crate::https::{FakeHttps, Recorded, Reply};

/// What the fake accepts.
#[derive(Debug, Clone)]
pub struct AnthropicKeys {
    /// The OAuth token accepted as `Authorization: Bearer` with `anthropic-beta` holding
    /// `oauth-2025-04-20`.
    pub oauth: String,
    /// The API key accepted as `x-api-key`.
    pub api_key: String,
}

/// Starts a fake Anthropic API whose certificate names `127.0.0.1`, `localhost` and
/// `api.anthropic.com` (so moat's own client reaches it by `MOAT_ANTHROPIC_API_URL` and the proxy
/// by `MOAT_PROXY_RESOLVE`):
///
/// - `POST /v1/messages` with the valid OAuth token (and the OAuth beta header) or the valid API
///   key: `200`, a message whose text says `auth=oauth` or `auth=api-key`, plus `x_api_key_sent`
///   and `beta` (what the request carried besides); anything else: `401`
///   `authentication_error`;
/// - `GET /api/oauth/profile`: `403` (a setup-token lacks the `user:profile` scope), which moat's
///   claude rules replace with an empty profile;
/// - anything else: `404`.
pub fn fake_anthropic(ca: &TestCa, keys: AnthropicKeys) -> FakeHttps {
    let bearer = format!("Bearer {}", keys.oauth);
    FakeHttps::start_for(
        ca,
        &["127.0.0.1", "localhost", "api.anthropic.com"],
        move |request: &Recorded| match (request.method.as_str(), request.path_only()) {
            ("POST", "/v1/messages") => {
                let beta = request.header("anthropic-beta").unwrap_or("").to_owned();
                let oauth = request.header("authorization") == Some(bearer.as_str())
                    && beta.contains("oauth-2025-04-20");
                let key = request.header("x-api-key") == Some(keys.api_key.as_str());
                let auth = match (oauth, key) {
                    (true, _) => "oauth",
                    (false, true) => "api-key",
                    (false, false) => {
                        return Reply::json(
                            401,
                            json!({"type": "error", "error": {
                                "type": "authentication_error",
                                "message": "invalid authentication credentials"}}),
                        );
                    }
                };
                Reply::json(
                    200,
                    json!({
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "text", "text": format!("auth={auth}")}],
                        "x_api_key_sent": request.header("x-api-key").is_some(),
                        "beta": beta,
                    }),
                )
            }
            ("GET", "/api/oauth/profile") => Reply::json(
                403,
                json!({"type": "error", "error": {"type": "permission_error",
                    "message": "OAuth token does not meet scope requirement user:profile"}}),
            ),
            _ => Reply::not_found(),
        },
    )
}
