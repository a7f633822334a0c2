//! The proxy as a library (`moat::proxy`), in process: what needs short timeouts, several runs,
//! rule replacement, or rules no built-in provider emits (token substitution, response
//! transforms, extra and removed headers).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat::proxy::{
    CertificateAuthority, NetworkPolicy, Proxy, ProxyConfig, ProxyHandle, ResolveOverrides,
    RunRegistry, RunSpec, RunToken, UpstreamConfig,
};
use moat_plugin_sdk::{ProxyRule, ProxyRules, ResponseAnswer, Secret, TransformKind};
use moat_tests::{
    FakeHttps, Recorded, Reply, StreamServer, TestCa, basic_proxy_auth, client_tls, connect_tunnel,
    read_log, roots_from_pem, tls_through_proxy,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A proxy on its own runtime, trusting one test CA upstream.
struct InProcess {
    handle: Option<ProxyHandle>,
    runs: Arc<RunRegistry>,
    ca_pem: PathBuf,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl InProcess {
    fn start(upstream_ca: &TestCa, resolve: &str, config: ProxyConfig) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.path().join("ca")).unwrap());
        let ca_pem = ca.cert_path();
        let upstream = UpstreamConfig {
            native_roots: false,
            extra_ca_file: Some(upstream_ca.write_pem(dir.path().join("upstream-ca"))),
            resolve: ResolveOverrides::parse(resolve).unwrap(),
            ..UpstreamConfig::default()
        };
        let runs = Arc::new(RunRegistry::new());
        let proxy = Proxy::new(ca, Arc::clone(&runs), &upstream, config).unwrap();
        let handle = runtime
            .block_on(proxy.listen("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        InProcess {
            handle: Some(handle),
            runs,
            ca_pem,
            dir,
            runtime,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().addr()
    }

    /// A run whose one rule gives `host` an `Authorization` of `value`, any network allowed.
    fn register_credential(&self, host: &str, value: &str) -> (RunToken, PathBuf) {
        self.register(
            vec![rules(vec![credential(
                host,
                "Authorization",
                value,
                "example",
            )])],
            NetworkPolicy::default(),
        )
    }

    fn register(&self, grants: Vec<ProxyRules>, policy: NetworkPolicy) -> (RunToken, PathBuf) {
        let log = self
            .dir
            .path()
            .join(format!("run-{}/network.jsonl", self.runs.len()));
        let token = self
            .runs
            .register(RunSpec {
                id: "test".into(),
                grants,
                policy,
                log: Some(log.clone()),
                ..RunSpec::default()
            })
            .unwrap();
        (token, log)
    }

    fn client(&self, token: &RunToken) -> reqwest::blocking::Client {
        client_builder(self, token)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.shutdown());
        }
    }
}

fn credential(host: &str, header: &str, value: &str, grant: &str) -> ProxyRule {
    ProxyRule::Credential {
        host: host.into(),
        header: header.into(),
        value: Secret::new(value),
        grant: grant.into(),
    }
}

fn rules(list: Vec<ProxyRule>) -> ProxyRules {
    let mut rules = ProxyRules::new();
    rules.rules = list;
    rules
}

#[test]
fn stalled_clients_are_cut_after_the_timeouts_while_others_are_served() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.example.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig {
            handshake_timeout: Duration::from_millis(700),
            header_timeout: Duration::from_millis(700),
            ..ProxyConfig::default()
        },
    );
    let (token, _) = proxy.register(
        vec![rules(vec![credential(
            "api.example.com",
            "x-key",
            "k-secret-1",
            "g",
        )])],
        NetworkPolicy::default(),
    );
    let auth = basic_proxy_auth(token.as_str());
    let client = proxy.client(&token);

    let (mut idle, mut half_head, mut no_tls, mut half_hello) = proxy.runtime.block_on(async {
        let idle = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let mut half_head = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        half_head.write_all(b"CONNECT api.exa").await.unwrap();
        let (status, _, no_tls) = connect_tunnel(proxy.addr(), Some(&auth), "api.example.com:443")
            .await
            .unwrap();
        assert_eq!(status, 200);
        let (_, _, mut half_hello) =
            connect_tunnel(proxy.addr(), Some(&auth), "api.example.com:443")
                .await
                .unwrap();
        half_hello
            .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00])
            .await
            .unwrap();
        (idle, half_head, no_tls, half_hello)
    });

    // Served while the four stall.
    let response = client.get("https://api.example.com/hello").send().unwrap();
    assert_eq!(response.status(), 200);

    let started = Instant::now();
    proxy.runtime.block_on(async {
        for (name, stream) in [
            ("idle", &mut idle),
            ("half a request head", &mut half_head),
            ("no TLS after CONNECT", &mut no_tls),
            ("half a ClientHello", &mut half_hello),
        ] {
            let mut buf = Vec::new();
            // Cut by the 700 ms timeouts; the bound only tells cut from never (a loaded machine
            // may take a while to get round to it).
            let closed =
                tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf)).await;
            assert!(closed.is_ok(), "{name}: still open after 30 s");
        }
    });
    assert!(started.elapsed() < Duration::from_secs(30));
    // And still serving.
    assert_eq!(
        client
            .get("https://api.example.com/again")
            .send()
            .unwrap()
            .status(),
        200
    );
}

