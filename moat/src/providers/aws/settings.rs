//! The grant's settings: the role, its region, session length, external id and host profile, as
//! checked at grant time and stored in the credential (token = role ARN, the rest metadata).

use std::time::Duration;

use moat_plugin_sdk::{
    Credential, ErrorKind, META_TOKEN_SOURCE, ProviderError, ProviderResult, Secret,
};

use super::NAME;

pub(super) const META_REGION: &str = "region";
pub(super) const META_DURATION: &str = "session_duration";
pub(super) const META_EXTERNAL_ID: &str = "external_id";
pub(super) const META_PROFILE: &str = "profile";
/// The role ARN again, in the clear: the token is masked by listings, and the role is no secret.
pub(super) const META_ROLE_ARN: &str = "role_arn";

pub(super) const DEFAULT_REGION: &str = "us-east-1";
pub(super) const DEFAULT_DURATION: Duration = Duration::from_secs(15 * 60);
/// STS's bounds for `DurationSeconds`.
const MIN_DURATION: Duration = Duration::from_secs(15 * 60);
const MAX_DURATION: Duration = Duration::from_secs(12 * 60 * 60);

/// What an AssumeRole needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RoleSettings {
    pub role_arn: String,
    pub region: String,
    pub duration: Duration,
    pub external_id: Option<String>,
    pub profile: Option<String>,
}

fn invalid(message: String, hint: &str) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, message).with_hint(hint)
}

const ARN_HINT: &str = "Pass the role's ARN: moat grant aws --role arn:aws:iam::ACCOUNT:role/ROLE";

/// Checks `arn:{aws|aws-cn|aws-us-gov}:iam::<12 digits>:role/<name>` (a path before the name is
/// allowed: `role/team/agent`).
pub(crate) fn validate_role_arn(arn: &str) -> ProviderResult<()> {
    let bad = || invalid(format!("not an IAM role ARN: {arn:?}"), ARN_HINT);
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return Err(bad());
    };
    let name = resource.strip_prefix("role/").unwrap_or_default();
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
    let ok = prefix == "arn"
        && ["aws", "aws-cn", "aws-us-gov"].contains(&partition)
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name_ok;
    if ok { Ok(()) } else { Err(bad()) }
}

/// The role's name (the last segment of the ARN).
pub(crate) fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Parses a session duration: Go's syntax limited to hours, minutes and seconds (`15m`, `1h`,
/// `1h30m`, `900s`), between 15 minutes and 12 hours (STS's bounds). Anything else is an error,
/// never silently the default.
pub(crate) fn parse_duration(text: &str) -> ProviderResult<Duration> {
    let hint = "Give a duration such as 15m, 1h or 1h30m, between 15m and 12h: \
                moat grant aws --role ARN --session-duration 1h";
    let bad = || invalid(format!("invalid session duration {text:?}"), hint);
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut last_unit = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, scale) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(bad()),
        };
        // Units once each, largest first.
        if number.is_empty() || number.len() > 6 || rank <= last_unit {
            return Err(bad());
        }
        last_unit = rank;
        total += number.parse::<u64>().map_err(|_| bad())? * scale;
        number.clear();
    }
    if !number.is_empty() {
        return Err(bad());
    }
    let duration = Duration::from_secs(total);
    if !(MIN_DURATION..=MAX_DURATION).contains(&duration) {
        return Err(invalid(
            format!("session duration {text} is outside STS's 15m to 12h"),
            hint,
        ));
    }
    Ok(duration)
}

/// `1h30m`, `15m`, `1h`, `15m30s`: what [`parse_duration`] reads back.
pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut text = String::new();
    if h > 0 {
        text.push_str(&format!("{h}h"));
    }
    if m > 0 {
        text.push_str(&format!("{m}m"));
    }
    if s > 0 || text.is_empty() {
        text.push_str(&format!("{s}s"));
    }
    text
}

/// A region name: lowercase letters, digits and `-` (`eu-west-1`).
pub(crate) fn validate_region(region: &str) -> ProviderResult<()> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region.starts_with(|c: char| c.is_ascii_lowercase())
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("invalid AWS region {region:?}"),
            "Give a region name such as us-east-1: moat grant aws --role ARN --region us-east-1",
        ))
    }
}

/// An external id as STS takes it: 2 to 1224 characters of `[A-Za-z0-9+=,.@:/_-]`.
pub(crate) fn validate_external_id(id: &str) -> ProviderResult<()> {
    let ok = (2..=1224).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/_-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "invalid external id (2 to 1224 letters, digits or +=,.@:/_-)".into(),
            "Pass the external id the role's trust policy requires: --external-id ID",
        ))
    }
}

impl RoleSettings {
    /// The stored credential: the role ARN as its token (not a secret), the rest as metadata.
    pub(crate) fn to_credential(&self, source: &str) -> Credential {
        let mut credential = Credential::new(NAME, Secret::new(self.role_arn.clone()))
            .with_metadata(META_ROLE_ARN, self.role_arn.clone())
            .with_metadata(META_REGION, self.region.clone())
            .with_metadata(META_DURATION, format_duration(self.duration))
            .with_metadata(META_TOKEN_SOURCE, source);
        if let Some(id) = &self.external_id {
            credential = credential.with_metadata(META_EXTERNAL_ID, id.clone());
        }
        if let Some(profile) = &self.profile {
            credential = credential.with_metadata(META_PROFILE, profile.clone());
        }
        credential
    }

