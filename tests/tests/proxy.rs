//! `moat proxy` end to end: the real binary, real clients (curl, reqwest, tokio-tungstenite, raw
//! sockets), local HTTPS upstreams standing in for api.github.com and github.com through
//! `MOAT_PROXY_RESOLVE`, trusted through `MOAT_EXTRA_CA_CERTS`.

use std::io::Read as _;
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use moat_tests::{
    MoatEnv, PatternCheck, PatternReader, ProxyProcess, StreamServer, assert_no_secret_named,
    basic_proxy_auth, client_tls, connect_tunnel, read_head, roots_from_pem, tls_through_proxy,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "ghp_realSecretToken1234567890abcdefABCDEF";
const PLACEHOLDER: &str = "ghp_moatProxyInjectedPlaceholder000000000000";

fn basic_github() -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}"));
    format!("Basic {encoded}")
}

/// Every form the GitHub token takes on the wire.
fn secret_forms() -> Vec<String> {
    vec![
        TOKEN.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{TOKEN}")),
    ]
}

/// A home with the GitHub credential stored (through `moat grant github`).
fn granted_env() -> MoatEnv {
    let env = MoatEnv::new().with_github(TOKEN, "octocat");
    env.cmd()
        .args(["grant", "github", "--no-input"])
        .env("GITHUB_TOKEN", TOKEN)
        .assert()
        .success();
    env
}

/// `MOAT_PROXY_RESOLVE` sending both GitHub hosts to `port` on localhost.
fn resolve_github(port: u16) -> String {
    format!("api.github.com:443:127.0.0.1:{port},github.com:443:127.0.0.1:{port}")
}

fn start_github_proxy(env: &MoatEnv, upstream_port: u16, args: &[&str]) -> ProxyProcess {
    start_github_proxy_with(env, upstream_port, args, &[])
}

fn start_github_proxy_with(
    env: &MoatEnv,
    upstream_port: u16,
    args: &[&str],
    vars: &[(&str, &str)],
) -> ProxyProcess {
    let resolve = resolve_github(upstream_port);
    let mut all = vec!["--grant", "github"];
    all.extend_from_slice(args);
    let mut vars = vars.to_vec();
    vars.push(("MOAT_PROXY_RESOLVE", &resolve));
    ProxyProcess::start(env, &all, &vars)
}

/// Runs curl in the hermetic environment: `-sS`, the body then a last line
/// `<status> <http version>`.
fn curl(env: &MoatEnv, args: &[&str]) -> Output {
    env.command("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(args)
        .output()
        .expect("run curl")
}

fn last_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn curl_gets_github_credentials_injected_over_http1_and_http2() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &[]);
    let ca = proxy.ca_cert();
    let ca = ca.to_str().unwrap();

    // Bearer on api.github.com, over HTTP/1.1 and HTTP/2 between curl and the proxy.
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = curl(
            &env,
            &[
                flag,
                "--proxy",
                proxy.url(),
                "--cacert",
                ca,
                "https://api.github.com/user",
            ],
        );
        assert_eq!(last_line(&out), format!("200 {version}"), "{out:?}");
        let body = String::from_utf8_lossy(&out.stdout);
        let json: serde_json::Value =
            serde_json::from_str(body.lines().next().unwrap()).expect("the body arrives intact");
        assert_eq!(json["login"], "octocat");
        assert_eq!(json["padding"].as_str().unwrap().len(), 20_000);
    }

    // A client that sent a placeholder gets it replaced.
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "-H",
            &format!("Authorization: Bearer {PLACEHOLDER}"),
            "https://api.github.com/user",
        ],
    );
    assert!(last_line(&out).starts_with("200 "), "{out:?}");

    // git's smart HTTP on github.com gets Basic x-access-token.
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "https://github.com/octo/repo.git/info/refs?service=git-upload-pack",
        ],
    );
    assert!(last_line(&out).starts_with("200 "), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("001e# service=git-upload-pack"));

    let seen = github.requests();
    assert_eq!(seen.len(), 4, "{seen:#?}");
    let bearer = format!("Bearer {TOKEN}");
    for request in &seen[..3] {
        assert_eq!(request.header("authorization"), Some(bearer.as_str()));
        assert_eq!(request.header("host"), Some("api.github.com"));
    }
    assert_eq!(
        seen[3].header("authorization"),
        Some(basic_github().as_str())
    );
    for request in &seen {
        assert_eq!(
            request.header("proxy-authorization"),
            None,
            "never forwarded"
        );
        assert_eq!(request.header("proxy-connection"), None);
    }
}

