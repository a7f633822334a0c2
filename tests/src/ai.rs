//! Stand-ins for the OpenAI API, the Gemini API and Google's OAuth token endpoint, as much of
//! them as moat and a stand-in agent call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use crate::ca::TestCa;
use crate::https::{FakeHttps, Recorded, Reply};

/// The key [`fake_openai`] answers `429` to (valid, but over its quota).
pub const OPENAI_RATE_LIMITED_KEY: &str = "sk-rateLimitedKeyOverItsQuota000000";

/// A fake OpenAI API (certificate for `api.openai.com` and `127.0.0.1`, so moat reaches it by
/// `MOAT_OPENAI_API_URL` and a container through the proxy with `MOAT_PROXY_RESOLVE`):
///
/// - `Authorization: Bearer <valid_key>` on any path: `200`; on `/v1/models` a model list,
///   elsewhere `{"ok": true, "path": ...}` (never the key);
/// - `Bearer` [`OPENAI_RATE_LIMITED_KEY`]: `429` `insufficient_quota`;
/// - anything else: `401` `invalid_api_key`.
pub fn fake_openai(ca: &TestCa, valid_key: &str) -> FakeHttps {
    let expected = format!("Bearer {valid_key}");
    let limited = format!("Bearer {OPENAI_RATE_LIMITED_KEY}");
    FakeHttps::start_for(
        ca,
        &["api.openai.com", "127.0.0.1"],
        move |request: &Recorded| {
            let auth = request.header("authorization");
            if auth == Some(expected.as_str()) {
                if request.path_only() == "/v1/models" {
                    return Reply::json(
                        200,
                        json!({ "object": "list", "data": [{ "id": "gpt-5" }] }),
                    );
                }
                return Reply::json(200, json!({ "ok": true, "path": request.path }));
            }
            if auth == Some(limited.as_str()) {
                return Reply::json(
                    429,
                    json!({ "error": { "message": "You exceeded your current quota", "type": "insufficient_quota" } }),
                );
            }
            Reply::json(
                401,
                json!({ "error": { "message": "Incorrect API key provided", "code": "invalid_api_key" } }),
            )
        },
    )
}

/// A fake Gemini API (`generativelanguage.googleapis.com` and `127.0.0.1`): `x-goog-api-key:
/// <valid_key>` gets `200` (a model list on `/v1beta/models`, else `{"ok": true}`); anything
/// else gets Google's `400 API_KEY_INVALID`.
pub fn fake_gemini_api(ca: &TestCa, valid_key: &str) -> FakeHttps {
    let valid_key = valid_key.to_owned();
    FakeHttps::start_for(
        ca,
        &["generativelanguage.googleapis.com", "127.0.0.1"],
        move |request: &Recorded| {
            if request.header("x-goog-api-key") == Some(valid_key.as_str()) {
                if request.path_only() == "/v1beta/models" {
                    return Reply::json(
                        200,
                        json!({ "models": [{ "name": "models/gemini-2.5-pro" }] }),
                    );
                }
                return Reply::json(200, json!({ "ok": true, "path": request.path }));
            }
            Reply::json(
                400,
                json!({ "error": { "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT" } }),
            )
        },
    )
}

/// The form fields of a request body (`a=b&c=d`; the tests' values need no decoding).
pub fn form_fields(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A fake Google: the OAuth token endpoint and tokeninfo (`oauth2.googleapis.com`) and Code
/// Assist (`cloudcode-pa.googleapis.com`), one server whose certificate also names `127.0.0.1`
/// (moat's own refresh reaches it through `MOAT_GOOGLE_OAUTH_URL`).
///
/// - `POST /token` with `grant_type=refresh_token`, `refresh_token=<refresh_token>` and the
///   Gemini CLI's client id: `200` with the access token `<access_prefix>-<n>` (n = 1, 2, ...)
///   living `expires_in` seconds; any other refresh token: `400 invalid_grant`;
/// - `GET /tokeninfo?access_token=<t>`: `200` echoing the token back (a badly behaved answer
///   the proxy must scrub) when `t` is an issued token, else `400 invalid_token`;
/// - Code Assist, any path: `200` `{"token_number": n}` for `Bearer <access_prefix>-<n>` (never
///   the token itself), else `401`.
pub struct FakeGoogle {
    /// The server.
    pub server: FakeHttps,
    issued: Arc<AtomicUsize>,
}

impl FakeGoogle {
    /// How many access tokens were issued.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

/// Starts a [`FakeGoogle`].
pub fn fake_google(
    ca: &TestCa,
    refresh_token: &str,
    access_prefix: &str,
    expires_in: u64,
) -> FakeGoogle {
    let issued = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&issued);
    let refresh_token = refresh_token.to_owned();
    let prefix = access_prefix.to_owned();
    let server = FakeHttps::start_for(
        ca,
        &[
            "oauth2.googleapis.com",
            "cloudcode-pa.googleapis.com",
            "127.0.0.1",
        ],
        move |request: &Recorded| {
            let issued_number = |token: &str| -> Option<usize> {
                let n: usize = token.strip_prefix(&format!("{prefix}-"))?.parse().ok()?;
                (1..=counter.load(Ordering::SeqCst))
                    .contains(&n)
                    .then_some(n)
            };
            let host = request.header("host").unwrap_or_default();
            if host.starts_with("cloudcode-pa.googleapis.com") {
                let token = request
                    .header("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .unwrap_or_default();
                return match issued_number(token) {
                    Some(n) => Reply::json(200, json!({ "token_number": n })),
                    None => Reply::json(401, json!({ "error": { "status": "UNAUTHENTICATED" } })),
                };
            }
            match (request.method.as_str(), request.path_only()) {
                ("POST", "/token") => {
                    let fields = form_fields(&request.body);
                    let field = |name: &str| {
                        fields
                            .iter()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v.as_str())
                    };
                    let ok = field("grant_type") == Some("refresh_token")
                        && field("refresh_token") == Some(refresh_token.as_str())
                        && field("client_id")
                            .is_some_and(|id| id.ends_with(".apps.googleusercontent.com"))
                        && field("client_secret").is_some();
                    if !ok {
                        return Reply::json(
                            400,
                            json!({ "error": "invalid_grant", "error_description": "Token has been expired or revoked." }),
                        );
                    }
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    Reply::json(
                        200,
                        json!({
                            "access_token": format!("{prefix}-{n}"),
                            "expires_in": expires_in,
                            "scope": "https://www.googleapis.com/auth/cloud-platform openid",
                            "token_type": "Bearer",
                        }),
                    )
                }
                ("GET", "/tokeninfo") => {
                    let token = request
                        .path
                        .split_once("access_token=")
                        .map(|(_, t)| t.split('&').next().unwrap_or_default())
                        .unwrap_or_default();
                    match issued_number(token) {
                        Some(_) => Reply::json(
                            200,
                            json!({ "azp": "gemini-cli", "expires_in": "3500", "access_token": token }),
                        ),
                        None => Reply::json(400, json!({ "error": "invalid_token" })),
                    }
                }
                _ => Reply::not_found(),
            }
        },
    );
    FakeGoogle { server, issued }
}