    /// The settings of a stored credential, checked again (the store may have been edited).
    pub(crate) fn from_credential(credential: &Credential) -> ProviderResult<RoleSettings> {
        let role_arn = credential.token.expose().trim().to_string();
        validate_role_arn(&role_arn)?;
        let meta = |key: &str| {
            credential
                .metadata
                .get(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let region = meta(META_REGION).unwrap_or_else(|| DEFAULT_REGION.into());
        validate_region(&region)?;
        let duration = match meta(META_DURATION) {
            Some(text) => parse_duration(&text)?,
            None => DEFAULT_DURATION,
        };
        let external_id = meta(META_EXTERNAL_ID);
        if let Some(id) = &external_id {
            validate_external_id(id)?;
        }
        Ok(RoleSettings {
            role_arn,
            region,
            duration,
            external_id,
            profile: meta(META_PROFILE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_of_the_three_partitions_with_paths() {
        for good in [
            "arn:aws:iam::123456789012:role/agent",
            "arn:aws-cn:iam::123456789012:role/team/agent",
            "arn:aws-us-gov:iam::000000000000:role/a+b=c,d.e@f_g-h",
        ] {
            assert!(validate_role_arn(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "agent",
            "arn:aws:iam::123456789012:user/agent",
            "arn:aws:iam::12345678901:role/agent",
            "arn:aws:iam::1234567890123:role/agent",
            "arn:aws:iam::12345678901a:role/agent",
            "arn:aws:iam:us-east-1:123456789012:role/agent",
            "arn:aws:sts::123456789012:role/agent",
            "arn:aws-eu:iam::123456789012:role/agent",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "arn:aws:iam::123456789012:role//a",
            "arn:aws:iam::123456789012",
        ] {
            let err = validate_role_arn(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad}");
            assert!(err.hint.unwrap().contains("--role"), "{bad}");
        }
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/team/agent"),
            "agent"
        );
    }

    #[test]
    fn durations_are_parsed_strictly() {
        let secs = |text: &str| parse_duration(text).map(|d| d.as_secs());
        assert_eq!(secs("15m").unwrap(), 900);
        assert_eq!(secs("900s").unwrap(), 900);
        assert_eq!(secs("1h").unwrap(), 3600);
        assert_eq!(secs("1h30m").unwrap(), 5400);
        assert_eq!(secs("12h").unwrap(), 43200);
        assert_eq!(secs(" 20m10s ").unwrap(), 1210);
        for bad in [
            "", "15", "m", "15x", "1.5h", "-15m", "15m1h", "1h1h", "14m", "899s", "12h1s", "1d",
            "15 m", "9999999h",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.hint.unwrap().contains("--session-duration"), "{bad:?}");
        }
    }

    #[test]
    fn durations_format_back_to_what_parses() {
        for secs in [900, 3600, 5400, 1210, 43200] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
        assert_eq!(format_duration(Duration::from_secs(900)), "15m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(1210)), "20m10s");
    }

    #[test]
    fn regions_and_external_ids() {
        assert!(validate_region("eu-west-1").is_ok());
        assert!(validate_region("us-gov-west-1").is_ok());
        for bad in ["", "EU-WEST-1", "eu west", "1eu", "eu_west_1"] {
            assert!(validate_region(bad).is_err(), "{bad:?}");
        }
        assert!(validate_external_id("ext-123:abc/def").is_ok());
        for bad in ["x", "has space", "a\nb"] {
            assert!(validate_external_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_survive_the_store() {
        let settings = RoleSettings {
            role_arn: "arn:aws:iam::123456789012:role/agent".into(),
            region: "eu-west-1".into(),
            duration: Duration::from_secs(3600),
            external_id: Some("ext-1".into()),
            profile: Some("work".into()),
        };
        let credential = settings.to_credential("flag");
        assert_eq!(credential.provider, "aws");
        assert_eq!(credential.token.expose(), settings.role_arn);
        assert_eq!(credential.metadata[META_DURATION], "1h");
        assert_eq!(credential.metadata[META_ROLE_ARN], settings.role_arn);
        assert_eq!(credential.metadata[META_TOKEN_SOURCE], "flag");
        assert_eq!(
            RoleSettings::from_credential(&credential).unwrap(),
            settings
        );

        let bare = Credential::new("aws", "arn:aws:iam::123456789012:role/agent");
        let read = RoleSettings::from_credential(&bare).unwrap();
        assert_eq!(read.region, DEFAULT_REGION);
        assert_eq!(read.duration, DEFAULT_DURATION);
        assert_eq!((read.external_id, read.profile), (None, None));

        let edited = bare.with_metadata(META_DURATION, "forever");
        assert!(RoleSettings::from_credential(&edited).is_err());
    }
}
