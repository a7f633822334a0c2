//! The request pipeline: what happens to one request the proxy forwards, in named steps.
//!
//! Every request, from a tunnel ([`super::tunnel`]) or absolute-URI ([`super::listener`]), goes
//! through [`handle`]:
//!
//! 1. [`check_policy`]: the run's network policy (host, method, path); a refusal is a `407` that
//!    says how to allow it, and a [`super::Blocked`] event for the embedding process;
//! 2. [`prepare`]: hop-by-hop headers out, the run's rules in ([`super::inject`]: credentials,
//!    extra and removed headers, token substitution in the path and the body), the upstream URI;
//! 3. [`forward`]: the request sent upstream ([`super::upstream`]);
//! 4. [`relay_upgrade`] after a `101`: both connections relayed byte for byte, except on a host
//!    that gets credentials: there only WebSocket, without extensions, with the upstream's
//!    frames masked ([`super::wsmask`]);
//! 5. [`shape_response`]: hop-by-hop headers out, every secret of the run (in any form its
//!    redactor covers) scrubbed from response headers, the
//!    host's response transforms (replacement, body scrubbing), and on a host that gets
//!    credentials, every form of them masked in the body ([`super::mask`]; a compressed body
//!    there is refused, as moat asked for `identity`);
//! 6. [`log_response`]: the response streams to the client while its first bytes are kept, and
//!    the request's `network.jsonl` line is written when it ends.
//!
//! Bodies stream both ways; only a request body that needs token substitution (known length up
//! to 64 KiB) is read whole first. A step that refuses returns the proxy's own response, which
//! is logged like any other.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{
    ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue,
    SEC_WEBSOCKET_EXTENSIONS, TRANSFER_ENCODING, UPGRADE,
};
use hyper::http::response::Parts;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use moat_plugin_sdk::SecretSet;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::blocked::Blocked;
use super::body::{Capture, Logged, ProxyBody, Rewritten, Tee, TokenSwap, empty, full, incoming};
use super::hop::{is_upgrade, strip_hop_by_hop};
use super::host::Target;
use super::inject::{
    HostView, Injected, ResponseAction, SUBSTITUTION_BODY_LIMIT, apply_request_headers,
    identity_encoded, is_text_type, response_transform, scrub_headers, scrub_secret_headers,
    substitute, substitute_bytes,
};
use super::listener::Shared;
use super::log::{BODY_CAPTURE_LIMIT, Entry, Refused, say_refused, snapshot};
use super::mask::{MaskStream, SecretMask};
use super::respond::{blocked, text};
use super::runs::{Run, RunState};
use super::wsmask::FrameMasker;

/// `http` or `https`: how the client reached the proxy, and how the upstream is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A response the proxy makes itself instead of going on, with the reason for the log.
type Refusal = (Response<ProxyBody>, Option<String>);

/// Every host the request names (`Host`, the URI's authority) must be `target`.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
pub(crate) fn host_agrees(
    request: &Request<Incoming>,
    target: &Target,
    scheme: Scheme,
) -> Result<(), Response<ProxyBody>> {
    let mut named = Vec::new();
    if let Some(authority) = request.uri().authority() {
        named.push(authority.as_str().to_owned());
    }
    for value in request.headers().get_all(HOST) {
        named.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    if named.is_empty() {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "moat proxy: the request names no host.\n",
        ));
    }
    for name in named {
        if Target::parse(&name, scheme.default_port()).as_ref() != Some(target) {
            return Err(text(
                StatusCode::MISDIRECTED_REQUEST,
                &format!(
                    "moat proxy: the request is for {:?} but the connection is for {}; refused.\n",
                    name.chars().take(256).collect::<String>(),
                    target
                ),
            ));
        }
    }
    Ok(())
}

/// A request refused by [`host_agrees`] (`421`, or `400` when it names no host) leaves a trace:
/// a line in the run's log with the reason, and a line on stderr (rate-limited). `connection`
/// says where it came (`run R's tunnel to H`, or `run R's plain-HTTP request for H`).
pub(crate) fn host_refused(
    run: &Run,
    request: &Request<Incoming>,
    target: &Target,
    scheme: Scheme,
    refusal: &Response<ProxyBody>,
    connection: &str,
) {
    say_refused(
        Refused::HostMismatch,
        &format!(
            "a request in {connection} that names another host ({})",
            refusal.status()
        ),
    );
    let Some(log) = &run.log else { return };
    let state = run.state();
    let url = format!(
        "{}://{}{}",
        scheme.as_str(),
        target.authority(scheme.default_port()),
        request.uri().path_and_query().map_or("/", |pq| pq.as_str())
    );
    let reason = match (refusal.status(), scheme) {
        (StatusCode::MISDIRECTED_REQUEST, Scheme::Https) => {
            "the request names another host than its tunnel's"
        }
        (StatusCode::MISDIRECTED_REQUEST, Scheme::Http) => {
            "the request's Host names another host than its URL"
        }
        _ => "the request names no host",
    };
    let entry = Entry {
        method: request.method().to_string(),
        url,
        status_code: refusal.status().as_u16(),
        error: Some(reason.into()),
        req_headers: snapshot(request.headers()),
        resp_headers: snapshot(refusal.headers()),
        ..Entry::default()
    };
    log.write(entry, &state.redactor);
}

