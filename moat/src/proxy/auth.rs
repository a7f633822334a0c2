//! Proxy authentication: which run a client belongs to.
//!
//! Clients send `Proxy-Authorization: Basic base64(<any user>:<run token>)` (what
//! `http://moat:<token>@host:port` proxy URLs make curl, git and every HTTP library send), or
//! `Bearer <run token>`. A missing or unknown token gets `407` with
//! `Proxy-Authenticate: Basic realm="moat"`: libcurl and git send credentials only after that
//! challenge.

use std::sync::Arc;

use base64::Engine as _;
use hyper::header::{HeaderMap, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION};
use hyper::{Response, StatusCode};

use super::body::ProxyBody;
use super::log::{Refused, say_refused};
use super::respond::text;
use super::runs::{Run, RunRegistry, TokenHash};

/// The run the request's `Proxy-Authorization` opens, or the `407` to answer.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
pub(crate) fn authenticate(
    registry: &RunRegistry,
    headers: &HeaderMap,
) -> Result<(TokenHash, Arc<Run>), Response<ProxyBody>> {
    let Some(value) = headers.get(PROXY_AUTHORIZATION) else {
        return Err(challenge("Proxy authentication required"));
    };
    token_of(value)
        .and_then(|token| registry.authenticate(&token))
        .ok_or_else(|| {
            // A missing header is the normal first try (clients send it after the challenge);
            // a wrong one is worth saying. Never with the token: it may be someone's real one.
            say_refused(
                Refused::WrongToken,
                "a request with an unknown proxy token (407); is the container using an old \
                 run's proxy URL?",
            );
            challenge("Invalid proxy token")
        })
}

/// The token in a `Proxy-Authorization` value: the Basic password (or the user name when the
/// password is empty), or the Bearer token.
fn token_of(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        Some(if password.is_empty() { user } else { password }.to_owned())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_owned())
    } else {
        None
    }
    .filter(|token| !token.is_empty())
}

/// `407` with the Basic challenge.
pub(crate) fn challenge(message: &str) -> Response<ProxyBody> {
    let mut response = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        &format!("{message}\n"),
    );
    response.headers_mut().insert(
        PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"moat\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::runs::RunSpec;

    fn basic(userpass: &str) -> HeaderValue {
        let encoded = base64::engine::general_purpose::STANDARD.encode(userpass);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn token_forms() {
        assert_eq!(token_of(&basic("moat:tok")).as_deref(), Some("tok"));
        assert_eq!(token_of(&basic("anyone:tok")).as_deref(), Some("tok"));
        assert_eq!(token_of(&basic("tok:")).as_deref(), Some("tok"));
        assert_eq!(token_of(&basic("tok")).as_deref(), Some("tok"));
        assert_eq!(
            token_of(&HeaderValue::from_static("bearer  tok ")).as_deref(),
            Some("tok")
        );
        assert_eq!(token_of(&basic(":")), None);
        assert_eq!(token_of(&HeaderValue::from_static("Basic !!!")), None);
        assert_eq!(token_of(&HeaderValue::from_static("Digest x")), None);
        assert_eq!(token_of(&HeaderValue::from_static("Bearer")), None);
    }

    #[test]
    fn missing_and_unknown_tokens_get_the_challenge() {
        let registry = RunRegistry::new();
        let token = registry.register(RunSpec::default()).unwrap();
        let mut headers = HeaderMap::new();

        let refused = authenticate(&registry, &headers).unwrap_err();
        assert_eq!(refused.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
        assert_eq!(
            refused.headers()[PROXY_AUTHENTICATE],
            "Basic realm=\"moat\""
        );

        headers.insert(PROXY_AUTHORIZATION, basic("moat:wrong"));
        let refused = authenticate(&registry, &headers).unwrap_err();
        assert_eq!(refused.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);

        headers.insert(
            PROXY_AUTHORIZATION,
            basic(&format!("moat:{}", token.as_str())),
        );
        assert!(authenticate(&registry, &headers).is_ok());
        headers.insert(
            PROXY_AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {}", token.as_str())).unwrap(),
        );
        assert!(authenticate(&registry, &headers).is_ok());
    }
}
