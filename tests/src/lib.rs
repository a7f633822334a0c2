//! Support library for moat's end-to-end tests (`tests/tests/*.rs`).
//!
//! The tests run the real `moat` binary ([`moat_bin`]) with `assert_cmd`, in a hermetic
//! [`MoatEnv`] (temporary home, fake tools on `PATH`, nothing inherited from the developer's
//! environment), against real HTTPS servers on localhost ([`FakeHttps`], e.g. [`fake_github`])
//! whose certificates come from a throwaway [`TestCa`] that moat trusts through
//! `MOAT_EXTRA_CA_CERTS`. Everything is synchronous: servers run on their own threads.
//!
//! For the proxy: [`ProxyProcess`] runs `moat proxy --json` and reads back its address, token and
//! CA; [`StreamServer`] is an HTTP/2-capable upstream with lazily produced 100 MB bodies, a
//! step-by-step event stream and a WebSocket echo; [`connect_tunnel`] and [`tls_through_proxy`]
//! speak CONNECT and TLS with a chosen SNI, the way refusal tests need.
//!
//! ```no_run
//! use moat_tests::{MoatEnv, assert_no_secret, assert_no_secret_in_dir};
//!
//! let env = MoatEnv::new().with_github("ghp_valid", "octocat");
//! env.fake_gh(Some("ghp_valid"));
//! let out = env.cmd().args(["grant", "github"]).assert().success();
//! let out = out.get_output();
//! assert_no_secret(&[&out.stdout, &out.stderr], "ghp_valid");
//! assert_no_secret_in_dir(env.home(), "ghp_valid");
//! assert_eq!(env.github().requests().len(), 1);
//! ```
//!
//! For Docker: [`docker::available`] (skip loudly, or fail under `CI=true`),
//! [`docker::ensure_base_image`] (builds `moat-base:bookworm` once, under a lock) and
//! [`docker::TestLabel`] (labels a test's containers, networks and images, and removes them).
//!
//! `cargo test --workspace` builds the `moat` binary before running these tests;
//! `cargo test -p moat-tests` alone does not (run `cargo build -p moat` first).

#![warn(missing_docs)]

mod ai;
mod anthropic;
mod ca;
pub mod docker;
mod env;
mod github;
mod https;
mod proxy;
mod reporter;
mod secrets;
mod stream;
mod sts;

