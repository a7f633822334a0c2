//! `CONNECT host:port` and what follows it: proxy authentication and the host-level policy,
//! `200`, then a TLS handshake whose SNI must name the CONNECT host (no SNI for an IP host). The
//! proxy answers with a leaf for that host from [`super::ca`] and serves HTTP/1.1 or HTTP/2 (ALPN)
//! inside; each inner request's `Host` (or `:authority`) must name the CONNECT target too, else
//! `421`, and then goes through [`super::pipeline`]. Anything that is not such a TLS handshake
//! closes the tunnel: nothing is ever relayed blind.

use std::convert::Infallible;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio_rustls::LazyConfigAcceptor;

use super::auth::{authenticate, challenge};
use super::blocked::Blocked;
use super::body::{ProxyBody, empty};
use super::host::Target;
use super::listener::Shared;
use super::log::{Entry, Refused, say_refused, snapshot};
use super::pipeline::{Scheme, handle, host_agrees, host_refused};
use super::respond::{blocked, text};
use super::runs::TokenHash;

/// `CONNECT host:port`.
pub(crate) fn connect(shared: Arc<Shared>, request: Request<Incoming>) -> Response<ProxyBody> {
    let Some(target) = request
        .uri()
        .authority()
        .and_then(|authority| Target::parse(authority.as_str(), 443))
    else {
        return text(StatusCode::BAD_REQUEST, "moat proxy: bad CONNECT target.\n");
    };
    let (hash, run) = match authenticate(&shared.registry, request.headers()) {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let state = run.state();
    let decision = state.policy.check_host(&target.host, target.port);
    if let Some(refused) =
        Blocked::new(&run.id, &decision, &target.host, target.port, "CONNECT", "")
    {
        tracing::debug!(run = %run.id, %target, "CONNECT blocked by policy");
        let response = blocked(&refused);
        if let Some(log) = &run.log {
            let entry = Entry {
                method: "CONNECT".into(),
                url: target.to_string(),
                status_code: response.status().as_u16(),
                error: Some("blocked by network policy".into()),
                req_headers: snapshot(request.headers()),
                resp_headers: snapshot(response.headers()),
                ..Entry::default()
            };
            log.write(entry, &state.redactor);
        }
        run.announce(refused);
        return response;
    }
    tracing::debug!(run = %run.id, %target, "CONNECT");
    let upgrade = hyper::upgrade::on(request);
    let mut stop = shared.stop.clone();
    let reclaim = Arc::clone(&shared.reclaim);
    tokio::spawn(async move {
        let tunnel = async move {
            match upgrade.await {
                Ok(upgraded) => intercept(shared, hash, target, upgraded).await,
                Err(err) => tracing::debug!(%err, "CONNECT upgrade failed"),
            }
        };
        // The tunnel outlives its CONNECT's connection task: stop it with the proxy.
        tokio::select! {
            _ = tunnel => {}
            _ = stop.changed() => {}
        }
        reclaim.connection_closed();
    });
    Response::new(empty())
}

/// The tunnel after `200`: TLS with a minted leaf, then HTTP inside.
async fn intercept(
    shared: Arc<Shared>,
    hash: TokenHash,
    target: Target,
    upgraded: hyper::upgrade::Upgraded,
) {
    let handshake = async {
        let start =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded))
                .await
                .map_err(|err| (Refused::NotTls, format!("not a TLS handshake: {err}")))?;
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        sni_agrees(&target, sni.as_deref()).map_err(|reason| (Refused::SniMismatch, reason))?;
        let config = shared
            .ca
            .server_config(&target.host)
            .map_err(|err| (Refused::TlsFailed, err.to_string()))?;
        start
            .into_stream(config)
            .await
            .map_err(|err| (Refused::TlsFailed, format!("TLS handshake failed: {err}")))
    };
    let tls = match tokio::time::timeout(shared.config.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((kind, reason))) => {
            tunnel_refused(&shared, &hash, &target, kind, &reason);
            return;
        }
        Err(_) => {
            let reason = "no TLS handshake in time";
            tunnel_refused(&shared, &hash, &target, Refused::TlsFailed, reason);
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let tunnel = Arc::new(Tunnel { hash, target });
    let service = service_fn({
        let shared = Arc::clone(&shared);
        move |request| {
            let shared = Arc::clone(&shared);
            let tunnel = Arc::clone(&tunnel);
            async move { Ok::<_, Infallible>(tunnel_request(&shared, &tunnel, request).await) }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.config.header_timeout)
        .max_buf_size(shared.config.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(shared.config.max_header_bytes).unwrap_or(u32::MAX));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    if let Err(err) = builder
        .serve_connection_with_upgrades(TokioIo::new(tls), service)
        .await
    {
        tracing::debug!(%err, "tunnel ended with an error");
    }
}

/// A tunnel closed before any request: a `CONNECT` line in the run's log with the reason, and a
/// line on stderr (rate-limited per kind).
fn tunnel_refused(shared: &Shared, hash: &TokenHash, target: &Target, kind: Refused, reason: &str) {
    tracing::debug!(%target, %reason, "tunnel closed");
    let Some(run) = shared.registry.get(hash) else {
        return;
    };
    let state = run.state();
    let said = state.redactor.redact(reason);
    say_refused(
        kind,
        &format!("a tunnel to {target} for run {}: {said}", run.id),
    );
    if let Some(log) = &run.log {
        let entry = Entry {
            method: "CONNECT".into(),
            url: target.to_string(),
            status_code: StatusCode::OK.as_u16(),
            error: Some(format!("tunnel closed: {reason}")),
            ..Entry::default()
        };
        log.write(entry, &state.redactor);
    }
}

/// The SNI must name the CONNECT host; IP targets may send none.
fn sni_agrees(target: &Target, sni: Option<&str>) -> Result<(), String> {
    match sni {
        Some(name) if name.trim_end_matches('.') == target.host => Ok(()),
        None if target.is_ip() => Ok(()),
        Some(name) => Err(format!(
            "the TLS server name {name:?} does not match the CONNECT host {:?}",
            target.host
        )),
        None => Err(format!(
            "no TLS server name sent for the CONNECT host {:?}",
            target.host
        )),
    }
}

struct Tunnel {
    hash: TokenHash,
    target: Target,
}

/// A request inside an intercepted tunnel.
async fn tunnel_request(
    shared: &Shared,
    tunnel: &Tunnel,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    // The run may have been removed since the CONNECT.
    let Some(run) = shared.registry.get(&tunnel.hash) else {
        return challenge("Invalid proxy token");
    };
    if let Err(refusal) = host_agrees(&request, &tunnel.target, Scheme::Https) {
        host_refused(
            &run,
            &request,
            &tunnel.target,
            Scheme::Https,
            &refusal,
            &format!("run {}'s tunnel to {}", run.id, tunnel.target),
        );
        return refusal;
    }
    handle(shared, &run, Scheme::Https, tunnel.target.clone(), request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_must_name_the_connect_host() {
        let host = Target::parse("api.github.com:443", 443).unwrap();
        assert!(sni_agrees(&host, Some("api.github.com")).is_ok());
        assert!(sni_agrees(&host, Some("api.github.com.")).is_ok());
        assert!(sni_agrees(&host, Some("evil.com")).is_err());
        assert!(sni_agrees(&host, None).is_err());
        let ip = Target::parse("127.0.0.1:8443", 443).unwrap();
        assert!(sni_agrees(&ip, None).is_ok());
        assert!(sni_agrees(&ip, Some("127.0.0.1")).is_ok());
        assert!(sni_agrees(&ip, Some("localhost")).is_err());
    }
}
