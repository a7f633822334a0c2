//! `moat run --grant codex` and `--grant gemini` end to end against the real Docker engine, with
//! stand-in agents: small scripts in the workspace that read what the provider staged (its
//! environment and files) and call the provider's API hosts through moat's proxy with it, the way
//! the Codex CLI and the Gemini CLI would. The hosts are local HTTPS fakes reached through
//! `MOAT_PROXY_RESOLVE`. Each test proves the real credential reached the fake upstream and never
//! the container (its environment, every process's environment, its files) nor moat's run files.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::time::Duration;

use moat_tests::docker::{self, docker};
use moat_tests::{
    FakeGoogle, MoatEnv, assert_no_secret, assert_no_secret_in_dir, fake_gemini_api, fake_google,
    fake_openai,
};

const OPENAI_KEY: &str = "sk-proj-RealOpenAiKeyForTheRun0123456789abcdef";
const OPENAI_PLACEHOLDER: &str =
    "sk-moat-proxy-injected-placeholder-0000000000000000000000000000000000000000";
const GEMINI_KEY: &str = "AIzaRealGeminiKeyForTheRun0123456789abcdef";
const REFRESH: &str = "1-RealRefreshTokenForTheRun";
const ACCESS_PREFIX: &str = "ya29.RealAccessTokenForTheRun";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the executable stand-in `bin/<name>` into the workspace (mounted at /workspace).
fn stand_in(env: &MoatEnv, name: &str, script: &str) -> String {
    let dir = env.work_dir().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{script}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("/workspace/bin/{name}")
}

/// A script fragment printing everything a process in the container could read that might hold
/// the secret, then whether any file holds `secret` (split in two so that the script's own text,
/// readable in /proc, never holds it whole): `grep-exit=1` means none.
fn leak_probe(secret: &str) -> String {
    let (head, tail) = secret.split_at(secret.len() / 2);
    format!(
        r#"
echo "--- env"; env
echo "--- environ"; cat /proc/*/environ | tr '\0' '\n'
echo "--- cmdline"; cat /proc/*/cmdline | tr '\0' ' '; echo
a='{head}'; b='{tail}'
grep -rlsF "$a$b" / --exclude-dir=proc --exclude-dir=sys; echo "grep-exit=$?"
"#
    )
}

fn moat_run(env: &MoatEnv, args: &[&str]) -> Output {
    env.cmd()
        .arg("run")
        .args(args)
        .timeout(Duration::from_secs(180))
        .output()
        .expect("run moat")
}

/// The newest run's id, after checking it left no container behind.
fn last_run(env: &MoatEnv) -> String {
    let out = env.cmd().args(["list", "--json"]).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = runs[0]["id"].as_str().unwrap().to_owned();
    let left = docker(&["ps", "-aq", "--filter", &format!("label=moat.run={id}")]);
    assert!(
        text(&left.stdout).trim().is_empty(),
        "container of {id} left behind"
    );
    id
}

fn base_env(test: &str) -> Option<MoatEnv> {
    if !docker::available(test) {
        return None;
    }
    let image = docker::ensure_base_image();
    let mut env = MoatEnv::new();
    env.set("MOAT_BASE_IMAGE", image);
    let pem = env.ca_pem().to_owned();
    env.set("MOAT_EXTRA_CA_CERTS", pem);
    Some(env)
}

