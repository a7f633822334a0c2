//! [`PluginProvider`] against a real plugin process: the traits round-trip through protocol v1,
//! errors keep their kind and hint, capabilities follow what the plugin declared, `info()` never
//! starts the process, and one process serves every call.

#[path = "fixtures/support.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;

use moat::plugin::{PluginProvider, handshake};
use moat::provider::{ProviderSource, Registry};
use moat_plugin_sdk::protocol::InitializeResult;
use moat_plugin_sdk::{
    Answer, CleanupToken, Credential, CredentialProvider, ErrorKind, GrantRequest, GrantStep,
    MountsRequest, PrepareOpts, PromptKind, ProxyRule, RunStoppedContext, Secret,
};
use support::{assert_reaped, fast, install, starts};

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: PathBuf,
}

fn fixture(name: &str, env: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let mut vars = vec![("FAKE_LOG", log.to_str().unwrap())];
    vars.extend_from_slice(env);
    let path = install(dir.path(), name, "ok", &vars);
    Fixture {
        _dir: dir,
        path,
        log,
    }
}

/// The plugin's `initialize` answer, as the cache would hold it (the process is stopped).
async fn describe(fixture: &Fixture, name: &str) -> InitializeResult {
    let (connection, init) = handshake(&fixture.path, name, fast()).await.unwrap();
    connection.shutdown().await;
    init
}

#[tokio::test]
async fn grant_asks_then_completes_like_a_builtin() {
    let fx = fixture("fake", &[]);
    let provider = PluginProvider::start(&fx.path, "fake", fast())
        .await
        .unwrap();

    let step = provider
        .grant(GrantRequest {
            interactive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let GrantStep::Ask { prompts, notes } = step else {
        panic!("expected questions, got {step:?}")
    };
    assert_eq!(notes, vec!["The fake wants a token"]);
    assert_eq!(prompts[0].id, "token");
    assert_eq!(prompts[0].kind, PromptKind::Secret);
    assert_eq!(prompts[0].env.as_deref(), Some("FAKE_TOKEN"));

    let request =
        GrantRequest::default().with_answer("token", Answer::Secret(Secret::new("tok-1")));
    let GrantStep::Done { credential, notes } = provider.grant(request).await.unwrap() else {
        panic!("expected a credential")
    };
    assert_eq!(credential.provider, "fake");
    assert_eq!(credential.token.expose(), "tok-1");
    assert_eq!(credential.metadata["login"], "fake-user");
    assert_eq!(notes, vec!["Authenticated as fake-user"]);

    // A provider error keeps its kind and hint across the process boundary.
    let request = GrantRequest::default().with_answer("token", Answer::Secret(Secret::new("bad")));
    let err = provider.grant(request).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential);
    assert_eq!(err.message, "the fake service rejected the token");
    assert_eq!(err.hint.as_deref(), Some("Use a good token"));

    let pid = provider.pid().await.unwrap();
    provider.shutdown().await;
    assert_reaped(pid);
    assert_eq!(starts(&fx.log), vec![pid], "one process served every call");
}

#[tokio::test]
async fn configure_proxy_env_mounts_and_cleanup_round_trip() {
    let fx = fixture("fake", &[]);
    let provider = PluginProvider::start(&fx.path, "fake", fast())
        .await
        .unwrap();
    let credential = Credential::new("fake", "tok-2");

    let rules = provider.configure_proxy(&credential).await.unwrap();
    assert_eq!(
        rules.rules,
        vec![ProxyRule::Credential {
            host: "api.fake.test".into(),
            header: "Authorization".into(),
            value: Secret::new("Bearer tok-2"),
            grant: "fake".into(),
        }]
    );

    let env = provider.container_env(&credential).await.unwrap();
    assert_eq!(env[0].name, "FAKE_TOKEN");
    assert_eq!(env[0].value, "moat-placeholder");

    // The plugin does not implement `mounts`: like a built-in that keeps the default, nothing.
    let files = provider
        .mounts(MountsRequest {
            credential: credential.clone(),
            container_home: "/home/moat".into(),
        })
        .await
        .unwrap();
    assert!(files.mounts.is_empty() && files.init_files.is_empty() && files.cleanup.is_none());

    provider.cleanup(CleanupToken("c-1".into())).await.unwrap();

    // Calls run concurrently over one process.
    let provider = Arc::new(provider);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let provider = provider.clone();
        calls.spawn(async move {
            let credential = Credential::new("fake", format!("t{i}"));
            (i, provider.configure_proxy(&credential).await.unwrap())
        });
    }
    while let Some(joined) = calls.join_next().await {
        let (i, rules) = joined.unwrap();
        let ProxyRule::Credential { value, .. } = &rules.rules[0] else {
            panic!("{rules:?}")
        };
        assert_eq!(value.expose(), format!("Bearer t{i}"));
    }
    assert_eq!(starts(&fx.log).len(), 1);
    provider.shutdown().await;
}

