//! The `moat` binary with plugins on its PATH: `moat grant providers` lists and warns,
//! `moat grant <plugin>` works like a built-in, listings come from the cache, and no plugin
//! outlives moat, even when moat is killed.

#[path = "fixtures/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use support::{install, starts, wait_dead};

struct Env {
    root: tempfile::TempDir,
    log: PathBuf,
    extra: Vec<(String, String)>,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["bin", "bin2", "home", "work"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        let log = root.path().join("fake.log");
        Env {
            root,
            log,
            extra: Vec::new(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn install(&self, dir: &str, name: &str, mode: &str) -> PathBuf {
        let dir = self.dir(dir);
        std::fs::create_dir_all(&dir).unwrap();
        install(
            &dir,
            name,
            mode,
            &[("FAKE_LOG", self.log.to_str().unwrap())],
        )
    }

    fn set(&mut self, key: &str, value: &str) {
        self.extra.push((key.into(), value.into()));
    }

    fn vars(&self) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}:/usr/bin:/bin",
            self.dir("bin").display(),
            self.dir("bin2").display()
        );
        let mut vars = vec![
            ("PATH".to_string(), path),
            ("HOME".into(), self.root.path().display().to_string()),
            ("MOAT_HOME".into(), self.dir("home").display().to_string()),
            ("MOAT_KEYRING_BACKEND".into(), "file".into()),
            ("NO_COLOR".into(), "1".into()),
            ("MOAT_PLUGIN_TIMEOUT_SECS".into(), "3".into()),
        ];
        vars.extend(self.extra.iter().cloned());
        vars
    }

    fn moat(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.env_clear()
            .envs(self.vars())
            .current_dir(self.dir("work"))
            .timeout(Duration::from_secs(60));
        cmd
    }

    fn starts(&self) -> Vec<u32> {
        starts(&self.log)
    }
}

