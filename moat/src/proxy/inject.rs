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
//!    and (done by the pipeline) bodies of known length up to [`SUBSTITUTION_BODY_LIMIT`];
//! 6. `Proxy-Authorization` and `Proxy-Connection` are always removed.
//!
//! Responses: the substituted token in response headers is put back to its placeholder
//! ([`scrub_headers`]), then every header value that still holds a secret of the run, in any form
//! the run's redactor covers, is replaced ([`scrub_secret_headers`]); then the host's transforms
//! (`response_transform` scrubbing and `replace_response` answers, both provider data) run in
//! registration order and the first that applies wins ([`response_transform`]). On a host that
//! gets credentials, the body the upstream sends is then masked of every form of them
//! ([`HostView::mask`], compiled once per rule set; see [`super::mask`]).
//!
//! Each kind of rule is looked up separately for the request's host: a `host:port` key first, then
//! the bare host, then the most specific `*.suffix` (with a port, then without).
//!
//! Credentials are never put into a cleartext request: over plain `http://` only extra and removed
//! headers apply (see [`CompiledRules::for_host`]).

use bytes::Bytes;
use hyper::Method;
use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use moat_plugin_sdk::{ProxyRule, ProxyRules, ResponseAnswer, Secret, SecretSet, TransformKind};

use super::glob::PathGlob;
use super::host::{HostError, HostPattern, NamePattern};
use super::mask::SecretMask;

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
    /// A `replace_response` rule the proxy cannot apply.
    #[error("invalid replace_response rule for {host}: {reason}")]
    Replacement {
        /// The rule's host.
        host: String,
        /// What is wrong.
        reason: String,
    },
}

/// The largest body a `replace_response` answer may carry.
pub const REPLACEMENT_BODY_LIMIT: usize = 64 * 1024;

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

/// A response transform, ready to apply.
#[derive(Debug, Clone)]
pub(crate) enum Transform {
    /// `response-scrub`: the substituted token replaced by its placeholder in the body.
    Scrub,
    /// A `replace_response` rule.
    Replace(Replacement),
}

/// A `replace_response` rule, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Replacement {
    /// `None` for `*`.
    method: Option<Method>,
    paths: Vec<PathGlob>,
    upstream_status: StatusCode,
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
}

impl Replacement {
    fn parse(
        method: &str,
        paths: &[String],
        status: u16,
        answer: &ResponseAnswer,
    ) -> Result<Replacement, String> {
        let method = match method {
            "*" => None,
            m if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => Some(
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("bad method {m:?}"))?,
            ),
            m => return Err(format!("the method {m:?} must be a word like GET, or *")),
        };
        if paths.is_empty() {
            return Err("no paths".into());
        }
        let paths = paths
            .iter()
            .map(|glob| PathGlob::parse(glob).map_err(|reason| format!("path {glob:?}: {reason}")))
            .collect::<Result<Vec<_>, _>>()?;
        let upstream_status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| !s.is_informational())
            .ok_or_else(|| format!("the upstream status {status} is not a final HTTP status"))?;
        let answer_status = StatusCode::from_u16(answer.status)
            .ok()
            .filter(|s| !s.is_informational())
            .ok_or_else(|| {
                format!(
                    "the answer's status {} is not a final HTTP status",
                    answer.status
                )
            })?;
        let content_type = HeaderValue::from_str(&answer.content_type).map_err(|_| {
            format!(
                "the content type {:?} is not a header value",
                answer.content_type
            )
        })?;
        if answer.body.len() > REPLACEMENT_BODY_LIMIT {
            return Err(format!(
                "the answer's body is {} bytes, more than {REPLACEMENT_BODY_LIMIT}",
                answer.body.len()
            ));
        }
        Ok(Replacement {
            method,
            paths,
            upstream_status,
            status: answer_status,
            content_type,
            body: Bytes::from(answer.body.clone()),
        })
    }

    /// Whether it replaces the upstream's `status` answer to `method path` (path with or without
    /// its query).
    fn applies(&self, method: &str, path: &str, status: StatusCode) -> bool {
        status == self.upstream_status
            && self.method.as_ref().is_none_or(|m| m.as_str() == method)
            && {
                let path = path.split(['?', '#']).next().unwrap_or(path);
                self.paths.iter().any(|glob| glob.matches(path))
            }
    }
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
    transforms: HostMap<Vec<Transform>>,
    /// Per credential host pattern (the same patterns as `credentials`, so a host gets the mask
    /// of the credentials it gets): every form of those values, for response bodies. A pattern
    /// whose values are all too short to search for has none.
    masks: HostMap<std::sync::Arc<SecretMask>>,
}

/// What applies to one request's host.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostView<'a> {
    pub credentials: &'a [CredentialRule],
    pub extra: &'a [(HeaderName, HeaderValue)],
    pub remove: &'a [HeaderName],
    pub substitution: Option<&'a Substitution>,
    pub transforms: &'a [Transform],
    /// The forms of `credentials`, to mask in response bodies; `None` without credentials (or
    /// with only values too short to search for).
    pub mask: Option<&'a std::sync::Arc<SecretMask>>,
}

