//! Property tests (proptest) of the invariants the rest of moat leans on:
//!
//! - a secret handed to a [`SecretSet`] never survives redaction in any form the set documents
//!   (raw, after a scheme, inside `Basic`, percent-encoded wholly or partly, base64 standard and
//!   URL-safe at each alignment inside a larger document, any ASCII case), whatever text surrounds
//!   it and however the text is cut into the pieces of a [`SecretStream`];
//! - text without a secret passes unchanged;
//! - a [`ProxyRules`] survives a JSON round trip, every rule kind included.
//!
//! `PROPTEST_CASES` raises the number of cases (RELIABILITY.md's long run).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use moat_plugin_sdk::{ProxyRule, ProxyRules, ResponseAnswer, Secret, SecretSet, TransformKind};
use proptest::prelude::*;

/// A token as providers issue them: a prefix and a random body (at least `SecretSet::MIN_LEN`).
fn token() -> impl Strategy<Value = String> {
    "(ghp_|glpat-|sk-|xoxb-|)[A-Za-z0-9_]{8,40}"
}

/// How the credential is handed to the set: as the bare token, as a header value with a scheme,
/// or as `Basic base64(user:token)`.
#[derive(Debug, Clone)]
enum Handed {
    Bare,
    Scheme(String),
    Basic(String),
}

fn handed() -> impl Strategy<Value = Handed> {
    prop_oneof![
        Just(Handed::Bare),
        "(Bearer|token|Token|bearer)".prop_map(Handed::Scheme),
        "[a-z0-9-]{0,12}".prop_map(Handed::Basic),
    ]
}

impl Handed {
    fn value(&self, token: &str) -> String {
        match self {
            Handed::Bare => token.to_owned(),
            Handed::Scheme(scheme) => format!("{scheme} {token}"),
            Handed::Basic(user) => format!("Basic {}", STANDARD.encode(format!("{user}:{token}"))),
        }
    }
}

/// A form the token travels in, and the part of the text that must not survive.
#[derive(Debug, Clone)]
enum Form {
    /// As handed (`Bearer tok`, `Basic …`) or raw.
    Value,
    Raw,
    /// Characters flipped to upper or lower case (bit i of the mask: character i).
    Case(u64),
    /// Some characters percent-encoded (bit i: character i), hex in either case.
    Percent(u64, bool),
    /// Case changed and partly percent-encoded.
    CasePercent(u64, u64),
    /// Inside a larger base64 document: `lead` bytes before the token (its alignment), standard
    /// or URL-safe alphabet.
    Base64 {
        lead: Vec<u8>,
        tail: Vec<u8>,
        url_safe: bool,
    },
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        Just(Form::Value),
        Just(Form::Raw),
        any::<u64>().prop_map(Form::Case),
        (any::<u64>(), any::<bool>()).prop_map(|(m, upper)| Form::Percent(m, upper)),
        (any::<u64>(), any::<u64>()).prop_map(|(c, p)| Form::CasePercent(c, p)),
        (
            proptest::collection::vec(any::<u8>(), 0..5),
            proptest::collection::vec(any::<u8>(), 0..5),
            any::<bool>()
        )
            .prop_map(|(lead, tail, url_safe)| Form::Base64 {
                lead,
                tail,
                url_safe
            }),
    ]
}

fn flip_case(text: &str, mask: u64) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 64) & 1 == 1 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

fn percent(text: &str, mask: u64, upper: bool) -> String {
    text.bytes()
        .enumerate()
        .map(|(i, b)| {
            if mask >> (i % 64) & 1 == 1 {
                if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            } else {
                (b as char).to_string()
            }
        })
        .collect()
}

/// `text` with its `%XX` escapes decoded (bytes that are not UTF-8 are kept lossily).
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The characters of `encoded` (the base64 of `lead ‖ secret ‖ tail`) that depend on the
/// secret's bytes alone: the part that must not survive.
fn base64_core(encoded: &str, lead: usize, len: usize) -> String {
    let start = (8 * lead).div_ceil(6);
    let end = 8 * (lead + len) / 6;
    encoded[start..end].to_owned()
}