#[test]
fn replaced_rules_apply_to_open_tunnels_and_a_removed_run_is_refused() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.example.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _) = proxy.register(
        vec![rules(vec![credential(
            "api.example.com",
            "authorization",
            "Bearer old-secret",
            "g",
        )])],
        NetworkPolicy::default(),
    );
    let (other, _) = proxy.register(
        vec![rules(vec![credential(
            "api.example.com",
            "authorization",
            "Bearer other-run",
            "h",
        )])],
        NetworkPolicy::default(),
    );
    // One keep-alive client: the same tunnel before and after the refresh.
    let client = proxy.client(&token);
    let get = |client: &reqwest::blocking::Client| {
        let response = client.get("https://api.example.com/x").send().unwrap();
        let status = response.status().as_u16();
        let _ = response.bytes();
        status
    };
    assert_eq!(get(&client), 200);
    proxy
        .runs
        .replace_rules(
            &token,
            vec![rules(vec![credential(
                "api.example.com",
                "authorization",
                "Bearer new-secret",
                "g",
            )])],
        )
        .unwrap();
    assert_eq!(get(&client), 200);
    assert_eq!(get(&proxy.client(&other)), 200);
    let seen: Vec<String> = upstream
        .seen()
        .iter()
        .map(|s| s.header("authorization").unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        seen,
        ["Bearer old-secret", "Bearer new-secret", "Bearer other-run"]
    );

    assert!(proxy.runs.remove(&token));
    let response = client.get("https://api.example.com/x").send().unwrap();
    assert_eq!(
        response.status(),
        407,
        "the open tunnel is refused from now on"
    );
    assert_eq!(upstream.seen().len(), 3);
    assert_eq!(get(&proxy.client(&other)), 200, "other runs are untouched");
}

#[test]
fn token_substitution_extra_and_removed_headers_and_response_scrub() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.telegram.org"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.telegram.org:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let placeholder = "moat-0123456789abcdef";
    let real = "123456:REAL-bot-token";
    let (token, log) = proxy.register(
        vec![rules(vec![
            ProxyRule::TokenSubstitution {
                host: "api.telegram.org".into(),
                placeholder: placeholder.into(),
                real: Secret::new(real),
            },
            ProxyRule::ResponseTransform {
                host: "api.telegram.org".into(),
                kind: TransformKind::ResponseScrub,
            },
            ProxyRule::ExtraHeader {
                host: "*.telegram.org".into(),
                name: "x-feature".into(),
                value: "beta".into(),
            },
            ProxyRule::RemoveHeader {
                host: "api.telegram.org".into(),
                name: "x-drop-me".into(),
            },
        ])],
        NetworkPolicy::default(),
    );
    let client = proxy.client(&token);
    let response = client
        .post(format!(
            "https://api.telegram.org/bot{placeholder}/sendMessage"
        ))
        .header("content-type", "application/json")
        .header("x-feature", "alpha")
        .header("x-drop-me", "1")
        .header("authorization", format!("Bearer {placeholder}"))
        .body(format!("{{\"token\":\"{placeholder}\"}}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    // The echo saw the real token in the path, the header and the body, and echoed it back; the
    // scrubber put the placeholder back before the client saw it.
    let text = response.text().unwrap();
    assert!(!text.contains(real), "{text}");
    let echo: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(echo["path"], format!("/bot{placeholder}/sendMessage"));
    assert_eq!(
        echo["headers"]["authorization"],
        format!("Bearer {placeholder}")
    );
    assert_eq!(echo["body"], format!("{{\"token\":\"{placeholder}\"}}"));
    assert_eq!(echo["headers"]["x-feature"], "alpha, beta");
    assert!(echo["headers"].get("x-drop-me").is_none());
    assert_eq!(echo["headers"]["accept-encoding"], "identity");

    let seen = &upstream.seen()[0];
    assert_eq!(seen.path, format!("/bot{real}/sendMessage"));
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {real}").as_str())
    );

    let lines = read_log(&log, 1, Duration::from_secs(30));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(real) && !text.contains("REAL-bot"), "{text}");
    assert_eq!(
        lines[0]["url"],
        format!("https://api.telegram.org/bot{placeholder}/sendMessage"),
        "the log keeps the placeholder"
    );
}

