//! Applying a run's [`ProxyRules`] to requests and responses (reference-providers §4–§5).
//!
//! Per intercepted request, in order:
//!
//! 1. the caller snapshots the client's headers for the request log;
//! 2. credential headers, two passes, placeholder-aware: if the client sent a header a credential
//!    rule names (a placeholder), every such header gets its real value and nothing else is added
//!    (one value per header name, the first rule in registration order wins); if it sent none,
//!    every credential header is added;
//! 3. extra headers, comma-joined onto a value the client sent, else set;
//! 4. removed headers, unless injected in step 2;
//! 5. token substitution (placeholder → real) in the path and query, the `Authorization` header,
//!    and (done by the server) bodies of known length up to [`SUBSTITUTION_BODY_LIMIT`];
//! 6. `Proxy-Authorization` and `Proxy-Connection` are always removed.
//!
//! Responses: the host's transforms run in registration order and the first that applies wins
//! ([`response_transform`]).
//!
//! Each kind of rule is looked up separately for the request's host: a `host:port` key first, then
//! the bare host, then the most specific `*.suffix` (with a port, then without).
//!
//! Credentials are never put into a cleartext request: over plain `http://` only extra and removed
//! headers apply (see [`CompiledRules::for_host`]).

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use moat_plugin_sdk::{ProxyRule, ProxyRules, Secret, SecretSet, TransformKind};

use super::host::{HostError, HostPattern, NamePattern};

/// Request bodies of known length up to this size get token substitution.
pub const SUBSTITUTION_BODY_LIMIT: u64 = 64 * 1024;

/// Why a run's rules were refused. Never carries a credential value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A bad host key.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A header name that is not valid HTTP.
    #[error("invalid header name {name:?} in a rule for {host}")]
    HeaderName {
        /// The rule's host.
        host: String,
        /// The name.
        name: String,
    },
    /// A header value that is not valid HTTP (the value itself is not shown).
    #[error("the {what} for {header} on {host} is not a valid header value")]
    HeaderValue {
        /// The rule's host.
        host: String,
        /// The header.
        header: String,
        /// `credential` (grant named) or `extra header`.
        what: String,
    },
    /// An empty placeholder would replace everywhere.
    #[error("the token substitution for {host} has an empty placeholder or token")]
    EmptySubstitution {
        /// The rule's host.
        host: String,
    },
}

/// One credential header rule, ready to apply.
#[derive(Clone)]
pub(crate) struct CredentialRule {
    pub header: HeaderName,
    /// Marked sensitive: hyper never indexes it in HPACK and `Debug` hides it.
    pub value: HeaderValue,
    pub grant: String,
}

impl std::fmt::Debug for CredentialRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRule")
            .field("header", &self.header)
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

/// A host's placeholder and real token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Substitution {
    pub placeholder: String,
    pub real: Secret,
}

/// Values of one kind of rule, by host pattern.
#[derive(Debug, Clone)]
struct HostMap<T> {
    entries: Vec<(HostPattern, T)>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            entries: Vec::new(),
        }
    }
}

