//! A granted provider's endpoints, answered through the proxy.
//!
//! For every grant whose provider has the endpoint capability, the manager registers one
//! [`Endpoint`] per declared path with the run's proxy registration. The proxy only routes (by
//! the run's token and the path); [`ProviderEndpoint`] turns the call into the provider's
//! `endpoint` request, with the grant's credential and the run's id, and a provider error into a
//! `500` whose text body is the error's message and hint. Built-ins and plugins answer alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use moat_plugin_sdk::{Credential, CredentialProvider, EndpointRequest, EndpointResponse};

use crate::proxy::{Endpoint, EndpointCall, EndpointHandler};

/// One grant's endpoint for one run.
pub struct ProviderEndpoint {
    /// The grant's name, for messages.
    pub grant: String,
    /// The provider; must have the endpoint capability.
    pub provider: Arc<dyn CredentialProvider>,
    /// The grant's credential.
    pub credential: Credential,
    /// The run.
    pub run_id: String,
}

impl ProviderEndpoint {
    /// The proxy endpoints of `provider` for this run: one per declared path (none without the
    /// capability).
    pub fn endpoints(
        grant: &str,
        provider: &Arc<dyn CredentialProvider>,
        credential: &Credential,
        run_id: &str,
    ) -> Vec<Endpoint> {
        let Some(declared) = provider.as_endpoint().map(|e| e.endpoints()) else {
            return Vec::new();
        };
        let handler: Arc<dyn EndpointHandler> = Arc::new(ProviderEndpoint {
            grant: grant.to_owned(),
            provider: Arc::clone(provider),
            credential: credential.clone(),
            run_id: run_id.to_owned(),
        });
        declared
            .into_iter()
            .map(|decl| Endpoint {
                path: decl.path,
                handler: Arc::clone(&handler),
            })
            .collect()
    }
}

fn plain(status: u16, body: String) -> EndpointResponse {
    EndpointResponse {
        status,
        headers: BTreeMap::from([(
            "content-type".to_string(),
            "text/plain; charset=utf-8".to_string(),
        )]),
        body,
    }
}

#[async_trait]
impl EndpointHandler for ProviderEndpoint {
    async fn call(&self, call: EndpointCall) -> EndpointResponse {
        let Some(endpoint) = self.provider.as_endpoint() else {
            return plain(404, format!("moat: {} serves no endpoint.\n", self.grant));
        };
        let request = EndpointRequest {
            credential: self.credential.clone(),
            run_id: self.run_id.clone(),
            method: call.method,
            path: call.path,
            headers: call.headers,
            body: call.body,
        };
        match endpoint.endpoint(request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(grant = %self.grant, %error, "endpoint request failed");
                let mut body = format!("moat: {}: {}\n", self.grant, error.message);
                if let Some(hint) = &error.hint {
                    body.push_str(hint);
                    body.push('\n');
                }
                plain(500, body)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use moat_plugin_sdk::testkit::MockProvider;
    use moat_plugin_sdk::{ErrorKind, ProviderError};

    use super::*;

    fn call(path: &str) -> EndpointCall {
        EndpointCall {
            method: "GET".into(),
            path: path.into(),
            headers: BTreeMap::new(),
            body: String::new(),
        }
    }

    #[tokio::test]
    async fn providers_without_the_capability_have_no_endpoints() {
        let plain: Arc<dyn CredentialProvider> = Arc::new(MockProvider::new("m"));
        let credential = Credential::new("m", "t");
        assert!(ProviderEndpoint::endpoints("m", &plain, &credential, "run_1").is_empty());
    }

    #[tokio::test]
    async fn the_call_carries_the_credential_and_the_run() {
        let mock = MockProvider::new("m").endpoint();
        let provider: Arc<dyn CredentialProvider> = Arc::new(mock);
        let credential = Credential::new("m", "t");
        let endpoints = ProviderEndpoint::endpoints("m", &provider, &credential, "run_1");
        assert_eq!(endpoints.len(), 1);
        let answer = endpoints[0].handler.call(call("/_m/x")).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            answer.body, "/_m/x",
            "the mock echoes the path it was asked"
        );
    }

    struct Failing;

    #[async_trait]
    impl CredentialProvider for Failing {
        fn info(&self) -> moat_plugin_sdk::ProviderInfo {
            moat_plugin_sdk::ProviderInfo::new("f", "failing")
        }
        async fn grant(
            &self,
            _: moat_plugin_sdk::GrantRequest,
        ) -> moat_plugin_sdk::ProviderResult<moat_plugin_sdk::GrantStep> {
            Err(ProviderError::new(ErrorKind::Unsupported, "no"))
        }
        async fn configure_proxy(
            &self,
            _: &Credential,
        ) -> moat_plugin_sdk::ProviderResult<moat_plugin_sdk::ProxyRules> {
            Ok(moat_plugin_sdk::ProxyRules::new())
        }
        fn as_endpoint(&self) -> Option<&dyn moat_plugin_sdk::EndpointProvider> {
            Some(self)
        }
    }

    #[async_trait]
    impl moat_plugin_sdk::EndpointProvider for Failing {
        fn endpoints(&self) -> Vec<moat_plugin_sdk::EndpointDecl> {
            vec![moat_plugin_sdk::EndpointDecl {
                path: "/_f/x".into(),
                description: "fails".into(),
            }]
        }
        async fn endpoint(
            &self,
            request: EndpointRequest,
        ) -> moat_plugin_sdk::ProviderResult<EndpointResponse> {
            Err(ProviderError::new(
                ErrorKind::Network,
                format!("upstream down for {}", request.run_id),
            )
            .with_hint("Try again later"))
        }
    }

    #[tokio::test]
    async fn a_provider_error_is_a_500_with_message_and_hint() {
        let provider: Arc<dyn CredentialProvider> = Arc::new(Failing);
        let endpoints =
            ProviderEndpoint::endpoints("f", &provider, &Credential::new("f", "t"), "run_9");
        let answer = endpoints[0].handler.call(call("/_f/x")).await;
        assert_eq!(answer.status, 500);
        assert_eq!(
            answer.body,
            "moat: f: upstream down for run_9\nTry again later\n"
        );
    }
}