#[tokio::test]
async fn info_comes_from_the_cached_answer_and_the_first_call_starts_the_process() {
    let fx = fixture("lazy", &[("FAKE_DESC", "Lazy one")]);
    let init = describe(&fx, "lazy").await;
    let before = starts(&fx.log).len();

    let provider = Arc::new(PluginProvider::new(&fx.path, init, fast()));
    let mut registry = Registry::new();
    registry
        .register(
            provider.clone(),
            ProviderSource::Plugin {
                path: fx.path.clone(),
            },
        )
        .unwrap();
    let entry = registry.get("lazy").unwrap();
    assert_eq!(entry.info.description, "Lazy one");
    assert_eq!(provider.info().name, "lazy");
    assert!(entry.provider.as_agent().is_none());
    assert_eq!(starts(&fx.log).len(), before, "info() started the plugin");
    assert_eq!(provider.pid().await, None);

    // Through the registry, exactly like a built-in.
    let rules = entry
        .provider
        .configure_proxy(&Credential::new("lazy", "t"))
        .await
        .unwrap();
    assert_eq!(rules.rules.len(), 1);
    assert_eq!(starts(&fx.log).len(), before + 1);
    entry
        .provider
        .container_env(&Credential::new("lazy", "t"))
        .await
        .unwrap();
    assert_eq!(starts(&fx.log).len(), before + 1, "the process is reused");

    let pid = provider.pid().await.unwrap();
    provider.shutdown().await;
    assert_reaped(pid);
}

#[tokio::test]
async fn capabilities_are_offered_as_declared() {
    let fx = fixture("agentic", &[("FAKE_CAPS", "agent,refresh,run_stopped")]);
    let provider = PluginProvider::start(&fx.path, "agentic", fast())
        .await
        .unwrap();
    assert!(provider.as_endpoint().is_none());

    let agent = provider.as_agent().expect("declared agent");
    let commands = agent.commands();
    assert_eq!(commands[0].name, "fake");
    assert_eq!(commands[0].argv, vec!["fake-agent"]);
    let config = agent
        .prepare_container(PrepareOpts {
            credential: None,
            container_home: "/home/moat".into(),
            workspace: None,
            grants: vec![],
            mcp_servers: Default::default(),
            runtime_context: None,
            options: serde_json::Value::Null,
        })
        .await
        .unwrap();
    assert_eq!(config.env[0].name, "FAKE_AGENT");

    let refreshable = provider.as_refreshable().expect("declared refresh");
    assert_eq!(refreshable.refresh_interval().as_secs(), 42);
    let refreshed = refreshable
        .refresh(&Credential::new("agentic", "old"))
        .await
        .unwrap();
    assert_eq!(refreshed.credential.token.expose(), "old-refreshed");

    let hook = provider.as_run_stopped().expect("declared run_stopped");
    let meta = hook
        .run_stopped(RunStoppedContext {
            run_id: "run-1".into(),
            workspace: "/w".into(),
            started_at: chrono::Utc::now(),
            exit_code: Some(0),
        })
        .await
        .unwrap();
    assert_eq!(meta["seen"], "run-1");
    provider.shutdown().await;

    let plain = fixture("plain", &[]);
    let provider = PluginProvider::start(&plain.path, "plain", fast())
        .await
        .unwrap();
    assert!(provider.as_agent().is_none());
    assert!(provider.as_refreshable().is_none());
    assert!(provider.as_run_stopped().is_none());
    provider.shutdown().await;
}