#[test]
fn codex_key_reaches_the_openai_api_and_never_the_container() {
    let Some(mut env) = base_env("run_codex") else {
        return;
    };
    let openai = fake_openai(env.ca(), OPENAI_KEY);
    env.set("MOAT_OPENAI_API_URL", openai.url());
    env.cmd()
        .args(["grant", "openai", "--no-input"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .assert()
        .success();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.openai.com:443:127.0.0.1:{}", openai.port()),
    );
    let codex = stand_in(
        &env,
        "codex",
        &format!(
            r#"# A stand-in for the Codex CLI: its login is ~/.codex/auth.json (or OPENAI_API_KEY).
echo "args: $*"
echo "env-key: $OPENAI_API_KEY"
echo "--- auth.json"; cat "$HOME/.codex/auth.json"
echo "--- config.toml"; cat "$HOME/.codex/config.toml"
key=$(python3 -c 'import json, os; print(json.load(open(os.path.expanduser("~/.codex/auth.json")))["OPENAI_API_KEY"])')
echo "--- api"
curl -sS --max-time 20 -H "Authorization: Bearer $key" -H 'content-type: application/json' \
  -d '{{"model":"gpt-5","input":"hello"}}' https://api.openai.com/v1/responses; echo
{}"#,
            leak_probe(OPENAI_KEY)
        ),
    );
    let out = moat_run(&env, &["--grant", "codex", "--", &codex, "exec", "hello"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("args: exec hello"), "{stdout}");
    assert!(
        stdout.contains(&format!("env-key: {OPENAI_PLACEHOLDER}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("\"OPENAI_API_KEY\": \"{OPENAI_PLACEHOLDER}\"")),
        "{stdout}"
    );
    for line in [
        "approval_policy = \"never\"",
        "sandbox_mode = \"danger-full-access\"",
        "[shell_environment_policy]\ninherit = \"all\"",
        "[projects.\"/workspace\"]\ntrust_level = \"trusted\"",
    ] {
        assert!(stdout.contains(line), "{line} not in {stdout}");
    }
    // The fake OpenAI answered the call, which carried the real key added on the wire.
    assert!(stdout.contains(r#""ok":true"#), "{stdout}");
    let calls: Vec<_> = openai
        .requests()
        .into_iter()
        .filter(|r| r.path_only() == "/v1/responses")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert_eq!(calls[0].json()["input"], "hello");
    // Nowhere in the container, nor in what moat wrote about the run.
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], OPENAI_KEY);
    let id = last_run(&env);
    assert_no_secret_in_dir(env.home().join("runs").join(id), OPENAI_KEY);
}

#[test]
fn gemini_key_reaches_the_gemini_api_and_never_the_container() {
    let Some(mut env) = base_env("run_gemini_key") else {
        return;
    };
    let api = fake_gemini_api(env.ca(), GEMINI_KEY);
    env.set("MOAT_GEMINI_API_URL", api.url());
    env.cmd()
        .args(["grant", "gemini", "--no-input"])
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .assert()
        .success();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!(
            "generativelanguage.googleapis.com:443:127.0.0.1:{}",
            api.port()
        ),
    );
    let gemini = stand_in(
        &env,
        "gemini",
        &format!(
            r#"# A stand-in for the Gemini CLI with an API key.
echo "env-key: $GEMINI_API_KEY"
echo "settings: $(tr -d ' \n' < "$HOME/.gemini/settings.json")"
ls "$HOME/.gemini/oauth_creds.json" 2>/dev/null || echo "no oauth_creds"
echo "api: $(curl -sS --max-time 20 -H "x-goog-api-key: $GEMINI_API_KEY" -d '{{}}' \
  https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent)"
{}"#,
            leak_probe(GEMINI_KEY)
        ),
    );
    let out = moat_run(&env, &["--grant", "gemini", "--", &gemini]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("env-key: moat-proxy-injected\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"settings: {"security":{"auth":{"selectedType":"gemini-api-key"}}}"#),
        "{stdout}"
    );
    assert!(stdout.contains("no oauth_creds"), "{stdout}");
    assert!(stdout.contains(r#"api: {"ok":true"#), "{stdout}");
    let calls: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path_only().ends_with(":generateContent"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].header("x-goog-api-key"), Some(GEMINI_KEY));
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], GEMINI_KEY);
    let id = last_run(&env);
    assert_no_secret_in_dir(env.home().join("runs").join(id), GEMINI_KEY);
}

/// The tokens a [`FakeGoogle`] issued, the first `n`.
fn issued(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{ACCESS_PREFIX}-{i}")).collect()
}

#[test]
fn gemini_oauth_is_substituted_scrubbed_and_refreshed_during_the_run() {
    let Some(mut env) = base_env("run_gemini_oauth") else {
        return;
    };
    // Access tokens live 40 s: the run's refresher renews the first one 32 s after the grant (a
    // fifth of the lifetime before it ends), long after the run's first call on a loaded machine.
    let google: FakeGoogle = fake_google(env.ca(), REFRESH, ACCESS_PREFIX, 40);
    env.set("MOAT_GOOGLE_OAUTH_URL", google.server.url());
    let dir = env.root().join(".gemini");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("oauth_creds.json"),
        serde_json::json!({ "access_token": "ya29.cli-old", "refresh_token": REFRESH }).to_string(),
    )
    .unwrap();
    env.cmd().args(["grant", "gemini"]).assert().success();
    let granted = chrono::Utc::now();
    assert_eq!(google.issued(), 1);
    let port = google.server.port();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!(
            "oauth2.googleapis.com:443:127.0.0.1:{port},cloudcode-pa.googleapis.com:443:127.0.0.1:{port}"
        ),
    );
    let gemini = stand_in(
        &env,
        "gemini",
        &format!(
            r#"# A stand-in for the Gemini CLI logged in with Google: its token is in oauth_creds.json.
echo "settings: $(tr -d ' \n' < "$HOME/.gemini/settings.json")"
tok=$(python3 -c 'import json, os; print(json.load(open(os.path.expanduser("~/.gemini/oauth_creds.json")))["access_token"])')
echo "staged-token: $tok"
echo "tokeninfo: $(curl -sS --max-time 20 "https://oauth2.googleapis.com/tokeninfo?access_token=$tok")"
i=0
while [ $i -lt 90 ]; do
  r=$(curl -sS --max-time 20 -H "Authorization: Bearer $tok" -d '{{}}' https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist)
  [ $i -eq 0 ] && echo "code-assist first: $r"
  case "$r" in *'"token_number":1}}'*) ;; *) echo "code-assist later: $r"; break ;; esac
  i=$((i+1)); sleep 1
