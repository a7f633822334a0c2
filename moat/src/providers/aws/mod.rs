//! The AWS provider: an IAM role the container uses through `credential_process`, never holding
//! the host's keys.
//!
//! - Grant: the role ARN (`--role`, else asked), region, session duration, external id and host
//!   profile; a real STS AssumeRole with the host's credential chain proves it works. Stored:
//!   token = the role ARN (not a secret), the rest as metadata.
//! - Run: the endpoint `GET /_aws/credentials` (through moat's proxy, the run's token required)
//!   answers a `credential_process` document for a fresh AssumeRole (session `moat-<run id>`),
//!   cached until 5 minutes before it expires. The container gets `AWS_CONFIG_FILE` naming a
//!   config whose `credential_process` is a small sh + curl helper asking that endpoint
//!   (`$MOAT_ENDPOINT_URL`, `$MOAT_ENDPOINT_TOKEN`), plus `AWS_REGION`, `AWS_CA_BUNDLE` and an
//!   empty `AWS_PAGER`. The host's own AWS keys never enter the container: only temporary role
//!   credentials, on demand. AWS API traffic still goes through the proxy like any other.

mod cache;
mod files;
mod grant;
mod settings;
mod sts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use moat_plugin_sdk::{
    Capability, CleanupToken, ContainerFiles, Credential, CredentialProvider, EndpointDecl,
    EndpointProvider, EndpointRequest, EndpointResponse, EnvVar, GrantRequest, GrantStep, Mount,
    MountsRequest, ProviderError, ProviderInfo, ProviderResult, ProxyRules, async_trait,
};

pub use sts::STS_URL_ENV;

use cache::{CacheKey, CredentialCache};
use settings::RoleSettings;
use sts::{RoleSource, SdkRoleSource};

const NAME: &str = "aws";
/// The endpoint the helper asks.
pub const ENDPOINT_PATH: &str = "/_aws/credentials";
/// Where the config and the helper are mounted in the container (read-only).
pub const CONTAINER_DIR: &str = "/moat/aws";
/// AWS's API hosts (the commercial, GovCloud and China partitions), allowed under the strict
/// policy for a run that grants aws.
const API_HOSTS: [&str; 2] = ["*.amazonaws.com", "*.amazonaws.com.cn"];
/// moat's CA in the container (what the AWS CLI and SDKs must trust behind the proxy).
const CONTAINER_CA_FILE: &str = "/etc/ssl/certs/moat-ca/ca.crt";

/// The built-in AWS provider.
pub struct AwsProvider {
    source: Arc<dyn RoleSource>,
    cache: CredentialCache,
    clock: fn() -> DateTime<Utc>,
    /// Where each run's config folder is made on the host.
    staging: PathBuf,
}

impl std::fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsProvider")
            .field("staging", &self.staging)
            .finish_non_exhaustive()
    }
}

impl AwsProvider {
    /// The provider configured from the environment ([`STS_URL_ENV`]).
    pub fn from_env() -> Self {
        AwsProvider::with_source(Arc::new(SdkRoleSource::from_env()))
    }

    fn with_source(source: Arc<dyn RoleSource>) -> Self {
        AwsProvider {
            source,
            cache: CredentialCache::default(),
            clock: Utc::now,
            staging: std::env::temp_dir(),
        }
    }
}

/// `moat-<run id>`, limited to what STS takes as a session name (64 of `[\w+=,.@-]`).
fn session_name(run_id: &str) -> String {
    let cleaned: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = if cleaned.is_empty() {
        "moat-run".to_string()
    } else {
        format!("moat-{cleaned}")
    };
    name.chars().take(64).collect()
}

fn json_response(status: u16, body: String) -> EndpointResponse {
    EndpointResponse {
        status,
        headers: BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
        body,
    }
}

fn text_response(status: u16, body: &str) -> EndpointResponse {
    EndpointResponse {
        status,
        headers: BTreeMap::from([(
            "content-type".to_string(),
            "text/plain; charset=utf-8".to_string(),
        )]),
        body: body.to_string(),
    }
}

#[async_trait]
impl CredentialProvider for AwsProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(
            NAME,
            "AWS IAM role (short-lived credentials via credential_process)",
        );
        info.capabilities = vec![Capability::Endpoint];
        info.grant_options = grant::options();
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        grant::grant(self, request).await
    }

    /// No header to inject: the container signs its AWS requests itself with the role's
    /// temporary credentials. AWS's API hosts are allowed under the strict policy.
    async fn configure_proxy(&self, _: &Credential) -> ProviderResult<ProxyRules> {
        let mut rules = ProxyRules::new();
        rules.allow_hosts = API_HOSTS.iter().map(|h| h.to_string()).collect();
        Ok(rules)
    }

    async fn container_env(&self, credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        let settings = RoleSettings::from_credential(credential)?;
        Ok(vec![
            EnvVar::new(
                "AWS_CONFIG_FILE",
                format!("{CONTAINER_DIR}/{}", files::CONFIG),
            ),
            EnvVar::new("AWS_REGION", settings.region),
            EnvVar::new("AWS_CA_BUNDLE", CONTAINER_CA_FILE),
            EnvVar::new("AWS_PAGER", ""),
        ])
    }

    async fn mounts(&self, request: MountsRequest) -> ProviderResult<ContainerFiles> {
        let settings = RoleSettings::from_credential(&request.credential)?;
        let dir = files::stage(&self.staging, &settings.region).map_err(|err| {
            ProviderError::new(
                moat_plugin_sdk::ErrorKind::Internal,
                format!("cannot write the AWS config for the container: {err}"),
            )
        })?;
        Ok(ContainerFiles {
            mounts: vec![Mount {
                source: dir.clone(),
                target: CONTAINER_DIR.into(),
                read_only: true,
            }],
            init_files: Vec::new(),
            cleanup: Some(CleanupToken(dir.display().to_string())),
        })
    }

    async fn cleanup(&self, token: CleanupToken) -> ProviderResult<()> {
        files::remove(&self.staging, Path::new(&token.0));
        Ok(())
    }

    fn as_endpoint(&self) -> Option<&dyn EndpointProvider> {
        Some(self)
    }
}

#[async_trait]
impl EndpointProvider for AwsProvider {
    fn endpoints(&self) -> Vec<EndpointDecl> {
        vec![EndpointDecl {
            path: ENDPOINT_PATH.into(),
            description: "credential_process answers: temporary credentials of the granted role"
                .into(),
        }]
    }

    async fn endpoint(&self, request: EndpointRequest) -> ProviderResult<EndpointResponse> {
        let path = request
            .path
            .split_once('?')
            .map_or(request.path.as_str(), |(p, _)| p);
        if path != ENDPOINT_PATH {
            return Ok(text_response(404, "moat: no such AWS endpoint.\n"));
        }
        if request.method != "GET" {
            return Ok(text_response(405, "moat: use GET.\n"));
        }
        let settings = RoleSettings::from_credential(&request.credential)?;
        let session = session_name(&request.run_id);
        let key = CacheKey {
            run_id: request.run_id.clone(),
            settings: settings.clone(),
        };
        let credentials = self
            .cache
            .get_or_fetch(key, (self.clock)(), || {
                self.source.assume(&settings, &session)
            })
            .await
            .map_err(|err| err.into_provider_error(&settings.role_arn))?;
        let body = serde_json::json!({
            "Version": 1,
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key.expose(),
            "SessionToken": credentials.session_token.expose(),
            "Expiration": credentials.expiration.to_rfc3339_opts(SecondsFormat::Secs, true),
        });
        Ok(json_response(200, body.to_string()))
    }
}

#[cfg(test)]
mod tests;
