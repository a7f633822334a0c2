//! [`DeclaredProvider`]: a [`ProviderFile`] behind the same trait as every provider, so the
//! registry, `moat grant`, the proxy and `moat run` cannot tell it from a built-in.

use std::time::Duration;

use moat_plugin_sdk::{
    Credential, CredentialProvider, EnvVar, ErrorKind, GrantRequest, GrantStep, META_TOKEN_SOURCE,
    Prompt, ProviderError, ProviderInfo, ProviderResult, ProxyRule, ProxyRules, Secret,
    TransformKind, async_trait,
};
use sha2::{Digest, Sha256};

use super::file::{Method, ProviderFile};

/// What the container sees in `container_env` in header mode: the proxy adds the real header, so
/// the value only has to be there.
pub const HEADER_PLACEHOLDER: &str = "moat-proxy-injected";

/// The prompt id of the token.
const TOKEN: &str = "token";
const SOURCE_ENV: &str = "env";
const SOURCE_PROMPT: &str = "prompt";
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// The variable that overrides the scheme and host of a declared provider's validation URL:
/// `MOAT_<NAME>_API_URL`, the name uppercased with `-` as `_` (`MOAT_BRAVE_SEARCH_API_URL`). For
/// a local test server (with `MOAT_EXTRA_CA_CERTS`) or a self-hosted instance; the proxy rules
/// are not affected.
pub fn api_url_env(name: &str) -> String {
    format!(
        "MOAT_{}_API_URL",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// The placeholder of a substitution-mode token: `moat-` and the first 8 bytes of
/// SHA-256(`moat-token-sub:` + token) in hex. Stable for a token (a container that kept it across
/// a re-grant of the same token still works) and useless without the proxy.
pub fn substitution_placeholder(token: &Secret) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"moat-token-sub:");
    hasher.update(token.expose().as_bytes());
    let digest = hasher.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("moat-{hex}")
}

/// A provider declared in YAML.
#[derive(Debug, Clone)]
pub struct DeclaredProvider {
    file: ProviderFile,
    /// `MOAT_<NAME>_API_URL`, when set.
    api_url: Option<String>,
}

impl DeclaredProvider {
    /// The provider of `file`, its validation URL override read from the environment.
    pub fn from_env(file: ProviderFile) -> Self {
        let api_url = std::env::var(api_url_env(file.name.as_str()))
            .ok()
            .filter(|url| !url.is_empty());
        DeclaredProvider { file, api_url }
    }

    /// The provider of `file` with an explicit validation base URL (tests).
    pub fn with_api_url(file: ProviderFile, api_url: Option<String>) -> Self {
        DeclaredProvider { file, api_url }
    }

    /// The declaration.
    pub fn file(&self) -> &ProviderFile {
        &self.file
    }

    fn name(&self) -> &str {
        self.file.name.as_str()
    }

    fn hint_valid_token(&self) -> String {
        format!(
            "Run 'moat grant {}' and enter a valid {}.",
            self.name(),
            self.file.description
        )
    }

    /// The hidden prompt for the token, with the declared text and the variables that would
    /// answer it.
    fn token_prompt(&self) -> Prompt {
        let mut help = match &self.file.prompt {
            Some(text) => text.trim_end().to_string(),
            None => format!("Paste your {}.", self.file.description),
        };
        let vars: Vec<&str> = self.file.source_env.iter().map(|v| v.as_str()).collect();
        if !vars.is_empty() {
            help.push_str(&format!(
                "\n(Or set {} and run 'moat grant {}' again.)",
                vars.join(" or "),
                self.name()
            ));
        }
        let mut prompt = Prompt::secret(TOKEN, self.file.description.as_str()).with_help(help);
        if let Some(first) = vars.first() {
            prompt = prompt.with_env(*first);
        }
        prompt
    }