impl<T> HostMap<T> {
    fn entry(&mut self, pattern: HostPattern, default: impl FnOnce() -> T) -> &mut T {
        let index = match self.entries.iter().position(|(p, _)| *p == pattern) {
            Some(index) => index,
            None => {
                self.entries.push((pattern, default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[index].1
    }

    /// The most specific entry for `host:port`: exact name with the port, exact name, then the
    /// longest wildcard with the port, then the longest wildcard.
    fn get(&self, host: &str, port: u16) -> Option<&T> {
        self.entries
            .iter()
            .filter(|(pattern, _)| {
                pattern.port.is_none_or(|p| p == port) && pattern.matches_name(host)
            })
            .max_by_key(|(pattern, _)| {
                let exact = matches!(pattern.name, NamePattern::Exact(_));
                let suffix_len = match &pattern.name {
                    NamePattern::Suffix(suffix) => suffix.len(),
                    NamePattern::Exact(_) => 0,
                };
                (
                    exact,
                    exact && pattern.port.is_some(),
                    suffix_len,
                    pattern.port.is_some(),
                )
            })
            .map(|(_, value)| value)
    }
}

/// A run's rules, parsed and grouped per host.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledRules {
    credentials: HostMap<Vec<CredentialRule>>,
    extra: HostMap<Vec<(HeaderName, HeaderValue)>>,
    remove: HostMap<Vec<HeaderName>>,
    substitution: HostMap<Substitution>,
    transforms: HostMap<Vec<TransformKind>>,
}

/// What applies to one request's host.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostView<'a> {
    pub credentials: &'a [CredentialRule],
    pub extra: &'a [(HeaderName, HeaderValue)],
    pub remove: &'a [HeaderName],
    pub substitution: Option<&'a Substitution>,
    pub transforms: &'a [TransformKind],
}

impl CompiledRules {
    /// Parses every grant's rules, in order. A credential is upserted by (host, grant, header); a
    /// host has one token substitution (the last).
    pub fn compile(all: &[ProxyRules]) -> Result<CompiledRules, RulesError> {
        let mut compiled = CompiledRules::default();
        for rules in all {
            for rule in &rules.rules {
                compiled.add(rule)?;
            }
        }
        Ok(compiled)
    }

    fn add(&mut self, rule: &ProxyRule) -> Result<(), RulesError> {
        let host = rule.host();
        let pattern = HostPattern::parse(host)?;
        let header_name = |name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| RulesError::HeaderName {
                host: host.to_owned(),
                name: name.to_owned(),
            })
        };
        match rule {
            ProxyRule::Credential {
                header,
                value,
                grant,
                ..
            } => {
                let name = header_name(header)?;
                let mut value =
                    HeaderValue::from_str(value.expose()).map_err(|_| RulesError::HeaderValue {
                        host: host.to_owned(),
                        header: header.clone(),
                        what: format!("credential of grant {grant}"),
                    })?;
                value.set_sensitive(true);
                let list = self.credentials.entry(pattern, Vec::new);
                let new = CredentialRule {
                    header: name,
                    value,
                    grant: grant.clone(),
                };
                match list
                    .iter_mut()
                    .find(|c| c.grant == new.grant && c.header == new.header)
                {
                    Some(existing) => *existing = new,
                    None => list.push(new),
                }
            }
            ProxyRule::ExtraHeader { name, value, .. } => {
                let header = header_name(name)?;
                let value = HeaderValue::from_str(value).map_err(|_| RulesError::HeaderValue {
                    host: host.to_owned(),
                    header: name.clone(),
                    what: "extra header".into(),
                })?;
                self.extra.entry(pattern, Vec::new).push((header, value));
            }
            ProxyRule::RemoveHeader { name, .. } => {
                let header = header_name(name)?;
                self.remove.entry(pattern, Vec::new).push(header);
            }
            ProxyRule::TokenSubstitution {
                placeholder, real, ..
            } => {
                if placeholder.is_empty() || real.is_empty() {
                    return Err(RulesError::EmptySubstitution {
                        host: host.to_owned(),
                    });
                }
                *self.substitution.entry(pattern, || Substitution {
                    placeholder: String::new(),
                    real: Secret::new(""),
                }) = Substitution {
                    placeholder: placeholder.clone(),
                    real: real.clone(),
                };
            }
            ProxyRule::ResponseTransform { kind, .. } => {
                self.transforms.entry(pattern, Vec::new).push(*kind);
            }
        }
        Ok(())
    }

    /// The rules for a request to `host:port`. With `secrets` false (cleartext HTTP), credentials
    /// and token substitution are left out.
    pub fn for_host(&self, host: &str, port: u16, secrets: bool) -> HostView<'_> {
        HostView {
            credentials: match secrets {
                true => self.credentials.get(host, port).map_or(&[], Vec::as_slice),
                false => &[],
            },
            extra: self.extra.get(host, port).map_or(&[], Vec::as_slice),
            remove: self.remove.get(host, port).map_or(&[], Vec::as_slice),
            substitution: secrets.then(|| self.substitution.get(host, port)).flatten(),
            transforms: self.transforms.get(host, port).map_or(&[], Vec::as_slice),
        }
    }

    /// Every secret value the rules hold (each credential header value, each substitution's
    /// token), as the set that hides them in every form they may travel, for the log's last-line
    /// redaction.
    pub fn secrets(&self) -> SecretSet {
        let mut set = SecretSet::new();
        for (_, list) in &self.credentials.entries {
            for cred in list {
                // A value that is not visible ASCII is still a secret: never skip it.
                set.insert(&Secret::new(String::from_utf8_lossy(cred.value.as_bytes())));
            }
        }
        for (_, sub) in &self.substitution.entries {
            set.insert(&sub.real);
        }
        set
    }
}

