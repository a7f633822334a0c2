//! The network policy of a run: which hosts, methods and paths the container may reach.
//!
//! - `permissive` (the default): everything is allowed unless a host entry's rules deny it.
//! - `strict`: only hosts in `allow`, hosts with an entry in `rules`, and the hosts of the run's
//!   grants (their rules' hosts and `allow_hosts`) are reachable.
//!
//! Host patterns are those of `host`; a pattern without a port matches only ports 80 and 443.
//! Path rules read `"<allow|deny> <METHOD|*> <glob>"`, globs as in `glob` (`*` within a segment,
//! `**` across segments, `/p/**` covering `/p` itself; the query is ignored), matched against the
//! normalised path (`glob::normalize`: `//`, `.`, `..`, `;params` and escaped unreserved characters
//! resolved), not the raw one; a deny rule also applies to the path read with `%2F`, `%5C` and `\`
//! as `/` (allow rules do not: `group%2Fproject` stays one segment for them). The first matching rule of the first matching
//! host entry wins. When none matches, the request is allowed, except under
//! `strict` for a host that is reachable only because it has rules: there only what the rules
//! allow passes.

#![cfg_attr(
    unix,
    expect(unsafe_code, reason = "getifaddrs(3): this machine's addresses")
)]

use serde::{Deserialize, Serialize};

use super::glob::PathGlob;
use super::host::{HostError, HostPattern};

/// `permissive` or `strict`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Allow unless a rule denies.
    #[default]
    Permissive,
    /// Deny unless allowed.
    Strict,
}

impl std::str::FromStr for PolicyMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "permissive" => Ok(PolicyMode::Permissive),
            "strict" => Ok(PolicyMode::Strict),
            _ => Err(format!(
                "unknown network policy {s:?} (want permissive or strict)"
            )),
        }
    }
}

/// A run's network policy, as configured (moat.yaml `network:`, or `moat proxy` flags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkPolicy {
    /// The default.
    #[serde(default)]
    pub policy: PolicyMode,
    /// Hosts reachable under `strict`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Per-host method and path rules.
    #[serde(default)]
    pub rules: Vec<HostRules>,
    /// Ports of services on the proxy's own machine the container may reach (through `moat-host`,
    /// `localhost` or a loopback address).
    #[serde(default)]
    pub host_ports: Vec<u16>,
}

