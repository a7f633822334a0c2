//! # moat-plugin-sdk
//!
//! The provider contract of [moat](https://github.com/moat-dev/moat): the traits every provider
//! implements and every type they exchange.
//!
//! moat runs commands and AI agents in containers and injects credentials on the wire through a
//! TLS-intercepting proxy, so the container only ever sees placeholders. A *provider* knows how to
//! get a credential (`moat grant <name>`) and how to use it: which headers the proxy sets on which
//! hosts ([`ProxyRules`]), which placeholder environment variables the container gets, which files
//! it needs.
//!
//! The same [`CredentialProvider`] trait is implemented by moat's built-in providers, by the adapter
//! moat puts around a third-party `moat-provider-<name>` executable, and by that executable itself.
//! Every argument and result is plain data with a JSON Schema, so nothing but data crosses the
//! process boundary.
//!
//! ```
//! use moat_plugin_sdk::*;
//!
//! struct Example;
//!
//! #[async_trait]
//! impl CredentialProvider for Example {
//!     fn info(&self) -> ProviderInfo {
//!         ProviderInfo::new("example", "Example API token")
//!     }
//!
//!     async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
//!         // Ask for the token unless the host already has the answer.
//!         let Some(token) = request.answer("token").and_then(Answer::as_secret) else {
//!             let prompt = Prompt::secret("token", "Example token").with_env("EXAMPLE_TOKEN");
//!             return Ok(GrantStep::Ask { prompts: vec![prompt], notes: vec![] });
//!         };
//!         let credential = Credential::new("example", token.clone());
//!         Ok(GrantStep::Done { credential, notes: vec![] })
//!     }
//!
//!     async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
//!         let value = Secret::new(format!("Bearer {}", credential.token.expose()));
//!         Ok(ProxyRules::new().with(ProxyRule::Credential {
//!             host: "api.example.com".into(),
//!             header: "Authorization".into(),
//!             value,
//!             grant: "example".into(),
//!         }))
//!     }
//! }
//! ```
//!
//! A plugin's `main` is one line, [`serve()`]: `fn main() { moat_plugin_sdk::serve(Example) }`
//! turns the provider into a `moat-provider-example` executable speaking protocol v1
//! ([`protocol`]) on its stdin and stdout. [`serve_io`] runs the same loop over any reader and
//! writer, for tests.
//!
//! [`testkit`] has a scriptable [`testkit::MockProvider`] for tests of code that uses providers.
//!
//! [`SecretSet`] hides known secrets (in every form they travel: after a scheme, inside Basic,
//! percent-encoded, base64) in text that is logged or shown; moat uses it wherever a plugin's
//! words or a request reach a log. [`wire`] is the line framing of protocol v1, shared by
//! [`serve()`] and moat's reading of a plugin.
//!
//! ## Features
//!
//! - `serve` (default): [`serve()`] and its relatives, the runtime of a plugin executable
//!   (jsonrpsee, tracing-subscriber). Without it the crate is the contract alone: the traits,
//!   the types, [`protocol`], [`wire`], [`SecretSet`] and the [`testkit`].

#![warn(missing_docs)]

mod container;
mod credential;
mod endpoint;
mod error;
mod grant;
mod info;
pub mod protocol;
mod provider;
mod rules;
mod secret;
mod secret_set;
#[cfg(feature = "serve")]
pub mod serve;
pub mod testkit;
pub mod wire;

pub use async_trait::async_trait;
pub use container::{
    AgentCommand, AgentOption, CleanupToken, ContainerConfig, ContainerFiles, EnvVar, InitFile,
    McpServer, Mount, MountsRequest, PrepareOpts,
};
pub use credential::{Credential, META_TOKEN_SOURCE};
pub use endpoint::{EndpointDecl, EndpointRequest, EndpointResponse, Refreshed, RunStoppedContext};
pub use error::{ErrorKind, ProviderError, ProviderResult};
pub use grant::{Answer, ChoiceOption, GrantRequest, GrantStep, Prompt, PromptKind};
pub use info::{Capability, GrantOption, ProviderInfo, validate_name};
pub use provider::{
    AgentProvider, CredentialProvider, EndpointProvider, RefreshableProvider, RunStoppedHook,
};
pub use rules::{ProxyRule, ProxyRules, ResponseAnswer, TransformKind};
pub use secret::Secret;
pub use secret_set::{SecretSet, SecretStream, looks_secret_key, looks_secret_variable};
#[cfg(feature = "serve")]
pub use serve::{ServeOptions, serve, serve_io, serve_io_with, serve_with};
