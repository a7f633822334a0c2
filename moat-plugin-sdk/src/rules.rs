//! [`ProxyRules`]: how a credential is applied on the wire, as data.
//!
//! The Go implementation let providers call methods on a live proxy object. Here a provider returns
//! rules and the proxy applies them, so the same answer can come from a built-in or from a plugin
//! in another process, and can be logged (redacted), compared and replaced on refresh.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Secret;

/// Everything the proxy must do for one credential.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyRules {
    /// The rules, applied in order where order matters (response transforms).
    #[serde(default)]
    pub rules: Vec<ProxyRule>,
    /// Hosts the container may reach under a `strict` network policy because of this grant, on top
    /// of the hosts named by `rules` (for example `*.openai.com` for the OpenAI grant).
    /// Same pattern syntax as a rule's `host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
}

impl ProxyRules {
    /// No rules.
    pub fn new() -> Self {
        ProxyRules::default()
    }

    /// Adds a rule (builder style).
    pub fn with(mut self, rule: ProxyRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Every host named by a rule or by `allow_hosts`, deduplicated, in first-seen order.
    pub fn hosts(&self) -> Vec<&str> {
        let mut hosts: Vec<&str> = Vec::new();
        let named = self.rules.iter().map(ProxyRule::host);
        for host in named.chain(self.allow_hosts.iter().map(String::as_str)) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }
}

/// One thing the proxy does to requests (or responses) for a host.
///
/// `host` is an exact host name (`api.github.com`), a `host:port`, or `*.suffix`, which matches
/// subdomains but never the apex. Lookup prefers `host:port`, then the exact host, then the most
/// specific wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProxyRule {
    /// Put the real credential in a request header. Upserted by `(host, grant, header)`, so a
    /// refresh replaces it in place while different grants on one host coexist. When the client
    /// already sent that header (a placeholder), the real value replaces it; otherwise it is added.
    Credential {
        /// Host pattern.
        host: String,
        /// Header name (`Authorization`, `x-api-key`, `PRIVATE-TOKEN`).
        header: String,
        /// The full header value, prefix included (`Bearer ghp_...`).
        value: Secret,
        /// The grant this credential belongs to; shown in request logs instead of the value.
        grant: String,
    },
    /// Add a non-secret header, comma-joined onto a value the client already sent.
    ExtraHeader {
        /// Host pattern.
        host: String,
        /// Header name.
        name: String,
        /// Header value.
        value: String,
    },
    /// Strip a header the client sent (never one injected for the same request).
    RemoveHeader {
        /// Host pattern.
        host: String,
        /// Header name.
        name: String,
    },
    /// Replace `placeholder` with the real token in the URL path, the `Authorization` header and
    /// small request bodies (for APIs that carry the token in the URL, like Telegram's `/bot<token>/`).
    TokenSubstitution {
        /// Host pattern.
        host: String,
        /// What the container sends.
        placeholder: String,
        /// What the upstream receives.
        real: Secret,
    },
    /// Rewrite responses from a host.
    ResponseTransform {
        /// Host pattern.
        host: String,
        /// Which transform.
        kind: TransformKind,
    },
    /// Answer in the upstream's place: when a request to `host` with `method` on a path matching
    /// one of `paths` gets `status` from the upstream, the client receives `answer` instead, with
    /// the header `X-Moat-Transformed: replace-response`. For endpoints a credential cannot use
    /// (an OAuth token without the scope a profile endpoint needs) where the client copes with an
    /// empty document but not with the error.
    ///
    /// Like `response_transform`, replacements run in registration order and the first that
    /// applies wins.
    ReplaceResponse {
        /// Host pattern.
        host: String,
        /// The request method (`GET`), or `*` for any.
        method: String,
        /// Path globs, matched against the path without its query: `*` within one segment, `**`
        /// across segments (`/api/oauth/*`, `/v1/**`). At least one.
        paths: Vec<String>,
        /// The upstream status this applies to (`403`).
        status: u16,
        /// What the client gets instead.
        answer: ResponseAnswer,
    },
}

/// A response the proxy sends in the upstream's place ([`ProxyRule::ReplaceResponse`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "A response the proxy sends in the upstream's place (a `replace_response` rule)."
)]
pub struct ResponseAnswer {
    /// Its status (200–599).
    pub status: u16,
    /// Its `Content-Type` (`application/json`).
    pub content_type: String,
    /// Its body, as text (at most 64 KiB).
    #[serde(default)]
    pub body: String,
}

impl ProxyRule {
    /// The host pattern the rule applies to.
    pub fn host(&self) -> &str {
        match self {
            ProxyRule::Credential { host, .. }
            | ProxyRule::ExtraHeader { host, .. }
            | ProxyRule::RemoveHeader { host, .. }
            | ProxyRule::TokenSubstitution { host, .. }
            | ProxyRule::ResponseTransform { host, .. }
            | ProxyRule::ReplaceResponse { host, .. } => host,
        }
    }
}

/// The response transforms the proxy knows. A closed set on purpose: a provider names one, it
/// never ships code. (A response replaced by a fixed answer is [`ProxyRule::ReplaceResponse`],
/// whose data the provider sends.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    description = "The response transforms the proxy knows, by name. A closed set on purpose: a provider names one, it never ships code."
)]
#[serde(rename_all = "kebab-case")]
pub enum TransformKind {
    /// Text and JSON bodies up to 512 KiB have every occurrence of the real token replaced by the
    /// placeholder, so an API that echoes the token back cannot hand it to the container.
    ResponseScrub,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_with_a_type_tag() {
        let rules = ProxyRules::new().with(ProxyRule::ResponseTransform {
            host: "api.example.com".into(),
            kind: TransformKind::ResponseScrub,
        });
        let json = serde_json::to_value(&rules).unwrap();
        assert_eq!(json["rules"][0]["type"], "response_transform");
        assert_eq!(json["rules"][0]["kind"], "response-scrub");
        let back: ProxyRules = serde_json::from_value(json).unwrap();
        assert_eq!(back, rules);
    }

    #[test]
    fn a_replacement_is_data() {
        let json = serde_json::json!({ "rules": [{
            "type": "replace_response",
            "host": "api.example.com",
            "method": "GET",
            "paths": ["/api/oauth/profile"],
            "status": 403,
            "answer": { "status": 200, "content_type": "application/json", "body": "{}" }
        }]});
        let rules: ProxyRules = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(rules.hosts(), vec!["api.example.com"]);
        assert_eq!(serde_json::to_value(&rules).unwrap(), json);
    }

    #[test]
    fn hosts_are_deduplicated_in_order() {
        let mut rules = ProxyRules::new()
            .with(ProxyRule::RemoveHeader {
                host: "b".into(),
                name: "x".into(),
            })
            .with(ProxyRule::RemoveHeader {
                host: "a".into(),
                name: "y".into(),
            })
            .with(ProxyRule::RemoveHeader {
                host: "b".into(),
                name: "z".into(),
            });
        rules.allow_hosts.push("*.c".into());
        assert_eq!(rules.hosts(), vec!["b", "a", "*.c"]);
    }
}
