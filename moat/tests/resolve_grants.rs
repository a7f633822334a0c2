//! `provider::resolve_grants`: the library step `moat proxy` and `moat run` share.

use std::sync::Arc;

use moat::credential::{CredentialStore, KeyBackend, KeyConfig};
use moat::home::{MoatHome, Profile};
use moat::provider::{GrantProblem, ProviderSource, Registry, resolve_grants};
use moat_plugin_sdk::Credential;
use moat_plugin_sdk::testkit::MockProvider;

fn keys() -> KeyConfig {
    KeyConfig {
        backend: KeyBackend::File,
        service: "moat".into(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn aliases_are_one_grant_and_every_problem_is_reported_before_any_provider_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let home = MoatHome::at(dir.path());
    let alpha = MockProvider::new("alpha").alias("al");
    let beta = MockProvider::new("beta");
    let gamma = MockProvider::new("gamma");
    let alpha_calls = alpha.clone();
    let mut registry = Registry::new();
    for mock in [alpha, beta, gamma] {
        registry
            .register(
                Arc::new(mock),
                ProviderSource::Custom {
                    path: "/tmp/mock.yaml".into(),
                },
            )
            .unwrap();
    }
    let store = CredentialStore::open(&home, None, keys());
    store
        .save("alpha", &Credential::new("alpha", "alpha-secret-token"))
        .unwrap();

    let resolved = resolve_grants(&registry, &store, &names(&["al", "alpha"]))
        .await
        .unwrap();
    assert_eq!(resolved.len(), 1, "an alias and its provider are one grant");
    assert_eq!(resolved[0].name(), "alpha");
    assert_eq!(resolved[0].credential.token.expose(), "alpha-secret-token");
    assert_eq!(resolved[0].rules.hosts(), vec!["alpha.example.test"]);
    let debug = format!("{:?}", resolved[0]);
    assert!(!debug.contains("alpha-secret-token"), "{debug}");

    // gamma's file is there but unreadable.
    std::fs::write(store.dir().join("gamma.enc"), b"MOAT\x01garbage").unwrap();
    let calls_before = alpha_calls.calls().len();
    let err = resolve_grants(
        &registry,
        &store,
        &names(&["alpha", "beta", "zeta", "gamma", "beta"]),
    )
    .await
    .unwrap_err();
    assert_eq!(
        alpha_calls.calls().len(),
        calls_before,
        "no provider is asked for rules while a grant is missing"
    );
    let shape: Vec<(&str, Option<&str>)> = err
        .problems
        .iter()
        .map(|p| {
            let kind = match p {
                GrantProblem::NotGranted { .. } => "not granted",
                GrantProblem::UnknownProvider { .. } => "unknown",
                GrantProblem::Unreadable { .. } => "unreadable",
                GrantProblem::Rules { .. } => "rules",
            };
            (kind, p.fix())
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            ("not granted", Some("moat grant beta")),
            ("unknown", None),
            ("unreadable", Some("moat grant gamma")),
        ]
    );
    let text = err.to_string();
    assert!(text.starts_with("3 grants cannot be used:"), "{text}");
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("  moat grant beta\n  moat grant gamma")
            && hint.contains("alpha, beta, gamma"),
        "fix commands, then the registry's list: {hint}"
    );

    // A profile's store: the fix names the profile.
    let work = Profile::new("work").unwrap();
    let store = CredentialStore::open(&home, Some(&work), keys());
    let err = resolve_grants(&registry, &store, &names(&["alpha"]))
        .await
        .unwrap_err();
    assert_eq!(
        err.problems[0].fix(),
        Some("moat grant alpha --profile work")
    );
}
