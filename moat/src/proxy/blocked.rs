//! A request the network policy refused: why, and exactly what would allow it.
//!
//! The client gets a `407` with `X-Moat-Blocked: <reason>` and a body naming the moat.yaml key
//! and the command-line flag that would allow the request ([`Blocked::body`]). Clients hide that
//! body (curl prints "CONNECT tunnel failed, response 407"), so the embedding process learns of
//! each refusal too: a run registered with [`RunSpec::blocked`](super::RunSpec::blocked) gets one
//! [`Blocked`] event per host and reason (the proxy dedupes; at most [`MAX_BLOCKED_EVENTS`] per
//! run).

use std::fmt;

use super::policy::Decision;

/// The most distinct (host, reason) events one run sends; later refusals are still answered and
/// logged, just not announced.
pub const MAX_BLOCKED_EVENTS: usize = 256;

/// Why the policy refused. Its [`as_str`](Self::as_str) is the `X-Moat-Blocked` header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// The host is not in the allow list (strict policy).
    HostNotAllowed,
    /// A service on the proxy's own machine, on a port not opened to the container.
    HostService,
    /// A method and path rule (or the strict default for a host known only by its rules).
    RequestRule,
    /// A link-local address (where cloud metadata services answer), the unspecified address or
    /// one of this machine's interface addresses: closed to the container, with no flag that
    /// opens it (`--host-port` opens the loopback names only).
    LocalNetwork,
}

impl BlockReason {
    /// `host-not-allowed`, `host-service`, `request-rule` or `local-network`.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::HostNotAllowed => "host-not-allowed",
            BlockReason::HostService => "host-service",
            BlockReason::RequestRule => "request-rule",
            BlockReason::LocalNetwork => "local-network",
        }
    }

    /// The moat.yaml key that would allow it: `network.allow`, `network.host_ports` or
    /// `network.rules`; `none` for [`BlockReason::LocalNetwork`], which nothing allows.
    pub fn config_key(self) -> &'static str {
        match self {
            BlockReason::HostNotAllowed => "network.allow",
            BlockReason::HostService => "network.host_ports",
            BlockReason::RequestRule => "network.rules",
            BlockReason::LocalNetwork => "none",
        }
    }

    fn of(decision: &Decision) -> Option<BlockReason> {
        match decision {
            Decision::Allow => None,
            Decision::DenyHost => Some(BlockReason::HostNotAllowed),
            Decision::DenyHostService => Some(BlockReason::HostService),
            Decision::DenyPath => Some(BlockReason::RequestRule),
            Decision::DenyLocalNetwork => Some(BlockReason::LocalNetwork),
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::HostNotAllowed => "the host is not in the allow list",
            BlockReason::HostService => "a service on this machine, on a port not opened",
            BlockReason::RequestRule => "a network rule denies it",
            BlockReason::LocalNetwork => {
                "a link-local (cloud metadata) or this machine's network address, never open"
            }
        })
    }
}

/// One refused request, as the embedding process hears of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The run's id.
    pub run: String,
    /// The host, lowercase (IPv6 without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
    /// `CONNECT` for a refused tunnel, else the request's method.
    pub method: String,
    /// The path without its query (empty for `CONNECT`).
    pub path: String,
    /// Why.
    pub reason: BlockReason,
    /// The command-line flag that would allow it, ready to paste: `--allow example.com`,
    /// `--host-port 5432`, `--rule 'api.example.com allow POST /repos/x'`. The same goes under
    /// [`BlockReason::config_key`] in moat.yaml.
    pub allow_with: String,
}

impl Blocked {
    /// The event for a refusal, `None` when `decision` allows.
    pub(crate) fn new(
        run: &str,
        decision: &Decision,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
    ) -> Option<Blocked> {
        let reason = BlockReason::of(decision)?;
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let host_pattern = match (port, host.contains(':')) {
            (80 | 443, _) => host.to_owned(),
            (_, false) => format!("{host}:{port}"),
            (_, true) => format!("[{host}]:{port}"),
        };
        let allow_with = match reason {
            BlockReason::HostNotAllowed => format!("--allow {host_pattern}"),
            BlockReason::HostService => format!("--host-port {port}"),
            BlockReason::LocalNetwork => String::new(),
            BlockReason::RequestRule => format!(
                "--rule {}",
                shell_quote(&format!("{host_pattern} allow {method} {path}"))
            ),
        };
        Some(Blocked {
            run: run.to_owned(),
            host: host.to_owned(),
            port,
            method: method.to_owned(),
            path: path.to_owned(),
            reason,
            allow_with,
        })
    }