done
{}"#,
            leak_probe(ACCESS_PREFIX)
        ),
    );
    let out = moat_run(&env, &["--grant", "google", "--", &gemini]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(r#"settings: {"security":{"auth":{"selectedType":"oauth-personal"}}}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("staged-token: moat-proxy-injected\n"),
        "{stdout}"
    );
    // tokeninfo got the real token in its URL, and its echo came back as the placeholder.
    let tokeninfo: Vec<_> = google
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path_only() == "/tokeninfo")
        .collect();
    assert_eq!(tokeninfo.len(), 1, "{tokeninfo:?}");
    assert!(
        issued(google.issued())
            .iter()
            .any(|t| tokeninfo[0].path == format!("/tokeninfo?access_token={t}")),
        "{:?}",
        tokeninfo[0].path
    );
    assert!(
        stdout.contains(r#""access_token":"moat-proxy-injected""#),
        "the echo is not scrubbed: {stdout}"
    );
    // Code Assist saw Bearer with the first token, then, after the refresh, the second.
    assert!(
        stdout.contains(r#"code-assist first: {"token_number":1}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"code-assist later: {"token_number":2}"#),
        "{stdout}"
    );
    assert!(google.issued() >= 2, "never refreshed");
    let bearers: Vec<String> = google
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.header("host")
                .is_some_and(|h| h.starts_with("cloudcode-pa"))
        })
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(
        bearers.contains(&format!("Bearer {ACCESS_PREFIX}-1")),
        "{bearers:?}"
    );
    assert!(
        bearers.contains(&format!("Bearer {ACCESS_PREFIX}-2")),
        "{bearers:?}"
    );
    // No token, access or refresh, in the container, the output or the run's files.
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    let id = last_run(&env);
    for secret in issued(google.issued())
        .iter()
        .map(String::as_str)
        .chain([REFRESH, ACCESS_PREFIX])
    {
        assert_no_secret(&[&out.stdout, &out.stderr], secret);
        assert_no_secret_in_dir(env.home().join("runs").join(&id), secret);
    }
    // The refreshed credential was kept for the next run: it expires later than the first.
    let show = env
        .cmd()
        .args(["grant", "show", "gemini", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let expires: chrono::DateTime<chrono::Utc> =
        json["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires > granted + chrono::Duration::seconds(50), "{json}");
}

/// `moat <agent> --image <base> -p hello` with the stand-ins first on the container's `PATH`:
/// the agent command the provider declares, built by the CLI and run through the same manager
/// path as `moat run`, with the grant it names added because it is stored.
fn moat_agent(env: &MoatEnv, agent: &str) -> Output {
    env.cmd()
        .arg(agent)
        .args(["--image", docker::ensure_base_image()])
        .args(["-e", "PATH=/workspace/bin:/usr/local/bin:/usr/bin:/bin"])
        .args(["-p", "hello there"])
        .timeout(Duration::from_secs(180))
        .output()
        .expect("run moat")
}

#[test]
fn moat_codex_runs_codex_exec_with_the_stored_key_injected() {
    let Some(mut env) = base_env("agent_codex") else {
        return;
    };
    let openai = fake_openai(env.ca(), OPENAI_KEY);
    env.set("MOAT_OPENAI_API_URL", openai.url());
    env.cmd()
        .args(["grant", "codex", "--no-input"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .assert()
        .success();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.openai.com:443:127.0.0.1:{}", openai.port()),
    );
    stand_in(
        &env,
        "codex",
        &format!(
            r#"printf 'args:'; for a in "$@"; do printf ' [%s]' "$a"; done; echo
curl -sS --max-time 20 -H "Authorization: Bearer $OPENAI_API_KEY" https://api.openai.com/v1/responses; echo
{}"#,
            leak_probe(OPENAI_KEY)
        ),
    );
    let out = moat_agent(&env, "codex");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    // `-p` is the declared batch option: `codex exec <prompt>`, one argument, no TTY.
    assert!(stdout.contains("args: [exec] [hello there]\n"), "{stdout}");
    assert!(stdout.contains(r#""ok":true"#), "{stdout}");
    let calls: Vec<_> = openai
        .requests()
        .into_iter()
        .filter(|r| r.path_only() == "/v1/responses")
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], OPENAI_KEY);
    let id = last_run(&env);
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(env.home().join("runs").join(&id).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["agent"], "codex", "{meta}");
    assert_eq!(meta["grants"], serde_json::json!(["codex"]), "{meta}");
    assert_no_secret_in_dir(env.home().join("runs").join(id), OPENAI_KEY);
}

#[test]
fn moat_gemini_runs_gemini_with_the_prompt_and_the_stored_key_injected() {
    let Some(mut env) = base_env("agent_gemini") else {
        return;
    };
    let api = fake_gemini_api(env.ca(), GEMINI_KEY);
    env.set("MOAT_GEMINI_API_URL", api.url());
    env.cmd()
        .args(["grant", "gemini", "--no-input"])
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .assert()
        .success();
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!(
            "generativelanguage.googleapis.com:443:127.0.0.1:{}",
            api.port()
        ),
    );
    stand_in(
        &env,
        "gemini",
        &format!(
            r#"printf 'args:'; for a in "$@"; do printf ' [%s]' "$a"; done; echo
echo "api: $(curl -sS --max-time 20 -H "x-goog-api-key: $GEMINI_API_KEY" -d '{{}}' \
  https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent)"
{}"#,
            leak_probe(GEMINI_KEY)
        ),
    );
    let out = moat_agent(&env, "gemini");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("args: [-p] [hello there]\n"), "{stdout}");
    assert!(stdout.contains(r#"api: {"ok":true"#), "{stdout}");
    let calls: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path_only().ends_with(":generateContent"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].header("x-goog-api-key"), Some(GEMINI_KEY));
    assert!(stdout.contains("grep-exit=1"), "{stdout}");
    assert_no_secret(&[&out.stdout, &out.stderr], GEMINI_KEY);
    let id = last_run(&env);
    assert_no_secret_in_dir(env.home().join("runs").join(id), GEMINI_KEY);
}
