//! [`Secret`]: a string that never prints itself.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret value: a token, an API key, a password.
///
/// `Debug` prints `Secret([REDACTED])`, there is no `Display`, and the memory is zeroed on drop
/// (through [`secrecy`]). Reading the value takes an explicit [`Secret::expose`], so every place
/// that handles the real token is visible in a code review.
///
/// It *does* serialize as a plain JSON string: a credential has to reach the encrypted store and
/// travel between moat and a plugin. Serialize it only into those two places, never into a log.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(SecretString::from(value.into()))
    }

    /// The real value. Every call is a place where the secret leaves its box: keep it short-lived.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }

    /// The last `n` characters behind a fixed mask (`****************abcd`), for `moat grant show`.
    /// Secrets shorter than `2 * n` are fully masked so that a short value is never half-shown.
    pub fn masked(&self, n: usize) -> String {
        let value = self.expose();
        let chars: Vec<char> = value.chars().collect();
        let mask = "*".repeat(16);
        if chars.len() < 2 * n {
            return mask;
        }
        let tail: String = chars[chars.len() - n..].iter().collect();
        format!("{mask}{tail}")
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

impl JsonSchema for Secret {
    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A secret value (token, key). Never logged; shown masked."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("ghp_supersecret");
        assert_eq!(format!("{s:?}"), "Secret([REDACTED])");
        assert!(!format!("{:?}", vec![s]).contains("supersecret"));
    }

    #[test]
    fn masked_shows_only_the_tail() {
        assert_eq!(
            Secret::new("ghp_abcdefgh1234").masked(4),
            "****************1234"
        );
        assert_eq!(Secret::new("short").masked(4), "****************");
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let s = Secret::new("tok");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"tok\"");
        let back: Secret = serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(back, s);
    }
}