/// The text the token is put in (`left ‖ form ‖ right`) and what must not survive it: the form's
/// secret-only part, compared as `check` says.
struct Case {
    text: String,
    /// Must not occur in the output, ignoring ASCII case and after decoding escapes.
    plain: Option<String>,
    /// Must not occur in the output as written (base64 is case-sensitive).
    exact: Option<String>,
}

fn case(token: &str, handed: &Handed, form: &Form, left: &str, right: &str) -> Case {
    let value = handed.value(token);
    let (middle, plain, exact) = match form {
        Form::Value => (value.clone(), Some(token.to_owned()), None),
        Form::Raw => (token.to_owned(), Some(token.to_owned()), None),
        Form::Case(mask) => (flip_case(token, *mask), Some(token.to_owned()), None),
        Form::Percent(mask, upper) => (percent(token, *mask, *upper), Some(token.to_owned()), None),
        Form::CasePercent(case, mask) => (
            percent(&flip_case(token, *case), *mask, true),
            Some(token.to_owned()),
            None,
        ),
        Form::Base64 {
            lead,
            tail,
            url_safe,
        } => {
            let mut doc = lead.clone();
            doc.extend_from_slice(token.as_bytes());
            doc.extend_from_slice(tail);
            let encoded = if *url_safe {
                URL_SAFE_NO_PAD.encode(&doc)
            } else {
                STANDARD.encode(&doc)
            };
            let core = base64_core(&encoded, lead.len(), token.len());
            (encoded, None, Some(core))
        }
    };
    Case {
        text: format!("{left}{middle}{right}"),
        plain,
        exact,
    }
}

fn assert_hidden(out: &str, case: &Case) -> Result<(), TestCaseError> {
    if let Some(plain) = &case.plain {
        let seen = unescape(out).to_ascii_lowercase();
        prop_assert!(
            !seen.contains(&plain.to_ascii_lowercase()),
            "the secret survived in {:?} (from {:?})",
            out,
            case.text
        );
    }
    if let Some(exact) = &case.exact {
        prop_assert!(
            !out.contains(exact.as_str()),
            "the base64 of the secret survived in {out:?}"
        );
    }
    Ok(())
}

/// Cuts `text` at the given fractions (on character boundaries) into pieces.
fn pieces(text: &str, cuts: &[prop::sample::Index]) -> Vec<String> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
    at.push(0);
    at.push(text.len());
    for cut in &mut at {
        while !text.is_char_boundary(*cut) {
            *cut -= 1;
        }
    }
    at.sort_unstable();
    at.windows(2).map(|w| text[w[0]..w[1]].to_owned()).collect()
}

fn config() -> ProptestConfig {
    // `PROPTEST_CASES` overrides this default (the long run of RELIABILITY.md).
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2048);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Whole text: the secret is gone in every form, whatever surrounds it.
    #[test]
    fn a_secret_never_survives_redaction(
        token in token(), handed in handed(), form in form(),
        left in any::<String>(), right in any::<String>(),
    ) {
        let set: SecretSet = [Secret::new(handed.value(&token))].into_iter().collect();
        let case = case(&token, &handed, &form, &left, &right);
        assert_hidden(&set.redact(&case.text), &case)?;
        prop_assert!(set.occurs_in(&case.text));
    }

    /// The same text cut into pieces anywhere (a line limit, body chunks): the secret is gone
    /// from the stream's output too, and the stream loses nothing but the secret.
    #[test]
    fn a_secret_cut_into_pieces_never_survives_a_stream(
        token in token(), handed in handed(), form in form(),
        left in "[ -~é\\n]{0,40}", right in "[ -~é\\n]{0,40}",
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        other in token(),
    ) {
        let set: SecretSet = [Secret::new(handed.value(&token)), Secret::new(other)].into_iter().collect();
        let case = case(&token, &handed, &form, &left, &right);
        let mut stream = set.stream();
        let mut out = String::new();
        for piece in pieces(&case.text, &cuts) {
            out.push_str(&stream.push(&piece));
        }
        out.push_str(&stream.finish());
        assert_hidden(&out, &case)?;
        prop_assert!(out.contains(SecretSet::MASK));
    }

    /// A stream dropped without `finish` (a cut at a limit) passes on nothing of a secret whose
    /// start it has seen: what it gave out is a prefix of the text before the secret.
    #[test]
    fn a_stream_cut_short_leaves_no_prefix(
        token in token(), left in "[ !#-/:-@]{0,80}", keep in any::<prop::sample::Index>(),
    ) {
        let set: SecretSet = [Secret::new(token.clone())].into_iter().collect();
        let prefix = &token[..1 + keep.index(token.len())];
        let out = set.stream().push(&format!("{left}{prefix}"));
        prop_assert!(left.starts_with(&out), "{:?} passed on from {:?}", out, left);
    }

    /// Text holding no secret (no six-byte run in common with it) is returned as it is.
    #[test]
    fn text_without_the_secret_is_untouched(token in "[g-z]{8,32}", text in "[a-f0-9 {}\":,\\n]{0,200}") {
        let set: SecretSet = [Secret::new(token)].into_iter().collect();
        let redacted = set.redact(&text).into_owned();
        prop_assert_eq!(redacted, text.clone());
        let mut stream = set.stream();
        let mut out = stream.push(&text);
        out.push_str(&stream.finish());
        prop_assert_eq!(out, text);
    }

}

