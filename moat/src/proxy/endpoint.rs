//! Provider endpoints: paths the proxy answers itself, for the container of one run.
//!
//! A run registers [`Endpoint`]s (a path prefix and an [`EndpointHandler`]) with its
//! [`RunSpec`](super::RunSpec). A request sent *directly* to the proxy (origin-form:
//! `GET /_x/credentials`, not through it as a proxy) with `Authorization: Bearer <run token>` is
//! answered by the handler of that run whose path is the longest prefix of the request's path, at
//! a `/` boundary:
//!
//! - no `Authorization` header: `400`, the proxy's usual answer to a request that is not a proxy
//!   request;
//! - a token that opens no run, or not a Bearer token: `401` with `WWW-Authenticate: Bearer`; the
//!   handler is not called. The token is looked up by its SHA-256 like proxy tokens
//!   ([`super::runs`]), so the lookup's timing says nothing about the token;
//! - a path none of that run's endpoints covers (another run's endpoint included): `404`;
//! - a request body over [`MAX_BODY`]: `413`.
//!
//! What a handler is (a provider, through the run manager) is not the proxy's business: it gets
//! the method, path, headers (the authorization removed) and body, and returns status, headers
//! and body. Responses are never cached by clients (`Cache-Control: no-store`) and never logged
//! with their bodies: they typically carry short-lived credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue,
    PROXY_AUTHORIZATION, WWW_AUTHENTICATE,
};
use hyper::{Request, Response, StatusCode};
use moat_plugin_sdk::EndpointResponse;

use super::body::{ProxyBody, full};
use super::hop::strip_hop_by_hop;
use super::listener::Shared;
use super::log::{Entry, snapshot};
use super::respond::text;
use super::runs::{Run, RunRegistry};

/// The largest request body an endpoint accepts (endpoints exchange small JSON documents).
pub const MAX_BODY: usize = 64 * 1024;

/// One request to an endpoint, as the handler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointCall {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers, names in lower case, repeated values joined with `, `; without
    /// `Authorization`, `Proxy-Authorization` and hop-by-hop headers.
    pub headers: BTreeMap<String, String>,
    /// The body as UTF-8 text.
    pub body: String,
}

/// What answers a run's endpoint. Errors are the handler's to turn into a response.
#[async_trait]
pub trait EndpointHandler: Send + Sync {
    /// Answers one request.
    async fn call(&self, call: EndpointCall) -> EndpointResponse;
}

/// A path prefix of a run and what answers it.
#[derive(Clone)]
pub struct Endpoint {
    /// The prefix (`/_x/credentials`); must start with `/`.
    pub path: String,
    /// What answers it.
    pub handler: Arc<dyn EndpointHandler>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether `prefix` is a valid endpoint path: `/` then at least one character, no white space,
/// no query.
pub(crate) fn valid_path(prefix: &str) -> bool {
    prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.contains('?')
        && !prefix.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `path` (without its query) is under `prefix`: equal, or continuing after a `/`.
fn covers(prefix: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix) else {
        return false;
    };
    rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/')
}

/// The endpoint of `endpoints` with the longest prefix covering `path`.
fn route<'a>(endpoints: &'a [Endpoint], path: &str) -> Option<&'a Endpoint> {
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    endpoints
        .iter()
        .filter(|endpoint| covers(&endpoint.path, path))
        .max_by_key(|endpoint| endpoint.path.len())
}

/// The Bearer token of an `Authorization` value.
fn bearer(value: &HeaderValue) -> Option<&str> {
    let (scheme, token) = value.to_str().ok()?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `headers` carry a Bearer token that opens a run (the connection is then no longer
/// counted as unauthenticated).
pub(crate) fn authenticates(registry: &RunRegistry, headers: &hyper::HeaderMap) -> bool {
    headers
        .get(AUTHORIZATION)
        .and_then(bearer)
        .is_some_and(|token| registry.authenticate(token).is_some())
}

fn unauthorized() -> Response<ProxyBody> {
    let mut response = text(
        StatusCode::UNAUTHORIZED,
        "moat proxy: this endpoint needs 'Authorization: Bearer <run token>' \
         ($MOAT_ENDPOINT_TOKEN in the container).\n",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A request sent to the proxy itself (origin-form). Only endpoint requests are answered.
pub(crate) async fn serve(shared: &Shared, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authorization) = request.headers().get(AUTHORIZATION) else {
        return text(
            StatusCode::BAD_REQUEST,
            "moat proxy: this is an HTTP proxy; send absolute-URI requests or CONNECT. \
             Provider endpoints need 'Authorization: Bearer <run token>'.\n",
        );
    };
    let Some(run) = bearer(authorization).and_then(|token| shared.registry.authenticate(token))
    else {
        return unauthorized();
    };
    let run = run.1;
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let Some(endpoint) = route(&run.endpoints, &path) else {
        return text(
            StatusCode::NOT_FOUND,
            "moat proxy: no endpoint of this run serves this path.\n",
        );
    };
    let handler = Arc::clone(&endpoint.handler);
    let started = Instant::now();
    let method = request.method().to_string();
    let too_large = || {
        let mut response = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("moat proxy: endpoint requests are limited to {MAX_BODY} bytes.\n"),
        );
        // The rest of the body is not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return too_large();
    }
    let (mut parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return too_large(),
    };
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return text(
            StatusCode::BAD_REQUEST,
            "moat proxy: endpoint request bodies must be UTF-8 text.\n",
        );
    };
    parts.headers.remove(AUTHORIZATION);
    parts.headers.remove(PROXY_AUTHORIZATION);
    strip_hop_by_hop(&mut parts.headers, false);
    let request_headers = parts.headers.clone();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert(value);
    }
    let answer = handler
        .call(EndpointCall {
            method: method.clone(),
            path: path.clone(),
            headers,
            body,
        })
        .await;
    let response = respond(answer);
    log(&run, &method, &path, request_headers, &response, started);
    response
}

