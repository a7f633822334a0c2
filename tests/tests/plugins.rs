//! The plugins shipped in `plugins/`, end to end through the real `moat` binary: the Rust one
//! written on the SDK (`moat-provider-gitlab`) and the Python one written without it
//! (`moat-provider-linear`). Each validates against a local HTTPS server with its own CA,
//! reached through the plugin's documented base-URL override.

use std::path::{Path, PathBuf};

use moat_tests::{FakeHttps, MoatEnv, Reply, assert_no_secret_in_dir, assert_no_secret_named};
use predicates::prelude::*;
use predicates::str::contains;

const GITLAB_TOKEN: &str = "glpat-RealGitLabSecret0123456789";
const LINEAR_KEY: &str = "lin_api_RealLinearSecret0123456789abcdef";

/// A workspace binary built next to `moat`.
fn workspace_bin(name: &str) -> PathBuf {
    let path = moat_tests::moat_bin().with_file_name(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace`",
        path.display()
    );
    path
}

fn python_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/moat-provider-linear/moat-provider-linear")
}

/// Puts `target` on the environment's PATH as `moat-provider-<name>`.
fn install(env: &MoatEnv, name: &str, target: &Path) -> PathBuf {
    let link = env.bin_dir().join(format!("moat-provider-{name}"));
    std::os::unix::fs::symlink(target, &link).unwrap();
    link
}

/// An environment with the GitLab plugin installed and a fake GitLab (kept alive by the caller).
fn gitlab_env() -> (MoatEnv, PathBuf, FakeHttps) {
    let mut env = MoatEnv::new();
    let server = FakeHttps::start(env.ca(), |request| {
        match (
            request.method.as_str(),
            request.path_only(),
            request.header("private-token"),
        ) {
            ("GET", "/api/v4/user", Some(GITLAB_TOKEN)) => {
                Reply::json(200, serde_json::json!({"username": "tanuki"}))
            }
            ("GET", "/api/v4/user", _) => {
                Reply::json(401, serde_json::json!({"message": "401 Unauthorized"}))
            }
            _ => Reply::not_found(),
        }
    });
    env.set("MOAT_GITLAB_URL", server.url());
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);
    let link = install(&env, "gitlab", &workspace_bin("moat-provider-gitlab"));
    (env, link, server)
}

#[test]
fn gitlab_plugin_is_listed_granted_shown_and_revoked() {
    let (env, link, _gitlab) = gitlab_env();
    env.cmd()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(r"gitlab\s+GitLab personal access token\s+plugin \(").unwrap(),
        )
        .stdout(contains(link.display().to_string()));

    let grant = env
        .cmd()
        .args(["-vv", "grant", "gitlab"])
        .env("GITLAB_TOKEN", GITLAB_TOKEN)
        .assert()
        .success()
        .stderr(contains("Authenticated as: tanuki"))
        .stdout(contains("Credential saved to"))
        .get_output()
        .clone();
    // The alias the plugin declares resolves like a built-in's.
    let show = env
        .cmd()
        .args(["grant", "show", "gl"])
        .assert()
        .success()
        .stdout(contains("Provider: gitlab"))
        .stdout(contains("Source:   env"))
        // The pin's key is shown as the spec names it (it was `Moat.plugin_sha256`).
        .stdout(contains("\nmoat.plugin_sha256: "))
        .get_output()
        .clone();
    assert_no_secret_named(
        &[
            ("grant stdout", &grant.stdout),
            ("grant stderr", &grant.stderr),
            ("show", &show.stdout),
        ],
        GITLAB_TOKEN,
    );
    assert_no_secret_in_dir(env.home(), GITLAB_TOKEN);
    env.cmd()
        .args(["revoke", "gl"])
        .assert()
        .success()
        .stdout(contains("gitlab credential revoked"));
    env.cmd().args(["grant", "show", "gitlab"]).assert().code(3);
}

#[test]
fn gitlab_plugin_rejection_stores_nothing() {
    let (env, _, _gitlab) = gitlab_env();
    env.cmd()
        .args(["grant", "gitlab"])
        .write_stdin("glpat-wrong\n")
        .assert()
        .code(4)
        .stderr(contains("GitLab rejected the token"))
        .stderr(contains("glpat-wrong").not());
    assert!(!env.home().join("credentials/gitlab.enc").exists());
}

#[test]
fn python_plugin_grants_from_a_pipe() {
    let mut env = MoatEnv::new();
    let server = FakeHttps::start(env.ca(), |request| {
        match (
            request.method.as_str(),
            request.path_only(),
            request.header("authorization"),
        ) {
            ("POST", "/graphql", Some(LINEAR_KEY)) => Reply::json(
                200,
                serde_json::json!({"data": {"viewer": {"name": "Ada", "email": "ada@example.com"}}}),
            ),
            ("POST", "/graphql", _) => {
                Reply::json(401, serde_json::json!({"errors": [{"message": "auth"}]}))
            }
            _ => Reply::not_found(),
        }
    });
    env.set("MOAT_LINEAR_URL", server.url());
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);
    install(&env, "linear", &python_plugin());

    env.cmd()
        .args(["grant", "providers", "--json"])
        .assert()
        .success()
        .stdout(contains("\"linear\"").and(contains("\"plugin\"")));
    env.cmd()
        .args(["grant", "linear"])
        .write_stdin(format!("{LINEAR_KEY}\n"))
        .assert()
        .success()
        .stderr(contains("Authenticated as: ada@example.com"));
    env.cmd()
        .args(["grant", "show", "linear"])
        .assert()
        .success()
        .stdout(contains("Source:   prompt"));
    assert_eq!(server.requests().len(), 1);
    assert_no_secret_in_dir(env.home(), LINEAR_KEY);

    env.cmd()
        .args(["grant", "linear"])
        .write_stdin("wrong\n")
        .assert()
        .code(4)
        .stderr(contains("rejected"));
}

#[test]
fn shipped_plugins_pass_the_conformance_check() {
    let mut env = MoatEnv::new();
    // The check drives each grant with a test token, which the plugins validate upstream: point
    // them at a closed port on this machine (a network error is a fine end for the check), so
    // nothing leaves it.
    env.set("MOAT_GITLAB_URL", "https://127.0.0.1:9");
    env.set("MOAT_LINEAR_URL", "https://127.0.0.1:9");
    for plugin in [
        install(&env, "gitlab", &workspace_bin("moat-provider-gitlab")),
        install(&env, "linear", &python_plugin()),
    ] {
        env.cmd()
            .args(["plugin", "check"])
            .arg(&plugin)
            .assert()
            .success()
            .stdout(contains("checks passed"));
    }
}