/// Where a request's log line is being put together.
struct Pending {
    run: Arc<Run>,
    state: Arc<RunState>,
    entry: Entry,
    started: Instant,
    req_capture: Option<Arc<Mutex<Capture>>>,
}

impl Pending {
    fn finish(mut self, resp_capture: Option<Capture>, error: Option<String>) {
        let Some(log) = &self.run.log else { return };
        self.entry.duration = self.started.elapsed();
        if error.is_some() {
            self.entry.error = error;
        }
        if let Some(capture) = self.req_capture.take() {
            let capture = capture.lock().unwrap_or_else(|p| p.into_inner()).clone();
            self.entry.truncated |= capture.truncated;
            self.entry.req_body = Some(capture.bytes);
        }
        if let Some(capture) = resp_capture {
            self.entry.truncated |= capture.truncated;
            self.entry.resp_body = Some(capture.bytes);
        }
        log.write(self.entry, &self.state.redactor);
    }

    /// Logs a response the proxy made itself (or an upstream failure) and returns it.
    fn respond(
        mut self,
        response: Response<ProxyBody>,
        error: Option<String>,
    ) -> Response<ProxyBody> {
        self.entry.status_code = response.status().as_u16();
        self.entry.resp_headers = snapshot(response.headers());
        self.finish(None, error);
        response
    }
}

/// Policy, injection, forwarding, transforms and logging for one request.
pub(crate) async fn handle(
    shared: &Shared,
    run: &Arc<Run>,
    scheme: Scheme,
    target: Target,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let state = run.state();
    let method = request.method().clone();
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let authority = target.authority(scheme.default_port());
    let mut pending = Pending {
        run: Arc::clone(run),
        state: Arc::clone(&state),
        entry: Entry {
            method: method.to_string(),
            url: format!("{}://{authority}{path}", scheme.as_str()),
            ..Entry::default()
        },
        started,
        req_capture: None,
    };

    // Only origin-form paths go on. The asterisk form (`OPTIONS *`, h1 or an h2 `:path` of `*`)
    // would make the upstream URL `https://host*`, a host name of its own that would reach the
    // system resolver with the credential attached; it is refused before policy, injection or any
    // connection.
    if !path.starts_with('/') {
        let response = text(
            StatusCode::BAD_REQUEST,
            "moat proxy: only origin-form request targets (a path starting with /) are forwarded; \
             \"*\" and other forms are refused.\n",
        );
        return pending.respond(response, Some("request target is not a path".into()));
    }
    if let Err((response, reason)) =
        check_policy(run, &state, &target, &request, &path, &mut pending)
    {
        return pending.respond(response, reason);
    }
    let view = state
        .rules
        .for_host(&target.host, target.port, scheme == Scheme::Https);
    let url = Url {
        scheme,
        authority: &authority,
        path: &path,
    };
    let (outbound, client_upgrade) = match prepare(&view, url, request, &mut pending).await {
        Ok(prepared) => prepared,
        Err((response, reason)) => return pending.respond(response, reason),
    };
    let response = match forward(
        shared,
        run,
        &state,
        &target,
        outbound,
        client_upgrade.is_some(),
    )
    .await
    {
        Ok(response) => response,
        Err((response, reason)) => return pending.respond(response, reason),
    };
    let response = match client_upgrade {
        Some(client) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
            let mut response = response;
            scrub_secret_headers(response.headers_mut(), &state.redactor);
            if view.mask.is_some()
                && (!is_websocket(response.headers())
                    || response.headers().contains_key(SEC_WEBSOCKET_EXTENSIONS))
            {
                // The upstream switched to something the frame masker cannot read.
                let response = text(
                    StatusCode::BAD_GATEWAY,
                    "moat proxy: the upstream switched to a protocol or WebSocket extension \
                     moat cannot search for the credential it added; not relayed\n",
                );
                let reason = "unreadable upgrade on a credential host".to_owned();
                return pending.respond(response, Some(reason));
            }
            let response = relay_upgrade(&target, client, response, view.mask.cloned());
            return pending.respond(response, None);
        }
        _ => response,
    };
    match shape_response(&view, &state.redactor, &method, &path, response) {
        Ok((parts, body)) => log_response(pending, parts, body),
        Err((response, reason)) => pending.respond(response, reason),
    }
}