#[test]
fn a_rust_client_gets_credentials_over_http2_and_http1_with_an_http2_upstream() {
    let env = granted_env();
    let upstream = StreamServer::start(env.ca(), &["api.github.com"]);
    // Trace logging of every library, HTTP/2 framing included, must not show the token either.
    let proxy = start_github_proxy_with(&env, upstream.port(), &[], &[("RUST_LOG", "trace")]);
    let ca = std::fs::read(proxy.ca_cert()).unwrap();

    for http1 in [false, true] {
        let mut builder = reqwest::blocking::Client::builder()
            .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .timeout(Duration::from_secs(20));
        if http1 {
            builder = builder.http1_only();
        }
        let client = builder.build().unwrap();
        let response = client
            .get("https://api.github.com/download?bytes=100000")
            .header("authorization", format!("token {PLACEHOLDER}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        let expected = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(response.version(), expected);
        let mut check = PatternCheck::new();
        check.update(&response.bytes().unwrap());
        assert_eq!((check.bytes, check.ok), (100_000, true));
    }
    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.version, "HTTP/2.0",
            "the proxy speaks h2 upstream when offered"
        );
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(request.header("proxy-authorization"), None);
    }
    let stderr = proxy.stderr();
    assert!(stderr.contains("TRACE"), "trace logging is on");
    for secret in secret_forms() {
        assert_no_secret_named(
            &[("proxy stderr (RUST_LOG=trace)", stderr.as_bytes())],
            &secret,
        );
    }
}

