//! A complete moat provider plugin: `moat-provider-hello`.
//!
//! It asks for a token (or reads `HELLO_TOKEN`), injects it as `Authorization: Bearer <token>`
//! on `api.hello.test`, and gives the container a placeholder `HELLO_TOKEN`. Build it with
//! `cargo build --example moat-provider-hello`, put the binary on your `PATH`, and
//! `moat grant hello` runs it.
//!
//! It also prints to stdout on purpose in `grant`: the SDK routes such stray output to stderr, so
//! it cannot corrupt the protocol.

use moat_plugin_sdk::serve::ServeOptions;
use moat_plugin_sdk::*;

struct Hello;

#[async_trait]
impl CredentialProvider for Hello {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("hello", "Hello API token (SDK example)")
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        println!("a stray print from provider code (lands on stderr)");
        let Some(token) = request.answer("token").and_then(Answer::as_secret) else {
            let prompt = Prompt::secret("token", "Hello token").with_env("HELLO_TOKEN");
            return Ok(GrantStep::Ask {
                prompts: vec![prompt],
                notes: vec![],
            });
        };
        if token.expose() == "bad" {
            return Err(
                ProviderError::new(ErrorKind::InvalidCredential, "token rejected")
                    .with_hint("Run 'moat grant hello' and enter a valid token"),
            );
        }
        tracing::info!(token = ?token, "granted");
        Ok(GrantStep::Done {
            credential: Credential::new("hello", token.clone()),
            notes: vec!["Hello!".into()],
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new().with(ProxyRule::Credential {
            host: "api.hello.test".into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: "hello".into(),
        }))
    }

    async fn container_env(&self, _: &Credential) -> ProviderResult<Vec<EnvVar>> {
        Ok(vec![EnvVar::new("HELLO_TOKEN", "hello-moat-placeholder")])
    }
}

fn main() {
    let options = ServeOptions::new().plugin_version(env!("CARGO_PKG_VERSION"));
    moat_plugin_sdk::serve_with(Hello, options)
}
