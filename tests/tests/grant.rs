//! `moat grant` end to end: the real binary, a temporary MOAT_HOME, and a local HTTPS server
//! standing in for the GitHub API (reached through MOAT_GITHUB_API_URL and trusted through
//! MOAT_EXTRA_CA_CERTS).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use moat_tests::{MoatEnv, assert_no_secret_in_dir, assert_no_secret_named};
use predicates::prelude::*;
use predicates::str::contains;

const TOKEN: &str = "ghp_RealSecretToken1234567890abcdefABCD";
const LOGIN: &str = "octocat";

fn env() -> MoatEnv {
    MoatEnv::new().with_github(TOKEN, LOGIN)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn enc_file(env: &MoatEnv) -> std::path::PathBuf {
    env.home().join("credentials/github.enc")
}

/// Grants from GITHUB_TOKEN and checks the token is nowhere but encrypted.
fn grant_from_env(env: &MoatEnv) -> Output {
    env.cmd()
        .args(["grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .success()
        .get_output()
        .clone()
}

#[test]
fn grant_from_env_validates_stores_and_never_shows_the_token() {
    let env = env();
    let output = env
        .cmd()
        .args(["-vv", "grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .success()
        .stdout(contains("Credential saved to"))
        .stderr(contains(
            "Using token from GITHUB_TOKEN environment variable",
        ))
        .stderr(contains("Authenticated as: octocat"))
        .get_output()
        .clone();

    // The fake GitHub saw exactly one validation call with the real token.
    let requests = env.github().requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path_only(), "/user");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    let mode = fs::metadata(enc_file(&env)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir_mode = fs::metadata(env.home().join("credentials"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let list = env
        .cmd()
        .args(["-vv", "grant", "list"])
        .assert()
        .success()
        .stdout(contains("github"))
        .get_output()
        .clone();
    let list_json = env
        .cmd()
        .args(["grant", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let show = env
        .cmd()
        .args(["-vv", "grant", "show", "github"])
        .assert()
        .success()
        .stdout(contains("Source:   env"))
        .stdout(contains("Login:    octocat"))
        .stdout(contains("****************ABCD"))
        .get_output()
        .clone();
    let show_json = env
        .cmd()
        .args(["grant", "show", "github", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();

    let json: serde_json::Value = serde_json::from_slice(&list_json.stdout).unwrap();
    assert_eq!(json[0]["provider"], "github");
    assert_eq!(json[0]["type"], "token");
    let json: serde_json::Value = serde_json::from_slice(&show_json.stdout).unwrap();
    assert_eq!(json["token"], "****************ABCD");

    let outputs = [
        ("grant", &output),
        ("list", &list),
        ("list --json", &list_json),
        ("show", &show),
        ("show --json", &show_json),
    ];
    let mut haystacks = Vec::new();
    for (name, output) in outputs {
        haystacks.push((name, output.stdout.clone()));
        haystacks.push((name, output.stderr.clone()));
    }
    assert_no_secret_named(&haystacks, TOKEN);
    // Nothing under MOAT_HOME holds the token in plaintext.
    assert_no_secret_in_dir(env.home(), TOKEN);
}

#[test]
fn grant_from_gh_cli_asks_first_and_takes_the_default_without_a_terminal() {
    let env = env();
    env.fake_gh(Some(TOKEN));
    env.cmd()
        .args(["grant", "github"])
        .assert()
        .success()
        .stderr(contains("Found gh CLI authentication"))
        .stderr(contains("Use token from gh CLI? yes (default"));
    // Grant steps are stateless, so gh is asked again once the user said yes.
    let calls = env.tool_calls("gh");
    assert!(
        !calls.is_empty() && calls.iter().all(|call| call == "auth token"),
        "{calls:?}"
    );
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .success()
        .stdout(contains("Source:   cli"));
}

#[test]
fn grant_from_a_piped_token() {
    let env = env();
    env.cmd()
        .args(["grant", "github"])
        .write_stdin(format!("{TOKEN}\n"))
        .assert()
        .success()
        .stderr(contains("Authenticated as: octocat"));
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .success()
        .stdout(contains("Source:   pat"));
}

#[test]
fn a_rejected_token_is_a_clear_error_and_nothing_is_stored() {
    let env = env();
    let output = env
        .cmd()
        .args(["-vv", "grant", "github"])
        .write_stdin("ghp_wrongWrongWrong\n")
        .assert()
        .code(4)
        .stderr(contains("GitHub rejected the token"))
        .stderr(contains("moat grant github"))
        .get_output()
        .clone();
    assert!(
        !text(&output).contains("ghp_wrongWrongWrong"),
        "{}",
        text(&output)
    );
    assert!(!enc_file(&env).exists());
}

#[test]
fn no_input_names_the_variable_to_set() {
    let env = env();
    env.cmd()
        .args(["grant", "github", "--no-input"])
        .assert()
        .code(5)
        .stderr(contains("set GITHUB_TOKEN"));
    assert!(!enc_file(&env).exists());
    // An empty stdin is the same: the error says what else to do.
    env.cmd()
        .args(["grant", "github"])
        .assert()
        .code(5)
        .stderr(contains("stdin ended"));
}

#[test]
fn unreachable_api_is_a_network_error() {
    let mut env = MoatEnv::new();
    env.set("MOAT_GITHUB_API_URL", "https://127.0.0.1:1");
    env.cmd()
        .args(["grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .code(1)
        .stderr(contains("cannot reach the GitHub API"))
        .stderr(contains(TOKEN).not());
}

#[test]
fn an_untrusted_server_certificate_is_refused() {
    let mut env = env();
    env.set("MOAT_EXTRA_CA_CERTS", "");
    env.cmd()
        .args(["grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .code(1)
        .stderr(contains("cannot reach the GitHub API"));
    assert!(env.github().requests().is_empty());
}

#[test]
fn revoke_removes_and_then_show_says_how_to_grant() {
    let env = env();
    grant_from_env(&env);
    env.cmd()
        .args(["revoke", "github"])
        .assert()
        .success()
        .stdout(contains("github credential revoked"));
    assert!(!enc_file(&env).exists());
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .code(3)
        .stderr(contains("no credential found for github"))
        .stderr(contains("moat grant github"));
    env.cmd().args(["revoke", "github"]).assert().code(3);
    env.cmd()
        .args(["grant", "list"])
        .assert()
        .success()
        .stdout(contains("No credentials found"));
}

#[test]
fn profiles_are_isolated() {
    let env = env();
    env.cmd()
        .args(["--profile", "work", "grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .success()
        .stdout(contains("(profile: work)"));
    assert!(
        env.home()
            .join("credentials/profiles/work/github.enc")
            .exists()
    );
    env.cmd()
        .args(["grant", "list"])
        .assert()
        .success()
        .stdout(contains("No credentials found"));
    env.cmd()
        .args(["grant", "list"])
        .env("MOAT_PROFILE", "work")
        .assert()
        .success()
        .stdout(contains("Profile: work"))
        .stdout(contains("github"));
    env.cmd()
        .args(["--profile", "../etc", "grant", "list"])
        .assert()
        .code(2)
        .stderr(contains("invalid profile name"));
}

#[test]
fn a_changed_key_names_the_provider_and_the_fix() {
    let env = env();
    grant_from_env(&env);
    let key_file = env.home().join("encryption.key");
    // Another valid key: 32 bytes, base64.
    fs::write(&key_file, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=\n").unwrap();
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .code(6)
        .stderr(contains("decrypting credential for github"))
        .stderr(contains("moat grant github"));
    // The listing still works and says what is wrong.
    env.cmd()
        .args(["grant", "list"])
        .assert()
        .success()
        .stderr(contains("warning"))
        .stderr(contains("github"));
    // An undecryptable credential can still be revoked, and granting again repairs it.
    env.cmd().args(["revoke", "github"]).assert().success();
    grant_from_env(&env);
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .success();
}

#[test]
fn truncated_and_tampered_files_are_reported_not_skipped() {
    let env = env();
    grant_from_env(&env);
    let file = enc_file(&env);
    let original = fs::read(&file).unwrap();

    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    fs::write(&file, &tampered).unwrap();
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .code(6)
        .stderr(contains("github"));

    fs::write(&file, &original[..10]).unwrap();
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .code(6)
        .stderr(contains("corrupted or truncated"))
        .stderr(contains("moat grant github"));
    env.cmd()
        .args(["grant", "list"])
        .assert()
        .success()
        .stderr(contains("corrupted or truncated"));

    fs::write(&file, &original).unwrap();
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .success();
}

#[test]
fn a_key_file_readable_by_others_is_refused() {
    let env = env();
    grant_from_env(&env);
    let key_file = env.home().join("encryption.key");
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o644)).unwrap();
    env.cmd()
        .args(["grant", "show", "github"])
        .assert()
        .code(6)
        .stderr(contains("chmod 600"));
    env.cmd()
        .args(["grant", "github"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .code(6);
}

#[test]
fn concurrent_grants_agree_on_one_key() {
    for round in 0..4 {
        let env = env();
        let children: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|profile| {
                let mut command = std::process::Command::new(moat_tests::moat_bin());
                command
                    .env_clear()
                    .envs(env.vars())
                    .env("GITHUB_TOKEN", TOKEN);
                command.args(["--profile", profile, "grant", "github"]);
                command
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped());
                command.spawn().unwrap()
            })
            .collect();
        for child in children {
            let output = child.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        for profile in ["a", "b", "c"] {
            env.cmd()
                .args(["--profile", profile, "grant", "show", "github"])
                .assert()
                .success();
        }
    }
}

#[test]
fn unknown_providers_list_the_available_ones() {
    let env = env();
    env.cmd()
        .args(["grant", "nosuch"])
        .assert()
        .code(3)
        .stderr(contains("unknown provider: nosuch"))
        .stderr(contains("github"))
        .stderr(contains("moat grant providers"));
    env.cmd()
        .args(["revoke", "nosuch"])
        .assert()
        .code(3)
        .stderr(contains("no credential found for nosuch"));
    env.cmd()
        .args(["grant", "github:repo"])
        .assert()
        .code(2)
        .stderr(contains("scopes are not supported"));
    env.cmd()
        .args(["grant", "github", "extra"])
        .assert()
        .code(2);
}

#[test]
fn providers_lists_github_as_builtin() {
    let env = env();
    env.cmd()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(
            contains("PROVIDER")
                .and(contains("DESCRIPTION"))
                .and(contains("SOURCE")),
        )
        .stdout(predicate::str::is_match(r"github\s+GitHub token\s+builtin").unwrap());
    let output = env
        .cmd()
        .args(["grant", "providers", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let github = json["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == "github")
        .unwrap();
    assert_eq!(github["source"], "builtin");
    assert_eq!(github["description"], "GitHub token");
}

#[test]
fn help_teaches() {
    let env = MoatEnv::new();
    env.cmd()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("Exit codes"))
        .stdout(contains("moat grant github"));
    env.cmd()
        .args(["grant", "--help"])
        .assert()
        .success()
        .stdout(contains("GITHUB_TOKEN"))
        .stdout(contains("--no-input"));
    for sub in [
        vec!["grant", "providers"],
        vec!["grant", "list"],
        vec!["grant", "show"],
        vec!["revoke"],
    ] {
        env.cmd()
            .args(&sub)
            .arg("--help")
            .assert()
            .success()
            .stdout(contains("Usage: moat"));
    }
    env.cmd().assert().code(2).stderr(contains("Usage"));
}
