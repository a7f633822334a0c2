//! The provider file format: what a YAML provider declares, read and checked in one go.
//!
//! [`parse`] is a plain `fn(&str, &Path) -> Result<ProviderFile, FileError>` (no I/O, no
//! environment), so the loader, `moat provider check` and a fuzz target all call the same thing.
//! Every value is checked while it is read (a newtype per kind of value, `try_from = "String"`),
//! so an error carries the file, line, column and key of the offending value and says what was
//! expected. The few rules that tie two fields together are checked afterwards and name both.
//! The JSON Schema in `schema/provider-file.schema.json` is generated from these types.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::config::yaml::{self, YamlError};

/// Why a provider file was refused: where, which key, and what was expected.
pub type FileError = YamlError;

/// What `${token}` in `validate.url` stands for.
pub const TOKEN_VARIABLE: &str = "${token}";

/// One provider, as declared in a YAML file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "moat provider file",
    description = "A provider declared in YAML: which hosts get the credential, in which header \
                   (or substituted into the URL), where the token comes from at grant time, and \
                   how it is checked. One provider per file, in $MOAT_HOME/providers/*.yaml."
)]
pub struct ProviderFile {
    /// The provider's name: what `moat grant <name>` and `--grant <name>` take, and the name the
    /// credential is stored under. Lowercase letters, digits and `-`, starting with a letter.
    pub name: Name,
    /// One line for `moat grant providers` (`Acme API token`).
    pub description: Description,
    /// Other names that resolve to this provider (`ac` for `acme`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Name>,
    /// The hosts the credential is used on: exact names (`api.acme.com`) or `*.suffix`
    /// (`*.acme.com`: every subdomain, never `acme.com` itself). At least one. Under a strict
    /// network policy these are also the hosts the grant lets the container reach.
    #[schemars(length(min = 1))]
    pub hosts: Vec<Host>,
    /// Header mode: the header that carries the credential. Without `inject`, the provider is in
    /// substitution mode: the container gets a placeholder in `container_env` and the proxy
    /// replaces it with the token in URLs, the `Authorization` header and small request bodies,
    /// and replaces the token with the placeholder in responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inject: Option<Inject>,
    /// Environment variables read at grant time, in order; the first that is set and not empty
    /// is the token (then nothing is asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_env: Vec<EnvName>,
    /// The variable the container gets, holding a placeholder (never the token). Required
    /// without `inject`: it is how the container learns the placeholder to put in its URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_env: Option<EnvName>,
    /// How `moat grant` checks a token before storing it. Without it, any non-empty token is
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<Validate>,
    /// Text shown before the hidden token prompt (where to create a token, which scopes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// Header mode: `header: <prefix><token>` on every request to the provider's hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// The header (`Authorization`, `X-Api-Key`, `PRIVATE-TOKEN`).
    pub header: HeaderName,
    /// Put before the token (`Bearer ` with its space, `Token `). Empty by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
}

/// How a token is checked at grant time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validate {
    /// An `https://` URL. It may hold `${token}` (Telegram's `/bot${token}/getMe`): then the
    /// token is put there and no header is sent unless `header` says so.
    pub url: ValidateUrl,
    /// The request method. `GET` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The header that carries the token. By default `inject.header` (unless the URL holds
    /// `${token}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderName>,
    /// Put before the token in that header. By default `inject.prefix` when `header` is not
    /// given, else nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Prefix>,
    /// The status that means "valid". By default any 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A request method for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD`.
    Head,
    /// `POST` (with an empty body).
    Post,
}

impl Method {
    /// The method as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        }
    }
}

/// Reads `text`, the content of `file` (named in errors), as one provider.
pub fn parse(text: &str, file: &Path) -> Result<ProviderFile, FileError> {
    let parsed: ProviderFile = yaml::from_str(text, file)?;
    parsed.check().map_err(|(key, message)| {
        let line = top_level_line(text, key);
        YamlError {
            file: file.to_path_buf(),
            line,
            column: u64::from(line > 0),
            key: key.to_string(),
            message,
        }
    })?;
    Ok(parsed)
}

