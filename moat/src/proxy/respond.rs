//! The responses the proxy makes itself: refusals and errors, always plain text, never holding a
//! credential (their texts are built from host names, methods, paths and error kinds only).

use hyper::header::{CONTENT_TYPE, HeaderValue, PROXY_AUTHENTICATE};
use hyper::{Response, StatusCode};

use super::blocked::Blocked;
use super::body::{ProxyBody, full};

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

/// A request the network policy blocks: `407`, `X-Moat-Blocked: <reason>`, and a body that says
/// how to allow it.
pub(crate) fn blocked(blocked: &Blocked) -> Response<ProxyBody> {
    let mut response = text(StatusCode::PROXY_AUTHENTICATION_REQUIRED, &blocked.body());
    let headers = response.headers_mut();
    headers.insert(PROXY_AUTHENTICATE, HeaderValue::from_static("Moat-Policy"));
    headers.insert(
        "x-moat-blocked",
        HeaderValue::from_static(blocked.reason.as_str()),
    );
    response
}
