//! STS AssumeRole with the host's AWS credential chain, through the official AWS SDK for Rust.
//!
//! The SDK's HTTP client is hyper + rustls (ring) with the platform's roots plus moat's extra CA
//! file (`MOAT_EXTRA_CA_CERTS`), the same trust as [`crate::http`]. The STS endpoint is the SDK's
//! regional default unless [`STS_URL_ENV`] names another (a local stand-in in tests, a VPC
//! endpoint). Failures are sorted into the few cases a user can act on ([`StsFailure`]).

use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_sts::config::{BehaviorVersion, Region};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_http_client::tls;
use chrono::{DateTime, Utc};
use moat_plugin_sdk::{ErrorKind, ProviderError, Secret};

use super::settings::{RoleSettings, role_name};
use crate::http::EXTRA_CA_ENV;

/// Overrides the STS endpoint URL (default: the SDK's, for the grant's region). Combine with
/// `MOAT_EXTRA_CA_CERTS` when it uses a private CA.
pub const STS_URL_ENV: &str = "MOAT_AWS_STS_URL";

/// The longest an AssumeRole may take, credential resolution included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Temporary credentials of an assumed role.
#[derive(Debug, Clone)]
pub(crate) struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    pub expiration: DateTime<Utc>,
}

/// Why an AssumeRole failed, sorted for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StsFailure {
    /// STS refused: the host's identity may not assume the role (trust policy, external id).
    AccessDenied,
    /// The host has no AWS credentials (none in the chain, or the profile does not exist).
    NoHostCredentials,
    /// The host's credentials have expired (an old session, an SSO login to renew).
    ExpiredHostCredentials,
    /// STS does not know the host's credentials (deleted or mistyped keys).
    InvalidHostCredentials,
    /// STS or the credential chain did not answer in time.
    Timeout,
    /// Anything else (network, an STS error of another kind).
    Other,
}

/// A failed AssumeRole.
#[derive(Debug, Clone)]
pub(crate) struct StsError {
    pub failure: StsFailure,
    /// What happened, without secrets (the SDK's error text).
    pub detail: String,
}

impl StsError {
    pub(crate) fn new(failure: StsFailure, detail: impl Into<String>) -> Self {
        StsError {
            failure,
            detail: detail.into(),
        }
    }

    /// The error for the user, with what to do; `grant_command` is how to grant again.
    pub(crate) fn into_provider_error(self, role_arn: &str) -> ProviderError {
        let role = role_name(role_arn);
        let regrant = format!("moat grant aws --role {role_arn}");
        let (kind, message, hint) = match self.failure {
            StsFailure::AccessDenied => (
                ErrorKind::InvalidCredential,
                format!(
                    "AWS refused to let the host's identity assume role {role}: {}",
                    self.detail
                ),
                format!(
                    "Allow the host's identity in the role's trust policy (sts:AssumeRole), check \
                     --external-id, and that the session duration is within the role's maximum; \
                     then run '{regrant}'."
                ),
            ),
            StsFailure::NoHostCredentials => (
                ErrorKind::CredentialNotFound,
                format!("no AWS credentials found on the host: {}", self.detail),
                format!(
                    "moat assumes the role with the host's own AWS credentials: configure them \
                     (aws configure, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile \
                     with --aws-profile NAME or AWS_PROFILE), then run '{regrant}'."
                ),
            ),
            StsFailure::ExpiredHostCredentials => (
                ErrorKind::CredentialExpired,
                format!("the host's AWS credentials have expired: {}", self.detail),
                "Renew them (aws sso login, or fresh session keys), then try again.".to_string(),
            ),
            StsFailure::InvalidHostCredentials => (
                ErrorKind::InvalidCredential,
                format!(
                    "AWS does not accept the host's credentials: {}",
                    self.detail
                ),
                "Check the host's AWS access keys or profile (aws sts get-caller-identity), then \
                 try again."
                    .to_string(),
            ),
            StsFailure::Timeout => (
                ErrorKind::Network,
                format!("AWS STS did not answer in time: {}", self.detail),
                format!(
                    "Check the host's network access to STS (or {STS_URL_ENV}), then try again."
                ),
            ),
            StsFailure::Other => (
                ErrorKind::Network,
                format!("AWS STS AssumeRole failed: {}", self.detail),
                format!("Check the role and region, then run '{regrant}'."),
            ),
        };
        ProviderError::new(kind, message).with_hint(hint)
    }
}

/// Where temporary role credentials come from (STS; a double in tests).
#[async_trait]
pub(crate) trait RoleSource: Send + Sync {
    /// AssumeRole `settings.role_arn` as `session_name`.
    async fn assume(
        &self,
        settings: &RoleSettings,
        session_name: &str,
    ) -> Result<RoleCredentials, StsError>;
}

/// STS through the AWS SDK, with the host's default credential chain (and profile).
#[derive(Debug, Clone, Default)]
pub(crate) struct SdkRoleSource {
    /// [`STS_URL_ENV`], when set.
    pub sts_url: Option<String>,
}

impl SdkRoleSource {
    pub(crate) fn from_env() -> Self {
        SdkRoleSource {
            sts_url: std::env::var(STS_URL_ENV)
                .ok()
                .filter(|url| !url.is_empty()),
        }
    }
}

/// The SDK's HTTP client with moat's trust roots.
fn http_client() -> Result<aws_sdk_sts::config::SharedHttpClient, StsError> {
    let mut trust = tls::TrustStore::default().with_native_roots(true);
    if let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path).map_err(|err| {
            StsError::new(
                StsFailure::Other,
                format!(
                    "cannot read {EXTRA_CA_ENV} file {}: {err}",
                    std::path::Path::new(&path).display()
                ),
            )
        })?;
        trust = trust.with_pem_certificate(pem);
    }
    let context = tls::TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|err| StsError::new(StsFailure::Other, format!("cannot set up HTTPS: {err}")))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(context)
        .build_https())
}