impl ProviderFile {
    /// The rules that tie fields together (each field was checked alone while reading).
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.hosts.is_empty() {
            return Err((
                "hosts",
                "expected at least one host (`api.example.com` or `*.example.com`)".into(),
            ));
        }
        if let Some(alias) = self.aliases.iter().find(|a| a.0 == self.name.0) {
            return Err((
                "aliases",
                format!("alias {:?} is the provider's own name", alias.0),
            ));
        }
        if self.inject.is_none() && self.container_env.is_none() {
            return Err((
                "container_env",
                "expected `container_env` when there is no `inject`: without a header to set, \
                 the proxy substitutes a placeholder in the container's requests, and the \
                 container learns that placeholder from this variable"
                    .into(),
            ));
        }
        if let Some(validate) = &self.validate
            && !validate.url.has_token()
            && validate.header.is_none()
            && self.inject.is_none()
        {
            return Err((
                "validate",
                "expected `${token}` in `validate.url` or a `validate.header`: there is no \
                 `inject.header` to send the token in"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The 1-based line where top-level `key:` starts in `text`, or 0.
fn top_level_line(text: &str, key: &str) -> u64 {
    let at = text.lines().position(|line| {
        line.strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with(':'))
    });
    at.map_or(0, |i| i as u64 + 1)
}

/// Implements the string newtype plumbing: `try_from = "String"`, `Display`, `as_str`, and a
/// JSON Schema of a string with a pattern and description.
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

string_newtype!(
    /// A provider or alias name.
    Name,
    json_schema!({
        "type": "string",
        "pattern": "^[a-z][a-z0-9-]{0,63}$",
        "description": "Lowercase letters, digits and '-', starting with a letter, at most 64 characters."
    })
);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        moat_plugin_sdk::validate_name(&value).map(|()| Name(value))
    }
}

string_newtype!(
    /// A one-line description.
    Description,
    json_schema!({
        "type": "string",
        "minLength": 1,
        "description": "One line, not empty."
    })
);

impl TryFrom<String> for Description {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim().to_string();
        if value.is_empty() || value.contains('\n') || value.chars().any(char::is_control) {
            return Err("expected one line of text, not empty".into());
        }
        Ok(Description(value))
    }
}

string_newtype!(
    /// A host pattern: an exact host name or `*.suffix`. Stored lowercase.
    Host,
    json_schema!({
        "type": "string",
        "pattern": "^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$",
        "description": "An exact host name (api.example.com) or *.suffix (*.example.com: every subdomain, not the apex). No scheme, port, path or user."
    })
);

impl TryFrom<String> for Host {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let lower = value.to_ascii_lowercase();
        let (wildcard, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let expected = "expected a host name (`api.example.com`) or `*.suffix` \
                        (`*.example.com`), without scheme, port, path or user";
        if value.contains("://") {
            return Err(format!("{value:?}: {expected}"));
        }
        let label_ok = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(format!("{value:?}: {expected}"));
        }
        if wildcard && !name.contains('.') {
            return Err(format!(
                "{value:?}: a wildcard must keep at least two labels (`*.example.com`, not `*.com`)"
            ));
        }
        Ok(Host(lower))
    }
}

impl Host {
    /// Whether it is a `*.suffix` pattern.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }
}

string_newtype!(
    /// An HTTP header name.
    HeaderName,
    json_schema!({
        "type": "string",
        "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        "description": "An HTTP header name (Authorization, X-Api-Key)."
    })
);

impl TryFrom<String> for HeaderName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if value.is_empty() || !value.chars().all(tchar) {
            return Err(format!(
                "{value:?}: expected an HTTP header name (letters, digits and `-`, like `X-Api-Key`)"
            ));
        }
        let lower = value.to_ascii_lowercase();
        if ["host", "content-length", "transfer-encoding", "connection"].contains(&lower.as_str())
            || lower.starts_with("proxy-")
        {
            return Err(format!(
                "{value:?}: the proxy owns this header; expected the header the API reads its \
                 credential from"
            ));
        }
        Ok(HeaderName(value))
    }
}

