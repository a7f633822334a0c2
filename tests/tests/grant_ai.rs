//! `moat grant codex` / `openai` and `moat grant gemini` / `google` end to end: the real binary,
//! a temporary MOAT_HOME, and local HTTPS servers standing in for the OpenAI API, the Gemini API
//! and Google's token endpoint (reached through MOAT_OPENAI_API_URL, MOAT_GEMINI_API_URL and
//! MOAT_GOOGLE_OAUTH_URL, trusted through MOAT_EXTRA_CA_CERTS).

use std::process::Output;

use moat_tests::{
    FakeGoogle, FakeHttps, MoatEnv, OPENAI_RATE_LIMITED_KEY, assert_no_secret_in_dir,
    assert_no_secret_named, fake_gemini_api, fake_google, fake_openai, form_fields,
};
use predicates::str::contains;

const OPENAI_KEY: &str = "sk-proj-RealOpenAiKey1234567890abcdefWXYZ";
const GEMINI_KEY: &str = "AIzaRealGeminiKey1234567890abcdefGHIJ";
const REFRESH: &str = "1-RealRefreshTokenFromGeminiCli";
const CLI_ACCESS: &str = "ya29.OldAccessTokenOfTheGeminiCli";

fn openai_env() -> (MoatEnv, FakeHttps) {
    let mut env = MoatEnv::new();
    let server = fake_openai(env.ca(), OPENAI_KEY);
    env.set("MOAT_OPENAI_API_URL", server.url());
    let pem = env.ca_pem().to_owned();
    env.set("MOAT_EXTRA_CA_CERTS", pem);
    (env, server)
}

