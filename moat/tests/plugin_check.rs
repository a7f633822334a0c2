//! `moat plugin check` against good and deliberately broken plugins: it must pass the good ones
//! and name what is wrong with the others, in plain words, without hanging.

#[path = "fixtures/support.rs"]
mod support;

use std::path::Path;

use assert_cmd::Command;
use predicates::str::contains;
use support::install;

fn check(path: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("moat")
        .unwrap()
        .args(["plugin", "check"])
        .arg(path)
        .env("MOAT_PLUGIN_TIMEOUT_SECS", "2")
        .env("MOAT_HOME", path.parent().unwrap())
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
}

fn report(path: &Path) -> serde_json::Value {
    let output = Command::cargo_bin("moat")
        .unwrap()
        .args(["plugin", "check", "--json"])
        .arg(path)
        .env("MOAT_PLUGIN_TIMEOUT_SECS", "2")
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The outcome of the check called `name` in a JSON report.
fn outcome(report: &serde_json::Value, name: &str) -> String {
    let checks = report["checks"].as_array().unwrap();
    let check = checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name}: {report:#}"));
    check["outcome"].as_str().unwrap().to_string()
}

#[test]
fn a_good_plugin_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(
        dir.path(),
        "good",
        "ok",
        &[("FAKE_CAPS", "agent,refresh,run_stopped")],
    );
    check(&plugin)
        .success()
        .stdout(contains("All"))
        .stdout(contains("checks passed"));
    let report = report(&plugin);
    for name in [
        "handshake",
        "grant",
        "configure_proxy",
        "container_env",
        "refresh",
        "prepare_container",
        "run_stopped",
        "unknown method",
        "logs",
    ] {
        assert_eq!(outcome(&report, name), "pass", "{name}: {report:#}");
    }
}

#[test]
fn a_leaky_plugin_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(dir.path(), "leaky", "leaky", &[]);
    check(&plugin)
        .code(1)
        .stdout(contains("the real token reaches the container environment"))
        .stdout(contains("appeared in the plugin's stderr"));
}

#[test]
fn a_plugin_that_lies_about_its_version_fails() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(dir.path(), "liar", "bad_version", &[]);
    let report = report(&plugin);
    assert_eq!(outcome(&report, "version refusal"), "fail", "{report:#}");
    assert_eq!(outcome(&report, "handshake"), "fail", "{report:#}");
}

#[test]
fn a_hanging_plugin_is_reported_not_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(dir.path(), "slow", "hang_call", &[]);
    let started = std::time::Instant::now();
    check(&plugin).code(1).stdout(contains("timed out"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn garbage_and_wrong_ids_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, words) in [("invalid_json", "invalid JSON"), ("wrong_id", "id")] {
        let plugin = install(dir.path(), &mode.replace('_', "-"), mode, &[]);
        check(&plugin).code(1).stdout(contains(words));
    }
}

#[test]
fn bad_names_and_permissions_stop_early() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(dir.path(), "good", "ok", &[]);
    let renamed = dir.path().join("provider-good");
    std::fs::rename(&plugin, &renamed).unwrap();
    check(&renamed)
        .code(1)
        .stdout(contains("moat only discovers executables named"));

    let plugin = install(dir.path(), "noexec", "ok", &[]);
    support::write_executable(&plugin, &std::fs::read_to_string(&plugin).unwrap(), 0o644);
    check(&plugin).code(1).stdout(contains("chmod +x"));
}

/// The grant's check lines from a JSON report, as `outcome: detail`.
fn grant_lines(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "grant")
        .map(|c| {
            format!(
                "{}: {}",
                c["outcome"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_check_answers_the_grant_questions_itself() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = install(dir.path(), "good", "ok", &[]);
    let lines = grant_lines(&report(&plugin));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("pass: "), "{lines:?}");
    assert!(lines[0].contains("after asking for token"), "{lines:?}");
}

#[test]
fn a_grant_broken_after_its_first_question_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, words) in [
        ("grant_bad_prompt", "grant.result.json"),
        ("grant_reasks", "asked \"token\" again"),
        ("grant_no_created_at", "at /credential"),
        ("grant_other_provider", "\"someone-else\""),
    ] {
        let plugin = install(dir.path(), &mode.replace('_', "-"), mode, &[]);
        let report = report(&plugin);
        let lines = grant_lines(&report);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("fail: ") && l.contains(words)),
            "{mode}: {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("pass: ")),
            "{mode}: {lines:?}"
        );
        check(&plugin).code(1);
    }
}
