//! `moat claude` end to end in Docker: the built-in claude agent command, through the same manager
//! path as `moat run`, in a test image whose `claude` is a stand-in (`tests/fixtures/
//! claude-standin.py`; the npm registry is out of reach, so the image is given with the
//! documented `--image`, used as is). The stand-in calls `https://api.anthropic.com` through the
//! proxy with what the container holds; a local fake Anthropic API (reached through
//! `MOAT_PROXY_RESOLVE`) says what it received. The real token reaches the fake and never the
//! container: not its environment, not /proc, not a file.

use std::path::Path;
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use moat_tests::docker::{self, docker};
use moat_tests::{
    AnthropicKeys, FakeHttps, MoatEnv, assert_no_secret, assert_no_secret_in_dir, fake_anthropic,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

const OAUTH: &str = "sk-ant-oat01-RealClaudeOauthTokenForDocker0123456789";
const API_KEY: &str = "sk-ant-api03-RealAnthropicKeyForDocker0123456789";

/// The test image: the base image with the stand-in as `/usr/local/bin/claude`, tagged by the
/// hash of its inputs and built once.
fn standin_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let base = docker::ensure_base_image();
        let script_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/claude-standin.py");
        let script = std::fs::read(&script_path).unwrap();
        let dockerfile = format!(
            "FROM {base}\nCOPY claude-standin.py /usr/local/bin/claude\n\
             RUN chmod 755 /usr/local/bin/claude\n"
        );
        let mut hash = Sha256::new();
        hash.update(dockerfile.as_bytes());
        hash.update(&script);
        let digest = hash.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        let tag = format!("moat-test-claude:{hex}");
        if !docker::image_exists(&tag) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("Dockerfile"), &dockerfile).unwrap();
            std::fs::write(dir.path().join("claude-standin.py"), &script).unwrap();
            let out = docker(&["build", "-q", "-t", &tag, &dir.path().display().to_string()]);
            assert!(
                out.status.success(),
                "building {tag}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tag
    })
}

/// A home with the fake Anthropic API behind the resolve override and the grants stored.
fn claude_env(test: &str, grants: &[&str]) -> Option<(MoatEnv, FakeHttps)> {
    if !docker::available(test) {
        return None;
    }
    standin_image();
    let mut env = MoatEnv::new();
    let api = fake_anthropic(
        env.ca(),
        AnthropicKeys {
            oauth: OAUTH.into(),
            api_key: API_KEY.into(),
        },
    );
    env.set("MOAT_ANTHROPIC_API_URL", api.url());
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.anthropic.com:443:127.0.0.1:{}", api.port()),
    );
    for grant in grants {
        let (var, value) = match *grant {
            "claude" => ("CLAUDE_CODE_OAUTH_TOKEN", OAUTH),
            _ => ("ANTHROPIC_API_KEY", API_KEY),
        };
        env.cmd()
            .args(["grant", grant, "--no-input"])
            .env(var, value)
            .assert()
            .success();
    }
    Some((env, api))
}

/// `moat claude --image <stand-in> <args> -- <halves of both secrets>`, and the stand-in's
/// report.
fn moat_claude(env: &MoatEnv, args: &[&str]) -> (Output, Value) {
    let (head, tail) = OAUTH.split_at(OAUTH.len() / 2);
    let (key_head, key_tail) = API_KEY.split_at(API_KEY.len() / 2);
    let out = env
        .cmd()
        .arg("claude")
        .args(["--image", standin_image()])
        .args(args)
        .args(["--", key_head, key_tail, head, tail])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report = stdout
        .lines()
        .find_map(|line| line.strip_prefix("REPORT "))
        .unwrap_or_else(|| panic!("no report:\n{stdout}\n{stderr}"));
    (out, serde_json::from_str(report).unwrap())
}

