//! [`RunId`]: `run_` followed by 12 lowercase hex digits (6 bytes from the system CSPRNG). It
//! names the run's directory and its container.

use std::fmt;
use std::str::FromStr;

use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every id starts with.
pub const PREFIX: &str = "run_";

/// A run id, always valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A fresh random id.
    pub fn generate() -> RunId {
        let mut bytes = [0u8; 6];
        SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random number generator failed");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        RunId(format!("{PREFIX}{hex}"))
    }

    /// `s` if it is a valid id (`run_` + 12 lowercase hex digits).
    pub fn parse(s: &str) -> Option<RunId> {
        let hex = s.strip_prefix(PREFIX)?;
        let valid = hex.len() == 12
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| RunId(s.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RunId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunId::parse(s).ok_or_else(|| {
            format!("invalid run id {s:?}: want {PREFIX} followed by 12 lowercase hex digits")
        })
    }
}

impl Serialize for RunId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RunId {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_differ() {
        let a = RunId::generate();
        let b = RunId::generate();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.as_str().len(), 16, "{id}");
            assert_eq!(RunId::parse(id.as_str()).as_ref(), Some(id));
        }
    }

    #[test]
    fn parse_accepts_only_the_exact_form() {
        assert!(RunId::parse("run_0123456789ab").is_some());
        for bad in [
            "",
            "run_",
            "run_0123456789a",
            "run_0123456789abc",
            "run_0123456789AB",
            "run_0123456789ag",
            "RUN_0123456789ab",
            "xrun_0123456789ab",
            "my-run",
        ] {
            assert!(RunId::parse(bad).is_none(), "{bad}");
            assert!(bad.parse::<RunId>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&RunId::parse("run_0123456789ab").unwrap()).unwrap();
        assert_eq!(json, "\"run_0123456789ab\"");
        assert!(serde_json::from_str::<RunId>("\"run_x\"").is_err());
    }
}
