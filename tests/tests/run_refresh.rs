//! A credential refreshed while a run goes on: the container keeps running, the proxy's rules are
//! swapped in place, and its next request carries the new token. Driven through the same manager
//! `moat run` uses, with a test provider whose credentials live a few seconds (no provider that
//! ships with moat expires that fast).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use moat::credential::{CredentialStore, KeyConfig};
use moat::home::MoatHome;
use moat::provider::{ProviderSource, Registry, resolve_grants};
use moat::proxy::{NetworkPolicy, ResolveOverrides, UpstreamConfig};
use moat::run::manager::{Manager, RunIo, RunRequest};
use moat::runtime::{DockerRuntime, ImageRequest};
use moat_plugin_sdk::{
    Credential, CredentialProvider, GrantRequest, GrantStep, ProviderInfo, ProviderResult,
    ProxyRule, ProxyRules, RefreshableProvider, Refreshed, Secret,
};
use moat_tests::{FakeHttps, Recorded, Reply, TestCa};
use moat_tests::{RecordingReporter, docker};

const HOST: &str = "api.rotating.test";
/// How long each credential lives: the refresh is due a second or so before.
const LIFETIME_SECS: i64 = 6;

/// Tokens `rotating-1`, `rotating-2`, ... each living [`LIFETIME_SECS`].
struct Rotating {
    issued: AtomicUsize,
}

fn credential(n: usize) -> Credential {
    let mut credential = Credential::new("rotating", format!("rotating-{n}"));
    credential.expires_at = Some(credential.created_at + chrono::Duration::seconds(LIFETIME_SECS));
    credential
}

#[async_trait]
impl CredentialProvider for Rotating {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("rotating", "test tokens that expire in seconds")
    }

    async fn grant(&self, _: GrantRequest) -> ProviderResult<GrantStep> {
        Ok(GrantStep::Done {
            credential: credential(1),
            notes: vec![],
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new().with(ProxyRule::Credential {
            host: HOST.into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: "rotating".into(),
        }))
    }

    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        Some(self)
    }
}

#[async_trait]
impl RefreshableProvider for Rotating {
    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn refresh(&self, _: &Credential) -> ProviderResult<Refreshed> {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 2;
        let credential = credential(n);
        Ok(Refreshed {
            rules: self.configure_proxy(&credential).await?,
            credential,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_during_the_run_changes_the_injected_token_without_a_restart() {
    if !docker::available("run_refresh") {
        return;
    }
    let image = docker::ensure_base_image();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = ca.write_pem(dir.path().join("ca"));
    let upstream = FakeHttps::start_for(&ca, &[HOST], |request: &Recorded| {
        Reply::text(
            200,
            format!("{}\n", request.header("authorization").is_some()),
        )
    });

    let home = MoatHome::at(dir.path().join("home"));
    let store = CredentialStore::open(&home, None, KeyConfig::file());
    store.save("rotating", &credential(1)).unwrap();
    let mut registry = Registry::new();
    registry
        .register(
            Arc::new(Rotating {
                issued: AtomicUsize::new(0),
            }),
            ProviderSource::Builtin,
        )
        .unwrap();
    let grants = resolve_grants(&registry, &store, &["rotating".to_owned()])
        .await
        .unwrap();

    let reporter = Arc::new(RecordingReporter::default());
    let manager = Manager {
        home: home.clone(),
        credentials: Arc::new(store),
        runtime: Arc::new(DockerRuntime::connect().await.unwrap()),
        reporter: reporter.clone(),
        upstream: UpstreamConfig {
            extra_ca_file: Some(ca_pem),
            resolve: ResolveOverrides::parse(&format!("{HOST}:443:127.0.0.1:{}", upstream.port()))
                .unwrap(),
            ..UpstreamConfig::default()
        },
    };
    let workspace = tempfile::tempdir().unwrap();
    // Two requests: one at once, one well after the first token's refresh was due.
    let script = format!(
        "curl -sS --max-time 10 https://{HOST}/first && sleep {} && curl -sS --max-time 10 https://{HOST}/second",
        LIFETIME_SECS + 2
    );
    let request = RunRequest {
        workspace: workspace.path().to_owned(),
        command: vec!["sh".into(), "-c".into(), script],
        name: None,
        configured_name: None,
        config_env: vec![],
        flag_env: vec![],
        interactive: false,
        tty: false,
        image: ImageRequest::new(image),
        policy: NetworkPolicy::default(),
        mounts: vec![],
        agent: None,
    };
    let io = RunIo {
        stdout: Box::new(tokio::io::sink()),
        stderr: Box::new(tokio::io::sink()),
        stdin: None,
        terminal: None,
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let outcome = manager.run(request, grants, io, stopped).await.unwrap();
    assert_eq!(outcome.exit_code, Some(0), "{:?}", reporter.lines());

    let seen: Vec<(String, String)> = upstream
        .requests()
        .iter()
        .map(|r| {
            (
                r.path_only().to_owned(),
                r.header("authorization").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], ("/first".into(), "Bearer rotating-1".into()));
    assert_eq!(seen[1].0, "/second");
    assert_ne!(
        seen[1].1, "Bearer rotating-1",
        "the old token after its refresh: {seen:?}"
    );
    assert!(seen[1].1.starts_with("Bearer rotating-"), "{seen:?}");
    // The renewed credential is stored for the next run.
    let stored = CredentialStore::open(&home, None, KeyConfig::file())
        .load("rotating")
        .unwrap();
    assert_ne!(stored.token.expose(), "rotating-1");
}
