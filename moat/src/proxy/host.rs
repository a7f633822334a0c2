//! Host names and host patterns, shared by the rules and the network policy.
//!
//! A pattern is `host`, `host:port`, `*.suffix` or `*.suffix:port` (IPv6 literals in brackets
//! when a port follows: `[::1]:8443`). Names are compared case-insensitively; `*.suffix` matches
//! subdomains at any depth, never the apex. Patterns may not contain `/`, `@` or whitespace.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Why a host or pattern was refused. Host names are not secret, so the input is quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host pattern {input:?}: {reason}")]
pub struct HostError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The name part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum NamePattern {
    /// One host, lowercase (IPv6 without brackets).
    Exact(String),
    /// `*.suffix`, stored as `.suffix`, lowercase.
    Suffix(String),
}

/// A parsed host pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct HostPattern {
    pub name: NamePattern,
    pub port: Option<u16>,
}

impl HostPattern {
    /// Parses and normalizes a pattern.
    pub fn parse(input: &str) -> Result<HostPattern, HostError> {
        let err = |reason| HostError {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text
            .chars()
            .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return Err(err("must not contain '/', '@' or whitespace"));
        }
        let (name, port) = split_host_port(text).ok_or_else(|| err("bad port"))?;
        let name = name.to_ascii_lowercase();
        if let Some(suffix) = name.strip_prefix("*.") {
            if !valid_dns_name(suffix) {
                return Err(err("not a valid wildcard (want *.example.com)"));
            }
            return Ok(HostPattern {
                name: NamePattern::Suffix(format!(".{suffix}")),
                port,
            });
        }
        if name.parse::<IpAddr>().is_err() && !valid_dns_name(&name) {
            return Err(err("not a host name or IP address"));
        }
        Ok(HostPattern {
            name: NamePattern::Exact(name),
            port,
        })
    }

