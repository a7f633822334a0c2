//! `moat grant claude` and `moat grant anthropic` end to end: the real binary, a temporary
//! MOAT_HOME, and a local HTTPS server standing in for `POST /v1/messages` (reached through the
//! documented MOAT_ANTHROPIC_API_URL, trusted through MOAT_EXTRA_CA_CERTS).

use std::path::Path;
use std::process::Output;

use moat_tests::{
    AnthropicKeys, FakeHttps, MoatEnv, assert_no_secret_in_dir, assert_no_secret_named,
    fake_anthropic,
};
use predicates::prelude::*;
use predicates::str::contains;

const OAUTH: &str = "sk-ant-oat01-RealClaudeOauthToken0123456789abcdef";
const API_KEY: &str = "sk-ant-api03-RealAnthropicApiKey0123456789abcdef";

fn env() -> (MoatEnv, FakeHttps) {
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
    (env, api)
}

fn enc(env: &MoatEnv, name: &str) -> std::path::PathBuf {
    env.home().join(format!("credentials/{name}.enc"))
}

fn outputs(output: &Output) -> [(&str, &Vec<u8>); 2] {
    [("stdout", &output.stdout), ("stderr", &output.stderr)]
}

#[test]
fn providers_lists_anthropic_and_claude_with_descriptions() {
    let env = MoatEnv::new();
    env.cmd()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"anthropic\s+Anthropic API key\s+builtin").unwrap())
        .stdout(
            predicate::str::is_match(r"claude\s+Claude subscription \(OAuth token\)\s+builtin")
                .unwrap(),
        );
    // And `moat --help` lists the built-in agent command.
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"(?m)^\s+claude\s+Run Claude Code").unwrap());
}

#[test]
fn a_pasted_oauth_token_is_cleaned_validated_and_stored() {
    let (env, api) = env();
    let output = env
        .cmd()
        .args(["grant", "claude"])
        // The prompt reads one line; surrounding whitespace is removed.
        .write_stdin(format!("  {OAUTH} \n"))
        .assert()
        .success()
        .stderr(contains("Anthropic accepted the OAuth token"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&output), OAUTH);
    assert!(enc(&env, "claude").is_file());
    assert_no_secret_in_dir(env.home(), OAUTH);
    // One validation call: the token as Bearer, with the OAuth beta header and the API version.
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path_only(), "/v1/messages");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {OAUTH}").as_str())
    );
    assert_eq!(request.header("anthropic-beta"), Some("oauth-2025-04-20"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.json()["max_tokens"], 1);
    env.cmd()
        .args(["grant", "show", "claude"])
        .assert()
        .success()
        .stdout(contains("paste"));
}

#[test]
fn the_oauth_token_from_the_environment_is_used_first() {
    let (env, _api) = env();
    env.cmd()
        .args(["grant", "claude", "--no-input"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", OAUTH)
        .assert()
        .success()
        .stderr(contains("CLAUDE_CODE_OAUTH_TOKEN"));
    assert!(enc(&env, "claude").is_file());
}

#[test]
fn a_rejected_oauth_token_exits_4_and_stores_nothing() {
    let (env, api) = env();
    let wrong = "sk-ant-oat01-WrongWrongWrongWrong";
    let output = env
        .cmd()
        .args(["grant", "claude"])
        .write_stdin(format!("{wrong}\n"))
        .assert()
        .code(4)
        .stderr(contains("Anthropic rejected the OAuth token (401"))
        .stderr(contains("moat grant claude"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&output), wrong);
    assert!(!enc(&env, "claude").exists());
    assert_eq!(api.requests().len(), 1);
    // An API key pasted as an OAuth token: refused before any request, with the right command.
    env.cmd()
        .args(["grant", "claude"])
        .write_stdin(format!("{API_KEY}\n"))
        .assert()
        .failure()
        .stderr(contains("must start with \"sk-ant-oat\""))
        .stderr(contains("moat grant anthropic"));
    assert_eq!(api.requests().len(), 1);
    assert!(!enc(&env, "claude").exists());
}

#[test]
fn an_api_key_from_the_environment_or_the_prompt_is_validated_and_stored() {
    let (env, api) = env();
    let output = env
        .cmd()
        .args(["grant", "anthropic", "--no-input"])
        .env("ANTHROPIC_API_KEY", API_KEY)
        .assert()
        .success()
        .stderr(contains("ANTHROPIC_API_KEY"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&output), API_KEY);
    assert_no_secret_in_dir(env.home(), API_KEY);
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("x-api-key"), Some(API_KEY));
    assert_eq!(requests[0].header("authorization"), None);
    assert!(enc(&env, "anthropic").is_file());

    // From a piped prompt, in a fresh home.
    let (env, _api) = self::env();
    env.cmd()
        .args(["grant", "anthropic"])
        .write_stdin(format!("{API_KEY}\n"))
        .assert()
        .success()
        .stderr(contains("Anthropic accepted the API key"));
    assert!(enc(&env, "anthropic").is_file());
}

#[test]
fn a_rejected_api_key_exits_4_and_stores_nothing() {
    let (env, _api) = env();
    let wrong = "sk-ant-api03-WrongWrongWrongWrong";
    let output = env
        .cmd()
        .args(["grant", "anthropic"])
        .write_stdin(format!("{wrong}\n"))
        .assert()
        .code(4)
        .stderr(contains("Anthropic rejected the API key (401"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&output), wrong);
    assert!(!enc(&env, "anthropic").exists());
    // Not an Anthropic key at all.
    env.cmd()
        .args(["grant", "anthropic"])
        .write_stdin("sk-proj-openai\n")
        .assert()
        .failure()
        .stderr(contains("must start with \"sk-ant-\""));
    // Nothing to read: the variable to set is named.
    env.cmd()
        .args(["grant", "anthropic", "--no-input"])
        .assert()
        .code(5)
        .stderr(contains("ANTHROPIC_API_KEY"));
}

/// `moat grant claude` on a terminal (util-linux `script` gives it a pty), answering the menu
/// with `choice`; its output (the pty's) and exit code.
fn grant_claude_on_a_terminal(env: &MoatEnv, choice: &str) -> Option<Output> {
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("skipped: /usr/bin/script (util-linux) is needed for a terminal");
        return None;
    }
    let command = format!("{} grant claude", moat_tests::moat_bin().display());
    Some(
        env.command("/usr/bin/script")
            .args(["-qec", &command, "/dev/null"])
            .write_stdin(format!("{choice}\n"))
            .output()
            .unwrap(),
    )
}