fn outputs(named: &[(&'static str, &Output)]) -> Vec<(&'static str, Vec<u8>)> {
    let mut haystacks = Vec::new();
    for (name, output) in named {
        haystacks.push((*name, output.stdout.clone()));
        haystacks.push((*name, output.stderr.clone()));
    }
    haystacks
}

#[test]
fn codex_takes_the_env_key_validates_it_and_stores_it_as_openai() {
    let (env, server) = openai_env();
    let grant = env
        .cmd()
        .args(["-vv", "grant", "codex"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .assert()
        .success()
        .stdout(contains("Credential saved to"))
        .stdout(contains("openai.enc"))
        .stderr(contains(
            "Using API key from OPENAI_API_KEY environment variable",
        ))
        .get_output()
        .clone();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path_only(), "/v1/models");
    assert_eq!(
        requests[0].header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str())
    );
    assert!(env.home().join("credentials/openai.enc").is_file());
    assert!(!env.home().join("credentials/codex.enc").exists());
    // Either name shows the one credential.
    let show_openai = env
        .cmd()
        .args(["grant", "show", "openai"])
        .assert()
        .success()
        .stdout(contains("Provider: codex"))
        .stdout(contains("Source:   env"))
        .stdout(contains("****************WXYZ"))
        .get_output()
        .clone();
    let show_codex = env
        .cmd()
        .args(["grant", "show", "codex", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&show_codex.stdout).unwrap();
    assert_eq!(json["provider"], "codex");
    assert_eq!(json["token"], "****************WXYZ");
    assert_no_secret_named(
        &outputs(&[
            ("grant", &grant),
            ("show", &show_openai),
            ("show --json", &show_codex),
        ]),
        OPENAI_KEY,
    );
    assert_no_secret_in_dir(env.home(), OPENAI_KEY);
}

#[test]
fn grant_openai_and_grant_codex_share_one_credential() {
    let (env, server) = openai_env();
    env.cmd()
        .args(["grant", "openai"])
        .write_stdin(format!("{OPENAI_KEY}\n"))
        .assert()
        .success()
        .stderr(contains("OpenAI API key is valid"));
    let first = std::fs::read(env.home().join("credentials/openai.enc")).unwrap();
    env.cmd()
        .args(["grant", "show", "codex"])
        .assert()
        .success()
        .stdout(contains("Source:   prompt"));
    // Granting again under the other name replaces the same file.
    env.cmd()
        .args(["grant", "codex"])
        .env("OPENAI_API_KEY", OPENAI_KEY)
        .assert()
        .success();
    let second = std::fs::read(env.home().join("credentials/openai.enc")).unwrap();
    assert_ne!(first, second, "re-granted");
    let entries: Vec<_> = std::fs::read_dir(env.home().join("credentials"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".enc"))
        .collect();
    assert_eq!(entries, vec!["openai.enc"]);
    let list = env
        .cmd()
        .args(["grant", "list", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json[0]["provider"], "codex");
    assert_eq!(json[0]["source"], "env");
    assert_eq!(server.requests().len(), 2);
    // And `moat revoke openai` removes it for both names.
    env.cmd().args(["revoke", "openai"]).assert().success();
    env.cmd().args(["grant", "show", "codex"]).assert().code(3);
}

#[test]
fn a_rejected_openai_key_exits_4_and_nothing_is_stored() {
    let (env, server) = openai_env();
    let wrong = "sk-wrongWrongWrongKey000";
    let output = env
        .cmd()
        .args(["-vv", "grant", "codex"])
        .write_stdin(format!("{wrong}\n"))
        .assert()
        .code(4)
        .stderr(contains("OpenAI rejected the API key (401"))
        .stderr(contains("moat grant openai"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&[("grant", &output)]), wrong);
    assert_eq!(server.requests().len(), 1);
    assert!(!env.home().join("credentials/openai.enc").exists());
}

#[test]
fn a_rate_limited_openai_key_is_explained_and_not_stored() {
    let (env, _server) = openai_env();
    env.cmd()
        .args(["grant", "openai"])
        .env("OPENAI_API_KEY", OPENAI_RATE_LIMITED_KEY)
        .assert()
        .code(1)
        .stderr(contains("rate limited"))
        .stderr(contains("quota"))
        .stderr(contains("billing"));
    assert!(!env.home().join("credentials/openai.enc").exists());
}

#[test]
fn a_pasted_openai_key_must_look_like_one() {
    let (env, server) = openai_env();
    env.cmd()
        .args(["grant", "codex"])
        .write_stdin("not-a-key\n")
        .assert()
        .failure()
        .stderr(contains("must start with \"sk-\""));
    assert!(server.requests().is_empty());
    // Without input the error names the variable to set.
    env.cmd()
        .args(["grant", "codex", "--no-input"])
        .assert()
        .code(5)
        .stderr(contains("OPENAI_API_KEY"));
}

#[test]
fn providers_lists_codex_with_its_openai_alias_and_gemini() {
    let env = MoatEnv::new();
    let out = env
        .cmd()
        .args(["grant", "providers", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str| {
        json["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing: {json}"))
    };
    let codex = find("codex");
    assert_eq!(codex["aliases"], serde_json::json!(["openai"]));
    assert_eq!(codex["source"], "builtin");
    assert!(codex["description"].as_str().unwrap().contains("OpenAI"));
    let gemini = find("gemini");
    assert_eq!(gemini["aliases"], serde_json::json!(["google"]));
    assert_eq!(gemini["description"], "Gemini API key or OAuth credentials");
    env.cmd()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(
            predicates::str::is_match(
                r"codex\s+OpenAI API key, for moat codex \(also: openai\)\s+builtin",
            )
            .unwrap(),
        )
        .stdout(
            predicates::str::is_match(r"gemini\s+Gemini API key or OAuth credentials\s+builtin")
                .unwrap(),
        );
}

fn gemini_env() -> (MoatEnv, FakeHttps, FakeGoogle) {
    let mut env = MoatEnv::new();
    let api = fake_gemini_api(env.ca(), GEMINI_KEY);
    let google = fake_google(env.ca(), REFRESH, "ya29.fresh", 3600);
    env.set("MOAT_GEMINI_API_URL", api.url());
    env.set("MOAT_GOOGLE_OAUTH_URL", google.server.url());
    let pem = env.ca_pem().to_owned();
    env.set("MOAT_EXTRA_CA_CERTS", pem);
    (env, api, google)
}

fn write_cli_creds(env: &MoatEnv, refresh: &str) {
    let dir = env.root().join(".gemini");
    std::fs::create_dir_all(&dir).unwrap();
    let creds = serde_json::json!({
        "access_token": CLI_ACCESS,
        "refresh_token": refresh,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "expiry_date": 1_700_000_000_000_i64,
    });
    std::fs::write(dir.join("oauth_creds.json"), creds.to_string()).unwrap();
}

#[test]
fn gemini_takes_the_env_key_and_validates_it_in_a_header() {
    let (env, api, google) = gemini_env();
    let grant = env
        .cmd()
        .args(["-vv", "grant", "google"])
        .env("GEMINI_API_KEY", GEMINI_KEY)
        .assert()
        .success()
        .stdout(contains("gemini.enc"))
        .stderr(contains(
            "Using API key from GEMINI_API_KEY environment variable",
        ))
        .get_output()
        .clone();
    let requests = api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].path, "/v1beta/models",
        "the key is not in the URL"
    );
    assert_eq!(requests[0].header("x-goog-api-key"), Some(GEMINI_KEY));
    assert_eq!(google.issued(), 0);
    let show = env
        .cmd()
        .args(["grant", "show", "gemini"])
        .assert()
        .success()
        .stdout(contains("Type:     api-key"))
        .stdout(contains("Source:   env"))
        .get_output()
        .clone();
    assert_no_secret_named(&outputs(&[("grant", &grant), ("show", &show)]), GEMINI_KEY);
    assert_no_secret_in_dir(env.home(), GEMINI_KEY);

    // A wrong pasted key: Google's 400, exit 4, nothing replaced.
    let before = std::fs::read(env.home().join("credentials/gemini.enc")).unwrap();
    env.cmd()
        .args(["grant", "gemini"])
        .write_stdin("AIzaWrong\n")
        .assert()
        .code(4)
        .stderr(contains("Google rejected the Gemini API key"))
        .stderr(contains("moat grant gemini"));
    assert_eq!(
        std::fs::read(env.home().join("credentials/gemini.enc")).unwrap(),
        before
    );
}

#[test]
fn without_a_cli_login_gemini_gives_the_tip_and_asks_for_a_key() {
    let (env, api, _google) = gemini_env();
    env.cmd()
        .args(["grant", "gemini"])
        .write_stdin(format!("{GEMINI_KEY}\n"))
        .assert()
        .success()
        .stderr(contains("npm install -g @google/gemini-cli"));
    assert_eq!(api.requests().len(), 1);
    env.cmd()
        .args(["grant", "show", "gemini"])
        .assert()
        .success()
        .stdout(contains("Source:   prompt"));
}

#[test]
fn gemini_imports_the_cli_login_with_a_real_refresh() {
    let (env, api, google) = gemini_env();
    write_cli_creds(&env, REFRESH);
    // No terminal: the menu's default, the import.
    let grant = env
        .cmd()
        .args(["-vv", "grant", "gemini"])
        .assert()
        .success()
        .stderr(contains("Found Gemini CLI credentials in"))
        .stderr(contains("Import Gemini CLI credentials"))
        .get_output()
        .clone();
    assert!(api.requests().is_empty());
    let requests = google.server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("POST", "/token")
    );
    let fields = form_fields(&requests[0].body);
    assert!(
        fields.contains(&("grant_type".into(), "refresh_token".into())),
        "{fields:?}"
    );
    assert!(
        fields.contains(&("refresh_token".into(), REFRESH.into())),
        "{fields:?}"
    );
    assert_eq!(google.issued(), 1);

    let show = env
        .cmd()
        .args(["grant", "show", "gemini", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(json["type"], "oauth");
    assert_eq!(json["source"], "oauth");
    let expires: chrono::DateTime<chrono::Utc> =
        json["expires_at"].as_str().unwrap().parse().unwrap();
    let in_an_hour = chrono::Utc::now() + chrono::Duration::seconds(3600);
    assert!(
        (in_an_hour - expires).num_seconds().abs() < 120,
        "{expires}"
    );
    // Neither token is shown or stored in the clear; the old CLI token was not kept.
    let shown = outputs(&[("grant", &grant), ("show", &show)]);
    for secret in [REFRESH, "ya29.fresh-1", CLI_ACCESS] {
        assert_no_secret_named(&shown, secret);
        assert_no_secret_in_dir(env.home(), secret);
    }
}

#[test]
fn a_revoked_cli_login_is_refused_with_the_command_to_run() {
    let (env, _api, google) = gemini_env();
    write_cli_creds(&env, "1-RevokedRefreshToken");
    env.cmd()
        .args(["grant", "gemini"])
        .assert()
        .code(4)
        .stderr(contains("refresh token revoked"))
        .stderr(contains("invalid_grant"))
        .stderr(contains("moat grant gemini"));
    assert_eq!(google.server.requests().len(), 1);
    assert_eq!(google.issued(), 0);
    assert!(!env.home().join("credentials/gemini.enc").exists());
}