fn row(name: &str, description: &str, path: &Path) -> String {
    format!(
        r"{name}\s+{description}\s+plugin \({}\)",
        regex_escape(&path.display().to_string())
    )
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '-' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn providers_lists_plugins_and_warns_kubectl_style() {
    let env = Env::new();
    let fake = env.install("bin", "fake", "ok");
    let shadowed = env.install("bin2", "fake", "ok");
    let hidden = env.install("bin", "github", "ok");
    let liar = env.install("bin", "liar", "bad_version");
    let lazy = env.install("home/plugins", "lazy", "ok");
    let plain = env.dir("bin").join("moat-provider-plain");
    support::write_executable(&plain, "#!/bin/sh\n", 0o644);

    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"github\s+GitHub token\s+builtin").unwrap())
        .stdout(predicate::str::is_match(row("fake", "Fake plugin", &fake)).unwrap())
        .stdout(predicate::str::is_match(row("lazy", "Fake plugin", &lazy)).unwrap())
        .stdout(contains("liar").not())
        .stderr(contains(format!(
            "warning: {} is named like a moat plugin, but it is not executable",
            plain.display()
        )))
        .stderr(contains(format!(
            "warning: {} is shadowed by {}",
            shadowed.display(),
            fake.display()
        )))
        .stderr(contains(format!(
            "warning: {} is hidden by the built-in provider github",
            hidden.display()
        )))
        .stderr(contains(format!(
            "warning: {} failed its handshake: it answered with protocol version 99, but moat offered only 1",
            liar.display()
        )));

    let output = env
        .moat()
        .args(["grant", "providers", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let providers = json["providers"].as_array().unwrap();
    let fake_row = providers.iter().find(|p| p["provider"] == "fake").unwrap();
    assert_eq!(fake_row["source"], "plugin");
    assert_eq!(fake_row["path"], fake.display().to_string());
    assert_eq!(fake_row["description"], "Fake plugin");
    let warnings = json["warnings"].as_array().unwrap();
    let kinds: Vec<&str> = warnings
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    for kind in ["not_executable", "shadowed", "hidden", "handshake_failed"] {
        assert!(kinds.contains(&kind), "{kind} missing from {warnings:#?}");
    }
    let hidden_json = warnings.iter().find(|w| w["kind"] == "hidden").unwrap();
    assert_eq!(hidden_json["path"], hidden.display().to_string());
    assert_eq!(hidden_json["by"], "github");
    assert!(
        hidden_json["message"]
            .as_str()
            .unwrap()
            .ends_with("is hidden by the built-in provider github")
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");

    // Every plugin started for the first listing was stopped; the second listing started none
    // (the cache), not even the one whose handshake failed.
    let pids = env.starts();
    assert_eq!(pids.len(), 3, "fake, lazy and liar, once each: {pids:?}");
    for pid in pids {
        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} still runs");
    }
}

#[test]
fn grant_through_a_plugin_stores_the_credential() {
    let mut env = Env::new();
    env.install("bin", "fake", "ok");

    // From stdin, as for a built-in: the plugin asks, moat reads the answer.
    env.moat()
        .args(["grant", "fake"])
        .write_stdin("tok-from-stdin\n")
        .assert()
        .success()
        .stdout(contains("Credential saved to"))
        .stderr(contains("tok-from-stdin").not());
    env.moat()
        .args(["grant", "show", "fake", "--json"])
        .assert()
        .success()
        .stdout(contains("\"provider\": \"fake\""))
        .stdout(contains("fake-user"))
        .stdout(contains("tok-from-stdin").not());

    // A rejection keeps its kind (exit code 4) and the plugin's hint.
    env.moat()
        .args(["grant", "fake"])
        .write_stdin("bad\n")
        .assert()
        .code(4)
        .stderr(contains("the fake service rejected the token"))
        .stderr(contains("Use a good token"));

    // Non-interactive, from the environment the plugin inherits.
    env.set("FAKE_TOKEN", "tok-from-env");
    env.moat()
        .args(["grant", "fake", "--no-input"])
        .assert()
        .success();
    env.moat()
        .args(["grant", "list"])
        .assert()
        .success()
        .stdout(contains("fake"));
    for pid in env.starts() {
        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} still runs");
    }
}