/// Step 1: the run's network policy for this host, method and path.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
fn check_policy(
    run: &Run,
    state: &RunState,
    target: &Target,
    request: &Request<Incoming>,
    path: &str,
    pending: &mut Pending,
) -> Result<(), Refusal> {
    let method = request.method().as_str();
    let decision = state.policy.check(&target.host, target.port, method, path);
    let Some(refused) = Blocked::new(&run.id, &decision, &target.host, target.port, method, path)
    else {
        return Ok(());
    };
    tracing::debug!(run = %run.id, host = %target.host, %method, "request blocked by policy");
    pending.entry.req_headers = snapshot(request.headers());
    let response = blocked(&refused);
    run.announce(refused);
    Err((response, Some("blocked by network policy".into())))
}

/// Where a request goes, as the client named it.
#[derive(Clone, Copy)]
struct Url<'a> {
    scheme: Scheme,
    authority: &'a str,
    /// Path and query.
    path: &'a str,
}

/// Step 2: the request as it goes upstream (rules applied, hop-by-hop headers out, the body
/// wrapped or substituted), and the client's side of a connection upgrade it asks for.
async fn prepare(
    view: &HostView<'_>,
    url: Url<'_>,
    mut request: Request<Incoming>,
    pending: &mut Pending,
) -> Result<(Request<ProxyBody>, Option<OnUpgrade>), Refusal> {
    let logging = pending.run.log.is_some();
    let upgrade = is_upgrade(request.headers()) && request.version() == Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    let client_headers = logging.then(|| snapshot(&parts.headers));

    strip_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade && view.substitution.is_some() {
        // After a 101 the bytes are relayed untouched: the real token the proxy substituted into
        // the request could come back to the client unscrubbed.
        let response = text(
            StatusCode::FORBIDDEN,
            "moat proxy: connection upgrades are refused on hosts whose token moat substitutes\n",
        );
        return Err((
            response,
            Some("upgrade refused on a substitution host".into()),
        ));
    }
    if upgrade && view.mask.is_some() {
        // After the 101 the proxy can still read a WebSocket's frames and mask the credential in
        // them (`wsmask`), but only without extensions (permessage-deflate would compress them),
        // and no other protocol at all.
        if !is_websocket(&parts.headers) {
            let response = text(
                StatusCode::FORBIDDEN,
                "moat proxy: on hosts moat adds credentials to, only WebSocket upgrades are \
                 relayed\n",
            );
            return Err((
                response,
                Some("non-WebSocket upgrade refused on a credential host".into()),
            ));
        }
        parts.headers.remove(SEC_WEBSOCKET_EXTENSIONS);
    }
    let Injected {
        headers: injected,
        grants,
    } = apply_request_headers(view, &mut parts.headers);
    if let Some(headers) = client_headers {
        pending.entry.req_headers = headers;
        pending.entry.injected = injected;
    }
    pending.entry.grants = grants;
    let substituted_path = view.substitution.and_then(|sub| substitute(url.path, sub));
    let forwarded_path = substituted_path.as_deref().unwrap_or(url.path);
    if view.reads_responses() {
        // The scrubber and the mask can only search what they can read. On a credential host
        // this costs the compression of every answer: the price of knowing the credential is not
        // in it.
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }

    let body = request_body(view, &mut parts.headers, body, logging, pending).await?;

    parts.headers.remove(HOST);
    parts.version = Version::HTTP_11;
    parts.uri = match format!(
        "{}://{}{forwarded_path}",
        url.scheme.as_str(),
        url.authority
    )
    .parse::<Uri>()
    {
        Ok(uri) => uri,
        Err(_) => {
            let response = text(StatusCode::BAD_REQUEST, "moat proxy: bad request target.\n");
            return Err((response, Some("bad request target".into())));
        }
    };
    Ok((Request::from_parts(parts, body), client_upgrade))
}