#[async_trait]
impl RoleSource for SdkRoleSource {
    async fn assume(
        &self,
        settings: &RoleSettings,
        session_name: &str,
    ) -> Result<RoleCredentials, StsError> {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(CALL_TIMEOUT)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client()?)
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts);
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_sts::config::Builder::from(&shared);
        if let Some(url) = &self.sts_url {
            config = config.endpoint_url(url);
        }
        let client = aws_sdk_sts::Client::from_conf(config.build());
        let call = client
            .assume_role()
            .role_arn(&settings.role_arn)
            .role_session_name(session_name)
            .duration_seconds(i32::try_from(settings.duration.as_secs()).unwrap_or(i32::MAX))
            .set_external_id(settings.external_id.clone())
            .send();
        // The SDK's own timeouts cover STS; this also bounds the credential chain.
        let output = match tokio::time::timeout(CALL_TIMEOUT + Duration::from_secs(5), call).await {
            Ok(result) => result.map_err(classify)?,
            Err(_) => {
                return Err(StsError::new(
                    StsFailure::Timeout,
                    format!("no answer in {}s", (CALL_TIMEOUT.as_secs() + 5)),
                ));
            }
        };
        let credentials = output
            .credentials()
            .ok_or_else(|| StsError::new(StsFailure::Other, "STS answered without credentials"))?;
        let expiration = credentials.expiration();
        let expiration =
            DateTime::<Utc>::from_timestamp(expiration.secs(), expiration.subsec_nanos())
                .ok_or_else(|| {
                    StsError::new(StsFailure::Other, "STS answered an impossible expiry")
                })?;
        Ok(RoleCredentials {
            access_key_id: credentials.access_key_id().to_string(),
            secret_access_key: Secret::new(credentials.secret_access_key()),
            session_token: Secret::new(credentials.session_token()),
            expiration,
        })
    }
}

/// Sorts an SDK error.
fn classify<E, R>(err: SdkError<E, R>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    if let SdkError::ServiceError(context) = &err {
        let service = context.err();
        let code = service.code().unwrap_or("Unknown");
        let message = service.message().unwrap_or("").to_string();
        let detail = if message.is_empty() {
            code.to_string()
        } else {
            format!("{code}: {message}")
        };
        return StsError::new(classify_code(code), detail);
    }
    if let SdkError::TimeoutError(_) = &err {
        return StsError::new(StsFailure::Timeout, "the request timed out");
    }
    if let SdkError::DispatchFailure(failure) = &err
        && failure.is_timeout()
    {
        return StsError::new(StsFailure::Timeout, DisplayErrorContext(&err).to_string());
    }
    let detail = DisplayErrorContext(&err).to_string();
    // Credential resolution fails inside the call: find the chain's own error.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(cause) = source {
        if let Some(credentials) = cause.downcast_ref::<CredentialsError>() {
            let failure = match credentials {
                CredentialsError::ProviderTimedOut(_) => StsFailure::Timeout,
                _ => StsFailure::NoHostCredentials,
            };
            return StsError::new(failure, DisplayErrorContext(credentials).to_string());
        }
        source = cause.source();
    }
    StsError::new(StsFailure::Other, detail)
}

/// Sorts an STS error code.
pub(crate) fn classify_code(code: &str) -> StsFailure {
    match code {
        "AccessDenied" | "AccessDeniedException" => StsFailure::AccessDenied,
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            StsFailure::ExpiredHostCredentials
        }
        "InvalidClientTokenId"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "IncompleteSignature"
        | "MissingAuthenticationToken" => StsFailure::InvalidHostCredentials,
        _ => StsFailure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/agent";

    #[test]
    fn sts_codes_are_sorted() {
        assert_eq!(classify_code("AccessDenied"), StsFailure::AccessDenied);
        assert_eq!(
            classify_code("ExpiredToken"),
            StsFailure::ExpiredHostCredentials
        );
        assert_eq!(
            classify_code("RequestExpired"),
            StsFailure::ExpiredHostCredentials
        );
        assert_eq!(
            classify_code("InvalidClientTokenId"),
            StsFailure::InvalidHostCredentials
        );
        assert_eq!(
            classify_code("SignatureDoesNotMatch"),
            StsFailure::InvalidHostCredentials
        );
        assert_eq!(classify_code("RegionDisabledException"), StsFailure::Other);
    }

    #[test]
    fn each_failure_says_what_to_do() {
        let error = |failure| StsError::new(failure, "detail").into_provider_error(ROLE);
        let denied = error(StsFailure::AccessDenied);
        assert_eq!(denied.kind, ErrorKind::InvalidCredential);
        assert!(
            denied.message.contains("assume role agent: detail"),
            "{denied}"
        );
        assert!(denied.hint.unwrap().contains("trust policy"));
        let none = error(StsFailure::NoHostCredentials);
        assert_eq!(none.kind, ErrorKind::CredentialNotFound);
        assert!(none.hint.unwrap().contains("--aws-profile"));
        let expired = error(StsFailure::ExpiredHostCredentials);
        assert_eq!(expired.kind, ErrorKind::CredentialExpired);
        assert!(expired.message.contains("expired"));
        let timeout = error(StsFailure::Timeout);
        assert_eq!(timeout.kind, ErrorKind::Network);
        assert!(timeout.message.contains("did not answer in time"));
        assert!(timeout.hint.unwrap().contains(STS_URL_ENV));
        let invalid = error(StsFailure::InvalidHostCredentials);
        assert_eq!(invalid.kind, ErrorKind::InvalidCredential);
    }
}