#[test]
fn server_sent_events_are_streamed_not_buffered() {
    let env = granted_env();
    let upstream = StreamServer::start(env.ca(), &["api.github.com"]);
    let proxy = start_github_proxy(&env, upstream.port(), &[]);
    let ca = std::fs::read(proxy.ca_cert()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut response = client.get("https://api.github.com/sse").send().unwrap();
    assert_eq!(response.status(), 200);
    // The second event is sent only once the first has reached us: a buffering proxy would
    // deadlock here until the client's timeout.
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    while !received.ends_with(b"data: one\n\n") {
        let n = response
            .read(&mut buf)
            .expect("the first event arrives on its own");
        assert!(n > 0, "stream ended early: {received:?}");
        received.extend_from_slice(&buf[..n]);
    }
    upstream.release();
    response.read_to_end(&mut received).unwrap();
    assert_eq!(received, b"data: one\n\ndata: two\n\n");
}

#[test]
fn a_websocket_echo_works_through_the_proxy() {
    let env = granted_env();
    let upstream = StreamServer::start(env.ca(), &["api.github.com"]);
    let proxy = start_github_proxy(&env, upstream.port(), &[]);
    let roots = roots_from_pem(&proxy.ca_cert());
    runtime().block_on(async {
        let tls = tls_through_proxy(
            proxy.addr(),
            proxy.token(),
            "api.github.com:443",
            "api.github.com",
            client_tls(roots, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        let (mut ws, response) = tokio_tungstenite::client_async("wss://api.github.com/ws", tls)
            .await
            .expect("the upgrade goes through");
        assert_eq!(response.status(), 101);
        for text in ["hello", "world"] {
            ws.send(Message::text(text)).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(echoed, Message::text(text));
        }
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        let echoed = ws.next().await.unwrap().unwrap();
        assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
        ws.close(None).await.unwrap();
    });
    let seen = upstream.seen();
    assert_eq!(seen[0].path, "/ws");
    assert_eq!(seen[0].version, "HTTP/1.1");
    assert_eq!(
        seen[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str()),
        "the upgrade request gets the credential too"
    );
}

#[test]
fn hundred_megabyte_bodies_stream_both_ways_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let env = granted_env();
    let upstream = StreamServer::start(env.ca(), &["api.github.com"]);
    let proxy = start_github_proxy(&env, upstream.port(), &[]);
    let ca = std::fs::read(proxy.ca_cert()).unwrap();
    let client = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::all(proxy.url()).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .http1_only()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let before = proxy.rss_kib();

    let started = Instant::now();
    let mut response = client
        .get(format!("https://api.github.com/download?bytes={SIZE}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut check = PatternCheck::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = response.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        check.update(&buf[..n]);
    }
    assert_eq!((check.bytes, check.ok), (SIZE, true));
    let download = started.elapsed();

    let started = Instant::now();
    let response = client
        .post("https://api.github.com/upload")
        .header("content-type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(PatternReader::new(SIZE)))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let result: serde_json::Value = response.json().unwrap();
    assert_eq!(result["bytes"], SIZE);
    assert_eq!(result["pattern_ok"], true);
    let upload = started.elapsed();

    let peak = proxy.peak_rss_kib();
    eprintln!(
        "proxy RSS before {before} KiB, peak {peak} KiB; 100 MB down in {download:?}, up in {upload:?}"
    );
    assert!(
        peak < 64 * 1024,
        "the proxy's peak memory was {peak} KiB while moving 2 x 100 MB: it must not hold bodies"
    );
}

#[test]
fn requests_without_the_right_token_get_407_with_a_basic_challenge() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &[]);
    let ca = proxy.ca_cert();
    let addr = proxy.addr().to_string();

    runtime().block_on(async {
        let (status, head, _) = connect_tunnel(proxy.addr(), None, "api.github.com:443")
            .await
            .unwrap();
        assert_eq!(status, 407, "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("proxy-authenticate: basic realm=\"moat\""),
            "{head}"
        );
        for wrong in [
            basic_proxy_auth("0".repeat(64).as_str()),
            format!("Bearer {}", "f".repeat(64)),
            basic_proxy_auth(""),
            "Digest abc".to_owned(),
            // The provider token is not a proxy token.
            basic_proxy_auth(TOKEN),
        ] {
            let (status, head, mut tcp) =
                connect_tunnel(proxy.addr(), Some(&wrong), "api.github.com:443")
                    .await
                    .unwrap();
            assert_eq!(status, 407, "{wrong}: {head}");
            let mut body = vec![0u8; 64];
            let n = tcp.read(&mut body).await.unwrap();
            assert!(String::from_utf8_lossy(&body[..n]).contains("Invalid proxy token"));
        }
        // The right one, as Bearer.
        let (status, _, _) = connect_tunnel(
            proxy.addr(),
            Some(&format!("Bearer {}", proxy.token())),
            "api.github.com:443",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
    });

    // curl without credentials, and plain HTTP without credentials.
    let out = curl(
        &env,
        &[
            "--proxy",
            &format!("http://{addr}"),
            "--cacert",
            ca.to_str().unwrap(),
            "https://api.github.com/user",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("407"),
        "{out:?}"
    );
    let out = curl(
        &env,
        &["--proxy", &format!("http://{addr}"), "http://example.test/"],
    );
    assert!(last_line(&out).starts_with("407"), "{out:?}");
    assert!(github.requests().is_empty(), "nothing got through");
}

#[test]
fn sni_and_host_must_name_the_connect_target() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &[]);
    let roots = roots_from_pem(&proxy.ca_cert());
    runtime().block_on(async {
        // A TLS server name other than the CONNECT host: the handshake is refused.
        let err = tls_through_proxy(
            proxy.addr(),
            proxy.token(),
            "api.github.com:443",
            "evil.example",
            client_tls(roots.clone(), &[b"http/1.1"]),
        )
        .await
        .expect_err("mismatched SNI");
        eprintln!("mismatched SNI: {err}");

        // No SNI at all for a host name: refused too.
        let mut no_sni = (*client_tls(roots.clone(), &[b"http/1.1"])).clone();
        no_sni.enable_sni = false;
        assert!(
            tls_through_proxy(
                proxy.addr(),
                proxy.token(),
                "api.github.com:443",
                "api.github.com",
                std::sync::Arc::new(no_sni),
            )
            .await
            .is_err()
        );

        // The right SNI but another Host inside: 421.
        let mut tls = tls_through_proxy(
            proxy.addr(),
            proxy.token(),
            "api.github.com:443",
            "api.github.com",
            client_tls(roots.clone(), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        tls.write_all(b"GET /user HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.ok();
        assert!(response.starts_with("HTTP/1.1 421"), "{response}");

        // An absolute-form request inside the tunnel naming another host: 421 too.
        let mut tls = tls_through_proxy(
            proxy.addr(),
            proxy.token(),
            "api.github.com:443",
            "api.github.com",
            client_tls(roots, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        tls.write_all(
            b"GET https://evil.example/user HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.ok();
        assert!(response.starts_with("HTTP/1.1 421"), "{response}");
    });
    assert!(github.requests().is_empty(), "{:?}", github.requests());
}

#[test]
fn a_tunnel_that_does_not_start_tls_is_closed_never_relayed() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &[]);
    runtime().block_on(async {
        let (status, _, mut tcp) = connect_tunnel(
            proxy.addr(),
            Some(&basic_proxy_auth(proxy.token())),
            "api.github.com:443",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        tcp.write_all(b"GET /user HTTP/1.1\r\nHost: api.github.com\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the proxy closes the tunnel");
        assert!(
            !String::from_utf8_lossy(&rest).contains("octocat"),
            "{rest:?}"
        );
    });
    assert!(github.requests().is_empty());
}

#[test]
fn strict_policy_blocks_unlisted_hosts_and_rules_deny_paths() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(
        &env,
        github.port(),
        &[
            "--policy",
            "strict",
            "--allow",
            "registry.example.org",
            "--rule",
            "api.github.com deny DELETE /**",
            "--rule",
            "api.github.com deny * /admin/**",
        ],
    );
    let ca = proxy.ca_cert();
    let ca = ca.to_str().unwrap();

    runtime().block_on(async {
        let auth = basic_proxy_auth(proxy.token());
        let (status, head, mut tcp) = connect_tunnel(proxy.addr(), Some(&auth), "example.com:443")
            .await
            .unwrap();
        assert_eq!(status, 407, "{head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-moat-blocked: host-not-allowed"), "{head}");
        assert!(lower.contains("proxy-authenticate: moat-policy"), "{head}");
        let mut body = vec![0u8; 1024];
        let n = tcp.read(&mut body).await.unwrap();
        let body = String::from_utf8_lossy(&body[..n]);
        assert!(
            body.contains("Host \"example.com\" is not in the allow list")
                && body.contains("--allow example.com"),
            "{body}"
        );
        // Grant hosts and listed hosts pass; a grant host on another port does not.
        for (authority, expected) in [
            ("api.github.com:443", 200),
            ("github.com:443", 200),
            ("registry.example.org:443", 200),
            ("api.github.com:8443", 407),
        ] {
            let (status, _, _) = connect_tunnel(proxy.addr(), Some(&auth), authority)
                .await
                .unwrap();
            assert_eq!(status, expected, "{authority}");
        }
    });

    // Inside an allowed host, path rules apply.
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "-X",
            "DELETE",
            "https://api.github.com/repos/o/r",
        ],
    );
    assert!(last_line(&out).starts_with("407"), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("blocked by network policy"));
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "-i",
            "https://api.github.com/admin/x",
        ],
    );
    assert!(last_line(&out).starts_with("407"), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_ascii_lowercase()
            .contains("x-moat-blocked: request-rule")
    );
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "https://api.github.com/user",
        ],
    );
    assert!(last_line(&out).starts_with("200"), "{out:?}");
    assert_eq!(
        github.requests().len(),
        1,
        "only the allowed request went out"
    );

    // The denials are in the request log.
    let lines = proxy.log_lines(4, Duration::from_secs(5));
    let blocked: Vec<_> = lines
        .iter()
        .filter(|l| l["status_code"] == 407)
        .map(|l| {
            format!(
                "{} {}",
                l["method"].as_str().unwrap(),
                l["url"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        blocked.contains(&"CONNECT example.com:443".to_owned()),
        "{blocked:?}"
    );
    assert!(
        blocked.contains(&"DELETE https://api.github.com/repos/o/r".to_owned()),
        "{blocked:?}"
    );

    // And on moat proxy's stderr, once per host and reason, with the flag that allows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let refusals = loop {
        let stderr = proxy.stderr();
        let lines: Vec<String> = stderr
            .lines()
            .filter(|l| l.starts_with("moat proxy: blocked"))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 3 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        refusals,
        [
            "moat proxy: blocked CONNECT example.com:443: the host is not in the allow list; \
             to allow it: --allow example.com (moat.yaml: network.allow)",
            "moat proxy: blocked CONNECT api.github.com:8443: the host is not in the allow \
             list; to allow it: --allow api.github.com:8443 (moat.yaml: network.allow)",
            "moat proxy: blocked DELETE api.github.com/repos/o/r: a network rule denies it; to \
             allow it: --rule 'api.github.com allow DELETE /repos/o/r' (moat.yaml: network.rules)",
        ],
        "the second rule denial on api.github.com is not repeated"
    );
}

#[test]
fn malformed_oversized_and_stalled_clients_do_not_stop_the_proxy() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &[]);
    let ca = proxy.ca_cert();
    runtime().block_on(async {
        // Clients that stall: mid request head, and after CONNECT before any TLS byte.
        let mut stalled_head = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        stalled_head.write_all(b"CONNECT api.git").await.unwrap();
        let (status, _, _stalled_tls) = connect_tunnel(
            proxy.addr(),
            Some(&basic_proxy_auth(proxy.token())),
            "api.github.com:443",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        let mut stalled_hello = connect_tunnel(
            proxy.addr(),
            Some(&basic_proxy_auth(proxy.token())),
            "api.github.com:443",
        )
        .await
        .unwrap()
        .2;
        // Half a ClientHello.
        stalled_hello
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();

        // A malformed request line.
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        tcp.write_all(b"THIS IS NOT HTTP\r\n\r\n").await.unwrap();
        let head = read_head(&mut tcp).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");

        // Oversized headers.
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let huge = format!(
            "CONNECT api.github.com:443 HTTP/1.1\r\nHost: api.github.com:443\r\nX-Big: {}\r\n\r\n",
            "a".repeat(100 * 1024)
        );
        let _ = tcp.write_all(huge.as_bytes()).await;
        let head = read_head(&mut tcp).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 431"), "{head:?}");

        // Not a proxy request.
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut tcp).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");
    });

    // Meanwhile everyone else is served.
    let out = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca.to_str().unwrap(),
            "https://api.github.com/user",
        ],
    );
    assert!(last_line(&out).starts_with("200"), "{out:?}");
}