/// What the injection did to one request, for the log (names and grants only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Injected {
    /// Headers whose value is (or contains) a secret now.
    pub headers: Vec<HeaderName>,
    /// The grants whose credentials were used.
    pub grants: Vec<String>,
}

/// Steps 2–4 and 6, and the `Authorization` part of step 5.
pub(crate) fn apply_request_headers(view: &HostView<'_>, headers: &mut HeaderMap) -> Injected {
    let mut injected = Injected::default();
    let set = |headers: &mut HeaderMap, cred: &CredentialRule, injected: &mut Injected| {
        if injected.headers.contains(&cred.header) {
            return;
        }
        headers.insert(cred.header.clone(), cred.value.clone());
        injected.headers.push(cred.header.clone());
        if !injected.grants.contains(&cred.grant) {
            injected.grants.push(cred.grant.clone());
        }
    };
    // Pass 1: the client sent placeholders; replace exactly those.
    for cred in view.credentials {
        if headers.contains_key(&cred.header) {
            set(headers, cred, &mut injected);
        }
    }
    // Pass 2: it sent none; add every credential header.
    if injected.headers.is_empty() {
        for cred in view.credentials {
            set(headers, cred, &mut injected);
        }
    }

    for (name, value) in view.extra {
        let existing: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
        let merged = if existing.is_empty() {
            value.clone()
        } else {
            let mut joined = existing.join(&b", "[..]);
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(value.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| value.clone())
        };
        headers.insert(name.clone(), merged);
    }

    for name in view.remove {
        if !injected.headers.contains(name) {
            headers.remove(name);
        }
    }

    if let Some(sub) = view.substitution
        && !injected.headers.contains(&AUTHORIZATION)
        && let Some(value) = headers.get(AUTHORIZATION)
        && let Ok(text) = value.to_str()
        && let Some(replaced) = substitute(text, sub)
        && let Ok(mut value) = HeaderValue::from_str(&replaced)
    {
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        injected.headers.push(AUTHORIZATION);
    }

    headers.remove(hyper::header::PROXY_AUTHORIZATION);
    headers.remove("proxy-connection");
    injected
}

/// `text` with the placeholder replaced by the real token, if it contains the placeholder.
pub(crate) fn substitute(text: &str, sub: &Substitution) -> Option<String> {
    text.contains(&sub.placeholder)
        .then(|| text.replace(&sub.placeholder, sub.real.expose()))
}

/// `bytes` with the placeholder replaced by the real token, if it contains the placeholder.
pub(crate) fn substitute_bytes(bytes: &[u8], sub: &Substitution) -> Option<Vec<u8>> {
    replace_all(
        bytes,
        sub.placeholder.as_bytes(),
        sub.real.expose().as_bytes(),
    )
}

/// Every occurrence of `from` in `haystack` replaced by `to`; `None` if there is none.
pub(crate) fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() || haystack.len() < from.len() {
        return None;
    }
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    let mut found = false;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        found = true;
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    found.then_some(out)
}

/// What a response transform does to a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResponseAction {
    /// Leave it alone.
    None,
    /// Replace it by a `200` with this JSON body and `X-Moat-Transformed: oauth-scope-workaround`.
    Replace(&'static str),
    /// Stream the body through the scrubber (real token → placeholder).
    Scrub(Substitution),
}

