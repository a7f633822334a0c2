//! Deliberately broken plugins, as real child processes: each one gives a clear error naming the
//! plugin and what happened, leaves no process behind (reaped, not a zombie), and never hangs
//! moat.

#[path = "fixtures/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moat::plugin::{Failure, PluginFault, PluginProvider, Timeouts, handshake};
use moat_plugin_sdk::{Credential, CredentialProvider, ErrorKind, ProviderError};
use support::{assert_cut_after, assert_reaped, fast, install, lines_with, starts, wait_dead};

struct Case {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: PathBuf,
}

fn case(name: &str, mode: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fake.log");
    let path = install(
        dir.path(),
        name,
        mode,
        &[("FAKE_LOG", log.to_str().unwrap())],
    );
    Case {
        _dir: dir,
        path,
        log,
    }
}

/// Starts the plugin expecting its handshake to fail; returns the fault.
async fn failed_handshake(case: &Case, name: &str, timeouts: Timeouts) -> PluginFault {
    match handshake(&case.path, name, timeouts).await {
        Ok(_) => panic!("the handshake of {name} succeeded"),
        Err(fault) => fault,
    }
}

/// Starts the plugin (handshake succeeds), then makes one `configure_proxy` call that fails.
async fn failed_call(case: &Case, name: &str, timeouts: Timeouts) -> ProviderError {
    let provider = PluginProvider::start(&case.path, name, timeouts)
        .await
        .unwrap();
    let pid = provider.pid().await.unwrap();
    let err = provider
        .configure_proxy(&Credential::new(name, "tok-secret-123"))
        .await
        .unwrap_err();
    assert_reaped(pid);
    assert_eq!(provider.pid().await, None, "a failed plugin is not reused");
    assert!(!err.to_string().contains("tok-secret-123"), "{err}");
    err
}

fn assert_all_reaped(log: &Path) {
    let pids = starts(log);
    assert!(!pids.is_empty(), "the plugin never started");
    pids.into_iter().for_each(assert_reaped);
}

#[tokio::test]
async fn hangs_at_start() {
    let case = case("hangs", "hang_start");
    let timeouts = Timeouts {
        initialize: Duration::from_millis(1500),
        ..fast()
    };
    let started = Instant::now();
    let fault = failed_handshake(&case, "hangs", timeouts).await;
    assert_cut_after(started, timeouts.initialize);
    assert_eq!(fault.failure, Failure::Timeout(Duration::from_millis(1500)));
    let text = fault.to_string();
    assert!(text.contains("plugin hangs ("), "{text}");
    assert!(text.contains(&case.path.display().to_string()), "{text}");
    assert!(
        text.contains("timed out after 1.5s during initialize"),
        "{text}"
    );
    // Its stderr (a JSON log line) is in the report.
    assert!(
        fault.hint().contains("info: fake plugin starting"),
        "{}",
        fault.hint()
    );
    assert_all_reaped(&case.log);
    // The whole process group was killed, the plugin's own child too.
    for child in lines_with(&case.log, "child") {
        assert!(
            wait_dead(child, Duration::from_secs(10)),
            "grandchild {child} survived"
        );
    }
}