impl HostView<'_> {
    /// Whether the host's substituted token is scrubbed from response bodies.
    pub fn scrubs_responses(&self) -> bool {
        self.substitution.is_some()
            && self
                .transforms
                .iter()
                .any(|t| matches!(t, Transform::Scrub))
    }

    /// Whether the proxy searches this host's response bodies for a secret (the substituted
    /// token, or the credentials it injects), and so must be able to read them.
    pub fn reads_responses(&self) -> bool {
        self.scrubs_responses() || self.mask.is_some()
    }
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
        for (pattern, list) in &compiled.credentials.entries {
            let mut set = SecretSet::new();
            for cred in list {
                set.insert(&credential_secret(cred));
            }
            if let Some(mask) = SecretMask::new(&set) {
                compiled.masks.entries.push((pattern.clone(), mask));
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
                let transform = match kind {
                    TransformKind::ResponseScrub => Transform::Scrub,
                };
                self.transforms.entry(pattern, Vec::new).push(transform);
            }
            ProxyRule::ReplaceResponse {
                method,
                paths,
                status,
                answer,
                ..
            } => {
                let replacement =
                    Replacement::parse(method, paths, *status, answer).map_err(|reason| {
                        RulesError::Replacement {
                            host: host.to_owned(),
                            reason,
                        }
                    })?;
                self.transforms
                    .entry(pattern, Vec::new)
                    .push(Transform::Replace(replacement));
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
            mask: secrets.then(|| self.masks.get(host, port)).flatten(),
        }
    }

    /// Every secret value the rules hold (each credential header value, each substitution's
    /// token), as the set that hides them in every form they may travel, for the log's last-line
    /// redaction.
    pub fn secrets(&self) -> SecretSet {
        let mut set = SecretSet::new();
        for (_, list) in &self.credentials.entries {
            for cred in list {
                set.insert(&credential_secret(cred));
            }
        }
        for (_, sub) in &self.substitution.entries {
            set.insert(&sub.real);
        }
        set
    }
}