#[tokio::test]
async fn an_unknown_method_is_unsupported() {
    // `endpoint` is not implemented by the fixture, whatever it declares.
    let fx = fixture("ep", &[("FAKE_CAPS", "endpoint")]);
    let provider = PluginProvider::start(&fx.path, "ep", fast()).await.unwrap();
    let endpoint = provider.as_endpoint().expect("declared endpoint");
    let err = endpoint
        .endpoint(moat_plugin_sdk::EndpointRequest {
            credential: Credential::new("ep", "t"),
            run_id: "run-1".into(),
            method: "GET".into(),
            path: "/x".into(),
            headers: Default::default(),
            body: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unsupported);
    assert!(err.message.contains("does not implement endpoint"), "{err}");
    // The connection is fine after an error answer.
    assert!(
        provider
            .configure_proxy(&Credential::new("ep", "t"))
            .await
            .is_ok()
    );
    assert_eq!(starts(&fx.log).len(), 1);
    provider.shutdown().await;
}

#[tokio::test]
async fn a_malformed_grant_result_is_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(
        dir.path(),
        "sloppy",
        "malformed_grant",
        &[("FAKE_TOKEN", "tok-123")],
    );
    let provider = PluginProvider::start(&path, "sloppy", fast())
        .await
        .unwrap();
    let err = provider.grant(GrantRequest::default()).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(err.message.contains("breaks protocol v1"), "{err}");
    assert!(err.message.contains("/credential/created_at"), "{err}");
    assert!(err.message.contains("nothing was stored"), "{err}");
    assert!(!err.to_string().contains("tok-123"), "{err}");
    assert!(err.hint.unwrap().contains("moat plugin check"));
    provider.shutdown().await;
}

#[tokio::test]
async fn a_token_a_plugin_logs_is_scrubbed_from_what_moat_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(dir.path(), "leaky", "leaky", &[]);
    let (connection, _) = handshake(&path, "leaky", fast()).await.unwrap();
    let credential = Credential::new("leaky", "tok-leaky-0123456789");
    connection.remember_secret(&credential.token);
    // The leaky fixture prints the token on stderr while answering container_env.
    let params = serde_json::json!({ "credential": credential });
    let _: serde_json::Value = connection
        .call("container_env", &params, fast().call)
        .await
        .unwrap();
    connection.shutdown().await;
    let tail = connection.stderr_tail().join("\n");
    assert!(tail.contains("using token [REDACTED]"), "{tail}");
    assert!(!tail.contains("tok-leaky-0123456789"), "{tail}");
}

#[tokio::test]
async fn a_token_quoted_in_a_plugin_error_is_scrubbed() {
    let dir = tempfile::tempdir().unwrap();
    let path = install(dir.path(), "leaky", "leaky", &[]);
    let provider = PluginProvider::start(&path, "leaky", fast()).await.unwrap();
    let credential = Credential::new("leaky", "tok-quoted-0123456789");
    // The leaky fixture quotes the token in configure_proxy's error message and hint.
    let err = provider.configure_proxy(&credential).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential);
    let text = err.to_string();
    assert!(text.contains("refused token [REDACTED]"), "{text}");
    assert!(!text.contains("tok-quoted-0123456789"), "{text}");
    provider.shutdown().await;
}

