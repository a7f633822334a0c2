//! `moat trace` reads what the real proxy writes: a run directory made with moat's run storage,
//! the in-process proxy logging that run's requests into its `network.jsonl`, then the library
//! reader and the CLI reading it back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moat::home::MoatHome;
use moat::proxy::{
    CertificateAuthority, NetworkPolicy, PolicyMode, Proxy, ProxyConfig, ResolveOverrides,
    RunRegistry, RunSpec, UpstreamConfig,
};
use moat::run::{RunId, RunMetadata, RunStore, network};
use moat_plugin_sdk::{ProxyRule, ProxyRules, Secret};
use moat_tests::{FakeHttps, MoatEnv, Reply};
use predicates::prelude::*;

#[test]
fn trace_reads_the_request_log_the_proxy_writes() {
    let env = MoatEnv::new();
    let store = RunStore::new(&MoatHome::at(env.home()));
    let meta = RunMetadata::new(RunId::generate(), "traced", env.work_dir());
    let paths = store.create(&meta).unwrap();

    let real = "ghp_RealTraceToken0123456789abcdef";
    let upstream = FakeHttps::start_for(env.ca(), &["api.example.com"], |_| {
        Reply::json(200, serde_json::json!({"login": "octocat"}))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create_in(&ca_dir.path().join("ca")).unwrap());
    let upstream_config = UpstreamConfig {
        native_roots: false,
        extra_ca_file: Some(env.ca_pem().to_path_buf()),
        resolve: ResolveOverrides::parse(&format!(
            "api.example.com:443:127.0.0.1:{}",
            upstream.port()
        ))
        .unwrap(),
        ..UpstreamConfig::default()
    };
    let runs = Arc::new(RunRegistry::new());
    let proxy = Proxy::new(
        Arc::clone(&ca),
        Arc::clone(&runs),
        &upstream_config,
        ProxyConfig::default(),
    )
    .unwrap();
    let handle = runtime
        .block_on(proxy.listen("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let mut rules = ProxyRules::new();
    rules.rules = vec![ProxyRule::Credential {
        host: "api.example.com".into(),
        header: "Authorization".into(),
        value: Secret::new(format!("Bearer {real}")),
        grant: "example".into(),
    }];
    let token = runs
        .register(RunSpec {
            id: meta.id.to_string(),
            grants: vec![rules],
            policy: NetworkPolicy {
                policy: PolicyMode::Strict,
                ..NetworkPolicy::default()
            },
            log: Some(paths.network.clone()),
            blocked: None,
            endpoints: Vec::new(),
        })
        .unwrap();
    let client = reqwest::blocking::Client::builder()
        .proxy(
            reqwest::Proxy::all(format!("http://moat:{}@{}", token.as_str(), handle.addr()))
                .unwrap(),
        )
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(ca.cert_path()).unwrap()).unwrap(),
        )
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let response = client.get("https://api.example.com/user").send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(client.get("https://blocked.example/x").send().is_err());

    // The proxy writes its log from a thread within 20 ms of each request's end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = network::read(&paths.network).unwrap();
        if log.records.len() >= 2 || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    runtime.block_on(handle.shutdown());
    assert_eq!(log.skipped, 0);
    // Written as each ends: the refusal may come first.
    let (Some(ok), Some(refused), 2) = (
        log.records.iter().find(|r| r.method == "GET"),
        log.records.iter().find(|r| r.method == "CONNECT"),
        log.records.len(),
    ) else {
        panic!("{log:?}")
    };
    assert_eq!(
        (ok.method.as_str(), ok.url.as_str(), ok.status_code),
        ("GET", "https://api.example.com/user", 200)
    );
    assert_eq!(ok.req_headers["authorization"], "[REDACTED]");
    assert_eq!(ok.grants, ["example"]);
    assert!(ok.resp_body.as_deref().unwrap().contains("octocat"));
    assert_eq!(refused.status_code, 407);
    assert!(refused.url.contains("blocked.example"), "{refused:?}");
    let text = std::fs::read_to_string(&paths.network).unwrap();
    assert!(!text.contains(real), "{text}");

    env.cmd()
        .args(["trace", "traced", "--network", "-v"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(r"\] GET https://api\.example\.com/user 200 \(\d").unwrap(),
        )
        .stdout(predicate::str::contains("    > authorization: [REDACTED]"))
        .stdout(predicate::str::contains(
            "    response body: {\"login\":\"octocat\"}",
        ))
        .stdout(predicate::str::is_match(r"\] CONNECT \S*blocked\.example\S* 407").unwrap())
        .stdout(predicate::str::contains(real).not());
}