    /// The `407`'s body: what was blocked and how to allow it.
    pub(crate) fn body(&self) -> String {
        let Blocked {
            host,
            port,
            method,
            path,
            allow_with,
            reason,
            ..
        } = self;
        let key = reason.config_key();
        match reason {
            BlockReason::HostNotAllowed => format!(
                "Moat: request blocked by network policy.\nHost \"{host}\" is not in the allow \
                 list.\nTo allow it, add it to {key} in moat.yaml or pass {allow_with}; or use \
                 policy: permissive.\n"
            ),
            BlockReason::HostService => format!(
                "Moat: request blocked by network policy.\nHost \"{host}\" is this machine, and \
                 port {port} is not open to the container.\nTo allow it, list the port under \
                 {key} in moat.yaml or pass {allow_with}.\n"
            ),
            BlockReason::RequestRule => format!(
                "Moat: request blocked by network policy.\nHost: {host}\nRequest: {method} \
                 {path}\nTo allow it, add a rule to {key} in moat.yaml or pass {allow_with}.\n"
            ),
            BlockReason::LocalNetwork => format!(
                "Moat: request blocked by network policy.\nHost \"{host}\" is a link-local \
                 address (where cloud metadata services answer), the unspecified address or \
                 one of this machine's network addresses, on port {port}; it is never open to \
                 the container, and no setting opens it.\n"
            ),
        }
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.method.as_str() {
            "CONNECT" => format!("CONNECT {}:{}", self.host, self.port),
            method => format!("{method} {}{}", self.host, self.path),
        };
        if self.allow_with.is_empty() {
            return write!(f, "blocked {what}: {}", self.reason);
        }
        write!(
            f,
            "blocked {what}: {}; to allow it: {} (moat.yaml: {})",
            self.reason,
            self.allow_with,
            self.reason.config_key()
        )
    }
}

/// `text` in single quotes when it holds anything a shell would read specially.
fn shell_quote(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:@%+=,".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_names_a_real_key_and_flag() {
        let host = Blocked::new("r", &Decision::DenyHost, "evil.com", 443, "GET", "/x?q").unwrap();
        assert_eq!(host.allow_with, "--allow evil.com");
        assert_eq!(host.reason.as_str(), "host-not-allowed");
        let body = host.body();
        assert!(
            body.contains("Host \"evil.com\" is not in the allow list"),
            "{body}"
        );
        assert!(
            body.contains("network.allow") && body.contains("--allow evil.com"),
            "{body}"
        );
        assert!(!body.contains("network.rules"), "{body}");

        let port =
            Blocked::new("r", &Decision::DenyHost, "api.x.com", 8443, "CONNECT", "").unwrap();
        assert_eq!(port.allow_with, "--allow api.x.com:8443");
        assert_eq!(
            port.to_string(),
            "blocked CONNECT api.x.com:8443: the host is not in the allow list; to allow it: --allow api.x.com:8443 (moat.yaml: network.allow)"
        );

        let service = Blocked::new(
            "r",
            &Decision::DenyHostService,
            "localhost",
            5432,
            "GET",
            "/",
        )
        .unwrap();
        assert_eq!(service.allow_with, "--host-port 5432");
        assert!(service.body().contains("network.host_ports"));

        let rule = Blocked::new(
            "r",
            &Decision::DenyPath,
            "a.com",
            443,
            "POST",
            "/x/y?token=1",
        )
        .unwrap();
        assert_eq!(rule.path, "/x/y", "the query is left out");
        assert_eq!(rule.allow_with, "--rule 'a.com allow POST /x/y'");
        assert!(rule.body().contains("POST /x/y") && rule.body().contains("network.rules"));
        assert_eq!(rule.reason.as_str(), "request-rule");

        assert!(Blocked::new("r", &Decision::Allow, "a.com", 443, "GET", "/").is_none());
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