#[test]
fn replace_response_answers_in_the_upstreams_place_as_the_provider_said() {
    let ca = TestCa::new();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], |r: &Recorded| {
        match r.path_only() {
            "/ok" => Reply::json(200, serde_json::json!({ "real": true })),
            _ => Reply::json(
                403,
                serde_json::json!({ "error": format!("forbidden {}", r.path) }),
            )
            .with_header("content-encoding", "identity"),
        }
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let replace =
        |method: &str, paths: &[&str], status: u16, body: &str| ProxyRule::ReplaceResponse {
            host: "api.example.com".into(),
            method: method.into(),
            paths: paths.iter().map(|p| p.to_string()).collect(),
            status,
            answer: ResponseAnswer {
                status: 200,
                content_type: "application/json".into(),
                body: body.into(),
            },
        };
    let (token, log) = proxy.register(
        vec![rules(vec![
            credential("api.example.com", "authorization", "Bearer oauth-real", "g"),
            replace(
                "GET",
                &["/api/oauth/profile"],
                403,
                r#"{"id":"","email":"","name":""}"#,
            ),
            replace("*", &["/api/oauth/*", "/ok"], 403, r#"{"usage":{}}"#),
        ])],
        NetworkPolicy::default(),
    );
    let client = proxy.client(&token);
    for (method, path, body) in [
        (
            "GET",
            "/api/oauth/profile?x=1",
            r#"{"id":"","email":"","name":""}"#,
        ),
        ("POST", "/api/oauth/profile", r#"{"usage":{}}"#),
        ("GET", "/api/oauth/usage", r#"{"usage":{}}"#),
    ] {
        let response = client
            .request(
                method.parse().unwrap(),
                format!("https://api.example.com{path}"),
            )
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{method} {path}");
        assert_eq!(response.headers()["x-moat-transformed"], "replace-response");
        assert_eq!(response.headers()["content-type"], "application/json");
        assert!(response.headers().get("content-encoding").is_none());
        assert_eq!(response.text().unwrap(), body, "{method} {path}");
    }
    for (path, status) in [("/v1/messages", 403), ("/api/oauth/a/b", 403), ("/ok", 200)] {
        let response = client
            .get(format!("https://api.example.com{path}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), status, "{path} is left alone");
        assert!(response.headers().get("x-moat-transformed").is_none());
    }
    assert_eq!(
        upstream.requests().len(),
        6,
        "the upstream was asked every time"
    );
    let lines = read_log(&log, 6, Duration::from_secs(30));
    assert_eq!(
        lines[0]["status_code"], 200,
        "the log shows what the client got"
    );

    // A rule moat cannot apply refuses the run, naming the host and the reason.
    let err = proxy
        .runs
        .register(RunSpec {
            grants: vec![rules(vec![replace("GET", &["no-slash"], 403, "{}")])],
            ..RunSpec::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("api.example.com") && err.contains("must start with /"),
        "{err}"
    );
}

#[test]
fn plain_http_is_proxied_without_credentials() {
    let ca = TestCa::new();
    let upstream = StreamServer::start_plain();
    let proxy = InProcess::start(
        &ca,
        &format!("plain.example:80:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register(
        vec![rules(vec![
            credential(
                "plain.example",
                "authorization",
                "Bearer must-not-leak",
                "g",
            ),
            ProxyRule::ExtraHeader {
                host: "plain.example".into(),
                name: "x-extra".into(),
                value: "1".into(),
            },
        ])],
        NetworkPolicy::default(),
    );
    let response = proxy
        .client(&token)
        .get("http://plain.example/echo?q=1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let echo: serde_json::Value = response.json().unwrap();
    assert_eq!(echo["path"], "/echo?q=1");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert!(
        echo["headers"].get("proxy-authorization").is_none(),
        "{echo}"
    );
    assert_eq!(echo["headers"]["x-extra"], "1");
    assert_eq!(echo["headers"]["host"], "plain.example");
    let lines = read_log(&log, 1, Duration::from_secs(30));
    assert_eq!(lines[0]["url"], "http://plain.example/echo?q=1");
}

#[test]
fn the_proxys_own_machine_is_reachable_only_on_listed_ports() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["127.0.0.1", "localhost"]);
    let proxy = InProcess::start(&ca, "", ProxyConfig::default());
    let (token, log) = proxy.register(vec![], NetworkPolicy::default());
    let auth = basic_proxy_auth(token.as_str());
    proxy.runtime.block_on(async {
        // IPv4-mapped IPv6 connects to 127.0.0.1 too, and link-local is where cloud metadata
        // services answer.
        for authority in [
            "127.0.0.1",
            "localhost",
            "moat-host",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
        ] {
            let authority = format!("{authority}:{}", upstream.port());
            let (status, head, mut tcp) = connect_tunnel(proxy.addr(), Some(&auth), &authority)
                .await
                .unwrap();
            assert_eq!(status, 407, "{authority}: {head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("x-moat-blocked: host-service"),
                "{head}"
            );
            let mut body = vec![0u8; 512];
            let n = tcp.read(&mut body).await.unwrap();
            assert!(String::from_utf8_lossy(&body[..n]).contains("network.host"));
        }
    });
    let response = proxy
        .client(&token)
        .get(format!("http://127.0.0.1:{}/", upstream.port()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 407);
    assert_eq!(response.headers()["x-moat-blocked"], "host-service");
    assert!(upstream.seen().is_empty());
    let lines = read_log(&log, 7, Duration::from_secs(30));
    assert_eq!(lines.len(), 7);
}

/// This machine's address on its default route, if it has one (no packet is sent).
fn primary_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("10.255.255.255:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn host_ports_open_the_loopback_names_only_never_link_local_or_interface_addresses() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["127.0.0.1", "localhost"]);
    let proxy = InProcess::start(&ca, "", ProxyConfig::default());
    let port = upstream.port();
    let (token, _) = proxy.register(
        vec![],
        NetworkPolicy {
            host_ports: vec![port],
            ..NetworkPolicy::default()
        },
    );
    let auth = basic_proxy_auth(token.as_str());
    let mut closed = vec![
        "169.254.169.254".to_owned(),
        "[fe80::1]".to_owned(),
        "0.0.0.0".to_owned(),
        "[::ffff:169.254.169.254]".to_owned(),
    ];
    closed.extend(primary_address().map(|ip| match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }));
    proxy.runtime.block_on(async {
        for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"] {
            let authority = format!("{host}:{port}");
            let (status, head, _) = connect_tunnel(proxy.addr(), Some(&auth), &authority)
                .await
                .unwrap();
            assert_eq!(status, 200, "{authority}: {head}");
        }
        for host in &closed {
            for port in [port, 80] {
                let authority = format!("{host}:{port}");
                let (status, head, mut tcp) = connect_tunnel(proxy.addr(), Some(&auth), &authority)
                    .await
                    .unwrap();
                assert_eq!(status, 407, "{authority}: {head}");
                assert!(
                    head.to_ascii_lowercase()
                        .contains("x-moat-blocked: local-network"),
                    "{authority}: {head}"
                );
                let mut body = vec![0u8; 1024];
                let n = tcp.read(&mut body).await.unwrap();
                let body = String::from_utf8_lossy(&body[..n]);
                assert!(body.contains("never open"), "{authority}: {body}");
                assert!(!body.contains("--host-port"), "{authority}: {body}");
            }
        }
    });
    // Plain http:// too.
    let response = proxy
        .client(&token)
        .get(format!("http://169.254.169.254:{port}/"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 407);
    assert_eq!(response.headers()["x-moat-blocked"], "local-network");
    assert!(upstream.seen().is_empty());
}

#[test]
fn an_ip_target_gets_an_ip_certificate_and_no_sni_is_needed() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["127.0.0.1"]);
    let proxy = InProcess::start(&ca, "", ProxyConfig::default());
    let (token, _) = proxy.register(
        vec![rules(vec![credential(
            &format!("127.0.0.1:{}", upstream.port()),
            "x-key",
            "ip-secret",
            "g",
        )])],
        NetworkPolicy {
            host_ports: vec![upstream.port()],
            ..NetworkPolicy::default()
        },
    );
    let response = proxy
        .client(&token)
        .get(format!("{}/echo", upstream.url()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.seen()[0].header("x-key"), Some("ip-secret"));

    // A raw client naming the IP: no SNI is sent, the leaf's IP SAN verifies.
    let roots = roots_from_pem(&proxy.ca_pem);
    proxy.runtime.block_on(async {
        let authority = format!("127.0.0.1:{}", upstream.port());
        let mut tls = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            &authority,
            "127.0.0.1",
            client_tls(roots, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        tls.write_all(
            format!("GET /echo HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.ok();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    });
}

#[test]
fn oversized_headers_inside_a_tunnel_are_refused() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.example.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _) = proxy.register(vec![], NetworkPolicy::default());
    let roots = roots_from_pem(&proxy.ca_pem);
    proxy.runtime.block_on(async {
        let mut tls = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            "api.example.com:443",
            "api.example.com",
            client_tls(roots, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        let request = format!(
            "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "b".repeat(200 * 1024)
        );
        let _ = tls.write_all(request.as_bytes()).await;
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    });
    assert!(upstream.seen().is_empty());

    // The same through reqwest over HTTP/2: the stream is refused, nothing goes upstream.
    let client = proxy.client(&token);
    let refused = client
        .get("https://api.example.com/")
        .header("x-big", "c".repeat(200 * 1024))
        .send();
    if let Ok(response) = refused {
        assert!(response.status().is_client_error(), "{response:?}");
    }
    assert!(upstream.seen().is_empty());
    let mut body = String::new();
    client
        .get("https://api.example.com/fine")
        .send()
        .unwrap()
        .read_to_string(&mut body)
        .unwrap();
    assert!(body.contains("/fine"));
}

#[test]
fn a_substituted_token_never_comes_back_in_headers_binary_or_compressed_bodies() {
    let ca = TestCa::new();
    let real = "123456:REAL-bot-token";
    let placeholder = "moat-0123456789abcdef";
    // An upstream that echoes the path (which carries the real token) everywhere it can.
    let upstream = FakeHttps::start_for(&ca, &["api.telegram.org"], |request: &Recorded| {
        let path = request.path.clone();
        match request.path_only().rsplit('/').next().unwrap_or_default() {
            "redirect" => Reply::status(302)
                .with_header("location", path.clone())
                .with_header("set-cookie", format!("p={path}")),
            "binary" => Reply::status(200)
                .with_header("content-type", "application/octet-stream")
                .with_body(path.into_bytes()),
            "gzip" => Reply::status(200)
                .with_header("content-type", "text/plain")
                .with_header("content-encoding", "gzip")
                .with_body(path.into_bytes()),
            "ws" => Reply::status(101)
                .with_header("upgrade", "websocket")
                .with_header("connection", "upgrade"),
            _ => Reply::not_found(),
        }
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.telegram.org:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _log) = proxy.register(
        vec![rules(vec![
            ProxyRule::TokenSubstitution {
                host: "api.telegram.org".into(),
                placeholder: placeholder.into(),
                real: Secret::new(real),
            },
            ProxyRule::ResponseTransform {
                host: "api.telegram.org".into(),
                kind: TransformKind::ResponseScrub,
            },
        ])],
        NetworkPolicy::default(),
    );
    let client = client_builder(&proxy, &token)
        .redirect(reqwest::redirect::Policy::none())
        .http1_only() // upgrades exist only in HTTP/1.1
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let url = |what: &str| format!("https://api.telegram.org/bot{placeholder}/{what}");

    let response = client.get(url("redirect")).send().unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("/bot{placeholder}/redirect"));
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!cookie.contains(real), "{cookie}");

    let body = client.get(url("binary")).send().unwrap().bytes().unwrap();
    assert_eq!(&body[..], format!("/bot{placeholder}/binary").as_bytes());

    let response = client.get(url("gzip")).send().unwrap();
    assert_eq!(response.status(), 502);
    assert!(!response.text().unwrap().contains(real));

    let response = client
        .get(url("ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    // The upgrade was refused before anything reached the upstream.
    assert!(upstream.requests().iter().all(|r| !r.path.ends_with("/ws")));
}

#[test]
fn an_upstream_echoing_a_credential_in_a_response_header_does_not_hand_it_over() {
    let ca = TestCa::new();
    let real = "ghp_EchoedCredential0123456789";
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], |request: &Recorded| {
        let auth = request
            .header("authorization")
            .unwrap_or_default()
            .to_string();
        Reply::json(200, serde_json::json!({"ok": true})).with_header("x-debug-auth", auth)
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _log) = proxy.register(
        vec![rules(vec![ProxyRule::Credential {
            host: "api.example.com".into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {real}")),
            grant: "example".into(),
        }])],
        NetworkPolicy::default(),
    );
    let response = proxy
        .client(&token)
        .get("https://api.example.com/whoami")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.headers()["x-debug-auth"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!echoed.contains(real), "{echoed}");
    // The upstream did receive the credential.
    assert_eq!(
        upstream.requests()[0].header("authorization"),
        Some(format!("Bearer {real}").as_str())
    );
}

#[test]
fn refusals_are_announced_once_per_host_and_reason_with_the_flag_that_allows_them() {
    let ca = TestCa::new();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], |_: &Recorded| {
        Reply::text(200, "ok")
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let policy: NetworkPolicy = serde_json::from_value(serde_json::json!({
        "policy": "strict",
        "rules": [{ "host": "api.example.com", "rules": ["allow GET /**"] }]
    }))
    .unwrap();
    let token = proxy
        .runs
        .register(RunSpec {
            id: "run-7".into(),
            policy,
            blocked: Some(sender),
            ..RunSpec::default()
        })
        .unwrap();
    let auth = basic_proxy_auth(token.as_str());
    proxy.runtime.block_on(async {
        for _ in 0..3 {
            let (status, head, _) = connect_tunnel(proxy.addr(), Some(&auth), "evil.example:443")
                .await
                .unwrap();
            assert_eq!(status, 407, "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("x-moat-blocked: host-not-allowed"),
                "{head}"
            );
        }
        let (status, head, _) = connect_tunnel(proxy.addr(), Some(&auth), "localhost:5432")
            .await
            .unwrap();
        assert_eq!(status, 407);
        assert!(
            head.to_ascii_lowercase()
                .contains("x-moat-blocked: host-service"),
            "{head}"
        );
    });
    let client = proxy.client(&token);
    for path in ["/a?secret=1", "/b"] {
        let response = client
            .post(format!("https://api.example.com{path}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 407);
        assert_eq!(response.headers()["x-moat-blocked"], "request-rule");
        let body = response.text().unwrap();
        assert!(
            body.contains("network.rules") && body.contains("--rule"),
            "{body}"
        );
    }
    assert_eq!(
        client
            .get("https://api.example.com/ok")
            .send()
            .unwrap()
            .status(),
        200
    );

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let summary: Vec<(String, &str, String)> = seen
        .iter()
        .map(|b| (b.host.clone(), b.reason.as_str(), b.allow_with.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "evil.example".into(),
                "host-not-allowed",
                "--allow evil.example".into()
            ),
            (
                "localhost".into(),
                "host-service",
                "--host-port 5432".into()
            ),
            (
                "api.example.com".into(),
                "request-rule",
                "--rule 'api.example.com allow POST /a'".into()
            ),
        ],
        "one event per host and reason, in order"
    );
    assert!(seen.iter().all(|b| b.run == "run-7"));
    assert_eq!(seen[2].method, "POST");
    assert_eq!(seen[2].path, "/a", "no query");
    assert_eq!(seen[0].method, "CONNECT");
}

#[test]
fn compressed_and_binary_bodies_are_logged_as_markers_not_mojibake() {
    let ca = TestCa::new();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], |r: &Recorded| {
        let bytes = vec![0x1f, 0x8b, 0x08, 0x00, 0xc3, 0x28, 0xff, 0xfe, 0x00];
        match r.path_only() {
            "/gzip" => Reply::status(200)
                .with_header("content-type", "application/json")
                .with_header("content-encoding", "gzip")
                .with_body(bytes),
            _ => Reply::status(200)
                .with_header("content-type", "text/plain")
                .with_body(bytes),
        }
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register(vec![], NetworkPolicy::default());
    let client = proxy.client(&token);
    for path in ["/gzip", "/binary"] {
        let response = client
            .get(format!("https://api.example.com{path}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.bytes().unwrap().len(),
            9,
            "the client gets the bytes as sent"
        );
    }
    let lines = read_log(&log, 2, Duration::from_secs(30));
    assert_eq!(
        lines[0]["resp_body"],
        "[gzip-encoded body, 9 bytes captured, not decoded]"
    );
    assert_eq!(lines[1]["resp_body"], "[binary body, 9 bytes captured]");
}

#[test]
fn a_secret_straddling_the_body_capture_limit_leaves_no_prefix_in_the_log() {
    let ca = TestCa::new();
    let real = "ghp_testtoken0123456789abcdef";
    let body = format!("{}{real}", "x".repeat(8180));
    let echoed = body.clone();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], move |_: &Recorded| {
        Reply::status(200)
            .with_header("content-type", "text/plain")
            .with_body(echoed.clone().into_bytes())
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register_credential("api.example.com", &format!("Bearer {real}"));
    let response = proxy
        .client(&token)
        .post("https://api.example.com/echo")
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines = read_log(&log, 1, Duration::from_secs(30));
    let text = lines[0].to_string();
    assert!(!text.contains("ghp_"), "a prefix of the token is logged");
    assert_eq!(lines[0]["truncated"], true);
    for field in ["req_body", "resp_body"] {
        let logged = lines[0][field].as_str().unwrap();
        assert!(
            logged.len() > 4096 && logged.bytes().all(|b| b == b'x'),
            "{field}"
        );
    }
}

#[test]
fn an_upstream_echoing_a_credential_in_any_form_in_response_headers_hands_none_over() {
    use base64::Engine as _;
    let ca = TestCa::new();
    let real = "ghp_EchoedCredential0123456789";
    let (head, tail) = real.split_at(12);
    let forms: Vec<(&str, String)> = vec![
        ("x-raw", format!("token={real}")),
        (
            "x-base64",
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{real}")),
        ),
        ("x-upper", real.to_uppercase()),
        ("x-lower", format!("Bearer {}", real.to_lowercase())),
        ("x-split", head.to_string()),
        ("x-split", tail.to_string()),
        (
            "x-pct",
            "/cb?t=ghp%5FE%63hoedCredential01234%35%36789".to_string(),
        ),
        (
            "x-pct-upper",
            "GHP_ECHOED%43REDENTIAL0123456789".to_string(),
        ),
    ];
    let reply_forms = forms.clone();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], move |_: &Recorded| {
        let mut reply =
            Reply::json(200, serde_json::json!({"ok": true})).with_header("x-innocent", "hello");
        for (name, value) in &reply_forms {
            reply = reply.with_header(*name, value.clone());
        }
        reply
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register_credential("api.example.com", &format!("Bearer {real}"));
    let response = proxy
        .client(&token)
        .get("https://api.example.com/whoami")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-innocent"], "hello");
    let mut client_saw = String::new();
    for (name, value) in response.headers() {
        client_saw.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    let lines = read_log(&log, 1, Duration::from_secs(30));
    let logged = lines[0]["resp_headers"].to_string();
    for (name, value) in &forms {
        assert!(
            !client_saw.contains(value.as_str()),
            "{name} reached the client"
        );
        assert!(!logged.contains(value.as_str()), "{name} reached the log");
        assert_eq!(
            response.headers().get_all(*name).iter().count(),
            if *name == "x-split" { 2 } else { 1 },
        );
        for got in response.headers().get_all(*name) {
            assert_eq!(got, "[removed by moat: it held a credential]", "{name}");
        }
    }
    let lower = client_saw.to_lowercase() + &logged.to_lowercase();
    assert!(
        !lower.contains("echoedcredential"),
        "{client_saw}\n{logged}"
    );
}

/// One raw HTTP/1.1 request through a fresh tunnel to `api.github.com:443`; the response head.
async fn raw_h1(proxy: &InProcess, token: &RunToken, request_line: &str) -> String {
    let roots = roots_from_pem(&proxy.ca_pem);
    let mut tls = tls_through_proxy(
        proxy.addr(),
        token.as_str(),
        "api.github.com:443",
        "api.github.com",
        client_tls(roots, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(
        format!("{request_line}\r\nHost: api.github.com\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.ok();
    String::from_utf8_lossy(&response).into_owned()
}

#[test]
fn path_rules_match_the_normalised_path_and_cover_the_prefix_itself() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.github.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.github.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _) = proxy.register(
        vec![rules(vec![credential(
            "api.github.com",
            "authorization",
            "Bearer ghp_secret",
            "github",
        )])],
        NetworkPolicy {
            rules: vec![moat::proxy::HostRules {
                host: "api.github.com".into(),
                rules: vec!["deny * /admin/**".into()],
            }],
            ..NetworkPolicy::default()
        },
    );
    proxy.runtime.block_on(async {
        for path in [
            "/admin",
            "/admin/",
            "/admin/x",
            "//admin/x",
            "/./admin/x",
            "/x/../admin/x",
            "/%61dmin/x",
            "/%2e%2e/admin/x",
            "/admin;a/x",
            "/admin;a",
            "/admin/x?y=1",
            "/admin%2Fx",
            "/x%2F..%2Fadmin%2Fx",
        ] {
            for method in ["GET", "POST"] {
                let head = raw_h1(&proxy, &token, &format!("{method} {path} HTTP/1.1")).await;
                assert!(head.starts_with("HTTP/1.1 407"), "{method} {path}: {head}");
                assert!(
                    head.to_ascii_lowercase()
                        .contains("x-moat-blocked: request-rule"),
                    "{method} {path}: {head}"
                );
            }
        }
        assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
        // Neighbours of the denied prefix still pass, with the credential.
        for path in ["/administrator", "/x/admin/y", "/adminx/y"] {
            let head = raw_h1(&proxy, &token, &format!("GET {path} HTTP/1.1")).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        }
    });
    let seen = upstream.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| s.header("authorization") == Some("Bearer ghp_secret"))
    );
}

#[test]
fn refusals_before_the_pipeline_are_in_the_request_log_without_the_token() {
    let ca = TestCa::new();
    let upstream = FakeHttps::start_for(&ca, &["api.example.com"], |_: &Recorded| {
        Reply::text(200, "ok")
    });
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register(vec![], NetworkPolicy::default());
    let roots = roots_from_pem(&proxy.ca_pem);
    let wrong = "ghp_SomeonesRealToken0123456789";
    proxy.runtime.block_on(async {
        // A TLS server name other than the CONNECT host.
        let err = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            "api.example.com:443",
            "evil.example",
            client_tls(roots.clone(), &[b"http/1.1"]),
        )
        .await;
        assert!(err.is_err());
        // Not TLS at all.
        let (status, _, mut tcp) = connect_tunnel(
            proxy.addr(),
            Some(&basic_proxy_auth(token.as_str())),
            "api.example.com:443",
        )
        .await
        .unwrap();
        assert_eq!(status, 200);
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        // Another Host inside the tunnel: 421.
        let mut tls = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            "api.example.com:443",
            "api.example.com",
            client_tls(roots.clone(), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        tls.write_all(b"GET /x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.ok();
        assert!(response.starts_with("HTTP/1.1 421"), "{response}");
        // A wrong token: 407, and no run to log it in; it must not show anywhere.
        let (status, _, _) = connect_tunnel(
            proxy.addr(),
            Some(&basic_proxy_auth(wrong)),
            "api.example.com:443",
        )
        .await
        .unwrap();
        assert_eq!(status, 407);
    });
    let lines = read_log(&log, 3, Duration::from_secs(30));
    assert_eq!(lines.len(), 3, "{lines:?}");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l["error"].as_str().is_some_and(|e| e.contains(needle)))
            .unwrap_or_else(|| panic!("no line about {needle:?}: {lines:?}"))
    };
    let sni = find("does not match the CONNECT host");
    assert_eq!(sni["method"], "CONNECT");
    assert_eq!(sni["url"], "api.example.com:443");
    let not_tls = find("not a TLS handshake");
    assert_eq!(not_tls["method"], "CONNECT");
    let misdirected = find("another host");
    assert_eq!(misdirected["status_code"], 421);
    assert_eq!(misdirected["url"], "https://api.example.com/x");
    assert_eq!(misdirected["req_headers"]["host"], "evil.example");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(wrong) && !text.contains(token.as_str()),
        "{text}"
    );
    assert!(upstream.requests().is_empty());
}

#[test]
fn a_plain_http_host_mismatch_is_in_the_request_log_without_the_token() {
    let ca = TestCa::new();
    let upstream = StreamServer::start_plain();
    let proxy = InProcess::start(
        &ca,
        &format!("plain.example:80:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register(vec![], NetworkPolicy::default());
    let response = proxy.runtime.block_on(async {
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let request = format!(
            "GET http://plain.example/y?q=1 HTTP/1.1\r\nHost: evil.example\r\n\
             Proxy-Authorization: {}\r\nConnection: close\r\n\r\n",
            basic_proxy_auth(token.as_str())
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.ok();
        response
    });
    assert!(response.starts_with("HTTP/1.1 421"), "{response}");
    let lines = read_log(&log, 1, Duration::from_secs(30));
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["status_code"], 421);
    assert_eq!(line["url"], "http://plain.example/y?q=1");
    assert_eq!(line["req_headers"]["host"], "evil.example");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("names another host")),
        "{line}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(token.as_str()), "{text}");
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
}

#[test]
fn an_asterisk_form_target_is_refused_before_any_upstream_connection() {
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.github.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.github.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _) = proxy.register(
        vec![rules(vec![credential(
            "api.github.com",
            "authorization",
            "Bearer ghp_secret",
            "github",
        )])],
        NetworkPolicy::default(),
    );
    let roots = roots_from_pem(&proxy.ca_pem);
    proxy.runtime.block_on(async {
        // HTTP/1.1: `OPTIONS *`.
        let head = raw_h1(&proxy, &token, "OPTIONS * HTTP/1.1").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(head.contains("origin-form"), "moat's own refusal: {head}");

        // HTTP/2: a `:path` of `*`.
        let tls = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            "api.github.com:443",
            "api.github.com",
            client_tls(roots.clone(), &[b"h2"]),
        )
        .await
        .unwrap();
        let (mut sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        let uri = hyper::Uri::from_parts({
            let mut parts = hyper::http::uri::Parts::default();
            parts.scheme = Some(hyper::http::uri::Scheme::HTTPS);
            parts.authority = Some("api.github.com".parse().unwrap());
            parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("*"));
            parts
        })
        .unwrap();
        let request = hyper::Request::builder()
            .method("OPTIONS")
            .uri(uri)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 400);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(
            String::from_utf8_lossy(&body).contains("origin-form"),
            "moat's own refusal: {body:?}"
        );
        // The same connection still serves an origin-form request, with the credential.
        let request = hyper::Request::builder()
            .method("OPTIONS")
            .uri("https://api.github.com/x")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
    });
    let seen = upstream.seen();
    assert_eq!(
        seen.len(),
        1,
        "only the origin-form request went on: {seen:?}"
    );
    assert_eq!(seen[0].path, "/x");
    assert_eq!(seen[0].header("authorization"), Some("Bearer ghp_secret"));
}

/// Whether the proxy closed `tcp` (EOF or reset) within `wait`.
async fn closed_within(tcp: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A keep-alive proxy request on `tcp`; the status it gets.
async fn proxy_get(tcp: &mut tokio::net::TcpStream, auth: Option<&str>, url: &str) -> u16 {
    let host = url.split('/').nth(2).unwrap();
    let mut request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a response");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    // Read the rest of a small body, if any, so the next response starts clean.
    if let Some(len) = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-length:")
            .map(|v| v.trim().to_owned())
    }) {
        let len: usize = len.parse().unwrap();
        let have = head.len() - head.find("\r\n\r\n").unwrap() - 4;
        let mut rest = vec![0u8; len.saturating_sub(have)];
        tcp.read_exact(&mut rest).await.unwrap();
    }
    head[9..12].parse().unwrap()
}

#[test]
fn unauthenticated_connections_are_bounded_in_number_and_lifetime() {
    let upstream = StreamServer::start_plain();
    let ca = TestCa::new();
    let proxy = InProcess::start(
        &ca,
        "",
        ProxyConfig {
            max_unauthenticated: 4,
            auth_timeout: Duration::from_millis(800),
            ..ProxyConfig::default()
        },
    );
    let (token, _) = proxy.register(
        vec![],
        NetworkPolicy {
            host_ports: vec![upstream.port()],
            ..NetworkPolicy::default()
        },
    );
    let auth = basic_proxy_auth(token.as_str());
    let url = format!("http://127.0.0.1:{}/echo", upstream.port());
    proxy.runtime.block_on(async {
        // An authenticated keep-alive connection takes no unauthenticated slot.
        let mut authed = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(proxy_get(&mut authed, Some(&auth), &url).await, 200);

        let started = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..4 {
            let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
            // Each is served (a wrong-token 407 keeps it open) until the deadline.
            assert_eq!(
                proxy_get(&mut tcp, Some("Basic bW9hdDp3cm9uZw=="), &url).await,
                407
            );
            idle.push(tcp);
        }
        // One more than the bound: closed at once.
        for _ in 0..3 {
            let mut extra = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
            assert!(
                closed_within(&mut extra, Duration::from_millis(500)).await,
                "a connection beyond the bound stays open"
            );
        }
        // The held ones are closed at the deadline, not before...
        for tcp in &mut idle {
            let closed = closed_within(tcp, Duration::from_secs(5)).await;
            assert!(
                closed,
                "an unauthenticated connection outlived its deadline"
            );
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
        // ...which frees their slots: a new connection is served again.
        let mut again = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(proxy_get(&mut again, Some(&auth), &url).await, 200);

        // The authenticated connection outlives the deadline.
        assert_eq!(proxy_get(&mut authed, Some(&auth), &url).await, 200);
    });
    assert_eq!(upstream.seen().len(), 3);
}

/// A client builder through `proxy` for `token`, trusting the proxy's CA only.
fn client_builder(proxy: &InProcess, token: &RunToken) -> reqwest::blocking::ClientBuilder {
    reqwest::blocking::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://moat:{}@{}", token.as_str(), proxy.addr()))
                .unwrap(),
        )
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&proxy.ca_pem).unwrap()).unwrap(),
        )
}

/// A client through `proxy` for `token`, HTTP/1.1 only or offering HTTP/2 too.
fn client_speaking(
    proxy: &InProcess,
    token: &RunToken,
    h1_only: bool,
) -> reqwest::blocking::Client {
    let builder = client_builder(proxy, token).timeout(Duration::from_secs(20));
    let builder = if h1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder.build().unwrap()
}

#[test]
fn an_upstream_echoing_the_injected_credential_in_its_body_hands_none_over() {
    let real = "ghp_EchoedInTheBody0123456789abcdefXYZ";
    let value = format!("Bearer {real}");
    let ca = TestCa::new();
    for upstream_h2 in [true, false] {
        let upstream = if upstream_h2 {
            StreamServer::start(&ca, &["api.example.com"])
        } else {
            StreamServer::start_h1(&ca, &["api.example.com"])
        };
        let proxy = InProcess::start(
            &ca,
            &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
            ProxyConfig::default(),
        );
        let (token, log) = proxy.register_credential("api.example.com", &value);
        let mut requests = 0;
        for h1_only in [true, false] {
            let client = client_speaking(&proxy, &token, h1_only);
            // Whole with a length; then in frames that cut the token everywhere a 1-, 3- and
            // 7-byte split can (chunked on HTTP/1.1, DATA frames on HTTP/2).
            for split in [0, 1, 3, 7] {
                let what =
                    format!("upstream h2 {upstream_h2}, client h1 only {h1_only}, split {split}");
                let response = client
                    .get(format!("https://api.example.com/echo-auth?split={split}"))
                    .header("accept-encoding", "gzip, br")
                    .send()
                    .unwrap();
                requests += 1;
                assert_eq!(response.status(), 200, "{what}");
                let expected_version = if h1_only {
                    reqwest::Version::HTTP_11
                } else {
                    reqwest::Version::HTTP_2
                };
                assert_eq!(response.version(), expected_version, "{what}");
                let length = response.content_length();
                let text = response.text().unwrap();
                assert!(
                    !text
                        .to_ascii_lowercase()
                        .contains(&real.to_ascii_lowercase()),
                    "{what}: {text}"
                );
                // Masked byte for byte: the JSON is intact and as long as the upstream said.
                let echo: serde_json::Value = serde_json::from_str(&text).unwrap();
                let masked = "*".repeat(value.len());
                assert_eq!(echo["authorization"], masked, "{what}");
                assert_eq!(echo["shouted"], masked, "{what}");
                if split == 0 {
                    assert_eq!(length, Some(text.len() as u64), "{what}");
                }
            }
        }
        // The upstream did get the credential, and was asked for a body the proxy can read.
        let seen = upstream.seen();
        assert_eq!(seen.len(), requests);
        for request in &seen {
            assert_eq!(request.header("authorization"), Some(value.as_str()));
            assert_eq!(request.header("accept-encoding"), Some("identity"));
        }
        let lines = read_log(&log, requests, Duration::from_secs(30));
        let text = serde_json::to_string(&lines).unwrap();
        assert!(!text.contains(real), "{text}");
    }
}

#[test]
fn a_compressed_answer_on_a_credential_host_is_refused_and_other_hosts_are_untouched() {
    let real = "ghp_EchoedCompressed0123456789abcdef";
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.example.com", "cdn.example.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!(
            "api.example.com:443:127.0.0.1:{0},cdn.example.com:443:127.0.0.1:{0}",
            upstream.port()
        ),
        ProxyConfig::default(),
    );
    let (token, log) = proxy.register_credential("api.example.com", &format!("Bearer {real}"));
    for h1_only in [true, false] {
        let client = client_speaking(&proxy, &token, h1_only);
        for split in [0, 5] {
            // The upstream ignores moat's `identity` and labels the echo gzip: it could be
            // anything, so it is not passed on.
            let response = client
                .get(format!(
                    "https://api.example.com/echo-auth?split={split}&encoding=gzip"
                ))
                .send()
                .unwrap();
            assert_eq!(response.status(), 502);
            let text = response.text().unwrap();
            assert!(!text.contains(real), "{text}");
            assert!(text.contains("compressed"), "{text}");
        }
    }
    // A host without credentials keeps the client's encodings, and its answers pass as sent.
    let client = client_speaking(&proxy, &token, true);
    let response = client
        .get("https://cdn.example.com/echo-auth?encoding=gzip&via=cdn")
        .header("accept-encoding", "gzip")
        .header("authorization", "Bearer not-a-moat-credential")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert!(
        response
            .text()
            .unwrap()
            .contains("Bearer not-a-moat-credential")
    );
    let cdn = upstream
        .seen()
        .into_iter()
        .find(|s| s.path.ends_with("via=cdn"))
        .unwrap();
    assert_eq!(cdn.header("accept-encoding"), Some("gzip"));
    let lines = read_log(&log, 5, Duration::from_secs(30));
    let text = serde_json::to_string(&lines).unwrap();
    assert!(!text.contains(real), "{text}");
}

#[test]
fn a_websocket_on_a_credential_host_has_the_credential_masked_in_its_frames() {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let real = "ghp_EchoedOverWebSocket0123456789";
    let value = format!("Bearer {real}");
    let ca = TestCa::new();
    let upstream = StreamServer::start(&ca, &["api.example.com"]);
    let proxy = InProcess::start(
        &ca,
        &format!("api.example.com:443:127.0.0.1:{}", upstream.port()),
        ProxyConfig::default(),
    );
    let (token, _log) = proxy.register_credential("api.example.com", &value);
    let roots = roots_from_pem(&proxy.ca_pem);
    proxy.runtime.block_on(async {
        let tls = tls_through_proxy(
            proxy.addr(),
            token.as_str(),
            "api.example.com:443",
            "api.example.com",
            client_tls(roots, &[b"http/1.1"]),
        )
        .await
        .unwrap();
        let mut request = "wss://api.example.com/ws?greet=auth"
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-extensions",
            "permessage-deflate".parse().unwrap(),
        );
        let (mut ws, response) = tokio_tungstenite::client_async(request, tls)
            .await
            .expect("the upgrade goes through");
        assert_eq!(response.status(), 101);
        let greeting = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            greeting,
            Message::text(format!("you sent: {}", "*".repeat(value.len())))
        );
        // The echo still works, byte for byte, text and binary.
        for message in [
            Message::text("hello"),
            Message::binary(vec![0u8, 1, 2, 255]),
        ] {
            ws.send(message.clone()).await.unwrap();
            let echoed = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(echoed, message);
        }
        ws.close(None).await.unwrap();
    });
    let seen = upstream.seen();
    assert_eq!(seen[0].header("authorization"), Some(value.as_str()));
    assert_eq!(
        seen[0].header("sec-websocket-extensions"),
        None,
        "no extension the proxy could not read is offered"
    );

    // Any other protocol is refused before it reaches the upstream.
    let response = client_speaking(&proxy, &token, true)
        .get("https://api.example.com/raw")
        .header("connection", "upgrade")
        .header("upgrade", "tcp")
        .send()
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(upstream.seen().len(), 1);
}