proptest! {
    // Each case is up to eight rules of arbitrary Unicode: fewer cases cover as much.
    #![proptest_config(ProptestConfig { cases: config().cases / 4, ..config() })]

    /// A rule set survives JSON, as a string and as a value, every rule kind included.
    #[test]
    fn rules_survive_a_json_round_trip(rules in proxy_rules()) {
        let text = serde_json::to_string(&rules).unwrap();
        let back: ProxyRules = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &rules);
        let value = serde_json::to_value(&rules).unwrap();
        let back: ProxyRules = serde_json::from_value(value).unwrap();
        prop_assert_eq!(&back, &rules);
        prop_assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}

fn proxy_rule() -> impl Strategy<Value = ProxyRule> {
    let host = "(\\*\\.)?[a-z0-9-]{1,10}(\\.[a-z]{2,5}){0,2}(:[0-9]{1,5})?";
    prop_oneof![
        (host, "[A-Za-z-]{1,20}", any::<String>(), any::<String>()).prop_map(
            |(host, header, value, grant)| ProxyRule::Credential {
                host,
                header,
                value: Secret::new(value),
                grant,
            }
        ),
        (host, any::<String>(), any::<String>())
            .prop_map(|(host, name, value)| ProxyRule::ExtraHeader { host, name, value }),
        (host, any::<String>()).prop_map(|(host, name)| ProxyRule::RemoveHeader { host, name }),
        (host, any::<String>(), any::<String>()).prop_map(|(host, placeholder, real)| {
            ProxyRule::TokenSubstitution {
                host,
                placeholder,
                real: Secret::new(real),
            }
        }),
        host.prop_map(|host| ProxyRule::ResponseTransform {
            host,
            kind: TransformKind::ResponseScrub
        }),
        (
            host,
            "[A-Z]{1,7}|\\*",
            proptest::collection::vec("/[ -~]{0,20}", 1..4),
            any::<u16>(),
            any::<u16>(),
            any::<String>(),
            any::<String>()
        )
            .prop_map(
                |(host, method, paths, status, answer_status, content_type, body)| {
                    ProxyRule::ReplaceResponse {
                        host,
                        method,
                        paths,
                        status,
                        answer: ResponseAnswer {
                            status: answer_status,
                            content_type,
                            body,
                        },
                    }
                }
            ),
    ]
}

fn proxy_rules() -> impl Strategy<Value = ProxyRules> {
    (
        proptest::collection::vec(proxy_rule(), 0..8),
        proptest::collection::vec("(\\*\\.)?[a-z]{1,10}\\.[a-z]{2,4}", 0..3),
    )
        .prop_map(|(rules, allow_hosts)| ProxyRules { rules, allow_hosts })
}
