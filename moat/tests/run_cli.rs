//! `moat list`, `logs`, `trace` and `audit` over run directories made here with moat's own run
//! storage library, in a temporary MOAT_HOME.

use std::fs;
use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use chrono::Utc;
use moat::home::MoatHome;
use moat::run::{AuditEvent, AuditLog, LogWriter, RunId, RunMetadata, RunState, RunStore, Stream};
use predicates::prelude::*;

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> RunStore {
        RunStore::new(&MoatHome::at(self.dir.path()))
    }

    fn vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MOAT_HOME", self.dir.path().display().to_string()),
            ("HOME", self.dir.path().display().to_string()),
            ("MOAT_KEYRING_BACKEND", "file".into()),
            ("NO_COLOR", "1".into()),
            ("TZ", "UTC".into()),
            ("PATH", "/usr/bin:/bin".into()),
        ]
    }

    fn moat(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
        cmd.env_clear()
            .envs(self.vars())
            .args(args)
            .timeout(Duration::from_secs(60));
        cmd
    }

    /// A run `age_minutes` old, in `state`.
    fn run(&self, id: &str, name: &str, age_minutes: i64, state: RunState) -> RunMetadata {
        let store = self.store();
        let mut meta = RunMetadata::new(RunId::parse(id).unwrap(), name, "/work/space");
        meta.created_at = Utc::now() - chrono::Duration::minutes(age_minutes);
        meta.image = Some("debian:bookworm-slim".into());
        meta.command = vec!["sh".into(), "-c".into(), "echo hi".into()];
        store.create(&meta).unwrap();
        let steps: &[RunState] = match state {
            RunState::Created => &[],
            RunState::Running => &[RunState::Starting, RunState::Running],
            RunState::Stopped => &[RunState::Starting, RunState::Running, RunState::Stopped],
            RunState::Failed => &[RunState::Starting],
            other => panic!("no fixture for {other}"),
        };
        for step in steps {
            if *step == RunState::Stopped {
                meta.exit_code = Some(0);
            }
            store.set_state(&mut meta, *step).unwrap();
        }
        if state == RunState::Failed {
            store.fail(&mut meta, "image missing").unwrap();
        }
        assert_eq!(meta.state(), state);
        meta
    }
}

