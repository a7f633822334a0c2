//! A plugin's endpoint through the real proxy, the same route as a built-in's: the run
//! manager's adapter (`ProviderEndpoint`) around `PluginProvider`, registered with the run; and a
//! plugin's declared grant options reaching its `grant`.

#[path = "fixtures/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use moat::plugin::PluginProvider;
use moat::proxy::{CertificateAuthority, Proxy, ProxyConfig, RunRegistry, RunSpec, UpstreamConfig};
use moat::run::ProviderEndpoint;
use moat_plugin_sdk::{Answer, CredentialProvider, GrantRequest, GrantStep, Secret};
use support::{fast, install};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_endpoint_answers_through_the_proxy_and_its_grant_gets_options() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let path = install(
        dir.path(),
        "echoer",
        "serves_endpoint",
        &[
            ("FAKE_LOG", log.to_str().unwrap()),
            ("FAKE_CAPS", "endpoint"),
        ],
    );
    let plugin = Arc::new(
        PluginProvider::start(&path, "echoer", fast())
            .await
            .unwrap(),
    );
    assert_eq!(plugin.info().grant_options[0].name, "region");

    // The grant option's value reaches the plugin.
    let request = GrantRequest {
        options: BTreeMap::from([("region".to_string(), "eu-west-1".to_string())]),
        ..GrantRequest::default()
    }
    .with_answer("token", Answer::Secret(Secret::new("tok-plugin-1")));
    let GrantStep::Done { credential, .. } = plugin.grant(request).await.unwrap() else {
        panic!("expected a credential")
    };
    assert_eq!(credential.metadata["region"], "eu-west-1");

    // Its endpoint, registered with a run of the real proxy.
    let provider: Arc<dyn CredentialProvider> = plugin.clone();
    let endpoints = ProviderEndpoint::endpoints("echoer", &provider, &credential, "run_plugin1");
    assert_eq!(endpoints.len(), 1);
    let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.path().join("ca")).unwrap());
    let runs = Arc::new(RunRegistry::new());
    let upstream = UpstreamConfig {
        native_roots: false,
        ..UpstreamConfig::default()
    };
    let proxy = Proxy::new(ca, Arc::clone(&runs), &upstream, ProxyConfig::default())
        .unwrap()
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let token = runs
        .register(RunSpec {
            id: "run_plugin1".into(),
            endpoints,
            ..RunSpec::default()
        })
        .unwrap();
    let other = runs.register(RunSpec::default()).unwrap();

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{}/_echoer/creds?x=1", proxy.addr());
    let response = client
        .get(&url)
        .bearer_auth(token.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "run_id": "run_plugin1",
            "method": "GET",
            "path": "/_echoer/creds?x=1",
            "token": "tok-plugin-1",
            "authorization": null,
        })
    );
    // Another run's token does not reach it; a wrong one is refused.
    let refused = client
        .get(&url)
        .bearer_auth(other.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    let wrong = client
        .get(&url)
        .bearer_auth("x".repeat(64))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);

    proxy.shutdown().await;
    plugin.shutdown().await;
}