/// The `log-level` values the fake plugin's starts logged, in order.
fn log_levels(env: &Env) -> Vec<String> {
    let text = std::fs::read_to_string(&env.log).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.strip_prefix("log-level "))
        .filter_map(|rest| rest.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

#[test]
fn plugins_are_told_the_log_level_from_moats_verbosity() {
    let mut env = Env::new();
    env.install("bin", "fake", "ok");
    env.set("FAKE_TOKEN", "tok-from-env-0123");
    for (args, level) in [
        (&["grant", "fake", "--no-input"][..], "info"),
        (&["-v", "grant", "fake", "--no-input"][..], "debug"),
        (&["-vv", "grant", "fake", "--no-input"][..], "trace"),
    ] {
        std::fs::write(&env.log, "").unwrap();
        env.moat().args(args).assert().success();
        let levels = log_levels(&env);
        assert!(!levels.is_empty(), "{args:?}: the plugin was not started");
        assert!(levels.iter().all(|l| l == level), "{args:?}: {levels:?}");
    }
    // A level the user set is passed on as it is.
    env.set("MOAT_PLUGIN_LOG", "warn");
    std::fs::write(&env.log, "").unwrap();
    env.moat()
        .args(["-vv", "grant", "fake", "--no-input"])
        .assert()
        .success();
    let levels = log_levels(&env);
    assert!(
        !levels.is_empty() && levels.iter().all(|l| l == "warn"),
        "{levels:?}"
    );
}

#[test]
fn a_token_the_plugin_logs_before_returning_it_is_redacted() {
    let mut env = Env::new();
    env.install("bin", "fake", "logs_token");
    let token = "tok-self-read-0123456789";
    env.set("FAKE_TOKEN", token);
    // At trace level every line the plugin writes is shown, so nothing hides the leak but
    // redaction: the plugin logs the token before moat could know it.
    let output = env
        .moat()
        .args(["-vv", "grant", "fake", "--no-input"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains(token), "{stderr}");
    for line in [
        "read token [REDACTED]",
        "plain line with [REDACTED]",
        "about to return [REDACTED]",
        "skipped a stdout line of",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in {stderr}");
    }
}

#[test]
fn a_failing_grant_never_prints_a_secret_of_the_environment() {
    let mut env = Env::new();
    env.install("bin", "fake", "leaks_env");
    // Never handed to moat: a token variable, a password variable, and a variable with a plain
    // name that the plugin's prompt says it reads.
    let secrets = [
        ("FAKE_TOKEN", "tok-from-env-0123456789"),
        ("FAKE_SERVICE_PASSWORD", "pw-from-env-9876543210"),
        ("FAKE_ACCOUNT", "account-from-env-55555"),
    ];
    for (key, value) in secrets {
        env.set(key, value);
    }
    for verbosity in [None, Some("-vv")] {
        let mut moat = env.moat();
        // The account prompt is answered on stdin.
        moat.args(verbosity)
            .args(["grant", "fake"])
            .write_stdin("someone\n");
        let output = moat.output().unwrap();
        assert!(!output.status.success(), "{output:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for (key, value) in secrets {
            assert!(
                !text.contains(value),
                "{key} leaked ({verbosity:?}): {text}"
            );
        }
        assert!(
            text.contains("the fake service refused [REDACTED] [REDACTED] [REDACTED]"),
            "{text}"
        );
        if verbosity.is_some() {
            for line in [
                "read [REDACTED] [REDACTED]",
                "plain line with [REDACTED] [REDACTED]",
                "about to fail with [REDACTED] [REDACTED]",
            ] {
                assert!(text.contains(line), "missing {line:?} in {text}");
            }
        }
    }
}

#[test]
fn moat_sends_no_request_before_initialize_is_answered() {
    let mut env = Env::new();
    env.install("bin", "late", "late_init");
    env.set("FAKE_TOKEN", "tok-late-0123456789");
    let cache = env.dir("home").join("cache/plugins.json");
    for path in ["cold", "cached"] {
        assert_eq!(cache.exists(), path == "cached", "{path}");
        env.moat()
            .args(["grant", "late", "--no-input"])
            .assert()
            .success();
    }
    // The plugin handles every message on its own thread and answers initialize 1 s late: moat
    // waited each time, sending nothing else (only a notification would be allowed) before it.
    let log = std::fs::read_to_string(&env.log).unwrap();
    let received: Vec<&str> = log.lines().filter(|l| l.starts_with("recv ")).collect();
    let before: Vec<&&str> = received.iter().filter(|l| l.ends_with(" before")).collect();
    assert!(
        before.iter().all(|l| **l == "recv initialize before"),
        "a request reached the plugin before its initialize answer: {log}"
    );
    assert_eq!(before.len(), env.starts().len(), "{log}");
    let grants = received
        .iter()
        .filter(|l| **l == "recv grant after")
        .count();
    assert_eq!(grants, 2, "{log}");
}

#[test]
fn granting_through_a_plugin_that_failed_its_handshake_says_why_and_what_to_do() {
    let mut env = Env::new();
    env.install("bin", "slow7", "hang_start");
    env.install("bin", "major", "bad_version");
    env.install("bin", "misnamed", "wrong_name");
    let plain = env.install("bin", "plain", "ok");
    support::write_executable(&plain, "#!/bin/sh\n", 0o644);
    env.set("MOAT_PLUGIN_TIMEOUT_SECS", "1");
    let cases = [
        ("slow7", "timed out after 1s", "MOAT_PLUGIN_TIMEOUT_SECS"),
        (
            "major",
            "protocol version 99",
            "report it to the plugin's author",
        ),
        (
            "misnamed",
            "it calls itself \"someone-else\"",
            "report it to the plugin's author",
        ),
        ("plain", "not executable", "chmod +x"),
    ];
    // Asked now, then from the cache of failures.
    for round in ["fresh", "cached"] {
        for (name, why, what_to_do) in cases {
            let output = env
                .moat()
                .args(["grant", name, "--no-input"])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(3), "{round} {name}: {stderr}");
            for expected in [
                &format!("provider {name} is a plugin moat cannot use"),
                &format!("moat-provider-{name}"),
                why,
                what_to_do,
            ] {
                assert!(
                    stderr.contains(expected),
                    "{round} {name}: missing {expected:?} in {stderr}"
                );
            }
            assert!(!stderr.contains("unknown provider"), "{stderr}");
        }
    }
    // A name that is no plugin at all is still unknown.
    env.moat()
        .args(["grant", "nothing-here", "--no-input"])
        .assert()
        .code(3)
        .stderr(contains("unknown provider: nothing-here"));
}

/// The provider names of the plugins started so far, in order.
fn started_names(env: &Env) -> Vec<String> {
    let log = std::fs::read_to_string(&env.log).unwrap_or_default();
    log.lines()
        .filter(|l| l.starts_with("start "))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[test]
fn a_grant_starts_only_its_plugin_and_only_once() {
    let mut env = Env::new();
    env.install("bin", "fake", "ok");
    env.install("bin", "slow", "hang_start");
    env.install("bin2", "other", "ok");
    env.set("FAKE_TOKEN", "tok-once-0123456789");
    // Cold cache, then cached: one start each time, never the others.
    for round in 1..=2 {
        let started = Instant::now();
        env.moat()
            .args(["grant", "fake", "--no-input"])
            .assert()
            .success()
            .stderr(contains("slow").not());
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the slow plugin was waited for"
        );
        assert_eq!(started_names(&env), vec!["fake"; round]);
    }
    // A name no plugin file has may be an alias: then every plugin is asked.
    env.moat()
        .args(["grant", "nothing-here", "--no-input"])
        .assert()
        .code(3);
    assert!(started_names(&env).contains(&"other".to_string()));
    for pid in env.starts() {
        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} still runs");
    }
}