#[tokio::test]
async fn a_credential_goes_back_only_to_the_executable_it_was_granted_through() {
    let fx = fixture(
        "fake",
        &[
            ("FAKE_TOKEN", "tok-pinned-0123456"),
            ("FAKE_CAPS", "refresh"),
        ],
    );
    let provider = PluginProvider::start(&fx.path, "fake", fast())
        .await
        .unwrap();
    let step = provider.grant(GrantRequest::default()).await.unwrap();
    let GrantStep::Done { credential, .. } = step else {
        panic!("{step:?}")
    };
    let pin = moat::plugin::pin::sha256_file(&fx.path).unwrap();
    assert_eq!(
        credential.metadata.get(moat::plugin::pin::PIN_KEY),
        Some(&pin)
    );
    provider.configure_proxy(&credential).await.unwrap();

    // The executable changes on disk (an update, or someone with write access to PATH).
    let changed = std::fs::read_to_string(&fx.path).unwrap() + "# changed\n";
    support::write_executable(&fx.path, &changed, 0o755);
    // The running process is still the one the credential was granted through.
    provider.configure_proxy(&credential).await.unwrap();
    // A new process runs the new executable: the credential is not handed to it.
    provider.shutdown().await;
    let err = provider.configure_proxy(&credential).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential, "{err:?}");
    assert!(err.message.contains("moat did not hand it over"), "{err:?}");
    assert!(
        err.hint.as_deref().unwrap().contains("moat grant fake"),
        "{err:?}"
    );
    let refresh = provider.as_refreshable().unwrap();
    assert_eq!(
        refresh.refresh(&credential).await.unwrap_err().kind,
        ErrorKind::InvalidCredential
    );

    // A credential stored before pinning existed is handed over as before; refreshed, it is
    // pinned to the executable that refreshed it.
    let unpinned = Credential::new("fake", "tok-unpinned-0123456");
    provider.configure_proxy(&unpinned).await.unwrap();
    let refreshed = refresh.refresh(&unpinned).await.unwrap();
    assert_eq!(
        refreshed
            .credential
            .metadata
            .get(moat::plugin::pin::PIN_KEY),
        Some(&moat::plugin::pin::sha256_file(&fx.path).unwrap())
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn an_impostor_that_puts_the_real_plugin_back_once_started_gets_nothing() {
    let fx = fixture("fake", &[("FAKE_TOKEN", "tok-impostor-0123456")]);
    let provider = PluginProvider::start(&fx.path, "fake", fast())
        .await
        .unwrap();
    let step = provider.grant(GrantRequest::default()).await.unwrap();
    let GrantStep::Done { credential, .. } = step else {
        panic!("{step:?}")
    };
    provider.shutdown().await;

    // The impostor restores the real plugin over its own path as soon as it runs, so that a
    // hash taken after it started would match the pin.
    let real = std::fs::read_to_string(&fx.path).unwrap();
    let saved = fx.path.with_file_name("real-copy");
    support::write_executable(&saved, &real, 0o755);
    let body = real.strip_prefix("#!/bin/sh\n").unwrap();
    let impostor = format!(
        "#!/bin/sh\ncp -p '{}' '{}.swap' && mv '{}.swap' '{}'\n{body}",
        saved.display(),
        fx.path.display(),
        fx.path.display(),
        fx.path.display(),
    );
    support::write_executable(&fx.path, &impostor, 0o755);

    let err = provider.configure_proxy(&credential).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential, "{err:?}");
    assert_eq!(
        std::fs::read_to_string(&fx.path).unwrap(),
        real,
        "it did swap"
    );
    // The impostor still runs: it stays refused.
    let err = provider.configure_proxy(&credential).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential, "{err:?}");
    // Started again from the real file, the plugin gets its credential back.
    provider.shutdown().await;
    provider.configure_proxy(&credential).await.unwrap();
    provider.shutdown().await;
}
