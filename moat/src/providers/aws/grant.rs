//! `moat grant aws --role <arn> [--region R] [--session-duration D] [--external-id X]
//! [--aws-profile P]`: the settings are checked, then a real AssumeRole (session
//! `moat-grant-test`) proves the host's credentials may assume the role before anything is stored.

use moat_plugin_sdk::{GrantOption, GrantRequest, GrantStep, Prompt, ProviderResult};

use super::AwsProvider;
use super::settings::{
    DEFAULT_DURATION, DEFAULT_REGION, RoleSettings, format_duration, parse_duration, role_name,
    validate_external_id, validate_region, validate_role_arn,
};

pub(super) const ROLE: &str = "role";
const REGION: &str = "region";
const DURATION: &str = "session-duration";
const EXTERNAL_ID: &str = "external-id";
const PROFILE: &str = "aws-profile";
const PROFILE_ENV: &str = "AWS_PROFILE";
const GRANT_SESSION: &str = "moat-grant-test";

const ROLE_HELP: &str = "\
moat assumes this IAM role with the host's AWS credentials and hands the container short-lived
credentials for it. Next time, pass it directly:
  moat grant aws --role arn:aws:iam::ACCOUNT:role/ROLE";

/// The options `moat grant aws` takes.
pub(super) fn options() -> Vec<GrantOption> {
    vec![
        GrantOption::new(
            ROLE,
            "ARN",
            "IAM role to assume: arn:aws:iam::ACCOUNT:role/NAME (asked when absent)",
        ),
        GrantOption::new(
            REGION,
            "REGION",
            "AWS region for STS and the container (default us-east-1)",
        ),
        GrantOption::new(
            DURATION,
            "DURATION",
            "Length of each role session, 15m to 12h (default 15m)",
        ),
        GrantOption::new(
            EXTERNAL_ID,
            "ID",
            "External id the role's trust policy requires",
        ),
        GrantOption::new(
            PROFILE,
            "NAME",
            "Host AWS profile whose credentials assume the role (default $AWS_PROFILE)",
        ),
    ]
}

pub(super) async fn grant(
    provider: &AwsProvider,
    request: GrantRequest,
) -> ProviderResult<GrantStep> {
    // The options first: a typo fails before any question.
    let region = request
        .option(REGION)
        .unwrap_or(DEFAULT_REGION)
        .trim()
        .to_string();
    validate_region(&region)?;
    let duration = match request.option(DURATION) {
        Some(text) => parse_duration(text)?,
        None => DEFAULT_DURATION,
    };
    let external_id = request.option(EXTERNAL_ID).map(|id| id.trim().to_string());
    if let Some(id) = &external_id {
        validate_external_id(id)?;
    }
    let mut notes = Vec::new();
    let profile = match request.option(PROFILE) {
        Some(profile) => Some(profile.trim().to_string()),
        None => std::env::var(PROFILE_ENV)
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .inspect(|p| notes.push(format!("Using AWS profile from {PROFILE_ENV}: {p}"))),
    };

    let (role_arn, source) = match (request.option(ROLE), request.answer(ROLE)) {
        (Some(role), _) => (role.trim().to_string(), "flag"),
        (None, Some(answer)) => {
            let text = answer
                .as_secret()
                .map(|s| s.expose())
                .or_else(|| answer.as_text())
                .unwrap_or_default();
            (text.trim().to_string(), "prompt")
        }
        (None, None) => {
            return Ok(GrantStep::Ask {
                prompts: vec![Prompt::secret(ROLE, "IAM role ARN").with_help(ROLE_HELP)],
                notes,
            });
        }
    };
    validate_role_arn(&role_arn)?;

    let settings = RoleSettings {
        role_arn,
        region,
        duration,
        external_id,
        profile,
    };
    provider
        .source
        .assume(&settings, GRANT_SESSION)
        .await
        .map_err(|err| err.into_provider_error(&settings.role_arn))?;
    notes.push(format!(
        "Assumed role {} (region {}, sessions of {})",
        role_name(&settings.role_arn),
        settings.region,
        format_duration(settings.duration)
    ));
    Ok(GrantStep::Done {
        credential: settings.to_credential(source),
        notes,
    })
}