#[test]
fn a_cached_failure_is_shown_as_such_and_asked_again_on_request() {
    let mut env = Env::new();
    // Answers initialize after 1 s: too slow for a 0.5 s limit.
    env.install("bin", "late", "late_init");
    env.set("FAKE_TOKEN", "tok-late-0123456789");
    env.set("MOAT_PLUGIN_TIMEOUT_SECS", "0.5");
    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stderr(contains("failed its handshake: timed out after 500ms"))
        .stderr(contains("cached").not());
    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stderr(contains("timed out after 500ms (a cached failure"))
        .stderr(contains("or now with 'moat grant late'"));
    assert_eq!(started_names(&env).len(), 1);
    // The user asks for it, with a longer limit: asked again, and it works.
    env.set("MOAT_PLUGIN_TIMEOUT_SECS", "5");
    env.moat()
        .args(["grant", "late", "--no-input"])
        .assert()
        .success();
    assert_eq!(started_names(&env).len(), 2);
    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(contains("late"))
        .stderr(contains("failed").not());
}

#[test]
fn a_dangling_link_says_where_it_points() {
    let env = Env::new();
    let missing = env.dir("gone/moat-provider-dangle");
    std::os::unix::fs::symlink(&missing, env.dir("bin/moat-provider-dangle")).unwrap();
    // A relative target is shown resolved against the link's folder.
    std::os::unix::fs::symlink("../nowhere/plugin", env.dir("bin/moat-provider-rel")).unwrap();
    let said = format!(
        "moat-provider-dangle is a symbolic link to {}, which does not exist",
        missing.display()
    );
    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stderr(contains(said.as_str()))
        .stderr(contains("bin/../nowhere/plugin, which does not exist"))
        .stderr(contains("not executable").not());
    env.moat()
        .args(["grant", "dangle", "--no-input"])
        .assert()
        .code(3)
        .stderr(contains("provider dangle is a plugin moat cannot use"))
        .stderr(contains(said.as_str()))
        .stderr(contains(
            "Reinstall the plugin it points to, or remove the link",
        ));
}