#[test]
fn the_real_token_never_reaches_logs_error_pages_or_output() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    // Trace logging of everything, moat's and every library's.
    let resolve = format!(
        "{},broken.github.com:443:127.0.0.1:1",
        resolve_github(github.port())
    );
    let proxy = ProxyProcess::start(
        &env,
        &["--grant", "github", "-vv"],
        &[("MOAT_PROXY_RESOLVE", &resolve), ("RUST_LOG", "trace")],
    );
    let ca = proxy.ca_cert();
    let ca = ca.to_str().unwrap();

    let mut outputs = Vec::new();
    for args in [
        vec!["--http2", "https://api.github.com/user"],
        vec![
            "--http1.1",
            "-H",
            &format!("Authorization: token {PLACEHOLDER}") as &str,
            "https://api.github.com/user",
        ],
        vec!["https://github.com/octo/repo.git/info/refs?service=git-upload-pack"],
        vec!["-i", "https://api.github.com/echo-token"],
        vec![
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            "{\"hello\":\"world\"}",
            "https://api.github.com/nope",
        ],
    ] {
        let mut all = vec!["--proxy", proxy.url(), "--cacert", ca];
        all.extend(args);
        outputs.push(curl(&env, &all));
    }
    // An upstream that cannot be reached: the error page.
    let broken = curl(
        &env,
        &[
            "--proxy",
            proxy.url(),
            "--cacert",
            ca,
            "-i",
            "https://broken.github.com/x",
        ],
    );
    assert!(last_line(&broken).starts_with("502"), "{broken:?}");
    assert!(String::from_utf8_lossy(&broken.stdout).contains("upstream request failed"));

    let lines = proxy.log_lines(6, Duration::from_secs(5));
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let log = std::fs::read_to_string(proxy.log_path()).unwrap();
    let stderr = proxy.stderr();
    assert!(stderr.contains("TRACE"), "trace logging is on");

    for secret in secret_forms() {
        let mut haystacks: Vec<(String, Vec<u8>)> = vec![
            ("network.jsonl".into(), log.clone().into_bytes()),
            (
                "proxy stderr (RUST_LOG=trace)".into(),
                stderr.clone().into_bytes(),
            ),
            (
                "proxy JSON line".into(),
                proxy.info().to_string().into_bytes(),
            ),
            ("502 page".into(), broken.stdout.clone()),
        ];
        for (i, out) in outputs.iter().enumerate() {
            haystacks.push((format!("curl #{i} stderr"), out.stderr.clone()));
            haystacks.push((format!("curl #{i} stdout"), out.stdout.clone()));
        }
        let named: Vec<(&str, &[u8])> = haystacks
            .iter()
            .map(|(name, bytes)| (name.as_str(), bytes.as_slice()))
            .collect();
        assert_no_secret_named(&named, &secret);
    }
    // The echoing API really did send the credential back; the client got it masked byte for
    // byte (no curl output above holds the token), and so did the log.
    let echoed = String::from_utf8_lossy(&outputs[3].stdout).into_owned();
    assert!(
        echoed.contains(&format!("you sent: {}", "*".repeat(TOKEN.len()))),
        "{echoed}"
    );

    // The log's shape.
    let first = &lines[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["url"], "https://api.github.com/user");
    assert_eq!(first["status_code"], 200);
    assert_eq!(first["grants"], serde_json::json!(["github"]));
    assert_eq!(first["req_headers"]["authorization"], "[REDACTED]");
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(first["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        first["resp_headers"]["content-type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(first["truncated"], true, "the 20 KB body is cut at 8 KiB");
    // Cut at 8 KiB, less the end held back in case it is the start of a secret (at most three
    // times the longest form of one, for an escaped form).
    let kept = first["resp_body"].as_str().unwrap().len();
    assert!(kept <= 8 * 1024 && kept > 7 * 1024, "{kept}");
    let second = &lines[1];
    assert_eq!(second["req_headers"]["authorization"], "[REDACTED]");
    let echo = lines
        .iter()
        .find(|l| l["url"] == "https://api.github.com/echo-token")
        .unwrap();
    assert!(
        echo["resp_body"]
            .as_str()
            .unwrap()
            .contains(&"*".repeat(TOKEN.len())),
        "{echo}"
    );
    let post = lines.iter().find(|l| l["method"] == "POST").unwrap();
    assert_eq!(post["req_body"], "{\"hello\":\"world\"}");
    assert_eq!(post["status_code"], 401);
    let failed = lines.iter().find(|l| l["status_code"] == 502).unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("connect"),
        "{failed}"
    );
}