/// The rules for one host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRules {
    /// Host pattern.
    pub host: String,
    /// `"<allow|deny> <METHOD|*> <glob>"`, first match wins.
    pub rules: Vec<String>,
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A bad host pattern.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A bad rule.
    #[error("invalid network rule {rule:?} for {host}: {reason}")]
    Rule {
        /// The host entry.
        host: String,
        /// The rule.
        rule: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Checks `policy` (patterns and rules) without using it.
pub fn validate(policy: &NetworkPolicy) -> Result<(), PolicyError> {
    CompiledPolicy::compile(policy, &[]).map(|_| ())
}

/// What the policy says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// The host is not reachable at all.
    DenyHost,
    /// A service on the proxy's machine, on a port not in `host_ports`.
    DenyHostService,
    /// A link-local address (cloud metadata), the unspecified address or one of the machine's
    /// own interface addresses: never reachable, whatever `host_ports` lists.
    DenyLocalNetwork,
    /// A rule (or the strict default) denies this method and path.
    DenyPath,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
struct PathRule {
    action: Action,
    /// `None` for `*`.
    method: Option<String>,
    glob: PathGlob,
}

/// A policy ready to answer: patterns parsed, grant hosts folded in.
#[derive(Debug, Clone)]
pub(crate) struct CompiledPolicy {
    mode: PolicyMode,
    host_ports: Vec<u16>,
    allowed: Vec<HostPattern>,
    entries: Vec<(HostPattern, Vec<PathRule>)>,
}

impl CompiledPolicy {
    /// Compiles `policy`; `grant_hosts` are allowed under `strict` too.
    pub fn compile(policy: &NetworkPolicy, grant_hosts: &[&str]) -> Result<Self, PolicyError> {
        let mut allowed = Vec::new();
        for host in policy
            .allow
            .iter()
            .map(String::as_str)
            .chain(grant_hosts.iter().copied())
        {
            allowed.push(HostPattern::parse(host)?);
        }
        let mut entries = Vec::new();
        for entry in &policy.rules {
            let pattern = HostPattern::parse(&entry.host)?;
            let rules = entry
                .rules
                .iter()
                .map(|rule| {
                    parse_rule(rule).map_err(|reason| PolicyError::Rule {
                        host: entry.host.clone(),
                        rule: rule.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            entries.push((pattern, rules));
        }
        Ok(CompiledPolicy {
            mode: policy.policy,
            host_ports: policy.host_ports.clone(),
            allowed,
            entries,
        })
    }

    /// May the container reach `host:port` at all (the CONNECT check)? `Allow`, `DenyHost` or
    /// `DenyHostService`.
    pub fn check_host(&self, host: &str, port: u16) -> Decision {
        if is_host_port_name(host) {
            // Listed ports are open under either mode; nothing else on this machine is.
            if self.host_ports.contains(&port) {
                Decision::Allow
            } else {
                Decision::DenyHostService
            }
        } else if is_host_local(host) {
            // `host_ports` opens the loopback names only: link-local (cloud metadata), `0.0.0.0`
            // and the machine's interface addresses stay closed.
            Decision::DenyLocalNetwork
        } else if self.host_allowed(host, port) {
            Decision::Allow
        } else {
            Decision::DenyHost
        }
    }

    fn host_allowed(&self, host: &str, port: u16) -> bool {
        match self.mode {
            PolicyMode::Permissive => true,
            PolicyMode::Strict => {
                self.allowed.iter().any(|p| p.matches_policy(host, port))
                    || self
                        .entries
                        .iter()
                        .any(|(p, _)| p.matches_policy(host, port))
            }
        }
    }

    /// The decision for one request.
    pub fn check(&self, host: &str, port: u16, method: &str, path: &str) -> Decision {
        let decision = self.check_host(host, port);
        if decision != Decision::Allow {
            return decision;
        }
        let Some((_, rules)) = self
            .entries
            .iter()
            .find(|(pattern, _)| pattern.matches_policy(host, port))
        else {
            return Decision::Allow;
        };
        // Rules see the normalised path: `//admin`, `/./admin`, `/x/../admin`, `/%61dmin` and
        // `/admin;a` are the same resource to most upstreams, so they meet the same rule. Some
        // upstreams also read `%2F` and `\` as `/` (others, GitLab's `group%2Fproject`, do
        // not): a deny rule that matches the path read that way denies it too.
        let normal = super::glob::normalize(path);
        let slashed = super::glob::normalize(&slashes_decoded(path));
        if slashed != normal && matched_action(rules, method, &slashed) == Some(Action::Deny) {
            return Decision::DenyPath;
        }
        match matched_action(rules, method, &normal) {
            Some(Action::Allow) => Decision::Allow,
            Some(Action::Deny) => Decision::DenyPath,
            // Under strict, a host reachable only through its rules allows only what they allow;
            // a listed or grant host allows what they do not deny.
            None if self.mode == PolicyMode::Strict
                && !self.allowed.iter().any(|p| p.matches_policy(host, port)) =>
            {
                Decision::DenyPath
            }
            None => Decision::Allow,
        }
    }
}

/// The action of the first of `rules` matching `method` and the normalised `path`.
fn matched_action(rules: &[PathRule], method: &str, path: &str) -> Option<Action> {
    rules
        .iter()
        .find(|rule| {
            rule.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && rule.glob.matches(path)
        })
        .map(|rule| rule.action)
}

/// `path` (without its query) with `%2F`, `%5C` and `\\` as `/`.
fn slashes_decoded(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.replace("%2F", "/")
        .replace("%2f", "/")
        .replace("%5C", "/")
        .replace("%5c", "/")
        .replace('\\', "/")
}

/// What `host_ports` opens, exactly as `moat proxy --help` says: `localhost` (and
/// `*.localhost`), `moat-host` and the loopback addresses (`127.0.0.0/8`, `::1`, their
/// IPv4-mapped forms). Host names lowercase, IPv6 without brackets.
pub(crate) fn is_host_port_name(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost") || host == "moat-host",
    }
}

/// Names and addresses that mean the proxy's own machine or its link (host names lowercase, IPv6
/// without brackets): the [`is_host_port_name`]s and every [`is_local_ip`].
pub(crate) fn is_host_local(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => is_local_ip(ip),
        Err(_) => host == "localhost" || host.ends_with(".localhost") || host == "moat-host",
    }
}

/// Addresses that lead to this machine or its link: loopback, unspecified and link-local (where
/// cloud metadata services answer), IPv4-mapped IPv6 forms included (`::ffff:127.0.0.1` connects
/// to 127.0.0.1, but `Ipv6Addr::is_loopback` only knows `::1`).
/// The machine's own interface addresses (its LAN address, the Docker bridge's gateway) count
/// too: a service bound to `0.0.0.0` answers on them just as on loopback.
pub(crate) fn is_local_ip(ip: std::net::IpAddr) -> bool {
    let ip = ip.to_canonical();
    let special = match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local()
        }
    };
    special || own_addresses().contains(&ip)
}

/// How long the list of the machine's addresses is trusted before it is read again (interfaces
/// come and go: a Docker bridge appears when the engine starts).
const OWN_ADDRESSES_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// This machine's interface addresses, re-read at most every [`OWN_ADDRESSES_TTL`].
fn own_addresses() -> Vec<std::net::IpAddr> {
    use std::sync::Mutex;
    use std::time::Instant;
    static CACHE: Mutex<Option<(Instant, Vec<std::net::IpAddr>)>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    match cache.as_ref() {
        Some((read, addresses)) if read.elapsed() < OWN_ADDRESSES_TTL => addresses.clone(),
        _ => {
            let addresses = interface_addresses();
            *cache = Some((Instant::now(), addresses.clone()));
            addresses
        }
    }
}

/// Every address configured on this machine's interfaces (`getifaddrs(3)`).
#[cfg(unix)]
fn interface_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list that we only read, then free once with
    // freeifaddrs; every pointer is checked for null before it is read, and each sockaddr is read
    // as the type its family says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut entry = list;
        while !entry.is_null() {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

#[cfg(not(unix))]
fn interface_addresses() -> Vec<std::net::IpAddr> {
    Vec::new()
}

fn parse_rule(rule: &str) -> Result<PathRule, &'static str> {
    let mut words = rule.split_whitespace();
    let (Some(action), Some(method), Some(glob), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err("want \"<allow|deny> <METHOD|*> <path glob>\"");
    };
    let action = match action.to_ascii_lowercase().as_str() {
        "allow" => Action::Allow,
        "deny" => Action::Deny,
        _ => return Err("the action must be allow or deny"),
    };
    let method = match method {
        "*" => None,
        m if m.bytes().all(|b| b.is_ascii_alphabetic()) => Some(m.to_ascii_uppercase()),
        _ => return Err("the method must be a word like GET, or *"),
    };
    Ok(PathRule {
        action,
        method,
        glob: PathGlob::parse(glob)?,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_machines_own_addresses_are_host_local() {
        let own: Vec<_> = interface_addresses()
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect();
        assert!(
            !own.is_empty(),
            "this machine has a non-loopback interface (eth0, docker0)"
        );
        for ip in own {
            assert!(is_host_local(&ip.to_string()), "{ip}");
        }
    }

    #[test]
    fn mapped_and_link_local_addresses_are_host_local() {
        for host in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:0.0.0.0",
            "169.254.169.254",
            "fe80::1",
            "localhost",
        ] {
            assert!(is_host_local(host), "{host}");
        }
        for host in [
            "93.184.215.14",
            "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
            "::ffff:93.184.215.14",
            "api.github.com",
        ] {
            assert!(!is_host_local(host), "{host}");
        }
    }

    #[test]
    fn rules_judge_the_normalised_path_and_encoded_slashes_both_ways() {
        let p = policy(
            PolicyMode::Strict,
            &[],
            &[(
                "git.example.com",
                &[
                    "deny * /admin/**",
                    "allow GET /projects/*",
                    "allow GET /ok/**",
                ],
            )],
        );
        let check = |path: &str| p.check("git.example.com", 443, "GET", path);
        for path in [
            "/admin",
            "//admin/x",
            "/./admin/x",
            "/x/../admin/x",
            "/%61dmin/x",
            "/admin;a/x",
            "/admin%2Fx",
            "/ok/..%2F..%2Fadmin%2Fx",
            "/ok/..%5Cadmin",
            "/ok\\..\\admin",
        ] {
            assert_eq!(check(path), Decision::DenyPath, "{path}");
        }
        // An encoded slash that no deny rule catches keeps its meaning (GitLab's project ids).
        assert_eq!(check("/projects/group%2Fproject"), Decision::Allow);
        assert_eq!(check("/ok/a%2Fb"), Decision::Allow);
    }

    #[test]
    fn host_ports_open_loopback_names_only_never_link_local_or_interface_addresses() {
        let p = CompiledPolicy::compile(
            &NetworkPolicy {
                host_ports: vec![8080],
                ..NetworkPolicy::default()
            },
            &[],
        )
        .unwrap();
        for host in [
            "localhost",
            "moat-host",
            "127.0.0.1",
            "127.0.0.2",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert_eq!(p.check_host(host, 8080), Decision::Allow, "{host}");
            assert_eq!(
                p.check_host(host, 8081),
                Decision::DenyHostService,
                "{host}"
            );
        }
        let own = interface_addresses()
            .into_iter()
            .filter(|ip| !ip.to_canonical().is_loopback())
            .map(|ip| ip.to_string());
        for host in [
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "::ffff:169.254.169.254",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(own)
        {
            assert_eq!(
                p.check_host(&host, 8080),
                Decision::DenyLocalNetwork,
                "{host}"
            );
            assert_eq!(
                p.check_host(&host, 80),
                Decision::DenyLocalNetwork,
                "{host}"
            );
        }
    }

    use super::*;

    fn policy(mode: PolicyMode, allow: &[&str], rules: &[(&str, &[&str])]) -> CompiledPolicy {
        let policy = NetworkPolicy {
            policy: mode,
            host_ports: vec![8080],
            allow: allow.iter().map(|s| s.to_string()).collect(),
            rules: rules
                .iter()
                .map(|(host, rules)| HostRules {
                    host: host.to_string(),
                    rules: rules.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        };
        CompiledPolicy::compile(&policy, &["api.github.com", "*.githubusercontent.com"]).unwrap()
    }

    #[test]
    fn permissive_allows_unless_a_rule_denies() {
        let p = policy(
            PolicyMode::Permissive,
            &[],
            &[("api.example.com", &["deny DELETE /**", "deny * /admin/**"])],
        );
        assert!(p.host_allowed("anything.org", 8080));
        assert_eq!(p.check_host("anything.org", 8080), Decision::Allow);
        assert_eq!(p.check("anything.org", 443, "GET", "/"), Decision::Allow);
        assert_eq!(
            p.check("api.example.com", 443, "GET", "/x"),
            Decision::Allow
        );
        assert_eq!(
            p.check("api.example.com", 443, "delete", "/x"),
            Decision::DenyPath
        );
        assert_eq!(
            p.check("api.example.com", 443, "GET", "/admin/users?x=1"),
            Decision::DenyPath
        );
        // Another port is another entry (the pattern means 80 and 443).
        assert_eq!(
            p.check("api.example.com", 8443, "DELETE", "/x"),
            Decision::Allow
        );
    }

    #[test]
    fn strict_allows_the_allow_list_rule_hosts_and_grant_hosts() {
        let p = policy(
            PolicyMode::Strict,
            &["registry.npmjs.org", "*.pypi.org", "internal:8443"],
            &[("api.example.com", &["allow GET /repos/**"])],
        );
        assert!(p.host_allowed("api.github.com", 443), "grant host");
        assert!(
            p.host_allowed("raw.githubusercontent.com", 443),
            "grant wildcard"
        );
        assert!(
            !p.host_allowed("githubusercontent.com", 443),
            "never the apex"
        );
        assert!(
            !p.host_allowed("api.github.com", 8443),
            "no port means 80 and 443"
        );
        assert!(p.host_allowed("registry.npmjs.org", 80));
        assert!(p.host_allowed("files.pypi.org", 443));
        assert!(p.host_allowed("internal", 8443));
        assert!(!p.host_allowed("internal", 443));
        assert!(!p.host_allowed("evil.com", 443));
        assert_eq!(p.check_host("evil.com", 443), Decision::DenyHost);
        assert_eq!(p.check("evil.com", 443, "GET", "/"), Decision::DenyHost);
        assert_eq!(
            p.check("api.example.com", 443, "GET", "/repos/a/b"),
            Decision::Allow
        );
        assert_eq!(
            p.check("api.example.com", 443, "POST", "/repos/a/b"),
            Decision::DenyPath,
            "no rule matched: strict denies"
        );
        assert_eq!(
            p.check("api.github.com", 443, "POST", "/x"),
            Decision::Allow
        );

        // A grant host with deny rules allows the rest.
        let p = policy(
            PolicyMode::Strict,
            &[],
            &[("api.github.com", &["deny DELETE /**"])],
        );
        assert_eq!(
            p.check("api.github.com", 443, "GET", "/user"),
            Decision::Allow
        );
        assert_eq!(
            p.check("api.github.com", 443, "DELETE", "/repos/a"),
            Decision::DenyPath
        );
    }

    #[test]
    fn the_proxys_machine_needs_a_listed_port() {
        for mode in [PolicyMode::Permissive, PolicyMode::Strict] {
            let p = policy(mode, &["localhost", "127.0.0.1"], &[]);
            for host in [
                "localhost",
                "app.localhost",
                "moat-host",
                "127.0.0.1",
                "127.9.9.9",
                "::1",
            ] {
                assert_eq!(
                    p.check_host(host, 5432),
                    Decision::DenyHostService,
                    "{host}"
                );
                assert_eq!(
                    p.check(host, 5432, "GET", "/"),
                    Decision::DenyHostService,
                    "{host}"
                );
            }
            assert_eq!(p.check_host("moat-host", 8080), Decision::Allow, "{mode:?}");
            assert_eq!(p.check_host("127.0.0.1", 8080), Decision::Allow);
        }
        assert!(!is_host_local("localhost.example.com"));
        assert!(!is_host_local("10.0.0.1"));
    }

    #[test]
    fn bad_rules_are_refused_with_their_text() {
        for bad in [
            "allow GET",
            "permit GET /",
            "allow G3T /",
            "allow GET x",
            "a b c d",
        ] {
            let policy = NetworkPolicy {
                policy: PolicyMode::Strict,
                host_ports: vec![],
                allow: vec![],
                rules: vec![HostRules {
                    host: "h".into(),
                    rules: vec![bad.into()],
                }],
            };
            let err = CompiledPolicy::compile(&policy, &[]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        let policy = NetworkPolicy {
            allow: vec!["bad/host".into()],
            ..NetworkPolicy::default()
        };
        assert!(CompiledPolicy::compile(&policy, &[]).is_err());
    }

    #[test]
    fn serde_shape() {
        let json = serde_json::json!({
            "policy": "strict",
            "allow": ["a.com"],
            "rules": [{"host": "b.com", "rules": ["deny * /**"]}]
        });
        let p: NetworkPolicy = serde_json::from_value(json).unwrap();
        assert_eq!(p.policy, PolicyMode::Strict);
        assert_eq!("STRICT".parse::<PolicyMode>(), Ok(PolicyMode::Strict));
        assert!("lax".parse::<PolicyMode>().is_err());
    }
}