/// The request body as it goes upstream: token substitution (known length up to
/// [`SUBSTITUTION_BODY_LIMIT`], read whole), and its first bytes kept for the log when it is text.
async fn request_body(
    view: &HostView<'_>,
    headers: &mut hyper::HeaderMap,
    body: Incoming,
    logging: bool,
    pending: &mut Pending,
) -> Result<ProxyBody, Refusal> {
    let capture_request = logging
        && headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_text_type);
    let declared_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Ok(match (view.substitution, declared_length) {
        (Some(sub), Some(length)) if length > 0 && length <= SUBSTITUTION_BODY_LIMIT => {
            let limit = usize::try_from(SUBSTITUTION_BODY_LIMIT).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) => {
                    let response = text(
                        StatusCode::BAD_REQUEST,
                        "moat proxy: cannot read the request body.\n",
                    );
                    return Err((response, Some(format!("request body: {err}"))));
                }
            };
            if capture_request {
                let mut capture = Capture::new(BODY_CAPTURE_LIMIT);
                capture.push(&bytes);
                pending.req_capture = Some(Arc::new(Mutex::new(capture)));
            }
            match substitute_bytes(&bytes, sub) {
                Some(replaced) => {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from(replaced.len()));
                    full(replaced)
                }
                None => full(bytes),
            }
        }
        _ if capture_request => {
            let capture = Arc::new(Mutex::new(Capture::new(BODY_CAPTURE_LIMIT)));
            pending.req_capture = Some(Arc::clone(&capture));
            Tee::wrap(incoming(body), capture)
        }
        _ => incoming(body),
    })
}

/// Step 3: the request sent upstream. A failure is a `502` whose text went through the run's
/// redactor.
async fn forward(
    shared: &Shared,
    run: &Run,
    state: &RunState,
    target: &Target,
    outbound: Request<ProxyBody>,
    upgrade: bool,
) -> Result<Response<Incoming>, Refusal> {
    let result = if upgrade {
        shared.upstream.send_upgrade(outbound).await
    } else {
        shared.upstream.send(outbound).await
    };
    result.map_err(|err| {
        let reason = state.redactor.redact(&err.to_string()).into_owned();
        tracing::debug!(run = %run.id, host = %target.host, %reason, "upstream request failed");
        let response = text(
            StatusCode::BAD_GATEWAY,
            &format!("moat proxy: upstream request failed: {reason}\n"),
        );
        (response, Some(reason))
    })
}

/// Step 4: after a `101`, both upgraded connections relayed in the background, byte for byte,
/// or on a credential host (`mask`) with the upstream's WebSocket frames masked; the client gets
/// the `101`'s head.
fn relay_upgrade(
    target: &Target,
    client_upgrade: OnUpgrade,
    mut response: Response<Incoming>,
    mask: Option<Arc<SecretMask>>,
) -> Response<ProxyBody> {
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let host = target.host.clone();
    tokio::spawn(async move {
        match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(client), Ok(upstream)) => {
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                let relayed = match mask {
                    Some(mask) => relay_masked(client, upstream, mask).await,
                    None => tokio::io::copy_bidirectional(&mut client, &mut upstream)
                        .await
                        .map(drop),
                };
                if let Err(err) = relayed {
                    tracing::debug!(%host, %err, "upgraded connection ended");
                }
            }
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!(%host, %err, "upgrade failed");
            }
        }
    });
    let (parts, _) = response.into_parts();
    Response::from_parts(parts, empty())
}

/// A WebSocket relayed with the upstream's frames masked ([`FrameMasker`]); a frame it cannot
/// read ends both connections.
async fn relay_masked<C, U>(client: C, upstream: U, mask: Arc<SecretMask>) -> std::io::Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let up = async {
        tokio::io::copy(&mut client_read, &mut upstream_write).await?;
        upstream_write.shutdown().await
    };
    let down = async {
        let mut masker = FrameMasker::new(mask);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = upstream_read.read(&mut buf).await?;
            if n == 0 {
                let mut rest = Vec::new();
                masker.finish(&mut rest);
                client_write.write_all(&rest).await?;
                return client_write.shutdown().await;
            }
            let out = masker.push(&buf[..n]).map_err(std::io::Error::other)?;
            client_write.write_all(&out).await?;
        }
    };
    tokio::try_join!(up, down).map(drop)
}

/// `Upgrade: websocket`, alone.
fn is_websocket(headers: &hyper::HeaderMap) -> bool {
    let mut values = headers.get_all(UPGRADE).iter();
    matches!(
        (values.next(), values.next()),
        (Some(value), None) if value.as_bytes().eq_ignore_ascii_case(b"websocket")
    )
}