/// `moat proxy` with `args`, expected to fail before it starts: (exit code, stderr).
fn proxy_refused(env: &MoatEnv, args: &[&str], vars: &[(&str, &str)]) -> (i32, String) {
    let out = env
        .cmd()
        .args(args)
        .envs(vars.iter().copied())
        .output()
        .expect("run moat proxy");
    assert!(out.stdout.is_empty(), "{out:?}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_missing_grant_is_reported_at_once_with_the_command_that_fixes_it() {
    let env = MoatEnv::new();
    let plugin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../plugins/moat-provider-linear/moat-provider-linear");
    std::os::unix::fs::symlink(plugin, env.bin_dir().join("moat-provider-linear")).unwrap();

    let (code, stderr) = proxy_refused(
        &env,
        &[
            "--profile",
            "work",
            "proxy",
            "--grant",
            "github",
            "--grant",
            "linear",
            "--grant",
            "github",
        ],
        &[],
    );
    assert_eq!(code, 3, "not found: {stderr}");
    assert!(stderr.contains("2 grants cannot be used"), "{stderr}");
    assert!(
        stderr.contains("github: not granted yet") && stderr.contains("linear: not granted yet"),
        "{stderr}"
    );
    assert!(
        stderr.contains("  moat grant github --profile work\n")
            && stderr.contains("  moat grant linear --profile work"),
        "the fixes name the profile: {stderr}"
    );
    assert_eq!(stderr.matches("github: not granted").count(), 1, "{stderr}");

    // Without a profile, the fix has none; an unknown name is listed with the rest.
    let (code, stderr) = proxy_refused(
        &env,
        &["proxy", "--grant", "github", "--grant", "nosuch"],
        &[],
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("unknown provider: nosuch"), "{stderr}");
    assert!(
        stderr.contains("To fix it, run: moat grant github\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("--profile"), "{stderr}");
}

#[test]
fn bad_proxy_settings_are_usage_errors_that_leave_nothing_behind() {
    let env = granted_env();
    let (code, stderr) = proxy_refused(
        &env,
        &["proxy", "--grant", "github"],
        &[("MOAT_PROXY_RESOLVE", "api.github.com:443")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid MOAT_PROXY_RESOLVE entry") && stderr.contains("127.0.0.1:8443"),
        "the error and an example: {stderr}"
    );

    let missing = env.root().join("no-such-dir/deeper/network.jsonl");
    let (code, stderr) = proxy_refused(&env, &["proxy", "--log", missing.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&missing.display().to_string()) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(
        !env.root().join("no-such-dir").exists(),
        "no folder was created"
    );
}

#[test]
fn listening_on_every_interface_warns_and_prints_a_url_that_works() {
    let env = granted_env();
    let github = moat_tests::fake_github_hosts(env.ca(), TOKEN);
    let proxy = start_github_proxy(&env, github.port(), &["--listen", "0.0.0.0:0"]);
    assert!(
        proxy.info()["address"]
            .as_str()
            .unwrap()
            .starts_with("0.0.0.0:")
    );
    let url = proxy.url();
    assert!(url.contains("@127.0.0.1:"), "{url}");
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("warning:") && stderr.contains("other machines can reach"),
        "{stderr}"
    );
    let ca = proxy.ca_cert();
    let out = curl(
        &env,
        &[
            "--proxy",
            url,
            "--cacert",
            ca.to_str().unwrap(),
            "https://api.github.com/user",
        ],
    );
    assert!(last_line(&out).starts_with("200"), "{out:?}");

    let local = start_github_proxy(&env, github.port(), &[]);
    assert!(!local.stderr().contains("warning:"), "{}", local.stderr());
}