/// The handler's answer as an HTTP response; an impossible status is a `502`.
fn respond(answer: EndpointResponse) -> Response<ProxyBody> {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        return text(
            StatusCode::BAD_GATEWAY,
            "moat proxy: the endpoint answered an invalid HTTP status.\n",
        );
    };
    let mut response = Response::new(full(answer.body.into_bytes()));
    *response.status_mut() = status;
    for (name, value) in &answer.headers {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if name != CONTENT_LENGTH {
            response.headers_mut().append(name, value);
        }
    }
    strip_hop_by_hop(response.headers_mut(), false);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One `network.jsonl` line, without bodies.
fn log(
    run: &Run,
    method: &str,
    path: &str,
    req_headers: hyper::HeaderMap,
    response: &Response<ProxyBody>,
    started: Instant,
) {
    let Some(log) = &run.log else { return };
    let entry = Entry {
        method: method.to_owned(),
        url: format!("endpoint:{path}"),
        status_code: response.status().as_u16(),
        duration: started.elapsed(),
        req_headers,
        resp_headers: snapshot(response.headers()),
        ..Entry::default()
    };
    log.write(entry, &run.state().redactor);
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;

    #[async_trait]
    impl EndpointHandler for Fixed {
        async fn call(&self, _: EndpointCall) -> EndpointResponse {
            EndpointResponse {
                status: 200,
                headers: BTreeMap::new(),
                body: String::new(),
            }
        }
    }

    fn endpoint(path: &str) -> Endpoint {
        Endpoint {
            path: path.into(),
            handler: Arc::new(Fixed),
        }
    }

    #[test]
    fn routes_by_longest_prefix_at_segment_boundaries() {
        let endpoints = vec![endpoint("/_x"), endpoint("/_x/credentials")];
        let at = |path: &str| route(&endpoints, path).map(|e| e.path.as_str());
        assert_eq!(at("/_x/credentials"), Some("/_x/credentials"));
        assert_eq!(at("/_x/credentials?role=a"), Some("/_x/credentials"));
        assert_eq!(at("/_x/credentials/sub"), Some("/_x/credentials"));
        assert_eq!(at("/_x/other"), Some("/_x"));
        assert_eq!(at("/_x"), Some("/_x"));
        assert_eq!(at("/_xy"), None);
        assert_eq!(at("/_x/credentialsX"), Some("/_x"));
        assert_eq!(at("/"), None);
        assert_eq!(at("/other?/_x"), None);
        let slash = vec![endpoint("/_y/")];
        assert!(route(&slash, "/_y/a").is_some());
        assert!(route(&slash, "/_y").is_none());
    }

    #[test]
    fn endpoint_paths_are_checked() {
        assert!(valid_path("/_x/credentials"));
        for bad in ["", "/", "_x", "/a b", "/a?b", "/a\n"] {
            assert!(!valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(&HeaderValue::from_static("Bearer abc")), Some("abc"));
        assert_eq!(
            bearer(&HeaderValue::from_static("bearer  abc ")),
            Some("abc")
        );
        assert_eq!(bearer(&HeaderValue::from_static("Basic abc")), None);
        assert_eq!(bearer(&HeaderValue::from_static("Bearer")), None);
    }

    #[test]
    fn answers_keep_their_status_and_headers_but_never_a_length_or_caching() {
        let response = respond(EndpointResponse {
            status: 500,
            headers: BTreeMap::from([
                ("content-type".to_string(), "text/plain".to_string()),
                ("content-length".to_string(), "999".to_string()),
                ("connection".to_string(), "close".to_string()),
                ("bad name".to_string(), "x".to_string()),
            ]),
            body: "nope".into(),
        });
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["content-type"], "text/plain");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert!(response.headers().get("connection").is_none());
        assert!(response.headers().get("content-length").is_none());
        let invalid = respond(EndpointResponse {
            status: 42,
            headers: BTreeMap::new(),
            body: String::new(),
        });
        assert_eq!(invalid.status(), 502);
    }
}