#[test]
fn a_plugin_that_ignores_end_of_input_is_named_once_at_the_default_level() {
    let mut env = Env::new();
    env.install("bin", "stubborn", "ignore_eof");
    env.set("FAKE_TOKEN", "tok-stubborn-0123456789");
    // The listing starts it (cold cache), then the grant does.
    for args in [
        &["grant", "providers"][..],
        &["grant", "stubborn", "--no-input"],
    ] {
        let output = env.moat().args(args).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = "plugin stubborn (";
        assert_eq!(stderr.matches(said).count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("did not exit within 2s of the end of its input, so moat killed it"),
            "{stderr}"
        );
        assert!(stderr.contains("moat-provider-stubborn"), "{stderr}");
    }
}

#[test]
fn a_broken_plugin_does_not_break_moat() {
    let env = Env::new();
    env.install("bin", "crashy", "exit_at_start");
    env.moat()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stderr(contains("failed its handshake: exited with status 1"));
    env.moat()
        .args(["grant", "crashy", "--no-input"])
        .assert()
        .code(3)
        .stderr(contains("provider crashy is a plugin moat cannot use"))
        .stderr(contains("fatal: missing configuration file"))
        .stderr(contains("report it to the plugin's author"));
    env.moat().args(["grant", "list"]).assert().success();
}

#[test]
fn a_plugin_crashing_during_grant_is_reported_with_its_last_words() {
    let env = Env::new();
    let path = env.install("bin", "crashy", "crash_call");
    env.moat()
        .args(["grant", "crashy", "--no-input"])
        .assert()
        .code(1)
        .stderr(contains(format!(
            "error: plugin crashy ({}) exited with status 3 during grant; it was stopped",
            path.display()
        )))
        .stderr(contains("  | panic: boom in grant"))
        .stderr(contains("report it to the plugin's author"));
    for pid in env.starts() {
        assert!(wait_dead(pid, Duration::from_secs(10)), "{pid} still runs");
    }
    let store = env.dir("home").join("credentials");
    let stored = std::fs::read_dir(&store).map(|d| d.count()).unwrap_or(0);
    assert_eq!(stored, 0, "nothing stored");
}

#[test]
fn a_relative_path_entry_is_not_searched() {
    let env = Env::new();
    env.install("work/bin", "planted", "ok");
    let mut cmd = env.moat();
    cmd.env("PATH", "bin:.:/usr/bin:/bin");
    cmd.args(["grant", "providers"])
        .assert()
        .success()
        .stdout(contains("planted").not());
    assert!(env.starts().is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn no_plugin_outlives_moat_even_when_moat_is_killed() {
    let env = Env::new();
    env.install("bin", "stuck", "hang_call");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_moat"));
    command
        .env_clear()
        .envs(env.vars())
        .current_dir(env.dir("work"))
        .args(["grant", "stuck", "--no-input"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut moat = command.spawn().unwrap();

    // One process for the handshake and the grant, which it never answers.
    let started = Instant::now();
    while env.starts().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the plugin never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let plugin = env.starts()[0];
    std::thread::sleep(Duration::from_millis(200));
    assert!(!wait_dead(plugin, Duration::ZERO), "the plugin is running");

    moat.kill().unwrap(); // SIGKILL: no chance to clean up
    moat.wait().unwrap();
    assert!(
        wait_dead(plugin, Duration::from_secs(3)),
        "plugin {plugin} outlived moat"
    );
}
