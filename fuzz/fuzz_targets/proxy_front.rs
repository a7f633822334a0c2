//! The proxy's front: the bytes a container sends on the proxy port, before and after `CONNECT`.
//!
//! One in-memory connection per input, served by the same code as an accepted TCP connection
//! (`Proxy::into_stream_server`). The first byte picks how the rest is sent:
//!
//! - bit 0 clear: as it is, on the proxy port (request heads, absolute-URI requests, `CONNECT`s);
//!   every `{auth}` in it becomes a valid `Basic` proxy credential, so the authenticated paths
//!   are reached too;
//! - bit 0 set, bit 1 clear: after a valid `CONNECT fuzz.test:443` and its `200`: what the proxy
//!   peeks at as a TLS ClientHello;
//! - bits 0 and 1 set: inside a real TLS session with the proxy's leaf for `fuzz.test` (ALPN `h2`
//!   when bit 2 is set, else `http/1.1`): the requests a client sends in a tunnel.
//!
//! The run has a credential rule, a network policy (strict, `fuzz.test` only, with path rules)
//! and a request log, so injection, policy and logging all run. The only upstream it may reach
//! is `fuzz.test`, resolved to a closed loopback port: nothing leaves the machine.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use moat::proxy::{
    CertificateAuthority, HostRules, NetworkPolicy, PolicyMode, Proxy, ProxyConfig,
    ResolveOverrides, RunRegistry, RunSpec, StreamServer, UpstreamConfig,
};
use moat_plugin_sdk::{ProxyRule, ProxyRules, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;

struct State {
    runtime: tokio::runtime::Runtime,
    server: StreamServer,
    auth: String,
    tls: Arc<rustls::ClientConfig>,
    log: std::path::PathBuf,
    runs: AtomicU64,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("moat-fuzz-proxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.join("ca")).expect("a CA"));
        let runs = Arc::new(RunRegistry::new());
        let grant = ProxyRules::new().with(ProxyRule::Credential {
            host: "fuzz.test".into(),
            header: "Authorization".into(),
            value: Secret::new("Bearer ghp_fuzzsecret0123456789"),
            grant: "fuzz".into(),
        });
        let log = dir.join("network.jsonl");
        let token = runs
            .register(RunSpec {
                id: "fuzz".into(),
                grants: vec![grant],
                policy: NetworkPolicy {
                    policy: PolicyMode::Strict,
                    allow: vec!["fuzz.test".into()],
                    rules: vec![HostRules {
                        host: "fuzz.test".into(),
                        rules: vec!["deny DELETE /admin/**".into(), "allow * /**".into()],
                    }],
                    host_ports: Vec::new(),
                },
                log: Some(log.clone()),
                blocked: None,
                endpoints: Vec::new(),
            })
            .expect("register the fuzz run");
        let upstream = UpstreamConfig {
            native_roots: false,
            extra_ca_file: None,
            resolve: ResolveOverrides::parse("fuzz.test:443:127.0.0.1:1,fuzz.test:80:127.0.0.1:1")
                .expect("overrides"),
            connect_timeout: Duration::from_secs(1),
            tls_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
        };
        let config = ProxyConfig {
            handshake_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(2),
            auth_timeout: Duration::from_secs(5),
            ..ProxyConfig::default()
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der().clone()).expect("the CA as a root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = Proxy::new(ca, runs, &upstream, config)
            .expect("a proxy")
            .into_stream_server();
        let credentials = format!("moat:{}", token.as_str());
        State {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            server,
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
            tls: Arc::new(tls),
            log,
            runs: AtomicU64::new(0),
        }
    })
}

/// `data` with every `{auth}` replaced by the valid proxy credential.
fn with_auth(data: &[u8], auth: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(6).position(|w| w == b"{auth}") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(auth.as_bytes());
        rest = &rest[at + 6..];
    }
    out.extend_from_slice(rest);
    out
}

/// Reads a response head, byte by byte so nothing after it is consumed; `None` at EOF.
async fn read_head(stream: &mut DuplexStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.ok()?;
        head.push(byte);
    }
    Some(head)
}

async fn client(state: &State, mode: u8, body: &[u8], mut stream: DuplexStream) {
    let mut sink = Vec::new();
    if mode & 1 == 0 {
        let _ = stream.write_all(&with_auth(body, &state.auth)).await;
        let _ = stream.shutdown().await;
        let _ = stream.read_to_end(&mut sink).await;
        return;
    }
    let connect = format!(
        "CONNECT fuzz.test:443 HTTP/1.1\r\nHost: fuzz.test:443\r\nProxy-Authorization: {}\r\n\r\n",
        state.auth
    );
    stream.write_all(connect.as_bytes()).await.expect("the proxy reads CONNECT");
    let head = read_head(&mut stream).await.expect("the proxy answers CONNECT");
    assert!(head.starts_with(b"HTTP/1.1 200"), "CONNECT to the allowed host is accepted");
    if mode & 2 == 0 {
        let _ = stream.write_all(body).await;
        let _ = stream.shutdown().await;
        let _ = stream.read_to_end(&mut sink).await;
        return;
    }
    let mut config = (*state.tls).clone();
    config.alpn_protocols = if mode & 4 == 0 {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec()]
    };
    let name = rustls::pki_types::ServerName::try_from("fuzz.test").expect("a name");
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .expect("the proxy completes a TLS handshake for the CONNECT host");
    let _ = tls.write_all(body).await;
    let _ = tls.shutdown().await;
    let _ = tls.read_to_end(&mut sink).await;
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let state = state();
    state.runtime.block_on(async {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let served = async {
            state.server.serve(theirs).await;
        };
        tokio::time::timeout(Duration::from_secs(30), async {
            tokio::join!(served, client(state, mode, body, ours))
        })
        .await
        .expect("a connection is over within 30 s of its client's last byte");
    });
    // Keep the request log small over millions of runs.
    if state.runs.fetch_add(1, Ordering::Relaxed).is_multiple_of(4096) {
        if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&state.log) {
            let _ = file.set_len(0);
        }
    }
});