/// A credential header's value as a secret. A value that is not visible ASCII is still a secret:
/// never skip it.
fn credential_secret(cred: &CredentialRule) -> Secret {
    Secret::new(String::from_utf8_lossy(cred.value.as_bytes()))
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
pub(crate) enum ResponseAction<'a> {
    /// Leave it alone.
    None,
    /// Replace it by this answer, with `X-Moat-Transformed: replace-response`.
    Replace(&'a Replacement),
    /// Stream the body through the scrubber (real token → placeholder).
    Scrub(&'a Substitution),
}

impl PartialEq for Replacement {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Replacement {}

/// The first of the host's transforms that applies to this response.
pub(crate) fn response_transform<'a>(
    view: &HostView<'a>,
    method: &str,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
) -> ResponseAction<'a> {
    for transform in view.transforms {
        match transform {
            Transform::Replace(replacement) if replacement.applies(method, path, status) => {
                return ResponseAction::Replace(replacement);
            }
            Transform::Scrub => {
                if let Some(sub) = view.substitution
                    && method != "HEAD"
                    && !matches!(status.as_u16(), 101 | 204 | 304)
                    && identity_encoded(headers)
                {
                    return ResponseAction::Scrub(sub);
                }
            }
            Transform::Replace(_) => {}
        }
    }
    ResponseAction::None
}

/// Replaces the substituted token by its placeholder in every response header value.
pub(crate) fn scrub_headers(headers: &mut HeaderMap, sub: &Substitution) {
    let real = sub.real.expose().as_bytes();
    if real.is_empty() {
        return;
    }
    for value in headers.values_mut() {
        let bytes = value.as_bytes();
        if bytes.windows(real.len()).any(|window| window == real) {
            let replaced =
                String::from_utf8_lossy(bytes).replace(sub.real.expose(), &sub.placeholder);
            // The placeholder is visible ASCII, so the result is a valid header value; if the
            // value was not text, drop it rather than pass the token on.
            match HeaderValue::from_str(&replaced) {
                Ok(clean) => *value = clean,
                Err(_) => *value = HeaderValue::from_static("[removed by moat]"),
            }
        }
    }
}

/// What a response header value that held a secret is replaced with.
pub(crate) const SCRUBBED_HEADER: &str = "[removed by moat: it held a credential]";

/// Replaces every response header value that holds a secret of the run, in any form its
/// redactor covers (raw, after a scheme, Basic, percent-encoded wholly or in part, base64, in
/// another case), by [`SCRUBBED_HEADER`]. The values are searched as one text, in order, so a
/// secret split across neighbouring values (two values of one name, or adjacent headers) is
/// found too, and every value holding a piece of it is replaced.
pub(crate) fn scrub_secret_headers(headers: &mut HeaderMap, secrets: &SecretSet) {
    if secrets.is_empty() || headers.is_empty() {
        return;
    }
    let mut joined = String::new();
    let mut bounds = Vec::with_capacity(headers.len());
    for value in headers.values() {
        let start = joined.len();
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
        bounds.push(start..joined.len());
    }
    let spans = secrets.find(&joined);
    if spans.is_empty() {
        return;
    }
    for (value, range) in headers.values_mut().zip(bounds) {
        if spans
            .iter()
            .any(|span| span.start < range.end && range.start < span.end)
        {
            *value = HeaderValue::from_static(SCRUBBED_HEADER);
        }
    }
}

/// True when the body is not content-encoded (or says `identity`): a compressed body cannot be
/// searched. Any content type can be scrubbed: an API can echo the token in a binary body as well
/// as in JSON. (Encoded bodies on a substitution host are refused by the pipeline before the
/// transforms are asked.)
pub(crate) fn identity_encoded(headers: &HeaderMap) -> bool {
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

    fn replace(host: &str, method: &str, paths: &[&str], status: u16, body: &str) -> ProxyRule {
        ProxyRule::ReplaceResponse {
            host: host.into(),
            method: method.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            status,
            answer: ResponseAnswer {
                status: 200,
                content_type: "application/json".into(),
                body: body.into(),
            },
        }
    }

    #[test]
    fn transforms_first_applicable_wins() {
        let rules = compile(vec![
            replace(
                "api.example.com",
                "GET",
                &["/api/oauth/profile"],
                403,
                "{\"id\":\"\"}",
            ),
            replace(
                "api.example.com",
                "*",
                &["/api/oauth/*", "/v2/**"],
                403,
                "{}",
            ),
            ProxyRule::ResponseTransform {
                host: "api.example.com".into(),
                kind: TransformKind::ResponseScrub,
            },
            ProxyRule::TokenSubstitution {
                host: "api.example.com".into(),
                placeholder: "moat-placeholder".into(),
                real: Secret::new("realtoken"),
            },
        ]);
        let view = rules.for_host("api.example.com", 443, true);
        let json = headers(&[("content-type", "application/json")]);
        let body = |action: ResponseAction<'_>| match action {
            ResponseAction::Replace(answer) => {
                assert_eq!(answer.status, StatusCode::OK);
                assert_eq!(answer.content_type, "application/json");
                Some(String::from_utf8(answer.body.to_vec()).unwrap())
            }
            _ => None,
        };
        let forbidden = |method, path| {
            body(response_transform(
                &view,
                method,
                path,
                StatusCode::FORBIDDEN,
                &json,
            ))
        };
        assert_eq!(
            forbidden("GET", "/api/oauth/profile?x").as_deref(),
            Some("{\"id\":\"\"}"),
            "the first that applies, query ignored"
        );
        assert_eq!(
            forbidden("POST", "/api/oauth/profile").as_deref(),
            Some("{}")
        );
        assert_eq!(forbidden("GET", "/api/oauth/usage").as_deref(), Some("{}"));
        assert_eq!(forbidden("GET", "/v2/a/b").as_deref(), Some("{}"));
        assert_eq!(
            forbidden("GET", "/api/oauth/a/b"),
            None,
            "* stays in one segment"
        );
        assert!(
            matches!(
                response_transform(&view, "GET", "/api/oauth/profile", StatusCode::OK, &json),
                ResponseAction::Scrub(_)
            ),
            "another upstream status is not replaced"
        );
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
    fn bad_replacements_are_refused_with_the_reason() {
        for (rule, reason) in [
            (replace("h.com", "GET", &[], 403, "{}"), "no paths"),
            (
                replace("h.com", "GET", &["api"], 403, "{}"),
                "must start with /",
            ),
            (replace("h.com", "G E T", &["/a"], 403, "{}"), "method"),
            (
                replace("h.com", "GET", &["/a"], 101, "{}"),
                "upstream status 101",
            ),
            (
                replace("h.com", "GET", &["/a"], 99, "{}"),
                "upstream status 99",
            ),
            (
                replace(
                    "h.com",
                    "GET",
                    &["/a"],
                    403,
                    &"x".repeat(REPLACEMENT_BODY_LIMIT + 1),
                ),
                "more than",
            ),
        ] {
            let mut all = ProxyRules::new();
            all.rules = vec![rule];
            let err = CompiledRules::compile(&[all]).unwrap_err().to_string();
            assert!(err.contains(reason) && err.contains("h.com"), "{err}");
        }
        let mut rule = replace("h.com", "GET", &["/a"], 403, "{}");
        if let ProxyRule::ReplaceResponse { answer, .. } = &mut rule {
            answer.content_type = "a\nb".into();
        }
        let mut all = ProxyRules::new();
        all.rules = vec![rule];
        assert!(CompiledRules::compile(&[all]).is_err());
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
