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

use base64::Engine as _;
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
    let upstream = fake_github_hosts(&env);
    let port = upstream.port();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.github.com:443:127.0.0.1:{port},github.com:443:127.0.0.1:{port}"),
    );
    env.set("MOAT_BASE_IMAGE", image);
    Some((env, upstream))
}

/// api.github.com answers `/user` to the real token only; github.com answers git's ref
/// discovery to the real token (as Basic `x-access-token:`) only. Neither ever echoes it.
fn fake_github_hosts(env: &MoatEnv) -> FakeHttps {
    let bearer = format!("Bearer {TOKEN}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"))
    );
    FakeHttps::start_for(
        env.ca(),
        &["api.github.com", "github.com"],
        move |request: &Recorded| {
            let auth = request.header("authorization");
            match (request.header("host"), request.path_only()) {
                (Some("api.github.com"), "/user") if auth == Some(bearer.as_str()) => {
                    Reply::json(200, serde_json::json!({ "login": "octocat", "id": 1 }))
                }
                (Some("github.com"), "/octo/repo.git/info/refs")
                    if auth == Some(basic.as_str()) =>
                {
                    // An empty repository's advertisement, in pkt-lines.
                    let refs =
                        "0000000000000000000000000000000000000000 capabilities^{}\0agent=fake\n";
                    let body = format!(
                        "001e# service=git-upload-pack\n0000{:04x}{refs}0000",
                        refs.len() + 4
                    );
                    Reply::text(200, body).with_header(
                        "content-type",
                        "application/x-git-upload-pack-advertisement",
                    )
                }
                _ => Reply::json(401, serde_json::json!({ "message": "Bad credentials" })),
            }
        },
    )
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