/// Step 5: the response as the client gets it: hop-by-hop headers out, credentials and the
/// substituted token scrubbed from its headers, then the first of the host's response transforms
/// that applies, then the host's credentials masked in the body.
#[expect(clippy::result_large_err, reason = "the error is the response to send")]
fn shape_response(
    view: &HostView<'_>,
    redactor: &SecretSet,
    method: &Method,
    path: &str,
    response: Response<Incoming>,
) -> Result<(Parts, ProxyBody), Refusal> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    if let Some(sub) = view.substitution {
        // The request carried the real token (in its path or body): an upstream may echo it in a
        // redirect's Location, a cookie, or a body the scrubber cannot read. Put back as the
        // placeholder where it is whole, so a Location still works.
        scrub_headers(&mut parts.headers, sub);
    }
    // An upstream that echoes a credential in a response header (a debug header, an error in a
    // redirect), in whatever form, must not hand it to the client: the run's one redactor finds
    // it.
    scrub_secret_headers(&mut parts.headers, redactor);
    if view.substitution.is_some() && view.scrubs_responses() && !identity_encoded(&parts.headers) {
        let response = text(
            StatusCode::BAD_GATEWAY,
            "moat proxy: the upstream sent a compressed body, which cannot be scrubbed of the \
             substituted token; it was not passed on\n",
        );
        return Err((response, Some("encoded body on a substitution host".into())));
    }
    let action = response_transform(view, method.as_str(), path, parts.status, &parts.headers);
    // On a host moat injects credentials for, whatever the upstream sends back is searched for
    // them (an echo of the request's headers, an error quoting them). Not a `replace_response`
    // answer: that is the provider's text, not the upstream's.
    let mask = view.mask.filter(|_| {
        !matches!(action, ResponseAction::Replace(_)) && carries_body(method, parts.status)
    });
    if mask.is_some() && !identity_encoded(&parts.headers) {
        // moat asked for `identity`; a compressed answer anyway cannot be searched, and
        // decompressing every encoding an upstream might pick is more code in the path of every
        // response than this rare case is worth.
        let response = text(
            StatusCode::BAD_GATEWAY,
            "moat proxy: the upstream sent a compressed body although moat asked for none; it \
             cannot be searched for the credential moat added to the request, so it was not \
             passed on\n",
        );
        return Err((response, Some("encoded body on a credential host".into())));
    }
    let body = match action {
        ResponseAction::None => incoming(body),
        ResponseAction::Replace(answer) => {
            parts.status = answer.status;
            for name in [CONTENT_LENGTH, CONTENT_ENCODING, TRANSFER_ENCODING] {
                parts.headers.remove(name);
            }
            parts
                .headers
                .insert(CONTENT_TYPE, answer.content_type.clone());
            parts.headers.insert(
                HeaderName::from_static("x-moat-transformed"),
                HeaderValue::from_static("replace-response"),
            );
            full(answer.body.clone())
        }
        ResponseAction::Scrub(sub) => {
            if sub.placeholder.len() != sub.real.expose().len() {
                parts.headers.remove(CONTENT_LENGTH);
            }
            Rewritten::wrap(
                incoming(body),
                TokenSwap::new(sub.real.expose().as_bytes(), sub.placeholder.as_bytes()),
            )
        }
    };
    // Same length: `Content-Length` stays true.
    let body = match mask {
        Some(mask) => Rewritten::wrap(body, MaskStream::new(Arc::clone(mask))),
        None => body,
    };
    Ok((parts, body))
}

/// Whether a response to `method` with `status` can have a body (RFC 9110 §6.4.1).
fn carries_body(method: &Method, status: StatusCode) -> bool {
    method != Method::HEAD
        && !status.is_informational()
        && status != StatusCode::NO_CONTENT
        && status != StatusCode::NOT_MODIFIED
}

/// Step 6: the response handed to the client; with a request log, its first bytes are kept and
/// the request's line is written when the body ends (or is dropped).
fn log_response(mut pending: Pending, parts: Parts, body: ProxyBody) -> Response<ProxyBody> {
    if pending.run.log.is_none() {
        return Response::from_parts(parts, body);
    }
    pending.entry.status_code = parts.status.as_u16();
    pending.entry.resp_headers = snapshot(&parts.headers);
    let capture_response = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_text_type);
    let body = Logged::wrap(
        body,
        capture_response.then(|| Capture::new(BODY_CAPTURE_LIMIT)),
        Box::new(move |capture, error| pending.finish(capture, error)),
    );
    Response::from_parts(parts, body)
}