pub use ai::{
    FakeGoogle, OPENAI_RATE_LIMITED_KEY, fake_gemini_api, fake_google, fake_openai, form_fields,
};
pub use anthropic::{AnthropicKeys, fake_anthropic};
pub use ca::{CA_PEM_FILE, IssuedCert, TestCa, crypto_provider};
pub use env::{DEFAULT_TIMEOUT, MoatEnv, SYSTEM_PATH, moat_bin, sh_quote};
pub use github::{fake_github, fake_github_hosts};
pub use https::{FakeHttps, LOCAL_SANS, Recorded, Reply};
pub use proxy::{
    ProxyProcess, basic_proxy_auth, client_tls, connect_tunnel, proc_status_kib, read_head,
    read_log, roots_from_pem, tls_through_proxy,
};
pub use reporter::RecordingReporter;
pub use secrets::{
    assert_no_secret, assert_no_secret_in_dir, assert_no_secret_named, files_containing,
};
pub use stream::{PatternBody, PatternCheck, PatternReader, Seen, StreamServer, pattern_byte};
pub use sts::{FAKE_ROLE_ACCESS_KEY, fake_sts, parse_form};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ffi::OsString;
    use std::net::TcpStream;
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// A client like moat's (reqwest + rustls, HTTP/2 offered) trusting only `ca`.
    fn client_trusting(ca: &TestCa) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_preconfigured_tls(ca.client_config())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    /// The same, configured the way moat configures it: built-in roots off, the CA's PEM added.
    fn client_with_root_pem(ca: &TestCa) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    fn echo(request: &Recorded) -> Reply {
        Reply::json(
            201,
            json!({ "method": request.method, "path": request.path, "body": request.body }),
        )
        .with_header("x-fake", "yes")
    }

    #[test]
    fn fake_https_serves_a_client_that_trusts_the_test_ca_and_records_requests() {
        let ca = TestCa::new();
        let server = FakeHttps::start(&ca, echo);
        assert!(
            server.url().starts_with("https://127.0.0.1:"),
            "{}",
            server.url()
        );

        let response = client_trusting(&ca)
            .post(format!("{}/echo?x=1&y=two", server.url()))
            .header("X-Custom", "Value-1")
            .header("authorization", "Bearer abc")
            .body("hello body")
            .send()
            .expect("a client trusting the test CA connects");
        assert_eq!(response.status(), 201);
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.headers()["x-fake"], "yes");
        assert_eq!(
            response.headers()["content-type"],
            "application/json; charset=utf-8"
        );
        let body: serde_json::Value = response.json().unwrap();
        assert_eq!(
            body,
            json!({ "method": "POST", "path": "/echo?x=1&y=two", "body": "hello body" })
        );

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/echo?x=1&y=two");
        assert_eq!(request.path_only(), "/echo");
        assert_eq!(request.body, "hello body");
        assert_eq!(request.header("x-custom"), Some("Value-1"));
        assert_eq!(request.header("X-CUSTOM"), Some("Value-1"));
        assert_eq!(request.header("authorization"), Some("Bearer abc"));
        assert!(
            request
                .headers
                .iter()
                .any(|(name, value)| name == "x-custom" && value == "Value-1"),
            "names are lowercase: {:?}",
            request.headers
        );
        assert_eq!(request.header("missing"), None);
    }

    #[test]
    fn certificate_is_valid_for_localhost_and_127_0_0_1_with_the_pem_root() {
        let ca = TestCa::new();
        let server = FakeHttps::start(&ca, |_: &Recorded| Reply::text(200, "ok"));
        let client = client_with_root_pem(&ca);
        let by_ip = client
            .get(format!("{}/", server.url()))
            .send()
            .expect("IP SAN");
        assert_eq!(by_ip.text().unwrap(), "ok");
        let by_name = client
            .get(format!("https://localhost:{}/", server.port()))
            .send()
            .expect("DNS SAN");
        assert_eq!(by_name.status(), 200);
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn a_client_trusting_no_extra_roots_fails_the_handshake() {
        let ca = TestCa::new();
        let server = FakeHttps::start(&ca, |_: &Recorded| Reply::status(204));

        let no_roots = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let err = no_roots
            .get(server.url())
            .send()
            .expect_err("no trusted root: handshake must fail");
        assert!(err.is_connect(), "{err:?}");

        // The system roots do not know the test CA either, nor does another test CA.
        let system_roots = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        assert!(system_roots.get(server.url()).send().is_err());
        let other_ca = TestCa::new();
        assert!(client_trusting(&other_ca).get(server.url()).send().is_err());

        assert!(
            server.requests().is_empty(),
            "no request got through: {:?}",
            server.requests()
        );
        // The server survives failed handshakes.
        let ok = client_trusting(&ca).get(server.url()).send().unwrap();
        assert_eq!(ok.status(), 204);
    }

    #[test]
    fn a_certificate_for_other_names_is_refused_for_127_0_0_1() {
        let ca = TestCa::new();
        let server =
            FakeHttps::start_for(&ca, &["api.github.com"], |_: &Recorded| Reply::status(200));
        assert!(client_trusting(&ca).get(server.url()).send().is_err());
        let by_name = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(ca.client_config())
            .resolve("api.github.com", server.addr())
            .build()
            .unwrap()
            .get(format!("https://api.github.com:{}/x", server.port()))
            .send()
            .unwrap();
        assert_eq!(by_name.status(), 200);
    }

    #[test]
    fn a_panicking_handler_answers_500_and_the_server_keeps_going() {
        let ca = TestCa::new();
        let server = FakeHttps::start(&ca, |request: &Recorded| {
            if request.path == "/boom" {
                panic!("handler exploded (expected by this test)");
            }
            Reply::status(200)
        });
        let client = client_trusting(&ca);
        let boom = client.get(format!("{}/boom", server.url())).send().unwrap();
        assert_eq!(boom.status(), 500);
        assert!(boom.text().unwrap().contains("panicked on GET /boom"));
        let fine = client.get(format!("{}/ok", server.url())).send().unwrap();
        assert_eq!(fine.status(), 200);
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let ca = TestCa::new();
        let server = FakeHttps::start(&ca, |_: &Recorded| Reply::status(200));
        let addr = server.addr();
        // An idle keep-alive connection must not keep the server (or the drop) hanging.
        let client = client_trusting(&ca);
        assert_eq!(client.get(server.url()).send().unwrap().status(), 200);
        assert!(TcpStream::connect(addr).is_ok());
        drop(server);
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
            "still listening on {addr} after drop"
        );
        assert!(client.get(format!("https://{addr}/")).send().is_err());
    }

    #[test]
    fn fake_github_accepts_only_the_valid_token() {
        let ca = TestCa::new();
        let github = fake_github(&ca, "ghp_good", "octocat");
        let client = client_trusting(&ca);
        let user = format!("{}/user", github.url());

        let ok = client.get(&user).bearer_auth("ghp_good").send().unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(
            ok.json::<serde_json::Value>().unwrap(),
            json!({ "login": "octocat", "id": 1 })
        );

        let bad = client.get(&user).bearer_auth("ghp_bad").send().unwrap();
        assert_eq!(bad.status(), 401);
        assert_eq!(
            bad.json::<serde_json::Value>().unwrap()["message"],
            "Bad credentials"
        );
        let token_scheme = client
            .get(&user)
            .header("authorization", "token ghp_good")
            .send()
            .unwrap();
        assert_eq!(token_scheme.status(), 401);
        assert_eq!(client.get(&user).send().unwrap().status(), 401);

        let other = client
            .get(format!("{}/repos/x/y", github.url()))
            .bearer_auth("ghp_good")
            .send()
            .unwrap();
        assert_eq!(other.status(), 404);
        let post = client.post(&user).bearer_auth("ghp_good").send().unwrap();
        assert_eq!(post.status(), 404);

        let seen: Vec<_> = github
            .requests()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path, r.header("authorization")))
            .collect();
        assert_eq!(
            seen,
            [
                "GET /user Some(\"Bearer ghp_good\")",
                "GET /user Some(\"Bearer ghp_bad\")",
                "GET /user Some(\"token ghp_good\")",
                "GET /user None",
                "GET /repos/x/y Some(\"Bearer ghp_good\")",
                "POST /user Some(\"Bearer ghp_good\")",
            ]
        );
    }

    fn env_of(env: &MoatEnv) -> BTreeMap<String, String> {
        let out = env.command("/usr/bin/env").output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|line| {
                let (key, value) = line.split_once('=').unwrap();
                (key.to_owned(), value.to_owned())
            })
            .collect()
    }

    #[test]
    fn moat_env_commands_see_only_the_hermetic_environment() {
        let mut env = MoatEnv::new();
        env.set("EXTRA", "1").set("NO_COLOR", "0");
        let root = env.root().to_str().unwrap().to_owned();
        let expected: BTreeMap<String, String> = [
            ("EXTRA", "1".to_owned()),
            ("HOME", root.clone()),
            ("MOAT_HOME", format!("{root}/home")),
            ("MOAT_KEYRING_BACKEND", "file".to_owned()),
            ("NO_COLOR", "0".to_owned()),
            ("PATH", format!("{root}/bin:/usr/bin:/bin")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        assert_eq!(env_of(&env), expected);
        assert_eq!(
            env.vars(),
            expected
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect::<Vec<_>>()
        );
        assert!(env.home().is_dir() && env.bin_dir().is_dir() && env.work_dir().is_dir());

        let pwd = env.command("/bin/pwd").output().unwrap();
        assert_eq!(
            String::from_utf8(pwd.stdout).unwrap().trim_end(),
            env.work_dir().to_str().unwrap()
        );
    }

    #[test]
    fn with_github_points_moat_at_the_fake_and_trusts_its_ca() {
        let env = MoatEnv::new().with_github("ghp_good", "octocat");
        let vars = env_of(&env);
        assert_eq!(vars["MOAT_GITHUB_API_URL"], env.github().url());
        assert_eq!(vars["MOAT_EXTRA_CA_CERTS"], env.ca_pem().to_str().unwrap());
        let pem = std::fs::read_to_string(env.ca_pem()).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

        // What moat does with those two variables: trust the PEM file, call <url>/user.
        let client = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let response = client
            .get(format!("{}/user", vars["MOAT_GITHUB_API_URL"]))
            .bearer_auth("ghp_good")
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(env.github().requests().len(), 1);
    }

    #[test]
    fn fake_gh_with_a_token_prints_it() {
        let env = MoatEnv::new();
        let token = "ghp_it's $HOME `x`";
        let path = env.fake_gh(Some(token));
        assert_eq!(path, env.bin_dir().join("gh"));

        // Found through the child PATH, both by a shell and by a bare program name.
        let out = env
            .command("/bin/sh")
            .args(["-c", "gh auth token"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{token}\n"));

        env.command("gh")
            .args(["auth", "token", "--hostname", "github.com"])
            .assert()
            .success()
            .stdout(format!("{token}\n"));
        env.command("gh")
            .args(["api", "user"])
            .assert()
            .code(1)
            .stdout("")
            .stderr(predicates::str::contains("fake gh: unsupported: api user"));

        assert_eq!(
            env.tool_calls("gh"),
            ["auth token", "auth token --hostname github.com", "api user"]
        );
        assert!(env.tool_calls("docker").is_empty());
    }

    #[test]
    fn fake_gh_without_a_token_fails() {
        let env = MoatEnv::new();
        env.fake_gh(None);
        env.command("gh")
            .args(["auth", "token"])
            .assert()
            .code(1)
            .stdout("")
            .stderr("no oauth token found for github.com\n");
        // Replacing a fake tool works too.
        env.fake_gh(Some("ghp_now"));
        env.command("gh")
            .args(["auth", "token"])
            .assert()
            .success()
            .stdout("ghp_now\n");
    }

    #[test]
    fn fake_tool_runs_its_body_with_the_arguments() {
        let env = MoatEnv::new();
        let path = env.fake_tool("docker", "echo \"docker got $#: $*\"\nexit 3");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755
        );
        env.command("docker")
            .args(["run", "--rm"])
            .assert()
            .code(3)
            .stdout("docker got 2: run --rm\n");
        assert_eq!(env.tool_calls("docker"), ["run --rm"]);
    }

    #[test]
    fn moat_bin_is_next_to_the_deps_directory() {
        let exe = std::env::current_exe().unwrap();
        let expected = env::expected_moat_bin();
        assert_eq!(expected.file_name().unwrap(), "moat");
        assert_eq!(expected.parent(), exe.parent().unwrap().parent());
        if expected.is_file() {
            assert_eq!(moat_bin(), expected);
        } else {
            let panic = std::panic::catch_unwind(moat_bin).unwrap_err();
            let message = panic.downcast_ref::<String>().unwrap();
            assert!(message.contains("cargo build -p moat"), "{message}");
        }
    }

    #[test]
    fn assert_no_secret_passes_on_clean_output() {
        assert_no_secret(
            &[b"stdout text".as_slice(), b"stderr: ghp_***"],
            "ghp_secret",
        );
        let (out, err) = (b"a".to_vec(), b"b".to_vec());
        assert_no_secret(&[&out, &err], "ghp_secret");
        assert_no_secret_named(&[("stdout", &out), ("stderr", &err)], "ghp_secret");
    }

    #[test]
    #[should_panic(
        expected = "haystack #1 (of 2): 2 occurrence(s), first at byte 6: ...token=<SECRET>"
    )]
    fn assert_no_secret_names_the_haystack() {
        assert_no_secret(
            &[b"clean".as_slice(), b"token=ghp_secret and ghp_secret"],
            "ghp_secret",
        );
    }

    #[test]
    #[should_panic(expected = "stderr: 1 occurrence(s), first at byte 0: ...<SECRET>\\n...")]
    fn assert_no_secret_named_names_the_haystack() {
        assert_no_secret_named(
            &[("stdout", b"ok".as_slice()), ("stderr", b"ghp_secret\n")],
            "ghp_secret",
        );
    }

    #[test]
    #[should_panic(expected = "empty secret proves nothing")]
    fn an_empty_secret_is_refused() {
        assert_no_secret(&[b"x".as_slice()], "");
    }

    #[test]
    fn files_containing_finds_plaintext_anywhere_under_the_dir() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("clean.json"), r#"{"token":"ghp_***"}"#).unwrap();
        std::fs::write(root.join("a/b/store.json"), r#"{"token":"ghp_secret"}"#).unwrap();
        std::fs::write(root.join("a/log"), b"\x00binary ghp_secret\xff").unwrap();
        std::os::unix::fs::symlink(root.join("a/log"), root.join("link")).unwrap();

        assert_eq!(
            files_containing(root, "ghp_secret"),
            [root.join("a/b/store.json"), root.join("a/log")]
        );
        assert!(files_containing(root, "ghp_other").is_empty());
        assert_no_secret_in_dir(root, "ghp_other");
        let panic =
            std::panic::catch_unwind(|| assert_no_secret_in_dir(root, "ghp_secret")).unwrap_err();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(
            message.contains("2 file(s)") && message.contains("store.json"),
            "{message}"
        );
    }

    #[test]
    #[should_panic(expected = "is not a directory")]
    fn files_containing_refuses_a_missing_dir() {
        files_containing("/nonexistent/moat-tests", "ghp_secret");
    }

    #[test]
    fn sh_quote_round_trips_through_the_shell() {
        for value in ["plain", "it's", "$HOME `x` \"q\" \\ *", ""] {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &format!("printf '%s' {}", sh_quote(value))])
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), value);
        }
    }
}