/// The first of the host's transforms that applies to this response.
pub(crate) fn response_transform(
    view: &HostView<'_>,
    method: &str,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
) -> ResponseAction {
    for kind in view.transforms {
        match kind {
            TransformKind::OauthEndpointWorkaround if status == StatusCode::FORBIDDEN => {
                let path = path.split('?').next().unwrap_or(path);
                match path {
                    "/api/oauth/profile" => {
                        return ResponseAction::Replace(r#"{"id":"","email":"","name":""}"#);
                    }
                    "/api/oauth/usage" => return ResponseAction::Replace(r#"{"usage":{}}"#),
                    _ => {}
                }
            }
            TransformKind::ResponseScrub => {
                if let Some(sub) = view.substitution
                    && method != "HEAD"
                    && !matches!(status.as_u16(), 101 | 204 | 304)
                    && scrubbable(headers)
                {
                    return ResponseAction::Scrub(sub.clone());
                }
            }
            _ => {}
        }
    }
    ResponseAction::None
}

/// Not content-encoded (a compressed body cannot be searched). Any content type: an API can
/// echo the token in a binary body as well as in JSON. (Encoded bodies on a substitution host are
/// refused by the server before this is asked.)
fn scrubbable(headers: &HeaderMap) -> bool {
    headers
        .get(hyper::header::CONTENT_ENCODING)
        .is_none_or(|v| v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// `text/*`, JSON, XML, form data, JavaScript: bodies worth logging or scrubbing.
pub(crate) fn is_text_type(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("x-www-form-urlencoded")
        || ct.contains("javascript")
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    fn cred(host: &str, header: &str, value: &str, grant: &str) -> ProxyRule {
        ProxyRule::Credential {
            host: host.into(),
            header: header.into(),
            value: Secret::new(value),
            grant: grant.into(),
        }
    }

    fn compile(rules: Vec<ProxyRule>) -> CompiledRules {
        let mut all = ProxyRules::new();
        all.rules = rules;
        CompiledRules::compile(&[all]).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn get<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a str> {
        map.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn two_pass_lets_the_client_choose() {
        let rules = compile(vec![
            cred(
                "api.anthropic.com",
                "Authorization",
                "Bearer oauth-real",
                "claude",
            ),
            cred("api.anthropic.com", "x-api-key", "sk-real-key", "anthropic"),
        ]);
        let view = rules.for_host("api.anthropic.com", 443, true);

        // Client sent the API-key placeholder: only that is replaced.
        let mut h = headers(&[("x-api-key", "moat-proxy-injected")]);
        let injected = apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "x-api-key"), Some("sk-real-key"));
        assert_eq!(get(&h, "authorization"), None);
        assert_eq!(injected.grants, ["anthropic"]);

        // Client sent the OAuth placeholder: only that.
        let mut h = headers(&[("authorization", "Bearer placeholder")]);
        let injected = apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "authorization"), Some("Bearer oauth-real"));
        assert_eq!(get(&h, "x-api-key"), None);
        assert_eq!(injected.headers, [AUTHORIZATION]);

        // Neither: both are added.
        let mut h = headers(&[]);
        let injected = apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "authorization"), Some("Bearer oauth-real"));
        assert_eq!(get(&h, "x-api-key"), Some("sk-real-key"));
        assert_eq!(injected.grants, ["claude", "anthropic"]);
        assert!(h.get("authorization").unwrap().is_sensitive());
    }

    #[test]
    fn one_value_per_header_first_rule_wins_and_upsert_by_grant() {
        let rules = compile(vec![
            cred("h.com", "Authorization", "Bearer one", "a"),
            cred("h.com", "Authorization", "Bearer two", "b"),
            cred("h.com", "Authorization", "Bearer one-refreshed", "a"),
        ]);
        let view = rules.for_host("h.com", 443, true);
        assert_eq!(view.credentials.len(), 2);
        let mut h = headers(&[("authorization", "x"), ("authorization", "y")]);
        apply_request_headers(&view, &mut h);
        assert_eq!(
            h.get_all("authorization").iter().count(),
            1,
            "a multi-valued placeholder becomes one value"
        );
        assert_eq!(get(&h, "authorization"), Some("Bearer one-refreshed"));
    }

    #[test]
    fn extra_headers_merge_and_removals_spare_injected_headers() {
        let rules = compile(vec![
            cred(
                "api.anthropic.com",
                "Authorization",
                "Bearer real",
                "claude",
            ),
            ProxyRule::ExtraHeader {
                host: "api.anthropic.com".into(),
                name: "anthropic-beta".into(),
                value: "oauth-2025-04-20".into(),
            },
            ProxyRule::RemoveHeader {
                host: "api.anthropic.com".into(),
                name: "x-api-key".into(),
            },
            ProxyRule::RemoveHeader {
                host: "api.anthropic.com".into(),
                name: "authorization".into(),
            },
        ]);
        let view = rules.for_host("api.anthropic.com", 443, true);
        let mut h = headers(&[
            ("anthropic-beta", "a"),
            ("anthropic-beta", "b"),
            ("x-api-key", "placeholder"),
            ("proxy-authorization", "Basic xyz"),
            ("proxy-connection", "keep-alive"),
        ]);
        apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "anthropic-beta"), Some("a, b, oauth-2025-04-20"));
        assert_eq!(get(&h, "x-api-key"), None);
        assert_eq!(
            get(&h, "authorization"),
            Some("Bearer real"),
            "never strips a header injected for this request"
        );
        assert!(h.get("proxy-authorization").is_none() && h.get("proxy-connection").is_none());

        let mut h = headers(&[]);
        apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "anthropic-beta"), Some("oauth-2025-04-20"));
    }

    #[test]
    fn host_keys_exact_port_and_wildcards() {
        let rules = compile(vec![
            cred("*.example.com", "x-k", "wild", "g"),
            cred("*.api.example.com", "x-k", "wilder", "g"),
            cred("api.example.com", "x-k", "exact", "g"),
            cred("api.example.com:8443", "x-k", "with-port", "g"),
            cred("API.Other.com", "x-k", "case", "g"),
        ]);
        let value = |host: &str, port: u16| {
            let mut h = HeaderMap::new();
            apply_request_headers(&rules.for_host(host, port, true), &mut h);
            h.get("x-k").map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(value("api.example.com", 443).as_deref(), Some("exact"));
        assert_eq!(value("api.example.com", 8443).as_deref(), Some("with-port"));
        assert_eq!(value("v1.api.example.com", 443).as_deref(), Some("wilder"));
        assert_eq!(value("www.example.com", 443).as_deref(), Some("wild"));
        assert_eq!(value("example.com", 443), None, "never the apex");
        assert_eq!(value("api.other.com", 443).as_deref(), Some("case"));
        assert_eq!(value("nope.com", 443), None);
        // No secrets over cleartext.
        let mut h = HeaderMap::new();
        apply_request_headers(&rules.for_host("api.example.com", 80, false), &mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn token_substitution_in_authorization_and_text() {
        let rules = compile(vec![ProxyRule::TokenSubstitution {
            host: "api.telegram.org".into(),
            placeholder: "moat-0123456789abcdef".into(),
            real: Secret::new("123:REALTOKEN"),
        }]);
        let view = rules.for_host("api.telegram.org", 443, true);
        let sub = view.substitution.unwrap();
        assert_eq!(
            substitute("/botmoat-0123456789abcdef/getMe", sub).as_deref(),
            Some("/bot123:REALTOKEN/getMe")
        );
        assert_eq!(substitute("/nothing", sub), None);
        let mut h = headers(&[("authorization", "Bearer moat-0123456789abcdef")]);
        let injected = apply_request_headers(&view, &mut h);
        assert_eq!(get(&h, "authorization"), Some("Bearer 123:REALTOKEN"));
        assert_eq!(injected.headers, [AUTHORIZATION]);
        assert_eq!(
            substitute_bytes(b"{\"t\":\"moat-0123456789abcdef\"}", sub).unwrap(),
            b"{\"t\":\"123:REALTOKEN\"}"
        );
        assert!(
            rules
                .for_host("api.telegram.org", 80, false)
                .substitution
                .is_none()
        );
    }

    #[test]
    fn bad_rules_never_show_values() {
        let mut all = ProxyRules::new();
        all.rules = vec![cred(
            "h.com",
            "Authorization",
            "Bearer bad\nSECRETVALUE",
            "g",
        )];
        let err = CompiledRules::compile(&[all]).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("SECRETVALUE"), "{text}");
        assert!(text.contains("grant g"), "{text}");
        let mut all = ProxyRules::new();
        all.rules = vec![cred("h.com/x", "a", "b", "g")];
        assert!(CompiledRules::compile(&[all]).is_err());
        let mut all = ProxyRules::new();
        all.rules = vec![cred("h.com", "bad header", "b", "g")];
        assert!(CompiledRules::compile(&[all]).is_err());
    }

    #[test]
    fn transforms_first_applicable_wins() {
        let rules = compile(vec![
            ProxyRule::ResponseTransform {
                host: "api.anthropic.com".into(),
                kind: TransformKind::OauthEndpointWorkaround,
            },
            ProxyRule::ResponseTransform {
                host: "api.anthropic.com".into(),
                kind: TransformKind::ResponseScrub,
            },
            ProxyRule::TokenSubstitution {
                host: "api.anthropic.com".into(),
                placeholder: "moat-placeholder".into(),
                real: Secret::new("realtoken"),
            },
        ]);
        let view = rules.for_host("api.anthropic.com", 443, true);
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(
            response_transform(
                &view,
                "GET",
                "/api/oauth/profile?x",
                StatusCode::FORBIDDEN,
                &json
            ),
            ResponseAction::Replace(r#"{"id":"","email":"","name":""}"#)
        );
        assert_eq!(
            response_transform(
                &view,
                "GET",
                "/api/oauth/usage",
                StatusCode::FORBIDDEN,
                &json
            ),
            ResponseAction::Replace(r#"{"usage":{}}"#)
        );
        assert!(matches!(
            response_transform(&view, "GET", "/api/oauth/profile", StatusCode::OK, &json),
            ResponseAction::Scrub(_)
        ));
        let gzip = headers(&[("content-type", "text/plain"), ("content-encoding", "gzip")]);
        assert_eq!(
            response_transform(&view, "GET", "/x", StatusCode::OK, &gzip),
            ResponseAction::None
        );
        // Binary bodies are scrubbed too: an API can echo the token in any body.
        let image = headers(&[("content-type", "image/png")]);
        assert!(matches!(
            response_transform(&view, "GET", "/x", StatusCode::OK, &image),
            ResponseAction::Scrub(_)
        ));
        assert_eq!(
            response_transform(&view, "HEAD", "/x", StatusCode::OK, &json),
            ResponseAction::None
        );
    }

    #[test]
    fn redactor_covers_every_form_of_a_credential() {
        let basic = base64::engine::general_purpose::STANDARD.encode("x-access-token:ghp_secret1");
        let rules = compile(vec![
            cred(
                "api.github.com",
                "Authorization",
                "Bearer ghp_secret1",
                "github",
            ),
            cred(
                "github.com",
                "Authorization",
                &format!("Basic {basic}"),
                "github",
            ),
            ProxyRule::TokenSubstitution {
                host: "t.org".into(),
                placeholder: "moat-x".into(),
                real: Secret::new("tg-secret-2"),
            },
        ]);
        let redactor = rules.secrets();
        let text = format!("a ghp_secret1 b {basic} c tg-secret-2 d Bearer ghp_secret1");
        let out = redactor.redact(&text);
        assert!(
            !out.contains("ghp_secret1") && !out.contains(&basic) && !out.contains("tg-secret")
        );
        assert_eq!(out.matches("[REDACTED]").count(), 4, "{out}");
        assert_eq!(redactor.redact("nothing here"), "nothing here");
        // Encoded forms: a token with a colon in a URL, and a token in a base64 document.
        let rules = compile(vec![ProxyRule::TokenSubstitution {
            host: "t.org".into(),
            placeholder: "moat-x".into(),
            real: Secret::new("123456:tg-secret"),
        }]);
        let redactor = rules.secrets();
        let b64 = base64::engine::general_purpose::STANDARD.encode("123456:tg-secret");
        let logged = format!("/bot123456%3Atg-secret/x {b64}");
        let out = redactor.redact(&logged);
        assert!(!out.contains("tg-secret") && !out.contains(&b64), "{out}");
    }

    #[test]
    fn replace_all_edges() {
        assert_eq!(replace_all(b"aXbXc", b"X", b"YY").unwrap(), b"aYYbYYc");
        assert_eq!(replace_all(b"abc", b"X", b"Y"), None);
        assert_eq!(replace_all(b"", b"X", b"Y"), None);
        assert_eq!(replace_all(b"XX", b"XX", b"").unwrap(), b"");
    }
}
