//! The responses the proxy makes itself: refusals and errors, always plain text, never holding a
//! credential (their texts are built from host names, methods, paths and error kinds only).

use hyper::header::{CONTENT_TYPE, HeaderValue, PROXY_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::body::{ProxyBody, full};
use super::policy::{Decision, blocked_body};

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(body.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A request the network policy blocks: `407`, `X-Moat-Blocked: request-rule` (or `host-service`
/// for the proxy's own machine), and a body that says how to allow it.
pub(crate) fn blocked(
    decision: &Decision,
    host: &str,
    method: &str,
    path: &str,
) -> Response<ProxyBody> {
    let mut response = text(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        &blocked_body(decision, host, method, path),
    );
    let headers = response.headers_mut();
    headers.insert(PROXY_AUTHENTICATE, HeaderValue::from_static("Moat-Policy"));
    let kind = match decision {
        Decision::DenyHostService => "host-service",
        _ => "request-rule",
    };
    headers.insert("x-moat-blocked", HeaderValue::from_static(kind));
    response
}
