//! Declared (YAML) providers end to end: the real binary reads `$MOAT_HOME/providers/`, grants
//! against a local HTTPS server reached through `MOAT_<NAME>_API_URL` and trusted through
//! `MOAT_EXTRA_CA_CERTS`, and the real proxy (`moat proxy`, then `moat run` in Docker) applies
//! header mode and substitution mode to upstreams reached through `MOAT_PROXY_RESOLVE`. Nothing
//! in moat knows these hosts are fakes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use moat::declared::substitution_placeholder;
use moat_plugin_sdk::Secret;
use moat_tests::docker;
use moat_tests::{
    FakeHttps, MoatEnv, ProxyProcess, Recorded, Reply, assert_no_secret_in_dir,
    assert_no_secret_named,
};

const ACME_TOKEN: &str = "acme-RealSecret-0123456789abcdef";
const TELE_TOKEN: &str = "123456:TeleRealSecret_abcdefABCDEF";

const ACME: &str = r#"
name: acme
description: Acme API token
aliases: [ac]
hosts: [api.acme.test]
inject:
  header: Authorization
  prefix: "Bearer "
source_env: [ACME_TOKEN, ACME_KEY]
container_env: ACME_TOKEN
prompt: Create one at https://acme.test/tokens
validate:
  url: https://api.acme.test/v1/me
"#;

const TELE: &str = r#"
name: tele
description: Tele bot token
hosts: [api.tele.test]
source_env: [TELE_BOT_TOKEN]
container_env: TELE_BOT_TOKEN
validate:
  url: https://api.tele.test/bot${token}/getMe
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_provider(env: &MoatEnv, file: &str, yaml: &str) -> PathBuf {
    let dir = env.home().join("providers");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, yaml).unwrap();
    path
}

/// The fake Acme API: `GET /v1/me` with `Bearer <ACME_TOKEN>` is 200, anything else on it 401;
/// `/echo` answers what it got.
fn acme_api(env: &MoatEnv) -> FakeHttps {
    let bearer = format!("Bearer {ACME_TOKEN}");
    FakeHttps::start_for(
        env.ca(),
        &["api.acme.test", "localhost", "127.0.0.1"],
        move |request: &Recorded| match request.path_only() {
            "/v1/me" if request.header("authorization") == Some(bearer.as_str()) => {
                Reply::json(200, serde_json::json!({"user": "wile"}))
            }
            "/v1/me" => Reply::json(401, serde_json::json!({"error": "bad token"})),
            _ => Reply::json(
                200,
                serde_json::json!({"authorization": request.header("authorization")}),
            ),
        },
    )
}

/// The fake Tele API: the token is in the path (`/bot<token>/<method>`). `getMe` with the right
/// token is 200; `echo` answers the token back in its body and a header (a badly behaved API);
/// anything else 401.
fn tele_api(env: &MoatEnv) -> FakeHttps {
    let prefix = format!("/bot{TELE_TOKEN}/");
    FakeHttps::start_for(
        env.ca(),
        &["api.tele.test", "localhost", "127.0.0.1"],
        move |request: &Recorded| match request.path_only().strip_prefix(prefix.as_str()) {
            Some("getMe") => Reply::json(200, serde_json::json!({"ok": true})),
            Some("echo") => Reply::json(
                200,
                serde_json::json!({"ok": true, "you_sent": request.path_only()}),
            )
            .with_header("x-echo", request.path_only()),
            _ => Reply::json(401, serde_json::json!({"ok": false, "error_code": 401})),
        },
    )
}

/// An environment with both provider files, the fakes, and moat pointed at them.
fn env_with_providers() -> (MoatEnv, FakeHttps, FakeHttps) {
    let mut env = MoatEnv::new();
    write_provider(&env, "acme.yaml", ACME);
    write_provider(&env, "tele.yml", TELE);
    let acme = acme_api(&env);
    let tele = tele_api(&env);
    env.set("MOAT_ACME_API_URL", acme.url());
    env.set("MOAT_TELE_API_URL", tele.url());
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);
    (env, acme, tele)
}

fn store_files(env: &MoatEnv) -> Vec<String> {
    let dir = env.home().join("credentials");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".enc"))
        .collect();
    names.sort();
    names
}