fn runs(env: &MoatEnv) -> Vec<Value> {
    let out = env.cmd().args(["list", "--json"]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn moat_claude_reaches_the_api_with_the_real_token_that_never_enters_the_container() {
    let Some((env, api)) = claude_env("agent_claude_oauth", &["claude"]) else {
        return;
    };
    let (out, report) = moat_claude(&env, &["-p", "say hi"]);
    // The declared command line: argv, then -p PROMPT.
    assert_eq!(
        report["args"],
        serde_json::json!(["--dangerously-skip-permissions", "-p", "say hi"]),
        "{report}"
    );
    // The staged files: the placeholder login, onboarding done, /workspace trusted, no prompts.
    assert_eq!(
        report["credentials"]["accessToken"],
        "sk-ant-oat01-moat-proxy-injected-placeholder-not-a-real-token"
    );
    assert_eq!(report["onboarded"], true, "{report}");
    assert_eq!(report["trusted"], true, "{report}");
    assert_eq!(report["mode"], "bypassPermissions", "{report}");
    // The fake upstream recognised the real OAuth token with the beta header, and the stray
    // x-api-key was removed.
    assert_eq!(report["messages_status"], 200, "{report}");
    assert_eq!(report["upstream"]["text"], "auth=oauth", "{report}");
    assert_eq!(report["upstream"]["x_api_key_sent"], false, "{report}");
    assert_eq!(report["profile"][0], 200, "the 403 workaround: {report}");
    assert_eq!(report["profile"][1], r#"{"id":"","email":"","name":""}"#);
    let sent = api
        .requests()
        .into_iter()
        .filter(|r| r.path_only() == "/v1/messages")
        .filter(|r| r.header("authorization") == Some(format!("Bearer {OAUTH}").as_str()))
        .count();
    // One from the grant's validation, one from the container.
    assert_eq!(sent, 2);
    // Nowhere in the container, nor in moat's output.
    assert_eq!(report["leaks"], serde_json::json!([]), "{report}");
    assert_eq!(report["api_key_env"], "absent");
    assert_no_secret(&[&out.stdout, &out.stderr], OAUTH);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Started agent \"claude\""), "{stderr}");

    // The run records the agent, its grant and the session Claude Code wrote.
    let run = &runs(&env)[0];
    assert_eq!(run["agent"], "claude", "{run}");
    assert_eq!(run["grants"], serde_json::json!(["claude"]), "{run}");
    let session = report["session"].as_str().unwrap();
    assert_eq!(run["provider_meta"]["claude_session_id"], session, "{run}");
    let id = run["id"].as_str().unwrap();
    assert_no_secret_in_dir(env.home().join("runs").join(id), OAUTH);

    // `--resume <run>` becomes `--resume <that run's session>`.
    let name = run["name"].as_str().unwrap();
    let (_, report) = moat_claude(&env, &["--resume", name, "-p", "again"]);
    assert_eq!(
        report["args"],
        serde_json::json!([
            "--dangerously-skip-permissions",
            "-p",
            "again",
            "--resume",
            session
        ]),
        "{report}"
    );
}

#[test]
fn with_both_grants_the_api_key_reaches_shell_commands_only() {
    let Some((env, _api)) = claude_env("agent_claude_both", &["claude", "anthropic"]) else {
        return;
    };
    let (out, report) = moat_claude(&env, &["-g", "claude,anthropic", "-p", "hi"]);
    // Claude Code itself: its login, no API key in its environment.
    assert_eq!(report["upstream"]["text"], "auth=oauth", "{report}");
    assert_eq!(report["api_key_env"], "absent", "{report}");
    // A bash child has the placeholder, and its requests carry the real key on the wire.
    assert_eq!(report["api_key_bash"], "moat-proxy-injected", "{report}");
    assert_eq!(report["bash_upstream"], "auth=api-key", "{report}");
    assert_eq!(report["leaks"], serde_json::json!([]), "{report}");
    assert_no_secret(&[&out.stdout, &out.stderr], OAUTH);
    assert_no_secret(&[&out.stdout, &out.stderr], API_KEY);
    let run = &runs(&env)[0];
    assert_eq!(
        run["grants"],
        serde_json::json!(["claude", "anthropic"]),
        "{run}"
    );
}
