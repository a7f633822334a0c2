//! The manager drives a provider only through the contract: a test double's environment, bind
//! mounts and init files reach the container, and its `run_stopped` and `cleanup` are called
//! exactly once at the end, whether the command succeeded, failed or never started. An agent
//! provider's `prepare_container` adds its staged environment and files beside them.

use std::sync::Arc;

use moat::credential::{CredentialStore, KeyConfig};
use moat::home::MoatHome;
use moat::provider::{ProviderSource, Registry, resolve_grants};
use moat::proxy::{NetworkPolicy, UpstreamConfig};
use moat::run::manager::{Manager, RunIo, RunRequest};
use moat::runtime::{DockerRuntime, ImageRequest};
use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{
    CleanupToken, ContainerConfig, ContainerFiles, Credential, EnvVar, InitFile, Mount,
};
use moat_tests::{RecordingReporter, docker};
use tokio::io::AsyncReadExt as _;

struct Setup {
    _dir: tempfile::TempDir,
    home: MoatHome,
    workspace: tempfile::TempDir,
    shared: tempfile::TempDir,
    mock: MockProvider,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let home = MoatHome::at(dir.path().join("home"));
    let store = CredentialStore::open(&home, None, KeyConfig::file());
    store
        .save("mock", &Credential::new("mock", "mock-secret-token"))
        .unwrap();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("note.txt"), "from the host\n").unwrap();
    let workspace = tempfile::tempdir().unwrap();
    // An ordinary owner, as a developer's checkout has.
    std::os::unix::fs::chown(workspace.path(), Some(4321), Some(4321)).unwrap();
    let mock = MockProvider::new("mock")
        .env("MOCK_TOKEN", "mock-placeholder")
        .files(ContainerFiles {
            mounts: vec![Mount {
                source: shared.path().to_owned(),
                target: "/opt/mock".into(),
                read_only: true,
            }],
            init_files: vec![InitFile {
                path: "/home/moatuser/.config/mock/config.toml".into(),
                content: "placeholder = true\n".into(),
            }],
            cleanup: Some(CleanupToken("staging-7".into())),
        })
        .run_stopped_hook();
    Setup {
        _dir: dir,
        home,
        workspace,
        shared,
        mock,
    }
}

async fn run(setup: &Setup, command: &str) -> (Result<i64, String>, String, Vec<String>) {
    run_with(setup, &setup.mock, command).await
}

