//! The CLI against a registry of mock providers: aliases resolve everywhere, and the CLI knows
//! providers only through the registry.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use moat::cli::Cli;
use moat::credential::{CredentialStore, KeyBackend, KeyConfig};
use moat::home::MoatHome;
use moat::provider::{ProviderSource, Registry};
use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{ErrorKind, GrantStep, ProviderError};

fn keys() -> KeyConfig {
    KeyConfig {
        backend: KeyBackend::File,
        service: "moat".into(),
    }
}

fn registry(mock: MockProvider) -> Registry {
    let mut registry = Registry::new();
    registry
        .register(
            Arc::new(mock),
            ProviderSource::Custom {
                path: "/tmp/mock.yaml".into(),
            },
        )
        .unwrap();
    registry
}

async fn moat(registry: Registry, home: &MoatHome, args: &[&str]) -> ExitCode {
    let cli = Cli::try_parse_from(std::iter::once("moat").chain(args.iter().copied())).unwrap();
    cli.run_with(registry, MoatHome::at(home.root()), keys())
        .await
}

#[tokio::test]
async fn aliases_resolve_in_grant_show_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let home = MoatHome::at(dir.path());
    let mock = MockProvider::new("mock")
        .alias("mk")
        .store_key("mock-store");
    let store = CredentialStore::open(&home, None, keys());

    assert_eq!(
        moat(
            registry(mock.clone()),
            &home,
            &["grant", "mk", "--no-input"]
        )
        .await,
        ExitCode::SUCCESS
    );
    assert_eq!(mock.calls(), vec!["grant"]);
    // Stored under the provider's store key, not under the alias.
    assert_eq!(
        store.load("mock-store").unwrap().token.expose(),
        "mock-token"
    );
    assert!(store.load("mk").unwrap_err().is_not_found());

    assert_eq!(
        moat(registry(mock.clone()), &home, &["grant", "show", "mk"]).await,
        ExitCode::SUCCESS
    );
    assert_eq!(
        moat(registry(mock.clone()), &home, &["revoke", "mk"]).await,
        ExitCode::SUCCESS
    );
    assert!(store.load("mock-store").unwrap_err().is_not_found());
    assert_eq!(
        moat(registry(mock), &home, &["grant", "show", "mk"]).await,
        ExitCode::from(3)
    );
}

#[tokio::test]
async fn a_failed_grant_stores_nothing_and_maps_to_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let home = MoatHome::at(dir.path());
    let mock = MockProvider::new("mock").grant_with(|_| {
        Err(ProviderError::new(ErrorKind::InvalidCredential, "rejected").with_hint("try again"))
    });
    assert_eq!(
        moat(registry(mock), &home, &["grant", "mock", "--no-input"]).await,
        ExitCode::from(4)
    );
    let store = CredentialStore::open(&home, None, keys());
    assert!(store.list().unwrap().is_empty());
}

#[tokio::test]
async fn a_provider_returning_someone_elses_credential_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = MoatHome::at(dir.path());
    let mock = MockProvider::new("mock").grant_with(|_| {
        let credential = moat_plugin_sdk::Credential::new("github", "stolen");
        Ok(GrantStep::Done {
            credential,
            notes: vec![],
        })
    });
    assert_eq!(
        moat(registry(mock), &home, &["grant", "mock", "--no-input"]).await,
        ExitCode::FAILURE
    );
    let store = CredentialStore::open(&home, None, keys());
    assert!(store.list().unwrap().is_empty());
}
