//! The TLS-intercepting proxy that puts credentials on the wire.
//!
//! Containers talk HTTPS through it (`HTTPS_PROXY=http://moat:<run token>@<host>:<port>`). It
//! terminates their TLS with a certificate from moat's own CA, applies the run's rules (the
//! providers' [`moat_plugin_sdk::ProxyRules`] and the network policy) and forwards to the real host
//! over verified TLS. The container only ever holds placeholders and its run token, and what
//! comes back from a host that got a credential is searched for it: response headers (every
//! secret of the run, through its redactor), bodies and WebSocket frames (that host's
//! credentials, masked as they stream, `mask` and `wsmask`).
//!
//! | module | job |
//! | --- | --- |
//! | `ca` | the CA under `$MOAT_HOME/proxy/ca/`, one leaf per host, bounded cache |
//! | `runs` | runs, their tokens, rules and policy; atomic replace; removal |
//! | `auth` | `Proxy-Authorization` (Basic password or Bearer) → run, else `407` |
//! | `listener` | binding, the accept loop, dispatch: `CONNECT`, absolute-URI requests, origin-form requests to `endpoint` |
//! | `endpoint` | paths a run's container asks the proxy itself (`Authorization: Bearer <run token>`), answered by the run's [`EndpointHandler`]s |
//! | `tunnel` | `CONNECT` → policy → TLS with a minted leaf (SNI checked) → h1/h2 inside |
//! | `pipeline` | one forwarded request in named steps: policy, rules in, upstream, upgrade relay, response shaping, log line |
//! | `hop` | hop-by-hop headers and connection upgrades |
//! | `inject` | the rules applied per request and response (header scrubbing included); the log redactor |
//! | `mask` | a host's injected credentials, in every form the redactor knows, found and masked in response bytes as they stream |
//! | `wsmask` | the upstream's half of a WebSocket on a credential host: frames read as they pass, payloads masked |
//! | `policy` | permissive/strict, host patterns, method and path rules |
//! | `blocked` | a refusal: its `407` text, `X-Moat-Blocked` reason, the flag that allows it, the [`Blocked`] event |
//! | `log` | `network.jsonl`, one redacted line per request |
//! | `upstream` | verified TLS to real hosts, extra CA file, `MOAT_PROXY_RESOLVE` |
//! | `reclaim` | freed memory given back to the system shortly after connections close |
//! | `glob` | path globs (`*`, `**`) of network rules and response replacements |
//! | `host`, `body`, `respond` | host patterns, streaming body wrappers, the proxy's own responses |
//!
//! ```no_run
//! # async fn example(home: moat::home::MoatHome, rules: moat_plugin_sdk::ProxyRules)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use moat::proxy::{CertificateAuthority, Proxy, ProxyConfig, RunRegistry, RunSpec, UpstreamConfig};
//!
//! let ca = Arc::new(CertificateAuthority::load_or_create(&home)?);
//! let runs = Arc::new(RunRegistry::new());
//! let proxy = Proxy::new(ca, Arc::clone(&runs), &UpstreamConfig::from_env()?, ProxyConfig::default())?
//!     .listen("127.0.0.1:0".parse()?)
//!     .await?;
//! let token = runs.register(RunSpec { id: "run-1".into(), grants: vec![rules], ..RunSpec::default() })?;
//! println!("HTTPS_PROXY=http://moat:{}@{}", token.as_str(), proxy.addr());
//! # Ok(()) }
//! ```

mod auth;
mod blocked;
mod body;
pub(crate) mod ca;
mod endpoint;
mod glob;
mod hop;
mod host;
mod inject;
mod listener;
pub(crate) mod log;
pub(crate) mod mask;
mod pipeline;
pub(crate) mod policy;
pub(crate) mod reclaim;
mod respond;
pub(crate) mod runs;
mod tunnel;
pub(crate) mod upstream;
pub(crate) mod wsmask;

pub use blocked::{BlockReason, Blocked, MAX_BLOCKED_EVENTS};
pub use ca::{CaError, CertificateAuthority};
pub use endpoint::{Endpoint, EndpointCall, EndpointHandler, MAX_BODY as ENDPOINT_MAX_BODY};
pub use host::HostError;
pub use inject::{RulesError, SUBSTITUTION_BODY_LIMIT};
#[doc(hidden)]
pub use listener::StreamServer;
pub use listener::{Proxy, ProxyConfig, ProxyHandle};
pub use log::RequestLog;
pub use policy::{HostRules, NetworkPolicy, PolicyError, PolicyMode};
pub use reclaim::RECLAIM_DELAY;
pub use runs::{RunError, RunRegistry, RunSpec, RunToken};
pub use upstream::{RESOLVE_ENV, ResolveOverrides, UpstreamConfig, UpstreamError};

/// Raises this process's soft limit on open files to its hard limit (at most 65536): every proxied
/// connection takes two descriptors. Returns the new soft limit.
#[cfg(unix)]
#[expect(unsafe_code, reason = "getrlimit(2), setrlimit(2)")]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let wanted = limit.rlim_max.min(65536);
    if limit.rlim_cur < wanted {
        limit.rlim_cur = wanted;
        // SAFETY: setrlimit only reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(limit.rlim_cur)
}

/// The number of cases of the proxy's property tests: `PROPTEST_CASES` when set (the long run of
/// RELIABILITY.md), else `default`.
#[cfg(test)]
fn test_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}