async fn run_with(
    setup: &Setup,
    mock: &MockProvider,
    command: &str,
) -> (Result<i64, String>, String, Vec<String>) {
    let store = CredentialStore::open(&setup.home, None, KeyConfig::file());
    let mut registry = Registry::new();
    registry
        .register(Arc::new(mock.clone()), ProviderSource::Builtin)
        .unwrap();
    let grants = resolve_grants(&registry, &store, &["mock".to_owned()])
        .await
        .unwrap();
    let reporter = Arc::new(RecordingReporter::default());
    let manager = Manager {
        home: setup.home.clone(),
        credentials: Arc::new(store),
        runtime: Arc::new(DockerRuntime::connect().await.unwrap()),
        reporter: reporter.clone(),
        upstream: UpstreamConfig::default(),
    };
    let (out_write, mut out_read) = tokio::io::duplex(1 << 16);
    let request = RunRequest {
        workspace: setup.workspace.path().to_owned(),
        command: vec!["sh".into(), "-c".into(), command.into()],
        name: None,
        configured_name: None,
        config_env: vec![],
        flag_env: vec![],
        interactive: false,
        tty: false,
        image: ImageRequest::new(docker::ensure_base_image()),
        policy: NetworkPolicy::default(),
        mounts: vec![],
        agent: None,
    };
    let io = RunIo {
        stdout: Box::new(out_write),
        stderr: Box::new(tokio::io::sink()),
        stdin: None,
        terminal: None,
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let outcome = manager.run(request, grants, io, stopped).await;
    drop(manager);
    let mut stdout = String::new();
    out_read.read_to_string(&mut stdout).await.unwrap();
    let lines = reporter.lines();
    let result = outcome
        .map(|o| o.exit_code.unwrap_or(-1))
        .map_err(|e| e.to_string());
    (result, stdout, lines)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_mounts_and_init_files_reach_the_container_and_the_end_is_called_once() {
    if !docker::available("run_contract") {
        return;
    }
    let setup = setup();
    let script = "echo \"env=$MOCK_TOKEN\"; cat /opt/mock/note.txt; \
                  f=$HOME/.config/mock/config.toml; cat $f; stat -c 'owner=%u' $f; \
                  touch /opt/mock/x 2>/dev/null || echo read-only";
    let (result, stdout, lines) = run(&setup, script).await;
    assert_eq!(result, Ok(0), "{lines:?}\n{stdout}");
    assert!(stdout.contains("env=mock-placeholder"), "{stdout}");
    assert!(stdout.contains("from the host"), "{stdout}");
    assert!(stdout.contains("placeholder = true"), "{stdout}");
    assert!(stdout.contains("owner=4321"), "{stdout}");
    assert!(stdout.contains("read-only"), "{stdout}");
    assert!(!setup.shared.path().join("x").exists());
    let calls = setup.mock.calls();
    for once in [
        "container_env",
        "mounts",
        "run_stopped",
        "cleanup:staging-7",
    ] {
        assert_eq!(
            calls.iter().filter(|c| *c == once).count(),
            1,
            "{once} in {calls:?}"
        );
    }
    // The hook's answer is kept in the run's metadata.
    let runs = std::fs::read_dir(setup.home.root().join("runs")).unwrap();
    let dir = runs.map(|e| e.unwrap().path()).next().unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["provider_meta"]["run_id"], meta["id"], "{meta}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_providers_staged_files_and_env_reach_the_container_withheld_env_does_not_and_all_is_cleaned_up()
 {
    if !docker::available("run_contract") {
        return;
    }
    let setup = setup();
    let agent = setup.mock.clone().staged(ContainerConfig {
        env: vec![EnvVar::new("MOCK_AGENT_HOME", "/home/moatuser/.mockagent")],
        files: ContainerFiles {
            mounts: vec![],
            init_files: vec![InitFile {
                path: "/home/moatuser/.mockagent/settings.json".into(),
                content: "{\"trusted\": \"/workspace\"}\n".into(),
            }],
            cleanup: Some(CleanupToken("agent-staging".into())),
        },
        // The provider's own `container_env` variable, kept from the container by its agent.
        withhold_env: vec!["MOCK_TOKEN".into()],
    });
    let script = "echo \"env=$MOCK_TOKEN agent=$MOCK_AGENT_HOME\"; \
                  cat $HOME/.mockagent/settings.json; cat $HOME/.config/mock/config.toml";
    let (result, stdout, lines) = run_with(&setup, &agent, script).await;
    assert_eq!(result, Ok(0), "{lines:?}\n{stdout}");
    assert!(
        stdout.contains("env= agent=/home/moatuser/.mockagent"),
        "{stdout}"
    );
    assert!(stdout.contains("\"trusted\": \"/workspace\""), "{stdout}");
    assert!(stdout.contains("placeholder = true"), "{stdout}");
    let calls = agent.calls();
    for once in [
        "prepare_container",
        "cleanup:staging-7",
        "cleanup:agent-staging",
    ] {
        assert_eq!(
            calls.iter().filter(|c| *c == once).count(),
            1,
            "{once} in {calls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_fails_to_start_still_cleans_up_exactly_once() {
    if !docker::available("run_contract_failure") {
        return;
    }
    let mut setup = setup();
    // A mount whose source is gone: the engine refuses to create the container, after the
    // provider's files were asked for.
    let gone = setup.shared.path().join("gone");
    setup.mock = setup.mock.clone().files(ContainerFiles {
        mounts: vec![Mount {
            source: gone,
            target: "/opt/gone".into(),
            read_only: true,
        }],
        init_files: vec![],
        cleanup: Some(CleanupToken("staging-8".into())),
    });
    let (result, _stdout, _lines) = run(&setup, "true").await;
    assert!(result.is_err(), "{result:?}");
    let calls = setup.mock.calls();
    assert_eq!(
        calls.iter().filter(|c| *c == "cleanup:staging-8").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "run_stopped").count(),
        1,
        "{calls:?}"
    );
}