fn granted(env: &MoatEnv) -> Vec<(String, String)> {
    let out = env
        .cmd()
        .args(["grant", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|c| {
            (
                c["provider"].as_str().unwrap().to_string(),
                c["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_header_provider_is_granted_from_its_variable_after_validation() {
    let (env, acme, _tele) = env_with_providers();
    let out = env
        .cmd()
        .args(["grant", "ac", "--no-input"])
        .env("ACME_KEY", ACME_TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Using token from ACME_KEY environment variable"),
        "{stderr}"
    );
    assert!(stderr.contains("Token accepted (GET "), "{stderr}");
    assert!(text(&out.stdout).contains("Credential saved to"), "{out:?}");
    let seen = acme.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("GET", "/v1/me")
    );
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {ACME_TOKEN}").as_str())
    );
    assert_eq!(granted(&env), [("acme".to_string(), "env".to_string())]);
    assert_no_secret_named(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        ACME_TOKEN,
    );
    assert_no_secret_in_dir(env.home(), ACME_TOKEN);
}

#[test]
fn a_token_rejected_upstream_stores_nothing_and_exits_4() {
    let (env, acme, tele) = env_with_providers();
    let wrong = "acme-WrongSecret-999";
    let out = env
        .cmd()
        .args(["grant", "acme", "--no-input"])
        .env("ACME_TOKEN", wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the token was rejected"), "{stderr}");
    assert!(
        stderr.contains("answered 401; nothing was stored"),
        "{stderr}"
    );
    assert!(
        stderr.contains("moat grant acme"),
        "says what to run next: {stderr}"
    );
    assert_eq!(acme.requests().len(), 1);
    assert!(store_files(&env).is_empty(), "{:?}", store_files(&env));
    assert_no_secret_named(&[("stdout", &out.stdout), ("stderr", &out.stderr)], wrong);

    // Substitution mode validates with the token in the URL; the error shows `${token}`, never
    // the token.
    let out = env
        .cmd()
        .args(["grant", "tele", "--no-input"])
        .env("TELE_BOT_TOKEN", "999:WrongTele")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("/bot${token}/getMe"), "{stderr}");
    assert_eq!(tele.requests()[0].path, "/bot999:WrongTele/getMe");
    assert_no_secret_named(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        "WrongTele",
    );
    assert!(store_files(&env).is_empty());
}

#[test]
fn the_prompt_reads_a_piped_token_and_validates_it_in_the_url() {
    let (env, _acme, tele) = env_with_providers();
    let out = env
        .cmd()
        .args(["grant", "tele"])
        .write_stdin(format!("{TELE_TOKEN}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = tele.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/bot{TELE_TOKEN}/getMe"));
    assert_eq!(
        seen[0].header("authorization"),
        None,
        "the token is in the URL only"
    );
    assert_eq!(granted(&env), [("tele".to_string(), "prompt".to_string())]);
    assert_no_secret_named(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        TELE_TOKEN,
    );

    // With nothing to read and no variable, the error names the variable to set.
    let out = env
        .cmd()
        .args(["grant", "acme", "--no-input"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("set ACME_TOKEN"), "{stderr}");
}

/// `moat proxy --grant <grants>` with both fake hosts behind `MOAT_PROXY_RESOLVE`.
fn proxy(env: &MoatEnv, grants: &[&str], acme: &FakeHttps, tele: &FakeHttps) -> ProxyProcess {
    let resolve = format!(
        "api.acme.test:443:127.0.0.1:{},api.tele.test:443:127.0.0.1:{}",
        acme.port(),
        tele.port()
    );
    let mut args = Vec::new();
    for grant in grants {
        args.extend(["--grant", grant]);
    }
    ProxyProcess::start(env, &args, &[("MOAT_PROXY_RESOLVE", &resolve)])
}

fn curl_through(env: &MoatEnv, proxy: &ProxyProcess, url: &str) -> Output {
    let ca = proxy.ca_cert();
    env.command("curl")
        .args(["-sS", "-i", "--max-time", "20", "--proxy", proxy.url()])
        .arg("--cacert")
        .arg(&ca)
        .arg(url)
        .output()
        .expect("run curl")
}

#[test]
fn header_mode_and_substitution_mode_through_the_real_proxy() {
    let (env, acme, tele) = env_with_providers();
    for (grant, var, token) in [
        ("acme", "ACME_TOKEN", ACME_TOKEN),
        ("tele", "TELE_BOT_TOKEN", TELE_TOKEN),
    ] {
        let out = env
            .cmd()
            .args(["grant", grant, "--no-input"])
            .env(var, token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let proxy = proxy(&env, &["acme", "tele"], &acme, &tele);

    // Header mode: the header is added on the wire.
    let out = curl_through(&env, &proxy, "https://api.acme.test/echo");
    let body = text(&out.stdout);
    assert!(out.status.success(), "{body}\n{}", text(&out.stderr));
    assert!(
        body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/2 200"),
        "{body}"
    );
    let last = acme.requests().pop().unwrap();
    assert_eq!(last.path, "/echo");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {ACME_TOKEN}").as_str())
    );
    // Substitution mode: the container-side placeholder in the URL becomes the token upstream,
    // and the token the upstream echoes back (body and header) becomes the placeholder again.
    let placeholder = substitution_placeholder(&Secret::new(TELE_TOKEN));
    let out = curl_through(
        &env,
        &proxy,
        &format!("https://api.tele.test/bot{placeholder}/echo"),
    );
    let body = text(&out.stdout);
    assert!(out.status.success(), "{body}\n{}", text(&out.stderr));
    let last = tele.requests().pop().unwrap();
    assert_eq!(last.path, format!("/bot{TELE_TOKEN}/echo"));
    assert!(
        body.contains(&format!("\"you_sent\":\"/bot{placeholder}/echo\"")),
        "{body}"
    );
    assert!(
        body.to_ascii_lowercase()
            .contains(&format!("x-echo: /bot{placeholder}/echo")),
        "{body}"
    );
    assert_no_secret_named(&[("curl output", &out.stdout)], TELE_TOKEN);
    // Without the placeholder, nothing is substituted: the upstream refuses.
    let out = curl_through(&env, &proxy, "https://api.tele.test/botnothing/getMe");
    assert!(text(&out.stdout).contains("401"), "{}", text(&out.stdout));
    drop(proxy);
    assert_no_secret_in_dir(env.home().join("credentials"), TELE_TOKEN);
}

#[test]
fn grant_providers_lists_sources_and_warns_about_everything_hidden() {
    let env = MoatEnv::new();
    write_provider(
        &env,
        "a-broken.yaml",
        "name: broken\ndescription: x\nhosts: api.x.test\n",
    );
    write_provider(&env, "acme.yaml", ACME);
    write_provider(&env, "zz-acme.yml", ACME);
    write_provider(
        &env,
        "gh.yaml",
        "name: github\ndescription: Mine\nhosts: [a.test]\ninject: {header: X}\n",
    );
    write_provider(
        &env,
        "tg.yaml",
        "name: tg-mine\ndescription: Mine\naliases: [tg]\nhosts: [a.test]\ninject: {header: X}\n",
    );
    write_provider(
        &env,
        "sentry.yaml",
        "name: sentry\ndescription: My Sentry\nhosts: [sentry.example.test]\ninject: {header: X}\n",
    );
    let out = env
        .cmd()
        .args(["grant", "providers", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let source_of = |name: &str| -> String {
        let row = listing["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["provider"] == name)
            .unwrap_or_else(|| panic!("{name} not listed: {listing}"));
        row["source"].as_str().unwrap().to_string()
    };
    assert_eq!(source_of("github"), "builtin");
    assert_eq!(source_of("acme"), "custom");
    assert_eq!(source_of("sentry"), "custom");
    assert_eq!(source_of("telegram"), "bundled");
    assert_eq!(source_of("vercel"), "bundled");
    let warnings: Vec<String> = listing["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["message"].as_str().unwrap().to_string())
        .collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(has("a-broken.yaml:3:8: key `hosts`"), "{warnings:#?}");
    assert!(
        has("zz-acme.yml: not loaded: provider acme is also declared by"),
        "{warnings:#?}"
    );
    assert!(
        has("gh.yaml: provider github is hidden: the builtin provider github wins"),
        "{warnings:#?}"
    );
    assert!(
        has("bundled catalogue: provider sentry is hidden: the custom provider sentry"),
        "{warnings:#?}"
    );
    assert!(
        has(
            "bundled catalogue: alias tg of provider telegram is not used: the custom provider tg-mine"
        ),
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 5, "{warnings:#?}");

    // The table says the same on stderr, and where custom providers go.
    let out = env.cmd().args(["grant", "providers"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("{}", env.home().join("providers").display())),
        "{stdout}"
    );
    assert_eq!(
        text(&out.stderr).matches("warning: ").count(),
        5,
        "{}",
        text(&out.stderr)
    );
    // The broken file is named when a provider that is not there is asked for, by any command
    // that takes one (a run stops before it starts anything).
    for args in [
        &["grant", "broken"][..],
        &["run", "--grant", "broken", "--", "true"][..],
        &["proxy", "--grant", "broken"][..],
    ] {
        let out = env.cmd().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("unknown provider: broken"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("could not be read") && stderr.contains("a-broken.yaml:3:8"),
            "{args:?}: {stderr}"
        );
    }
}

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

#[test]
fn a_plugin_beats_the_bundled_catalogue_and_a_user_file_beats_the_plugin() {
    let env = MoatEnv::new();
    let link = env.bin_dir().join("moat-provider-gitlab");
    std::os::unix::fs::symlink(workspace_bin("moat-provider-gitlab"), &link).unwrap();
    let listing = |env: &MoatEnv| -> serde_json::Value {
        let out = env
            .cmd()
            .args(["grant", "providers", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let row = |listing: &serde_json::Value, name: &str| -> serde_json::Value {
        listing["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["provider"] == name)
            .cloned()
            .unwrap()
    };
    let messages = |listing: &serde_json::Value| -> Vec<String> {
        listing["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["message"].as_str().unwrap().to_string())
            .collect()
    };

    let first = listing(&env);
    assert_eq!(row(&first, "gitlab")["source"], "plugin", "{first}");
    let warnings = messages(&first);
    assert!(
        warnings.iter().any(|w| w.starts_with(
            "bundled catalogue: provider gitlab is hidden: the plugin provider gitlab"
        )),
        "{warnings:#?}"
    );

    let file = write_provider(
        &env,
        "my-gitlab.yaml",
        "name: gitlab\ndescription: My GitLab\nhosts: [gitlab.example.test]\ninject: {header: PRIVATE-TOKEN}\n",
    );
    let second = listing(&env);
    let gitlab = row(&second, "gitlab");
    assert_eq!(gitlab["source"], "custom", "{second}");
    assert_eq!(gitlab["path"], file.display().to_string());
    let hidden_plugin = second["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == "hidden" && w["path"] == link.display().to_string());
    assert!(
        hidden_plugin.is_some_and(|w| w["source"] == "custom"),
        "{second}"
    );
    let warnings = messages(&second);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("provider gitlab is hidden: the custom provider gitlab")),
        "{warnings:#?}"
    );
}

#[test]
fn provider_new_writes_a_starter_that_check_accepts() {
    let env = MoatEnv::new();
    let out = env
        .cmd()
        .args(["provider", "new", "my-api"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = env.home().join("providers/my-api.yaml");
    assert!(text(&out.stdout).contains(&path.display().to_string()));
    // Never overwritten.
    std::fs::write(
        &path,
        format!("{}# mine\n", std::fs::read_to_string(&path).unwrap()),
    )
    .unwrap();
    let again = env
        .cmd()
        .args(["provider", "new", "my-api"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .ends_with("# mine\n")
    );
    let bad = env
        .cmd()
        .args(["provider", "new", "My_API"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    let out = env
        .cmd()
        .args(["provider", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("loaded from this file"), "{stdout}");
    assert!(
        stdout.contains(
            "api.my-api.example: set header Authorization: Bearer moat-check-dummy-token"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("MY_API_TOKEN=moat-proxy-injected"),
        "{stdout}"
    );
}

#[test]
fn provider_check_shows_substitution_rules_and_refuses_a_broken_file() {
    let env = MoatEnv::new();
    let dir = env.work_dir();
    let tele = dir.join("tele.yaml");
    std::fs::write(&tele, TELE).unwrap();
    let out = env
        .cmd()
        .args(["provider", "check", "--json"])
        .arg(&tele)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let placeholder = substitution_placeholder(&Secret::new("moat-check-dummy-token"));
    assert_eq!(report["mode"], "substitution");
    assert_eq!(
        report["container_env"][0],
        serde_json::json!(["TELE_BOT_TOKEN", placeholder])
    );
    assert_eq!(report["rules"][0]["type"], "token_substitution");
    assert_eq!(report["rules"][0]["placeholder"], placeholder.as_str());
    assert_eq!(report["rules"][1]["kind"], "response-scrub");
    assert_eq!(report["validate"]["override_env"], "MOAT_TELE_API_URL");
    assert!(
        report["status"]
            .as_str()
            .unwrap()
            .starts_with("not loaded yet"),
        "{report}"
    );

    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "name: b\ndescription: B\nhosts: [a.test]\ninject:\n  header: X\n  prefx: 'Bearer '\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["provider", "check"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:6:3: key `inject.prefx`: unknown field `prefx`",
            broken.display()
        )),
        "{stderr}"
    );
    let out = env
        .cmd()
        .args(["provider", "check"])
        .arg(dir.join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read it"),
        "{}",
        text(&out.stderr)
    );
}

fn path_of(env: &MoatEnv, rel: &str) -> PathBuf {
    Path::new(env.home()).join(rel)
}

#[test]
fn a_custom_provider_is_used_by_moat_run_in_a_container() {
    if !docker::available("declared_run") {
        return;
    }
    let image = docker::ensure_base_image();
    let (mut env, acme, tele) = env_with_providers();
    for (grant, var, token) in [
        ("acme", "ACME_TOKEN", ACME_TOKEN),
        ("tele", "TELE_BOT_TOKEN", TELE_TOKEN),
    ] {
        let out = env
            .cmd()
            .args(["grant", grant, "--no-input"])
            .env(var, token)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!(
            "api.acme.test:443:127.0.0.1:{},api.tele.test:443:127.0.0.1:{}",
            acme.port(),
            tele.port()
        ),
    );
    env.set("MOAT_BASE_IMAGE", image);
    let script = r#"
        echo "acme-env=$ACME_TOKEN"
        echo "tele-env=$TELE_BOT_TOKEN"
        curl -sS --max-time 20 https://api.acme.test/v1/me; echo
        curl -sS --max-time 20 "https://api.tele.test/bot$TELE_BOT_TOKEN/echo"; echo
    "#;
    let out = env
        .cmd()
        .args([
            "run", "--grant", "acme", "--grant", "tele", "--", "sh", "-c", script,
        ])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let placeholder = substitution_placeholder(&Secret::new(TELE_TOKEN));
    assert!(stdout.contains("acme-env=moat-proxy-injected"), "{stdout}");
    assert!(
        stdout.contains(&format!("tele-env={placeholder}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"user":"wile"}"#),
        "header mode reached the API: {stdout}"
    );
    assert!(
        stdout.contains(&format!("\"you_sent\":\"/bot{placeholder}/echo\"")),
        "substitution mode reached the API and the echo was scrubbed: {stdout}"
    );
    assert_eq!(
        tele.requests().last().unwrap().path,
        format!("/bot{TELE_TOKEN}/echo"),
        "the upstream got the real token"
    );
    assert_no_secret_named(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        TELE_TOKEN,
    );
    assert_no_secret_named(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        ACME_TOKEN,
    );
    assert_no_secret_in_dir(path_of(&env, "runs"), TELE_TOKEN);
    assert_no_secret_in_dir(path_of(&env, "runs"), ACME_TOKEN);
}

#[test]
fn validation_uses_the_declared_method_header_prefix_and_status() {
    let mut env = MoatEnv::new();
    write_provider(
        &env,
        "strict.yaml",
        r#"
name: strict
description: Strict token
hosts: [api.strict.test]
inject: {header: Authorization, prefix: "Bearer "}
validate:
  url: https://api.strict.test/check?probe=1
  method: POST
  header: X-Check
  prefix: "Key "
  status: 204
"#,
    );
    // 204 for the right token, 200 for "almost" (not the declared status), 403 otherwise.
    let api = FakeHttps::start(env.ca(), |request: &Recorded| {
        match (request.method.as_str(), request.header("x-check")) {
            ("POST", Some("Key strict-good")) => Reply::status(204),
            ("POST", Some("Key strict-almost")) => Reply::status(200),
            _ => Reply::status(403),
        }
    });
    env.set("MOAT_STRICT_API_URL", api.url());
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);

    let grant = |token: &str| {
        env.cmd()
            .args(["grant", "strict"])
            .write_stdin(format!("{token}\n"))
            .output()
            .unwrap()
    };
    let out = grant("strict-almost");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("answered 200 (expected 204); nothing was stored"),
        "{}",
        text(&out.stderr)
    );
    let out = grant("strict-bad");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("appropriate permissions"),
        "{}",
        text(&out.stderr)
    );
    assert!(store_files(&env).is_empty());
    let out = grant("strict-good");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let seen = api.requests();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/check?probe=1")
        );
        assert_eq!(
            request.header("authorization"),
            None,
            "only the declared header"
        );
    }
    assert_eq!(store_files(&env), ["strict.enc"]);
}