string_newtype!(
    /// What goes before the token in a header value.
    Prefix,
    json_schema!({
        "type": "string",
        "pattern": "^[\\x20-\\x7e]*$",
        "description": "Visible ASCII and spaces, put before the token: 'Bearer ' (with its space)."
    })
);

impl TryFrom<String> for Prefix {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
            Ok(Prefix(value))
        } else {
            Err(format!(
                "{value:?}: expected visible ASCII and spaces (a header value), like `Bearer `"
            ))
        }
    }
}

string_newtype!(
    /// An environment variable name.
    EnvName,
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
        "description": "An environment variable name (ACME_TOKEN)."
    })
);

impl TryFrom<String> for EnvName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let ok_start = value
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if ok_start && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            Ok(EnvName(value))
        } else {
            Err(format!(
                "{value:?}: expected an environment variable name (letters, digits and `_`, \
                 not starting with a digit)"
            ))
        }
    }
}

string_newtype!(
    /// The validation URL: `https://`, with at most `${token}` as a variable.
    ValidateUrl,
    json_schema!({
        "type": "string",
        "pattern": "^https://[^\\s/?#@]+(/[^\\s]*)?$",
        "description": "An https:// URL; it may hold ${token} in its path or query."
    })
);

impl TryFrom<String> for ValidateUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let Some(rest) = value.strip_prefix("https://") else {
            return Err(format!("{value:?}: expected an `https://` URL"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty()
            || authority.contains('@')
            || authority.contains('$')
            || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "{value:?}: expected `https://host/path`, without user, spaces or a variable \
                 in the host"
            ));
        }
        let without_token = value.replace(TOKEN_VARIABLE, "");
        if without_token.contains("${") {
            return Err(format!(
                "{value:?}: `${{token}}` is the only variable a URL may hold"
            ));
        }
        Ok(ValidateUrl(value))
    }
}

impl ValidateUrl {
    /// Whether the URL carries the token (`${token}`).
    pub fn has_token(&self) -> bool {
        self.0.contains(TOKEN_VARIABLE)
    }

    /// The URL with `${token}` replaced by `token` (percent-encoded where a URL needs it) and its
    /// scheme and host replaced by `base` when given (the `MOAT_<NAME>_API_URL` override: its
    /// path, if any, goes before the URL's path).
    pub fn resolve(&self, base: Option<&str>, token: &str) -> String {
        self.with_base(base)
            .replace(TOKEN_VARIABLE, &encode_token(token))
    }

    /// The URL with its scheme and host replaced by `base` when given, `${token}` left as is:
    /// what messages show.
    pub fn with_base(&self, base: Option<&str>) -> String {
        match base {
            Some(base) => {
                let rest = self.0.strip_prefix("https://").unwrap_or(&self.0);
                let path_at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                format!("{}{}", base.trim_end_matches('/'), &rest[path_at..])
            }
            None => self.0.clone(),
        }
    }
}

/// `token` made safe for a URL path or query: unreserved characters and `:` stay, the rest is
/// percent-encoded.
fn encode_token(token: &str) -> String {
    let mut out = String::with_capacity(token.len());
    for byte in token.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An HTTP status code, 100 to 599.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct Status(u16);

impl Status {
    /// The code.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for Status {
    type Error = String;
    fn try_from(value: u16) -> Result<Self, String> {
        if (100..=599).contains(&value) {
            Ok(Status(value))
        } else {
            Err(format!(
                "{value}: expected an HTTP status code from 100 to 599"
            ))
        }
    }
}

impl From<Status> for u16 {
    fn from(value: Status) -> u16 {
        value.0
    }
}

impl JsonSchema for Status {
    fn schema_name() -> Cow<'static, str> {
        "Status".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "minimum": 100,
            "maximum": 599,
            "description": "An HTTP status code."
        })
    }
}

/// The JSON Schema of a provider file (JSON Schema 2020-12), as committed in
/// `schema/provider-file.schema.json`.
pub fn json_schema() -> Schema {
    schemars::schema_for!(ProviderFile)
}

#[cfg(test)]
mod tests;