#[tokio::test]
async fn exits_at_start() {
    let case = case("quits", "exit_at_start");
    let fault = failed_handshake(&case, "quits", fast()).await;
    let text = fault.to_string();
    assert!(
        text.contains("exited with status 1 during initialize"),
        "{text}"
    );
    let err = ProviderError::from(fault);
    assert!(
        err.hint
            .as_deref()
            .unwrap()
            .contains("fatal: missing configuration file"),
        "{err:?}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn hangs_in_a_call_then_restarts_on_the_next() {
    let case = case("stuck", "hang_call");
    let timeouts = Timeouts {
        call: Duration::from_millis(500),
        ..fast()
    };
    let started = Instant::now();
    let err = failed_call(&case, "stuck", timeouts).await;
    assert_cut_after(started, timeouts.call);
    assert_eq!(err.kind, ErrorKind::Internal);
    assert!(
        err.message
            .contains("timed out after 500ms during configure_proxy; it was stopped"),
        "{err}"
    );
    assert!(err.hint.unwrap().contains("MOAT_PLUGIN_TIMEOUT_SECS"));
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn the_next_call_after_a_failure_starts_a_fresh_process() {
    let case = case("again", "hang_call");
    let timeouts = Timeouts {
        call: Duration::from_millis(300),
        ..fast()
    };
    let provider = PluginProvider::start(&case.path, "again", timeouts)
        .await
        .unwrap();
    let credential = Credential::new("again", "t");
    assert!(provider.configure_proxy(&credential).await.is_err());
    assert!(provider.configure_proxy(&credential).await.is_err());
    let pids = starts(&case.log);
    assert_eq!(pids.len(), 2, "{pids:?}");
    pids.into_iter().for_each(assert_reaped);
}

#[tokio::test]
async fn crashes_mid_call() {
    let case = case("crashy", "crash_call");
    let err = failed_call(&case, "crashy", fast()).await;
    assert!(
        err.message
            .contains("exited with status 3 during configure_proxy"),
        "{err}"
    );
    assert!(
        err.hint.unwrap().contains("panic: boom in configure_proxy"),
        "the stderr tail is in the report"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn a_line_over_the_limit_is_fatal() {
    let case = case("chatty", "long_line");
    let err = failed_call(&case, "chatty", fast()).await;
    assert!(
        err.message
            .contains("sent a line longer than the protocol's limit of 16 MiB"),
        "{err}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn the_wrong_id_is_fatal() {
    let case = case("confused", "wrong_id");
    let err = failed_call(&case, "confused", fast()).await;
    assert!(err.message.contains("answered with the wrong id"), "{err}");
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn invalid_json_is_fatal() {
    let case = case("garbled", "invalid_json");
    let err = failed_call(&case, "garbled", fast()).await;
    assert!(
        err.message
            .contains("sent invalid JSON-RPC: a line that is not valid JSON"),
        "{err}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn json_that_is_not_json_rpc_is_fatal() {
    let case = case("offtopic", "not_jsonrpc");
    let err = failed_call(&case, "offtopic", fast()).await;
    assert!(err.message.contains("sent invalid JSON-RPC"), "{err}");
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn a_banner_and_garbage_on_stdout_are_skipped() {
    let case = case("noisy", "banner");
    let provider = PluginProvider::start(&case.path, "noisy", fast())
        .await
        .unwrap();
    for _ in 0..3 {
        let rules = provider
            .configure_proxy(&Credential::new("noisy", "tok"))
            .await
            .unwrap();
        assert_eq!(rules.rules.len(), 1);
    }
    let pid = provider.pid().await.unwrap();
    provider.shutdown().await;
    assert_reaped(pid);
    assert_eq!(starts(&case.log), vec![pid]);
}

#[tokio::test]
async fn a_plugin_lying_about_its_protocol_version_is_refused() {
    let case = case("liar", "bad_version");
    let fault = failed_handshake(&case, "liar", fast()).await;
    let text = fault.to_string();
    assert!(
        text.contains(
            "failed its handshake: it answered with protocol version 99, but moat offered only 1"
        ),
        "{text}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn no_common_protocol_version_names_both_sides() {
    let case = case("future", "unsupported_version");
    let fault = failed_handshake(&case, "future", fast()).await;
    let text = fault.to_string();
    assert!(
        text.contains("it speaks none of the protocol versions moat offered (1)"),
        "{text}"
    );
    assert!(
        text.contains("this plugin speaks protocol 7 only"),
        "{text}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn a_plugin_must_be_named_after_its_executable() {
    let case = case("impostor", "wrong_name");
    let fault = failed_handshake(&case, "impostor", fast()).await;
    let text = fault.to_string();
    assert!(
        text.contains(
            "it calls itself \"someone-else\", but its executable is named moat-provider-impostor"
        ),
        "{text}"
    );
    assert_all_reaped(&case.log);
}

#[tokio::test]
async fn a_file_that_is_not_executable_cannot_start() {
    let case = case("plain", "ok");
    support::write_executable(&case.path, "#!/bin/sh\n", 0o644);
    let fault = failed_handshake(&case, "plain", fast()).await;
    assert!(matches!(fault.failure, Failure::Spawn(_)), "{fault:?}");
    let text = fault.to_string();
    assert!(text.contains("could not be started"), "{text}");
    assert!(fault.hint().contains("is an executable moat plugin"));
}

#[tokio::test]
async fn shutdown_kills_a_plugin_that_ignores_end_of_file() {
    let case = case("stubborn", "ignore_eof");
    let timeouts = Timeouts {
        exit: Duration::from_millis(300),
        ..fast()
    };
    let provider = PluginProvider::start(&case.path, "stubborn", timeouts)
        .await
        .unwrap();
    let pid = provider.pid().await.unwrap();
    let started = Instant::now();
    provider.shutdown().await;
    assert_cut_after(started, timeouts.exit);
    assert_reaped(pid);
}

#[tokio::test]
async fn dropping_a_running_plugin_kills_and_reaps_it() {
    let case = case("dropped", "ok");
    let provider = PluginProvider::start(&case.path, "dropped", fast())
        .await
        .unwrap();
    let pid = provider.pid().await.unwrap();
    drop(provider);
    // The reaper task does it in the background: wait for it.
    let start = Instant::now();
    while support::state(pid).is_some() && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_reaped(pid);
}

#[tokio::test]
async fn what_a_plugin_starts_in_its_group_ends_with_it_after_a_normal_exit() {
    let case = case("parent", "leaves_child");
    let provider = PluginProvider::start(&case.path, "parent", fast())
        .await
        .unwrap();
    let pid = provider.pid().await.unwrap();
    let children = lines_with(&case.log, "child");
    assert_eq!(children.len(), 1, "the plugin logged no child");
    assert!(
        !wait_dead(children[0], Duration::ZERO),
        "the child died before the plugin exited: the test proves nothing"
    );
    // A graceful shutdown: the plugin answers and exits on its own, leaving its child behind.
    provider.shutdown().await;
    assert_reaped(pid);
    assert!(
        wait_dead(children[0], Duration::from_secs(10)),
        "child {} outlived its plugin",
        children[0]
    );
}