    /// Whether the name part matches `host` (already normalized: lowercase, no brackets).
    pub fn matches_name(&self, host: &str) -> bool {
        match &self.name {
            NamePattern::Exact(name) => name == host,
            NamePattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }

    /// Policy matching: the name matches, and the port is the pattern's, or 80 or 443 when the
    /// pattern names no port.
    pub fn matches_policy(&self, host: &str, port: u16) -> bool {
        self.matches_name(host)
            && match self.port {
                Some(p) => p == port,
                None => port == 80 || port == 443,
            }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.name {
            NamePattern::Exact(name) if name.contains(':') && self.port.is_some() => {
                format!("[{name}]")
            }
            NamePattern::Exact(name) => name.clone(),
            NamePattern::Suffix(suffix) => format!("*{suffix}"),
        };
        match self.port {
            Some(port) => write!(f, "{name}:{port}"),
            None => f.write_str(&name),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets when a port follows, or bare without one). `None` if the
/// port is not a number in 1..=65535.
fn split_host_port(text: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(parse_port(after.strip_prefix(':')?)?))),
        };
    }
    if text.parse::<Ipv6Addr>().is_ok() {
        return Some((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
        None => Some((text, None)),
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// A DNS name as clients send it: labels of letters, digits, `-` and `_`, dot-separated.
fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A request target's host and port, normalized: lowercase, IPv6 without brackets, trailing dot
/// removed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses an authority (`host`, `host:port`, `[v6]:port`), with `default_port` when absent.
    /// Refuses user info, paths, bad ports and names that are not host names or IP literals.
    pub fn parse(authority: &str, default_port: u16) -> Option<Target> {
        if authority.is_empty()
            || authority
                .chars()
                .any(|c| c.is_whitespace() || c == '/' || c == '@')
        {
            return None;
        }
        let (host, port) = if authority.starts_with('[') {
            split_host_port(authority)?
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(parse_port(port)?)),
                None => (authority, None),
            }
        };
        let host = host.to_ascii_lowercase();
        let host = host.strip_suffix('.').unwrap_or(&host).to_owned();
        if host.parse::<IpAddr>().is_err() && !valid_dns_name(&host) {
            return None;
        }
        Some(Target {
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// Whether the host is an IP literal (no SNI is sent for those).
    pub fn is_ip(&self) -> bool {
        self.host.parse::<IpAddr>().is_ok()
    }

    /// `host` or `host:port` when the port is not `default_port`, IPv6 bracketed: for URLs and the
    /// `Host` header.
    pub fn authority(&self, default_port: u16) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always with the port (CONNECT form).
        f.write_str(&self.authority(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn patterns_parse_and_normalize() {
        assert_eq!(
            p("API.GitHub.com"),
            HostPattern {
                name: NamePattern::Exact("api.github.com".into()),
                port: None
            }
        );
        assert_eq!(p("api.github.com:8443").port, Some(8443));
        assert_eq!(
            p("*.Example.com").name,
            NamePattern::Suffix(".example.com".into())
        );
        assert_eq!(p("*.example.com:444").port, Some(444));
        assert_eq!(p("127.0.0.1:8080").to_string(), "127.0.0.1:8080");
        assert_eq!(p("[::1]:8443").to_string(), "[::1]:8443");
        assert_eq!(p("::1").to_string(), "::1");
        assert_eq!(p("*.example.com").to_string(), "*.example.com");
        for bad in [
            "",
            "a/b",
            "user@host",
            "a b",
            "host:",
            "host:0",
            "host:99999",
            "host:x",
            "*.",
            "*",
            "a..b",
            "exa$mple.com",
        ] {
            assert!(
                HostPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn wildcards_match_subdomains_never_the_apex() {
        let w = p("*.example.com");
        assert!(w.matches_name("a.example.com"));
        assert!(w.matches_name("a.b.example.com"));
        assert!(!w.matches_name("example.com"));
        assert!(!w.matches_name("badexample.com"));
        assert!(!w.matches_name(".example.com"));
    }

    #[test]
    fn policy_patterns_without_port_mean_80_and_443() {
        let plain = p("api.github.com");
        assert!(plain.matches_policy("api.github.com", 443));
        assert!(plain.matches_policy("api.github.com", 80));
        assert!(!plain.matches_policy("api.github.com", 8443));
        let port = p("api.github.com:8443");
        assert!(port.matches_policy("api.github.com", 8443));
        assert!(!port.matches_policy("api.github.com", 443));
    }

    #[test]
    fn targets_parse_authorities() {
        assert_eq!(
            Target::parse("API.github.com", 443),
            Some(Target {
                host: "api.github.com".into(),
                port: 443
            })
        );
        assert_eq!(
            Target::parse("example.com.:8443", 443).unwrap().host,
            "example.com"
        );
        assert_eq!(Target::parse("example.com:8443", 443).unwrap().port, 8443);
        let v6 = Target::parse("[::1]:8443", 443).unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert!(v6.is_ip());
        assert_eq!(v6.authority(443), "[::1]:8443");
        assert_eq!(v6.to_string(), "[::1]:8443");
        assert_eq!(Target::parse("h:443", 443).unwrap().authority(443), "h");
        for bad in ["", "a b", "u@h", "h:x", "h:", "h/p", "[::1", "bad$host"] {
            assert_eq!(Target::parse(bad, 443), None, "{bad:?}");
        }
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        fn label() -> impl Strategy<Value = String> {
            "[a-z0-9]([a-z0-9_-]{0,8}[a-z0-9])?"
        }

        fn name() -> impl Strategy<Value = String> {
            proptest::collection::vec(label(), 1..4).prop_map(|labels| labels.join("."))
        }

        /// Some letters of `text` in upper case, as a client or a user may write it.
        fn shout(text: &str, mask: u64) -> String {
            text.chars()
                .enumerate()
                .map(|(i, c)| {
                    if mask >> (i % 64) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect()
        }

        /// The host a request names, normalised as the proxy does before matching.
        fn target(authority: &str) -> Target {
            Target::parse(authority, 443).expect("a valid authority")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::proxy::test_cases(2048)))]

            /// `host` matches that host, in any case and with a trailing dot, on 80 and 443 only;
            /// never another name, a subdomain or a parent.
            #[test]
            fn an_exact_pattern_matches_its_host_only(
                host in name(), other in name(), sub in label(), mask in any::<u64>(), port in 1u16..,
            ) {
                let pattern = HostPattern::parse(&shout(&host, mask)).unwrap();
                let written = target(&format!("{}.", shout(&host, !mask)));
                prop_assert!(pattern.matches_policy(&written.host, 443));
                prop_assert!(pattern.matches_policy(&written.host, 80));
                prop_assert_eq!(pattern.matches_policy(&written.host, port), port == 80 || port == 443);
                prop_assert_eq!(pattern.matches_name(&target(&other).host), other == host);
                let below = format!("{sub}.{host}");
                prop_assert!(!pattern.matches_name(&below));
                if let Some((_, parent)) = host.split_once('.') {
                    prop_assert!(!pattern.matches_name(parent));
                }
            }

            /// `*.suffix` matches every name below the suffix, at any depth, and never the
            /// suffix itself nor a name that merely ends with its text.
            #[test]
            fn a_wildcard_matches_subdomains_never_the_apex(
                suffix in name(), below in proptest::collection::vec(label(), 1..4),
                glued in label(), mask in any::<u64>(),
            ) {
                let pattern = HostPattern::parse(&format!("*.{}", shout(&suffix, mask))).unwrap();
                let sub = format!("{}.{suffix}", below.join("."));
                prop_assert!(pattern.matches_policy(&target(&shout(&sub, !mask)).host, 443));
                prop_assert!(!pattern.matches_name(&suffix));
                let (glued, longer) = (format!("{glued}{suffix}"), format!("{sub}x"));
                prop_assert!(!pattern.matches_name(&glued));
                prop_assert!(!pattern.matches_name(&longer));
            }

            /// `host:port` matches that port only, whatever the default ports.
            #[test]
            fn a_port_in_the_pattern_is_the_only_port(host in name(), port in 1u16.., other in 1u16..) {
                let pattern = HostPattern::parse(&format!("{host}:{port}")).unwrap();
                prop_assert!(pattern.matches_policy(&host, port));
                prop_assert_eq!(pattern.matches_policy(&host, other), other == port);
            }

            /// A pattern shown (in errors and `moat proxy` output) reads back as itself.
            #[test]
            fn a_pattern_reads_back_as_itself(
                host in name(), wildcard in any::<bool>(), port in proptest::option::of(1u16..),
            ) {
                let text = match (wildcard, port) {
                    (true, Some(p)) => format!("*.{host}:{p}"),
                    (true, None) => format!("*.{host}"),
                    (false, Some(p)) => format!("{host}:{p}"),
                    (false, None) => host.clone(),
                };
                let pattern = HostPattern::parse(&text).unwrap();
                prop_assert_eq!(pattern.to_string(), text.clone());
                prop_assert_eq!(HostPattern::parse(&pattern.to_string()).unwrap(), pattern);
            }

            /// Patterns with `/`, `@` or white space are refused, whatever surrounds them.
            #[test]
            fn patterns_with_path_or_user_characters_are_refused(
                host in name(), bad in "[/@ \t\n]", at in any::<prop::sample::Index>(),
            ) {
                let mut text = host.clone();
                text.insert_str(at.index(text.len() + 1), &bad);
                let text = format!("x{text}x");
                prop_assert!(HostPattern::parse(&text).is_err());
            }
        }
    }
}