    async fn finish(
        &self,
        token: Secret,
        source: &str,
        mut notes: Vec<String>,
    ) -> ProviderResult<GrantStep> {
        // It goes into a header or a URL: visible ASCII only (a pasted token with a space in the
        // middle is a copy mistake, and would break every request).
        if !token.expose().chars().all(|c| c.is_ascii_graphic()) {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!(
                    "the {} holds spaces, control or non-ASCII characters; nothing was stored",
                    self.file.description
                ),
            )
            .with_hint(self.hint_valid_token()));
        }
        if let Some(note) = self.validate(&token).await? {
            notes.push(note);
        }
        let credential =
            Credential::new(self.name(), token).with_metadata(META_TOKEN_SOURCE, source);
        Ok(GrantStep::Done { credential, notes })
    }

    /// Checks `token` against `validate`, if declared: `Some(note)` when it passed, `None` when
    /// there is nothing to check. Errors never hold the token (nor the URL it was put in).
    pub async fn validate(&self, token: &Secret) -> ProviderResult<Option<String>> {
        let Some(validate) = &self.file.validate else {
            return Ok(None);
        };
        let method = validate.method.unwrap_or_default();
        // What the user may see: the URL as declared (with `${token}`), on the overridden host.
        let shown = validate.url.with_base(self.api_url.as_deref());
        // The URL may hold the token: a `Secret` too, so it is wiped when dropped.
        let url = Secret::new(
            validate
                .url
                .resolve(self.api_url.as_deref(), token.expose()),
        );
        let (header, prefix) = match (&validate.header, &self.file.inject) {
            (Some(header), _) => (Some(header), validate.prefix.as_ref()),
            (None, _) if validate.url.has_token() => (None, None),
            (None, Some(inject)) => (
                Some(&inject.header),
                validate.prefix.as_ref().or(inject.prefix.as_ref()),
            ),
            (None, None) => (None, None),
        };
        let client = crate::http::client(VALIDATE_TIMEOUT)
            .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
        let method_value = reqwest::Method::from_bytes(method.as_str().as_bytes())
            .map_err(|err| ProviderError::new(ErrorKind::Internal, err.to_string()))?;
        let mut request = client.request(method_value, url.expose());
        if let Some(header) = header {
            let value = Secret::new(format!(
                "{}{}",
                prefix.map(|p| p.as_str()).unwrap_or_default(),
                token.expose()
            ));
            let mut value =
                reqwest::header::HeaderValue::from_str(value.expose()).map_err(|_| {
                    ProviderError::new(
                        ErrorKind::InvalidInput,
                        "the token holds characters a header value cannot carry",
                    )
                    .with_hint(self.hint_valid_token())
                })?;
            value.set_sensitive(true);
            request = request.header(header.as_str(), value);
        }
        if method == Method::Post {
            request = request.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        let name = self.name();
        let response = request.send().await.map_err(|err| {
            ProviderError::new(
                ErrorKind::Network,
                format!(
                    "cannot reach {shown} to check the token: {}",
                    chain(&err.without_url())
                ),
            )
            .with_hint(format!(
                "Check your network connection (and MOAT_EXTRA_CA_CERTS if a proxy re-signs \
                 TLS), then run 'moat grant {name}' again."
            ))
        })?;
        let status = response.status().as_u16();
        let valid = match validate.status {
            Some(expected) => status == expected.get(),
            None => (200..300).contains(&status),
        };
        let what = format!("{} {shown}", method.as_str());
        if valid {
            return Ok(Some(format!("Token accepted ({what} answered {status})")));
        }
        match status {
            401 | 403 => Err(ProviderError::new(
                ErrorKind::InvalidCredential,
                format!("the token was rejected: {what} answered {status}; nothing was stored"),
            )
            .with_hint(if status == 403 {
                "Ensure your token is valid and has appropriate permissions.".to_string()
            } else {
                self.hint_valid_token()
            })),
            408 | 429 | 500.. => Err(ProviderError::new(
                ErrorKind::Network,
                format!("{what} answered {status}; nothing was stored"),
            )
            .with_hint(format!("Try again later: 'moat grant {name}'."))),
            _ => Err(ProviderError::new(
                ErrorKind::InvalidCredential,
                format!(
                    "the token was not accepted: {what} answered {status}{}; nothing was stored",
                    validate
                        .status
                        .map(|s| format!(" (expected {})", s.get()))
                        .unwrap_or_default()
                ),
            )
            .with_hint(self.hint_valid_token())),
        }
    }
}

#[async_trait]
impl CredentialProvider for DeclaredProvider {
    fn info(&self) -> ProviderInfo {
        let mut info = ProviderInfo::new(self.name(), self.file.description.as_str());
        info.aliases = self
            .file
            .aliases
            .iter()
            .map(|a| a.as_str().to_string())
            .collect();
        info
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        if let Some(answer) = request.answer(TOKEN) {
            let token = answer
                .as_secret()
                .map(|s| s.expose().trim())
                .unwrap_or_default();
            if token.is_empty() {
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!("no {} was entered", self.file.description),
                )
                .with_hint(self.hint_valid_token()));
            }
            return self
                .finish(Secret::new(token), SOURCE_PROMPT, Vec::new())
                .await;
        }
        for var in &self.file.source_env {
            if let Some(token) = std::env::var(var.as_str())
                .ok()
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
            {
                let note = format!("Using token from {var} environment variable");
                return self
                    .finish(Secret::new(token), SOURCE_ENV, vec![note])
                    .await;
            }
        }
        Ok(GrantStep::Ask {
            prompts: vec![self.token_prompt()],
            notes: Vec::new(),
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let mut rules = ProxyRules::new();
        match &self.file.inject {
            Some(inject) => {
                let prefix = inject.prefix.as_ref().map(|p| p.as_str()).unwrap_or("");
                for host in &self.file.hosts {
                    rules = rules.with(ProxyRule::Credential {
                        host: host.to_string(),
                        header: inject.header.to_string(),
                        value: Secret::new(format!("{prefix}{}", credential.token.expose())),
                        grant: self.name().to_string(),
                    });
                }
            }
            None => {
                let placeholder = substitution_placeholder(&credential.token);
                for host in &self.file.hosts {
                    rules = rules
                        .with(ProxyRule::TokenSubstitution {
                            host: host.to_string(),
                            placeholder: placeholder.clone(),
                            real: credential.token.clone(),
                        })
                        .with(ProxyRule::ResponseTransform {
                            host: host.to_string(),
                            kind: TransformKind::ResponseScrub,
                        });
                }
            }
        }
        Ok(rules)
    }

    async fn container_env(&self, credential: &Credential) -> ProviderResult<Vec<EnvVar>> {
        let Some(var) = &self.file.container_env else {
            return Ok(Vec::new());
        };
        let value = match &self.file.inject {
            Some(_) => HEADER_PLACEHOLDER.to_string(),
            None => substitution_placeholder(&credential.token),
        };
        Ok(vec![EnvVar::new(var.as_str(), value)])
    }
}

/// The error and its causes on one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
