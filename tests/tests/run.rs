//! `moat run` end to end against the real Docker engine: the real binary, the real in-process
//! proxy, containers from the local base image (`scripts/base-image.sh`), and local HTTPS servers
//! standing in for api.github.com and github.com, reached through `MOAT_PROXY_RESOLVE` and
//! trusted through `MOAT_EXTRA_CA_CERTS` (the documented overrides; nothing in moat knows they
//! are fakes).
//!
//! Every test checks what it leaves behind: no container of the run, and metadata that says how
//! the run ended.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use moat_tests::docker::{self, docker};
use moat_tests::{FakeHttps, MoatEnv, Recorded, Reply, assert_no_secret};

const TOKEN: &str = "ghp_realSecretToken1234567890abcdefABCDEF";
const PLACEHOLDER: &str = "ghp_moatProxyInjectedPlaceholder000000000000";

/// A home with the GitHub credential stored, the base image, and the fake GitHub hosts behind
/// `MOAT_PROXY_RESOLVE`. `None` when Docker is absent (outside CI).
fn github_env(test: &str) -> Option<(MoatEnv, FakeHttps)> {
    if !docker::available(test) {
        return None;
    }
    let image = docker::ensure_base_image();
    let mut env = MoatEnv::new().with_github(TOKEN, "octocat");
    env.cmd()
        .args(["grant", "github", "--no-input"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .success();
    let upstream = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let port = upstream.port();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.github.com:443:127.0.0.1:{port},github.com:443:127.0.0.1:{port}"),
    );
    env.set("MOAT_BASE_IMAGE", image);
    Some((env, upstream))
}

/// `moat run` in `env` with `args`; its output.
fn moat_run(env: &MoatEnv, args: &[&str]) -> Output {
    env.cmd()
        .arg("run")
        .args(args)
        .timeout(Duration::from_secs(120))
        .output()
        .expect("run moat")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The runs' metadata under `env`'s home, newest first.
fn runs(env: &MoatEnv) -> Vec<serde_json::Value> {
    let out = env.cmd().args(["list", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// No container of any run of `env` is left.
fn assert_no_containers(env: &MoatEnv) {
    for run in runs(env) {
        let id = run["id"].as_str().unwrap();
        let out = docker(&["ps", "-aq", "--filter", &format!("label=moat.run={id}")]);
        assert!(
            text(&out.stdout).trim().is_empty(),
            "container of {id} left behind"
        );
    }
}

fn run_dir(env: &MoatEnv, id: &str) -> std::path::PathBuf {
    env.home().join("runs").join(id)
}

#[test]
fn curl_python_and_git_reach_github_with_the_token_added_on_the_wire() {
    let Some((env, upstream)) = github_env("run_github") else {
        return;
    };
    let script = r#"
        curl -sS --max-time 20 https://api.github.com/user; echo
        python3 -c 'import json, urllib.request; print("python:", json.load(urllib.request.urlopen("https://api.github.com/user", timeout=20))["login"])'
        git ls-remote https://github.com/octo/repo.git >/dev/null && echo git: ok
    "#;
    let out = moat_run(&env, &["--grant", "github", "--", "sh", "-c", script]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(r#""login":"octocat""#), "{stdout}");
    assert!(stdout.contains("python: octocat"), "{stdout}");
    assert!(stdout.contains("git: ok"), "{stdout}");
    // git's ref discovery carried the Basic credential, added by the proxy.
    assert!(
        upstream
            .requests()
            .iter()
            .any(|r| r.header("host") == Some("github.com")),
        "git never reached github.com"
    );
    assert_no_secret(&[&out.stdout, &out.stderr], TOKEN);
    assert_no_containers(&env);
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "stopped", "{run}");
    assert_eq!(run["exit_code"], 0, "{run}");
    // The requests are in the run's trace, the injected header redacted.
    let id = run["id"].as_str().unwrap();
    let trace = env
        .cmd()
        .args(["trace", id, "--network", "--json"])
        .output()
        .unwrap();
    let lines = text(&trace.stdout);
    assert!(trace.status.success(), "{}", text(&trace.stderr));
    assert!(lines.contains("https://api.github.com/user"), "{lines}");
    assert!(
        lines.contains("https://github.com/octo/repo.git/info/refs"),
        "{lines}"
    );
    assert!(lines.contains("[REDACTED]"), "{lines}");
    assert_no_secret(&[&trace.stdout], TOKEN);
}

#[test]
fn the_container_holds_placeholders_and_never_the_token() {
    let Some((env, _upstream)) = github_env("run_no_token_inside") else {
        return;
    };
    // Everything a process in the container could read: its environment, every process's
    // environment and command line, and every file outside /proc and /sys.
    // The token is split in two so that the script's own text (a command line, readable in
    // /proc) never holds it whole; the shell joins the halves only in its own memory.
    let (head, tail) = TOKEN.split_at(TOKEN.len() / 2);
    let script = format!(
        r#"env; cat /proc/*/environ | tr '\0' '\n'; cat /proc/*/cmdline | tr '\0' ' '; echo
        a='{head}'; b='{tail}'
        grep -rlsF "$a$b" / --exclude-dir=proc --exclude-dir=sys; echo "grep-exit=$?""#
    );
    let out = moat_run(&env, &["--grant", "github", "--", "sh", "-c", &script]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("GH_TOKEN={PLACEHOLDER}")),
        "{stdout}"
    );
    assert!(stdout.contains("HTTPS_PROXY=http://moat:"), "{stdout}");
    // grep exits 1 when nothing matched: no file holds the token.
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], TOKEN);
    // Nor anything moat wrote about the run: metadata, logs, request log, audit log.
    let id = runs(&env)[0]["id"].as_str().unwrap().to_owned();
    moat_tests::assert_no_secret_in_dir(run_dir(&env, &id), TOKEN);
    assert_no_containers(&env);
}

#[test]
fn exit_codes_propagate_and_the_metadata_says_how_the_run_ended() {
    let Some((env, _upstream)) = github_env("run_exit_codes") else {
        return;
    };
    let script = "echo one; echo two; echo three; echo err >&2; exit 7";
    let out = moat_run(&env, &["--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\nthree\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "failed");
    assert_eq!(run["exit_code"], 7);

    let out = moat_run(&env, &["--", "no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));

    // The output is in logs.jsonl too, and `moat logs -n` shows its tail.
    let first = runs(&env)[1]["id"].as_str().unwrap().to_owned();
    let logs = env.cmd().args(["logs", &first]).output().unwrap();
    assert!(logs.status.success());
    assert!(
        text(&logs.stdout).contains("] one\n"),
        "{}",
        text(&logs.stdout)
    );
    assert!(
        text(&logs.stderr).contains("] err\n"),
        "{}",
        text(&logs.stderr)
    );
    // Docker does not order stdout against stderr, so the tail is checked on stdout alone.
    let logs = env
        .cmd()
        .args(["logs", &first, "-n", "2"])
        .output()
        .unwrap();
    let tail = text(&logs.stdout);
    assert!(!tail.contains("one") && tail.contains("three"), "{tail}");
    assert_no_containers(&env);
}

#[test]
fn strict_policy_allows_the_grants_hosts_explains_refusals_and_nothing_skips_the_proxy() {
    let Some((env, _upstream)) = github_env("run_strict") else {
        return;
    };
    // A service on this machine, on every address: the container must not reach it directly.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        r#"curl -sS --max-time 20 -o /dev/null -w 'github %{{http_code}}\n' https://api.github.com/user
        curl -sS --max-time 20 -o /dev/null -w 'other %{{http_code}}\n' https://example.com/ 2>/dev/null || echo "other refused"
        gw=$(getent hosts moat-proxy | cut -d' ' -f1)
        if python3 -c "import socket; socket.create_connection(('$gw', {port}), timeout=3)" 2>/dev/null; then echo raw: connected; else echo raw: refused; fi"#
    );
    let out = moat_run(
        &env,
        &[
            "--policy", "strict", "--grant", "github", "--", "sh", "-c", &script,
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("github 200"), "{stdout}");
    assert!(stdout.contains("other refused"), "{stdout}");
    assert!(stdout.contains("raw: refused"), "{stdout}");
    // The refusal is explained on moat's stderr, with the flag that would allow it.
    assert!(
        stderr.contains("example.com") && stderr.contains("--allow example.com"),
        "{stderr}"
    );
    // And audited.
    let id = runs(&env)[0]["id"].as_str().unwrap().to_owned();
    let audit = env.cmd().args(["audit", &id]).output().unwrap();
    assert!(audit.status.success(), "{}", text(&audit.stderr));
    assert!(
        text(&audit.stdout).contains("policy"),
        "{}",
        text(&audit.stdout)
    );
    drop(listener);
    assert_no_containers(&env);
}

#[test]
fn bad_input_fails_before_anything_is_created() {
    let Some((env, _upstream)) = github_env("run_bad_input") else {
        return;
    };
    // A grant never made: exit 3 with the command that fixes it, and no run.
    let out = moat_run(
        &env,
        &["--grant", "github", "--grant", "nosuch", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nosuch"),
        "{}",
        text(&out.stderr)
    );
    // A workspace that does not exist: usage error.
    let out = moat_run(&env, &["/no/such/folder", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // A malformed moat.yaml: usage error naming the file and line.
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(
        ws.path().join("moat.yaml"),
        "grants: [github]\nnetwrk: {}\n",
    )
    .unwrap();
    let out = moat_run(&env, &[ws.path().to_str().unwrap(), "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("moat.yaml:2"),
        "{}",
        text(&out.stderr)
    );
    // No command at all.
    let out = moat_run(&env, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(runs(&env).is_empty(), "a run was created: {:?}", runs(&env));

    // No engine: a clear error naming the socket tried, and no run.
    let out = env
        .cmd()
        .args(["run", "--", "true"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/nonexistent/docker.sock"),
        "{}",
        text(&out.stderr)
    );
    assert!(runs(&env).is_empty());
}

#[test]
fn an_image_that_cannot_be_pulled_fails_with_what_to_do_and_leaves_nothing() {
    let Some((mut env, _upstream)) = github_env("run_no_image") else {
        return;
    };
    env.set("MOAT_BASE_IMAGE", "127.0.0.1:9/moat-test/never-built:1");
    let out = moat_run(&env, &["--", "true"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:9/moat-test/never-built:1"),
        "{stderr}"
    );
    assert!(stderr.contains("base-image.sh"), "{stderr}");
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "failed", "{run}");
    assert_no_containers(&env);
}

#[test]
fn proxy_variables_from_the_user_are_dropped_with_a_warning() {
    let Some((env, _upstream)) = github_env("run_env_override") else {
        return;
    };
    let out = moat_run(
        &env,
        &[
            "-e",
            "HTTPS_PROXY=http://elsewhere:3128",
            "-e",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            "echo $GREETING $HTTPS_PROXY",
        ],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("hi http://moat:"), "{stdout}");
    assert!(stderr.contains("ignoring HTTPS_PROXY from -e"), "{stderr}");
}

#[test]
fn files_written_to_the_workspace_belong_to_its_owner() {
    let Some((env, _upstream)) = github_env("run_owner") else {
        return;
    };
    let ws = tempfile::tempdir().unwrap();
    // A workspace owned by someone other than root, as on a developer's laptop.
    std::os::unix::fs::chown(ws.path(), Some(4321), Some(4321)).unwrap();
    let out = moat_run(
        &env,
        &[
            ws.path().to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "id -u; touch /workspace/made-here",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "4321");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(ws.path().join("made-here")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4321, 4321));
}

/// Sends SIGINT to `child` once `ready` says so, then waits for it.
#[expect(unsafe_code, reason = "kill(2): SIGINT, as Ctrl-C")]
fn interrupt_when(
    mut child: std::process::Child,
    ready: impl Fn() -> bool,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "the run never got ready");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("moat exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: signalling a child process we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "moat did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spawn_run(env: &MoatEnv, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(moat_tests::moat_bin());
    cmd.env_clear()
        .envs(env.vars())
        .current_dir(env.work_dir())
        .arg("run")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd.spawn().expect("start moat run")
}

fn running_container(env: &MoatEnv) -> Option<String> {
    let run = runs(env).into_iter().next()?;
    (run["state"] == "running").then(|| run["id"].as_str().unwrap().to_owned())
}

#[test]
fn ctrl_c_stops_the_run_and_cleans_up() {
    let Some((env, _upstream)) = github_env("run_ctrl_c") else {
        return;
    };
    let child = spawn_run(&env, &["--grant", "github", "--", "sleep", "300"]);
    let status = interrupt_when(child, || running_container(&env).is_some());
    assert_eq!(status.code(), Some(130));
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "stopped", "{run}");
    assert_no_containers(&env);
}

#[test]
fn a_container_killed_from_outside_ends_the_run_with_its_code() {
    let Some((env, _upstream)) = github_env("run_docker_kill") else {
        return;
    };
    let mut child = spawn_run(&env, &["--", "sleep", "300"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        if let Some(id) = running_container(&env) {
            break id;
        }
        assert!(Instant::now() < deadline, "never running");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(docker(&["kill", &id]).status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 137, "{run}");
    assert_no_containers(&env);
}

#[test]
fn moat_stop_from_another_terminal_and_destroy() {
    let Some((env, _upstream)) = github_env("run_stop_destroy") else {
        return;
    };
    let mut child = spawn_run(&env, &["--name", "stop-me", "--", "sleep", "300"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_container(&env).is_none() {
        assert!(Instant::now() < deadline, "never running");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A running run cannot be destroyed.
    let out = env.cmd().args(["destroy", "stop-me"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("moat stop"),
        "{}",
        text(&out.stderr)
    );

    let out = env.cmd().args(["stop", "stop-me"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("stopped"),
        "{}",
        text(&out.stdout)
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(runs(&env)[0]["state"], "stopped");
    assert_no_containers(&env);

    let out = env.cmd().args(["stop", "stop-me"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "stopping an ended run");
    let out = env.cmd().args(["stop", "no-such-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));

    let out = env.cmd().args(["destroy", "stop-me"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(runs(&env).is_empty());
}

#[test]
fn two_runs_at_once_each_reach_only_their_own_rules() {
    let Some((env, upstream)) = github_env("run_two_at_once") else {
        return;
    };
    // One run with the grant, one without, at the same time: the second gets no credential.
    let with = spawn_output(
        &env,
        &[
            "--grant",
            "github",
            "--",
            "sh",
            "-c",
            "sleep 1; curl -sS https://api.github.com/user",
        ],
    );
    let without = spawn_output(
        &env,
        &[
            "--",
            "sh",
            "-c",
            "sleep 1; curl -sS https://api.github.com/user",
        ],
    );
    let (with, without) = (with.join().unwrap(), without.join().unwrap());
    assert!(
        text(&with.stdout).contains("octocat"),
        "{}",
        text(&with.stderr)
    );
    assert!(
        text(&without.stdout).contains("Bad credentials"),
        "{}",
        text(&without.stdout)
    );
    assert_eq!(
        upstream
            .requests()
            .iter()
            .filter(|r| r.header("authorization").is_some())
            .count(),
        1
    );
    assert_no_containers(&env);
}

fn spawn_output(env: &MoatEnv, args: &[&str]) -> std::thread::JoinHandle<Output> {
    let mut cmd = Command::new(moat_tests::moat_bin());
    cmd.env_clear()
        .envs(env.vars())
        .current_dir(env.work_dir())
        .arg("run")
        .args(args);
    std::thread::spawn(move || cmd.output().expect("run moat"))
}

// ---------------------------------------------------------------------------------------------
// `-i`: stdin from a pipe, and a real pseudo-terminal.

#[test]
fn interactive_stdin_from_a_pipe_reaches_the_command_and_its_end_closes_it() {
    let Some((env, _upstream)) = github_env("run_stdin_pipe") else {
        return;
    };
    let out = env
        .cmd()
        .args(["run", "-i", "--", "cat"])
        .write_stdin("hi\n")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    // The end of moat's stdin is the end of the container's: `cat` returns, the script goes on.
    let out = env
        .cmd()
        .args(["run", "-i", "--", "sh", "-c", "cat; echo eof-seen"])
        .write_stdin("one\ntwo\n")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "one\ntwo\neof-seen\n");
    // A stdin that never ends does not hold moat once the command is done (tokio's stdin would:
    // its read cannot be cancelled, and the runtime waits for it at exit).
    let mut child = Command::new(moat_tests::moat_bin())
        .env_clear()
        .envs(env.vars())
        .current_dir(env.work_dir())
        .args(["run", "-i", "--", "true"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _open_stdin = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("moat -i did not exit while its stdin stayed open");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let run = &runs(&env)[0];
    assert_eq!(run["interactive"], true, "{run}");
    assert_eq!(run["state"], "stopped", "{run}");
    assert_no_containers(&env);
}

/// `moat` running on the slave side of a pseudo-terminal, as in a terminal emulator: its own
/// session, the pty its controlling terminal. Everything written to the master side is what the
/// user types; everything read from it is what they see.
struct Pty {
    master: std::fs::File,
    child: std::process::Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

#[expect(
    unsafe_code,
    reason = "openpty, setsid, TIOCSCTTY, TIOCSWINSZ, tcgetattr: no safe wrapper in std"
)]
impl Pty {
    fn spawn(env: &MoatEnv, args: &[&str], rows: u16, cols: u16) -> Pty {
        use std::os::fd::FromRawFd;
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors we then own; the termios pointer may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors are fresh and owned by nobody else.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                std::fs::File::from_raw_fd(slave),
            )
        };
        let mut cmd = Command::new(moat_tests::moat_bin());
        cmd.env_clear()
            .envs(env.vars())
            .env("TERM", "xterm")
            .current_dir(env.work_dir())
            .arg("run")
            .args(args)
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave.try_clone().unwrap());
        // SAFETY: async-signal-safe calls only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start moat on a pty");
        drop(cmd);
        drop(slave);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = std::sync::Arc::clone(&seen);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            // EIO once the last slave descriptor closes: the end.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master,
            child,
            seen,
        }
    }

    fn screen(&self) -> String {
        text(&self.seen.lock().unwrap())
    }

    fn type_keys(&mut self, keys: &str) {
        use std::io::Write;
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until the screen shows `needle` (after `from` bytes); returns where it ends.
    fn expect(&mut self, needle: &str, from: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if let Some(at) = screen.get(from..).and_then(|rest| rest.find(needle)) {
                return from + at + needle.len();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("moat exited ({status}) before showing {needle:?}:\n{screen}");
            }
            assert!(
                Instant::now() < deadline,
                "never saw {needle:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        use std::os::fd::AsRawFd;
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize; the kernel sends SIGWINCH to the foreground group.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// The terminal's settings (the master reports the pair's line discipline).
    fn settings(&self) -> libc::termios {
        use std::os::fd::AsRawFd;
        // SAFETY: tcgetattr fills a plain-data struct.
        unsafe {
            let mut termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(self.master.as_raw_fd(), &mut termios), 0);
            termios
        }
    }
}

#[test]
fn interactive_run_on_a_terminal_is_raw_sized_and_restored() {
    let Some((env, _upstream)) = github_env("run_tty") else {
        return;
    };
    let mut pty = Pty::spawn(
        &env,
        &["-i", "--policy", "strict", "-e", "PS1=tty> ", "--", "sh"],
        30,
        100,
    );
    let before = pty.settings();
    let mut at = pty.expect("Started ", 0);
    // The shell's prompt, from the container's TTY.
    at = pty.expect("tty> ", at);
    // moat's terminal is raw: the container's TTY echoes the line, and only it.
    pty.type_keys("echo typed-$((6*7))\r");
    at = pty.expect("typed-42", at);
    let screen = pty.screen();
    assert_eq!(
        screen.matches("echo typed-$((6*7))").count(),
        1,
        "the line was not echoed exactly once:\n{screen}"
    );
    let raw = pty.settings();
    assert_eq!(
        raw.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG),
        0,
        "the terminal is not raw while the command runs"
    );
    // The container's TTY has the terminal's size, and follows it.
    pty.type_keys("stty size\r");
    at = pty.expect("30 100", at);
    pty.resize(40, 120);
    // SIGWINCH reaches moat asynchronously: ask until the new size shows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pty.type_keys("stty size\r");
        std::thread::sleep(Duration::from_millis(300));
        if pty.screen()[at..].contains("40 120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never resized:\n{}",
            pty.screen()
        );
    }
    at = pty.screen().len();
    // moat's own lines while the terminal is raw still return the cursor.
    pty.type_keys("curl -s https://example.com/; echo curl-done\r");
    let end = pty.expect("--allow example.com", at);
    pty.expect("curl-done", at);
    let screen = pty.screen();
    let line_end = screen[end..].find('\n').unwrap() + end;
    assert_eq!(
        &screen[line_end - 1..=line_end],
        "\r\n",
        "a bare newline in raw mode:\n{screen}"
    );
    at = pty.screen().len();
    // Ctrl-C goes through the TTY to the command, as with `docker run -it`: the shell's child
    // dies, the shell and the run go on.
    pty.type_keys("sh -c 'echo sleeping-$((2+3)); exec sleep 300'\r");
    at = pty.expect("sleeping-5", at);
    pty.type_keys("\x03");
    pty.type_keys("echo alive-$((1+1))\r");
    at = pty.expect("alive-2", at);
    pty.type_keys("exit 3\r");
    pty.expect("View output: moat logs", at);
    let status = pty.child.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{}", pty.screen());
    // The terminal is as moat found it.
    let after = pty.settings();
    assert_eq!(after.c_lflag, before.c_lflag, "local modes not restored");
    assert_eq!(after.c_iflag, before.c_iflag, "input modes not restored");
    assert_eq!(after.c_oflag, before.c_oflag, "output modes not restored");
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_no_containers(&env);
}

// ---------------------------------------------------------------------------------------------
// Ctrl-C before the command runs.

#[test]
fn ctrl_c_during_the_image_build_stops_it_and_leaves_nothing() {
    let Some((env, _upstream)) = github_env("run_ctrl_c_build") else {
        return;
    };
    // A package no other test installs: the build is never finished, so never cached.
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("moat.yaml"), "dependencies: [cowsay]\n").unwrap();
    let stderr_path = env.root().join("build-stderr.txt");
    let mut cmd = Command::new(moat_tests::moat_bin());
    cmd.env_clear()
        .envs(env.vars())
        .current_dir(env.work_dir())
        .args(["run", ws.path().to_str().unwrap(), "--", "true"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let child = cmd.spawn().unwrap();
    let stderr = || std::fs::read_to_string(&stderr_path).unwrap_or_default();
    // Interrupted once the build runs its `apt-get` step in a container of its own.
    let status = interrupt_when(child, || stderr().contains("Running in "));
    let stderr = stderr();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted before the command started"),
        "{stderr}"
    );
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "stopped", "{run}");
    assert!(run.get("container_id").is_none(), "{run}");
    assert!(run.get("image").is_none(), "{run}");
    // The engine dropped the build with its connection: its step container goes away too.
    let step = stderr
        .split("Running in ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = docker(&["ps", "-aq", "--filter", &format!("id={step}")]);
        if text(&out.stdout).trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the build's container {step} is still there"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_no_containers(&env);
}

#[test]
#[expect(unsafe_code, reason = "kill(2): the signal a terminal sends")]
fn ctrl_c_at_any_moment_of_the_start_leaves_nothing() {
    let Some((env, _upstream)) = github_env("run_ctrl_c_start") else {
        return;
    };
    // How long a start takes here and now (a run interrupted once it runs), then interrupts
    // spread across that time: grants, proxy, network, create, start. Each run ends as Ctrl-C
    // should (130, or killed by SIGINT before moat watched for it), and none leaves a container
    // or a run that looks alive.
    let started = Instant::now();
    let child = spawn_run(&env, &["--grant", "github", "--", "sleep", "300"]);
    let status = interrupt_when(child, || running_container(&env).is_some());
    let start_time = started.elapsed();
    assert_eq!(status.code(), Some(130));
    for tenth in 0..10 {
        let delay = start_time * tenth / 10;
        let mut cmd = Command::new(moat_tests::moat_bin());
        cmd.env_clear()
            .envs(env.vars())
            .current_dir(env.work_dir())
            .args(["run", "--grant", "github", "--", "sleep", "300"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(delay);
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: signalling a child process we started and have not reaped.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.code() == Some(130) || out.status.signal() == Some(libc::SIGINT),
            "after {delay:?}: {:?}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert_no_containers(&env);
    }
    for run in runs(&env) {
        assert_eq!(run["state"], "stopped", "{run}");
    }
}

// ---------------------------------------------------------------------------------------------
// `moat logs -f` on a live run.

#[test]
fn logs_follow_a_live_run_until_it_ends() {
    let Some((env, _upstream)) = github_env("run_logs_follow") else {
        return;
    };
    let mut child = spawn_run(
        &env,
        &[
            "--name",
            "follow-me",
            "--",
            "sh",
            "-c",
            "echo first; sleep 2; echo second; sleep 1; echo last",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while running_container(&env).is_none() {
        assert!(Instant::now() < deadline, "never running");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = env
        .cmd()
        .args(["logs", "-f", "follow-me"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (first, second, last) = (
        stdout.find("] first\n"),
        stdout.find("] second\n"),
        stdout.find("] last\n"),
    );
    assert!(
        first.is_some() && first < second && second < last,
        "{stdout}"
    );
    // It ended because the run did.
    assert!(child.wait().unwrap().success());
    assert_eq!(runs(&env)[0]["state"], "stopped");
    assert_no_containers(&env);
}

// ---------------------------------------------------------------------------------------------
// A grant served by a plugin, and the plugin pinned.

const GITLAB_TOKEN: &str = "glpat-RealGitLabSecret0123456789";

#[test]
fn a_plugin_grant_is_injected_on_the_wire_and_a_replaced_plugin_is_refused() {
    if !docker::available("run_plugin_grant") {
        return;
    }
    let image = docker::ensure_base_image();
    let mut env = MoatEnv::new();
    // One fake for both: the plugin validates at MOAT_GITLAB_URL (127.0.0.1), the container's
    // requests to gitlab.com reach it through MOAT_PROXY_RESOLVE.
    let gitlab = FakeHttps::start_for(
        env.ca(),
        &["gitlab.com", "127.0.0.1", "localhost"],
        |request: &Recorded| match (request.path_only(), request.header("private-token")) {
            ("/api/v4/user", Some(GITLAB_TOKEN)) => {
                Reply::json(200, serde_json::json!({ "username": "tanuki" }))
            }
            _ => Reply::json(401, serde_json::json!({ "message": "401 Unauthorized" })),
        },
    );
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca)
        .set("MOAT_GITLAB_URL", gitlab.url())
        .set(
            "MOAT_PROXY_RESOLVE",
            format!("gitlab.com:443:127.0.0.1:{}", gitlab.port()),
        )
        .set("MOAT_BASE_IMAGE", image);
    // A copy (not a link) on the PATH, so that it can be replaced below.
    let built = moat_tests::moat_bin().with_file_name("moat-provider-gitlab");
    assert!(built.is_file(), "run `cargo build --workspace` first");
    let plugin = env.bin_dir().join("moat-provider-gitlab");
    std::fs::copy(&built, &plugin).unwrap();
    env.cmd()
        .args(["grant", "gitlab"])
        .env("GITLAB_TOKEN", GITLAB_TOKEN)
        .assert()
        .success();

    let script = "curl -sS --max-time 20 https://gitlab.com/api/v4/user; echo; env";
    let out = moat_run(&env, &["--grant", "gitlab", "--", "sh", "-c", script]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(r#""username":"tanuki""#), "{stdout}");
    assert!(stdout.contains("GITLAB_TOKEN="), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], GITLAB_TOKEN);
    let id = runs(&env)[0]["id"].as_str().unwrap().to_owned();
    moat_tests::assert_no_secret_in_dir(run_dir(&env, &id), GITLAB_TOKEN);
    assert!(
        gitlab
            .requests()
            .iter()
            .any(|r| r.header("host") == Some("gitlab.com")),
        "the container's request never reached the fake gitlab.com"
    );
    assert_eq!(runs(&env)[0]["state"], "stopped");
    assert_no_containers(&env);

    // Someone replaces the plugin: the credential is pinned to the executable it was granted
    // through, so the run fails before anything is created, and says how to fix it.
    let mut bytes = std::fs::read(&built).unwrap();
    bytes.extend_from_slice(b"\0replaced by the test");
    let replacement = env.bin_dir().join(".replacement");
    std::fs::write(&replacement, bytes).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&replacement, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&replacement, &plugin).unwrap();
    let before = runs(&env).len();
    let out = moat_run(&env, &["--grant", "gitlab", "--", "true"]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("moat grant gitlab"), "{stderr}");
    assert_no_secret(&[&out.stdout, &out.stderr], GITLAB_TOKEN);
    assert_eq!(runs(&env).len(), before, "a run was created");
}

// ---------------------------------------------------------------------------------------------
// A run driven by moat.yaml.

#[test]
fn a_moat_yaml_run_brings_every_setting_into_the_container() {
    let Some((mut env, upstream)) = github_env("run_moat_yaml") else {
        return;
    };
    let allowed = FakeHttps::start_for(env.ca(), &["allowed.test"], |_: &Recorded| {
        Reply::text(200, "allowed")
    });
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!(
            "api.github.com:443:127.0.0.1:{},allowed.test:443:127.0.0.1:{}",
            upstream.port(),
            allowed.port()
        ),
    );
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir(ws.path().join("data")).unwrap();
    std::fs::write(ws.path().join("data/file.txt"), "mounted-content\n").unwrap();
    let script = r#"echo "greeting=$GREETING"
jq --version >/dev/null && echo jq-installed
cat /data/file.txt
if touch /data/new 2>/dev/null; then echo data-writable; else echo data-read-only; fi
curl -sS --max-time 20 -o /dev/null -w 'github %{http_code}\n' https://api.github.com/user
curl -sS --max-time 20 -o /dev/null -w 'allowed %{http_code}\n' https://allowed.test/
curl -sS --max-time 20 -o /dev/null https://example.com/ 2>/dev/null || echo other-refused"#;
    let yaml = format!(
        "name: yaml-run\n\
         grants: [github]\n\
         env: {{GREETING: from-yaml}}\n\
         command: {command}\n\
         dependencies: [jq]\n\
         network:\n  policy: strict\n  allow: [allowed.test]\n\
         mounts:\n  - ./data:/data:ro\n",
        command = serde_json::to_string(&["sh", "-c", script]).unwrap()
    );
    std::fs::write(ws.path().join("moat.yaml"), yaml).unwrap();
    let out = env
        .cmd()
        .args(["run", ws.path().to_str().unwrap()])
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "greeting=from-yaml",
        "jq-installed",
        "mounted-content",
        "data-read-only",
        "github 200",
        "allowed 200",
        "other-refused",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}\n{stderr}");
    }
    assert!(!ws.path().join("data/new").exists());
    assert!(stderr.contains("Started yaml-run"), "{stderr}");
    let run = &runs(&env)[0];
    assert_eq!(run["name"], "yaml-run", "{run}");
    assert_eq!(run["grants"], serde_json::json!(["github"]), "{run}");
    assert_eq!(run["network"]["policy"], "strict", "{run}");
    assert!(
        run["image"].as_str().unwrap().starts_with("moat/run:"),
        "{run}"
    );
    assert_eq!(run["state"], "stopped", "{run}");
    assert_no_secret(&[&out.stdout, &out.stderr], TOKEN);
    assert_no_containers(&env);
}

#[test]
#[expect(unsafe_code, reason = "kill(2): the signal a terminal sends")]
fn a_terminal_that_goes_away_stops_the_run_and_cleans_up() {
    let Some((env, _upstream)) = github_env("run_tty_hangup") else {
        return;
    };
    let mut pty = Pty::spawn(&env, &["-i", "-e", "PS1=tty> ", "--", "sh"], 24, 80);
    let at = pty.expect("Started ", 0);
    pty.expect("tty> ", at);
    // The terminal window closes: its controlling process gets SIGHUP.
    let pid = libc::pid_t::try_from(pty.child.id()).unwrap();
    // SAFETY: signalling a child process we started and have not reaped.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = pty.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "moat ignored SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{}", pty.screen());
    let run = &runs(&env)[0];
    assert_eq!(run["state"], "stopped", "{run}");
    // The shell (which ignores SIGTERM) ended on the hangup moat passed on (128 + SIGHUP), not
    // on the SIGKILL after the stop's grace period.
    assert_eq!(run["exit_code"], 129, "{run}");
    assert_no_containers(&env);
}

#[test]
fn a_command_on_a_terminal_starts_at_the_terminals_size() {
    let Some((env, _upstream)) = github_env("run_tty_initial_size") else {
        return;
    };
    // Read at once, before any resize could arrive: the size is the container's from creation.
    let mut pty = Pty::spawn(&env, &["-i", "--", "stty", "size"], 33, 111);
    pty.expect("33 111", 0);
    assert!(pty.child.wait().unwrap().success(), "{}", pty.screen());
    assert_no_containers(&env);
}