#[test]
fn list_shows_runs_newest_first_and_as_json() {
    let home = Home::new();
    home.moat(&["list"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("No runs found\n"))
        .stdout(predicate::str::contains("moat run"));
    home.moat(&["list", "--json"])
        .assert()
        .success()
        .stdout("[]\n");

    home.run("run_00000000000a", "old-run", 120, RunState::Stopped);
    home.run("run_00000000000b", "new-run", 1, RunState::Running);
    home.run("run_00000000000c", "broken", 30, RunState::Failed);
    let out = home
        .moat(&["list"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header: Vec<&str> = lines[0]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["NAME", "RUN ID", "AGENT", "STATE", "AGE", "IMAGE"]);
    assert!(lines[1].starts_with("new-run ") && lines[1].contains("run_00000000000b"));
    assert!(lines[1].contains("running") && lines[1].contains("debian:bookworm-slim"));
    assert!(
        lines[2].starts_with("broken ") && lines[2].contains("failed"),
        "{text}"
    );
    assert!(lines[3].starts_with("old-run ") && lines[3].contains("stopped (exit 0)"));
    assert!(lines[3].contains("2h ago"), "{text}");

    let out = home
        .moat(&["list", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ids: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["run_00000000000b", "run_00000000000c", "run_00000000000a"]
    );
    assert_eq!(json[1]["error"], "image missing");
}

fn write_logs(home: &Home, meta: &RunMetadata, chunks: &[(Stream, &str)]) {
    let mut writer = LogWriter::open(&home.store().paths(&meta.id).logs).unwrap();
    for (stream, chunk) in chunks {
        writer.write(*stream, chunk.as_bytes()).unwrap();
    }
    writer.close().unwrap();
}

#[test]
fn logs_print_lines_with_times_tail_and_streams() {
    let home = Home::new();
    let older = home.run("run_00000000000a", "older", 10, RunState::Stopped);
    let newer = home.run("run_00000000000b", "newer", 1, RunState::Stopped);
    write_logs(&home, &older, &[(Stream::Stdout, "from older\n")]);
    write_logs(
        &home,
        &newer,
        &[
            (Stream::Stdout, "one\r\ntw"),
            (Stream::Stderr, "warning: x\n"),
            (Stream::Stdout, "o\nthree\nfour"),
        ],
    );
    let line = |text: &str| format!(r"\[\d\d:\d\d:\d\d\.\d{{3}}\] {text}\n");
    // The newest run by default; stdout lines on stdout, stderr lines on stderr.
    home.moat(&["logs"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(format!(
                "^{}{}{}{}$",
                line("one"),
                line("two"),
                line("three"),
                line("four")
            ))
            .unwrap(),
        )
        .stderr(predicate::str::is_match(format!("^{}$", line("warning: x"))).unwrap());
    home.moat(&["logs", "newer", "-n", "2"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(format!("^{}{}$", line("three"), line("four"))).unwrap());
    home.moat(&["logs", "run_00000000000a"])
        .assert()
        .success()
        .stdout(predicate::str::contains("] from older"));
    // A run with no output yet: nothing, successfully.
    home.run("run_00000000000c", "quiet", 0, RunState::Running);
    home.moat(&["logs", "quiet"]).assert().success().stdout("");
}

#[test]
fn logs_follow_prints_new_lines_until_the_run_stops() {
    let home = Home::new();
    let mut meta = home.run("run_0000000000f0", "live", 0, RunState::Running);
    let path = home.store().paths(&meta.id).logs;
    let mut writer = LogWriter::open(&path).unwrap();
    writer.write(Stream::Stdout, b"before follow\n").unwrap();

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .env_clear()
        .envs(home.vars())
        .args(["logs", "-f", "live"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Read in the background so the child never blocks on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });

    std::thread::sleep(Duration::from_millis(700));
    writer.write(Stream::Stdout, b"while following\n").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "-f ended while the run was running"
    );
    writer.write(Stream::Stdout, b"last words").unwrap();
    writer.close().unwrap();
    meta.exit_code = Some(0);
    home.store()
        .set_state(&mut meta, RunState::Stopped)
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "logs -f did not end after the run stopped"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let text = reader.join().unwrap();
    let lines: Vec<&str> = text.lines().map(|l| &l[15..]).collect();
    assert_eq!(
        lines,
        ["before follow", "while following", "last words"],
        "{text}"
    );
}

const NETWORK: &str = concat!(
    r#"{"ts":"2026-05-01T12:00:00.123Z","method":"GET","url":"https://api.github.com/user","status_code":200,"duration_ms":41.2,"grants":["github"],"req_headers":{"accept":"*/*","authorization":"[REDACTED]"},"resp_headers":{"content-type":"application/json"},"resp_body":"{\"login\":\"octocat\"}"}"#,
    "\n",
    r#"{"ts":"2026-05-01T12:00:01.000Z","method":"CONNECT","url":"https://blocked.example:443","status_code":407,"duration_ms":0.2,"error":"host blocked.example is not allowed","req_headers":{},"resp_headers":{}}"#,
    "\n",
);

#[test]
fn trace_network_lines_verbose_and_json() {
    let home = Home::new();
    let meta = home.run("run_0000000000aa", "traced", 0, RunState::Stopped);
    home.moat(&["trace", "--network"])
        .assert()
        .success()
        .stdout(predicate::str::contains("No network requests recorded"));
    fs::write(home.store().paths(&meta.id).network, NETWORK).unwrap();
    home.moat(&["trace", "traced", "--network"]).assert().success().stdout(
        "[12:00:00.123] GET https://api.github.com/user 200 (41ms)\n\
         [12:00:01.000] CONNECT https://blocked.example:443 407 ERR (0.2ms): host blocked.example is not allowed\n",
    );
    home.moat(&["trace", "--network", "-v"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "    > accept: */*\n    > authorization: [REDACTED]\n    < content-type: application/json\n    response body: {\"login\":\"octocat\"}\n",
        ));
    let out = home
        .moat(&["trace", "--network", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json[0]["status_code"], 200);
    assert_eq!(json[1]["error"], "host blocked.example is not allowed");
}

fn audited_run(home: &Home) -> (RunMetadata, std::path::PathBuf) {
    let meta = home.run("run_0000000000ad", "audited", 0, RunState::Stopped);
    let path = home.store().paths(&meta.id).audit;
    let log = AuditLog::open(&path).unwrap();
    for event in [
        AuditEvent::Credential {
            grant: "github".into(),
            provider: "github".into(),
            source: "store".into(),
        },
        AuditEvent::Container {
            action: "created".into(),
            id: "c0ffee".into(),
            image: "debian:bookworm-slim".into(),
        },
        AuditEvent::Policy {
            host: "evil.example".into(),
            method: "POST".into(),
            path: "/x".into(),
            reason: "host not allowed".into(),
        },
        AuditEvent::Exec {
            command: vec!["curl".into(), "-s".into()],
            exit_code: Some(0),
        },
    ] {
        log.append(&event).unwrap();
    }
    (meta, path)
}

#[test]
fn audit_verifies_and_lists_events() {
    let home = Home::new();
    let (_meta, _path) = audited_run(&home);
    let event = |kind: &str, summary: &str| {
        format!(r"\d\d:\d\d:\d\d  {kind}\s+{}\n", regex_escape(summary))
    };
    home.moat(&["audit", "audited"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(format!(
            "^Auditing run: run_0000000000ad \\(audited\\)\n\\[ok\\] Hash chain: 4 entries, no gaps, all hashes valid\n\nEvent log:\n{}{}{}{}$",
            event("credential", "github via github (store)"),
            event("container", "created c0ffee (debian:bookworm-slim)"),
            event("policy", "denied POST evil.example/x: host not allowed"),
            event("exec", "curl -s exited 0"),
        ))
        .unwrap());
    let out = home
        .moat(&["audit", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (json["intact"].as_bool(), json["entries"].as_u64()),
        (Some(true), Some(4))
    );
    assert_eq!(json["events"][0]["data"]["grant"], "github");
}

#[test]
fn a_tampered_audit_log_fails_with_the_bad_seq() {
    let home = Home::new();
    let (_meta, path) = audited_run(&home);
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("evil.example", "good.example")).unwrap();
    home.moat(&["audit"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "[FAIL] TAMPERED: entry 3 was changed: its hash does not match its content (seq 3)",
        ))
        .stdout(predicate::str::contains("Event log:"))
        .stderr(predicate::str::contains("has been tampered with"));
    let out = home
        .moat(&["audit", "--json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["intact"], false);
    assert_eq!(json["problem"]["seq"], 3);

    // The last line cut off.
    let lines: Vec<&str> = text.lines().collect();
    fs::write(&path, format!("{}\n", lines[..3].join("\n"))).unwrap();
    home.moat(&["audit"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "[FAIL] TAMPERED: the log ends at entry 3 but its head says 4",
        ));
}

#[test]
fn a_run_without_an_audit_log_is_not_found() {
    let home = Home::new();
    home.run("run_0000000000ae", "early", 0, RunState::Failed);
    home.moat(&["audit"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "run run_0000000000ae has no audit log",
        ));
}

#[test]
fn run_arguments_unknown_ambiguous_or_absent() {
    let home = Home::new();
    for args in [&["logs"][..], &["trace"], &["audit"]] {
        home.moat(args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains("there are no runs yet"))
            .stderr(predicate::str::contains("moat run"));
    }
    home.run("run_aaaa00000001", "twin", 10, RunState::Stopped);
    home.run("run_aaaa00000002", "twin", 5, RunState::Stopped);
    for args in [
        &["logs", "nope"][..],
        &["trace", "run_ffff"],
        &["audit", "run_ffff00000000"],
    ] {
        home.moat(args)
            .assert()
            .code(3)
            .stderr(predicate::str::contains("no run matches"))
            .stderr(predicate::str::contains("Run 'moat list' to see the runs."));
    }
    for arg in ["twin", "run_aaaa"] {
        home.moat(&["logs", arg])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("2 runs match {arg:?}:")))
            .stderr(
                predicate::str::is_match(
                    r"(?s)run_aaaa00000002  twin  stopped.*run_aaaa00000001  twin",
                )
                .unwrap(),
            )
            .stderr(predicate::str::contains("e.g. 'run_aaaa00000002'"));
    }
    home.moat(&["logs", "run_aaaa00000001"]).assert().success();
}

#[test]
fn help_teaches_with_examples() {
    let home = Home::new();
    for command in ["list", "logs", "trace", "audit"] {
        home.moat(&[command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"))
            .stdout(predicate::str::contains(format!("moat {command}")));
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[test]
fn status_counts_runs_and_says_when_the_engine_cannot_be_reached() {
    let home = Home::new();
    home.run("run_00000000000a", "old-run", 120, RunState::Stopped);
    home.run("run_00000000000b", "new-run", 1, RunState::Running);
    home.run("run_00000000000c", "broken", 30, RunState::Failed);
    let out = home
        .moat(&["status", "--json"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "cannot reach the container engine",
        ))
        .get_output()
        .stdout
        .clone();
    let status: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(status["runtime"]["reachable"], false);
    assert_eq!(
        status["runtime"]["endpoint"],
        "unix:///nonexistent/docker.sock"
    );
    let active = status["active_runs"].as_array().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0]["name"], "new-run");
    // The fixture's running run has no moat process behind it.
    assert_eq!(
        status["stale_runs"],
        serde_json::json!(["run_00000000000b"])
    );
    assert_eq!(status["ended_runs"], 2);
    assert!(status["runs_disk_bytes"].as_u64().unwrap() > 0);
    assert!(status["orphaned_containers"].is_null());

    home.moat(&["status"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "Runtime: docker at unix:///nonexistent/docker.sock, unreachable",
        ))
        .stdout(predicate::str::contains("Active runs: 1"))
        .stdout(predicate::str::contains("new-run"))
        .stdout(predicate::str::contains("running, moat process gone"))
        .stdout(predicate::str::contains(
            "1 stale (its moat process is gone): 'moat destroy <run>' cleans one up",
        ))
        .stdout(predicate::str::contains("Ended runs: 2"))
        .stdout(predicate::str::contains("'moat destroy <run>'"))
        .stdout(predicate::str::contains("Orphaned containers: unknown"));
}