fn write_claude_login(env: &MoatEnv, token: &str, expires_in_minutes: i64) -> i64 {
    let expires_at =
        (chrono::Utc::now() + chrono::Duration::minutes(expires_in_minutes)).timestamp_millis();
    let dir = env.root().join(".claude");
    std::fs::create_dir_all(&dir).unwrap();
    let login = serde_json::json!({"claudeAiOauth": {
        "accessToken": token,
        "refreshToken": "sk-ant-ort01-RefreshTokenNeverKept0123",
        "expiresAt": expires_at,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "pro",
        "rateLimitTier": "default_claude_pro",
    }});
    std::fs::write(dir.join(".credentials.json"), login.to_string()).unwrap();
    expires_at
}

#[test]
fn claude_codes_login_is_imported_from_the_menu_without_its_refresh_token() {
    let (env, api) = env();
    let expires_at = write_claude_login(&env, OAUTH, 90);
    let Some(output) = grant_claude_on_a_terminal(&env, "2") else {
        return;
    };
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{shown}");
    // No claude CLI on PATH: the menu offers pasting and importing, numbered from 1.
    assert!(shown.contains("1. Existing OAuth token (paste)"), "{shown}");
    assert!(
        shown.contains("2. Import existing Claude Code credentials"),
        "{shown}"
    );
    assert!(
        !shown.contains("Claude subscription (OAuth token from"),
        "{shown}"
    );
    assert!(shown.contains("moat cannot refresh it"), "{shown}");
    assert_no_secret_named(&[("pty", &output.stdout)], OAUTH);
    assert_eq!(api.requests().len(), 1);
    let show = env
        .cmd()
        .args(["grant", "show", "claude", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let stored = serde_json::to_string(&json).unwrap();
    assert!(stored.contains("default_claude_pro"), "{stored}");
    assert!(stored.contains("user:profile"), "{stored}");
    assert!(stored.contains("\"pro\""), "{stored}");
    let expires = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(expires_at).unwrap();
    assert!(
        stored.contains(&expires.format("%Y-%m-%dT%H:%M").to_string()),
        "{stored}"
    );
    assert_no_secret_in_dir(env.home(), OAUTH);
    assert_no_secret_in_dir(env.home(), "sk-ant-ort01-RefreshTokenNeverKept0123");
}

#[test]
fn an_expired_claude_code_login_is_refused_and_nothing_is_stored() {
    let (env, api) = env();
    write_claude_login(&env, OAUTH, -5);
    let Some(output) = grant_claude_on_a_terminal(&env, "2") else {
        return;
    };
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(4), "{shown}");
    assert!(shown.contains("expired"), "{shown}");
    assert!(
        api.requests().is_empty(),
        "an expired login is not even sent"
    );
    assert!(!enc(&env, "claude").exists());
}

#[test]
fn moat_claude_checks_its_options_and_grants_before_anything_starts() {
    let (env, _api) = env();
    // Neither Anthropic grant is stored: the error says what to run.
    env.cmd()
        .args(["claude", "-p", "hi"])
        .assert()
        .code(3)
        .stderr(contains("moat grant claude"));
    env.cmd()
        .args(["grant", "claude", "--no-input"])
        .env("CLAUDE_CODE_OAUTH_TOKEN", OAUTH)
        .assert()
        .success();
    // --continue and --resume exclude each other.
    env.cmd()
        .args(["claude", "-c", "-r", "some-run"])
        .assert()
        .code(2)
        .stderr(contains("cannot be used with"));
    // --resume names a run, which must exist.
    env.cmd()
        .args(["claude", "--resume", "no-such-run", "-p", "hi"])
        .assert()
        .code(3)
        .stderr(contains("no-such-run"));
}
