//! The proxy benchmark: `cargo bench -p moat-tests --bench proxy`.
//!
//! Everything runs on this machine, in one run, against the same local HTTPS upstream:
//!
//! 1. requests per second with 64 concurrent keep-alive HTTP/1.1 connections, direct to the
//!    upstream and through moat's proxy (which injects a credential and writes the request log);
//! 2. p50 latency of sequential requests on one connection, direct and through the proxy;
//! 3. a new host's first handshake through the proxy (CONNECT, leaf minting, TLS) against a host
//!    whose leaf is cached;
//! 4. the proxy's resident memory with 1,000 open intercepted connections;
//! 5. the same load through mitmproxy (`mitmdump` with a header injection), if `MITMDUMP` names
//!    it or it is on `PATH`.
//!
//! The proxy runs in a child process (this same executable, `--serve-proxy`), built from the same
//! library code as `moat proxy`, so its memory can be measured on its own. Environment knobs:
//! `BENCH_SECONDS` (default 5), `MITMDUMP` (path to mitmdump), `BENCH_BODY_BYTES` (the upstream's
//! answer size; default a 70-byte JSON object).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HOST;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat::proxy::{
    CertificateAuthority, NetworkPolicy, Proxy, ProxyConfig, ResolveOverrides, RunRegistry,
    RunSpec, UpstreamConfig,
};
use moat_plugin_sdk::{ProxyRule, ProxyRules, Secret};
use moat_tests::{
    TestCa, basic_proxy_auth, client_tls, connect_tunnel, proc_status_kib, roots_from_pem,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONCURRENCY: usize = 64;
const OPEN_CONNECTIONS: usize = 1000;
const NEW_HOSTS: usize = 200;
const SEQUENTIAL_REQUESTS: usize = 2000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve-proxy") {
        serve_proxy_child();
        return;
    }
    #[cfg(unix)]
    let _ = moat::proxy::raise_open_file_limit();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);

    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_pem = ca.write_pem(work.path().join("upstream-ca"));
    let upstream = Upstream::start(&ca);
    let target = format!("127.0.0.1:{}", upstream.addr.port());

    let proxy = ProxyChild::start(&ca_pem, work.path(), upstream.addr);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let direct_tls = client_tls(ca.root_store(), &[b"http/1.1"]);
    let moat_tls = client_tls(roots_from_pem(&proxy.ca), &[b"http/1.1"]);
    let direct = Route::Direct {
        addr: upstream.addr,
        tls: Arc::clone(&direct_tls),
    };
    let through_moat = Route::Proxy {
        proxy: proxy.addr,
        auth: Some(basic_proxy_auth(&proxy.token)),
        authority: target.clone(),
        tls: Arc::clone(&moat_tls),
    };

    println!(
        "moat proxy benchmark ({seconds} s per load run, {CONCURRENCY} keep-alive HTTP/1.1 connections)"
    );
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();

    runtime.block_on(async {
        // Warm up both paths (TLS session caches, upstream pool, allocator).
        load(&direct, &target, Duration::from_secs(1)).await;
        load(&through_moat, &target, Duration::from_secs(1)).await;

        let (self_before, proxy_before) = (cpu_seconds(None), cpu_seconds(Some(proxy.pid())));
        let direct_load = load(&direct, &target, duration).await;
        let (self_mid, proxy_mid) = (cpu_seconds(None), cpu_seconds(Some(proxy.pid())));
        let moat_load = load(&through_moat, &target, duration).await;
        let (self_after, proxy_after) = (cpu_seconds(None), cpu_seconds(Some(proxy.pid())));
        let direct_requests = direct_load.rps * direct_load.seconds;
        let moat_requests = moat_load.rps * moat_load.seconds;
        let per_request = |cpu: f64, requests: f64| cpu / requests * 1e6;
        let direct_seq = sequential(&direct, &target).await;
        let moat_seq = sequential(&through_moat, &target).await;

        println!("## Throughput and latency");
        println!("| path | req/s (64 conns) | p50 under load | p99 under load | p50 sequential |");
        println!("| --- | --- | --- | --- | --- |");
        for (name, l, s) in [
            ("direct", &direct_load, &direct_seq),
            ("through moat (inject + log)", &moat_load, &moat_seq),
        ] {
            println!(
                "| {name} | {:.0} | {} | {} | {} |",
                l.rps,
                ms(l.p50),
                ms(l.p99),
                ms(s.p50)
            );
        }
        println!();
        println!(
            "rps ratio moat/direct: {:.2} (target >= 0.5)",
            moat_load.rps / direct_load.rps
        );
        println!(
            "CPU per request: client + upstream {:.1} us direct, {:.1} us proxied; the proxy {:.1} us \
             (proxy idle during the direct run: {:.1} us)",
            per_request(self_mid - self_before, direct_requests),
            per_request(self_after - self_mid, moat_requests),
            per_request(proxy_after - proxy_mid, moat_requests),
            per_request(proxy_mid - proxy_before, direct_requests),
        );
        println!(
            "added p50 latency (sequential): {} (target < 0.5 ms)",
            ms(moat_seq.p50.saturating_sub(direct_seq.p50))
        );
        println!();

        if std::env::var("BENCH_ONLY_LOAD").as_deref() == Ok("1") {
            return;
        }

        // New hosts: every CONNECT names a host the proxy has never seen.
        let mut fresh = Vec::new();
        for i in 0..NEW_HOSTS {
            let host = format!("h{i}.bench.example");
            fresh.push(handshake(&proxy, &host, &moat_tls).await);
        }
        let mut cached = Vec::new();
        for _ in 0..NEW_HOSTS {
            cached.push(handshake(&proxy, "h0.bench.example", &moat_tls).await);
        }
        let fresh = percentiles(fresh);
        let cached = percentiles(cached);
        println!("## Handshake through the proxy (CONNECT + TLS), {NEW_HOSTS} each");
        println!("| host | p50 | p99 |");
        println!("| --- | --- | --- |");
        println!("| new (leaf minted) | {} | {} |", ms(fresh.0), ms(fresh.1));
        println!("| cached leaf | {} | {} |", ms(cached.0), ms(cached.1));
        println!(
            "first-handshake p50: {} (target < 5 ms); minting adds ~{}",
            ms(fresh.0),
            ms(fresh.0.saturating_sub(cached.0))
        );
        println!();

        // Memory with many open connections.
        let idle = proxy.rss_kib();
        let mut open = Vec::new();
        let mut opening = Vec::new();
        for _ in 0..OPEN_CONNECTIONS {
            opening.push(tokio::spawn({
                let route = through_moat.clone();
                let target = target.clone();
                async move {
                    let mut sender = route.connect().await;
                    request(&mut sender, &target).await;
                    sender
                }
            }));
            if opening.len() == CONCURRENCY {
                for task in opening.drain(..) {
                    open.push(task.await.unwrap());
                }
            }
        }
        for task in opening.drain(..) {
            open.push(task.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let loaded = proxy.rss_kib();
        let peak = proxy.peak_rss_kib();
        println!("## Proxy memory");
        println!("| state | RSS |");
        println!("| --- | --- |");
        println!(
            "| idle (after the runs above) | {:.1} MiB |",
            idle as f64 / 1024.0
        );
        println!(
            "| {OPEN_CONNECTIONS} open intercepted connections | {:.1} MiB |",
            loaded as f64 / 1024.0
        );
        println!(
            "| peak over the whole benchmark | {:.1} MiB |",
            peak as f64 / 1024.0
        );
        println!(
            "per connection: ~{:.1} KiB (target: under 64 MiB in total)",
            (loaded.saturating_sub(idle)) as f64 / OPEN_CONNECTIONS as f64
        );
        println!();
        drop(open);

        // mitmproxy on the same load, if available.
        match mitmdump() {
            Some(path) => match Mitm::start(&path, &ca_pem, work.path()) {
                Some(mitm) => {
                    let mitm_tls = client_tls(roots_from_pem(&mitm.ca), &[b"http/1.1"]);
                    let through_mitm = Route::Proxy {
                        proxy: mitm.addr,
                        auth: None,
                        authority: target.clone(),
                        tls: mitm_tls,
                    };
                    load(&through_mitm, &target, Duration::from_secs(1)).await;
                    let mitm_load = load(&through_mitm, &target, duration).await;
                    let mitm_seq = sequential(&through_mitm, &target).await;
                    println!(
                        "## mitmproxy ({}) on the same load (header injection via modify_headers)",
                        mitm.version
                    );
                    println!("| path | req/s (64 conns) | p50 under load | p50 sequential |");
                    println!("| --- | --- | --- | --- |");
                    println!(
                        "| mitmdump | {:.0} | {} | {} |",
                        mitm_load.rps,
                        ms(mitm_load.p50),
                        ms(mitm_seq.p50)
                    );
                    println!(
                        "moat/mitmproxy rps: {:.1}x; mitmproxy/direct rps: {:.2}",
                        moat_load.rps / mitm_load.rps,
                        mitm_load.rps / direct_load.rps
                    );
                }
                None => println!("mitmproxy: found at {path} but it did not start"),
            },
            None => {
                println!("mitmproxy: not installed (set MITMDUMP=/path/to/mitmdump to compare)")
            }
        }
    });
}

/// User + system CPU seconds of a process (`None`: this one), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    #[expect(unsafe_code, reason = "sysconf(3): the clock tick rate")]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz.max(1.0)
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// p50 and p99.
fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    if samples.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

/// How to reach the upstream.
#[derive(Clone)]
enum Route {
    Direct {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
    Proxy {
        proxy: SocketAddr,
        auth: Option<String>,
        authority: String,
        tls: Arc<rustls::ClientConfig>,
    },
}

impl Route {
    /// A fresh keep-alive HTTP/1.1 connection.
    async fn connect(&self) -> SendRequest<Empty<Bytes>> {
        let tls = match self {
            Route::Direct { addr, tls } => {
                let tcp = TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                TlsConnector::from(Arc::clone(tls))
                    .connect("127.0.0.1".try_into().unwrap(), tcp)
                    .await
                    .unwrap()
            }
            Route::Proxy {
                proxy,
                auth,
                authority,
                tls,
            } => {
                let (status, head, tcp) = connect_tunnel(*proxy, auth.as_deref(), authority)
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{head}");
                tcp.set_nodelay(true).unwrap();
                let host = authority.rsplit_once(':').unwrap().0.to_owned();
                TlsConnector::from(Arc::clone(tls))
                    .connect(host.try_into().unwrap(), tcp)
                    .await
                    .unwrap()
            }
        };
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        sender
    }
}

async fn request(sender: &mut SendRequest<Empty<Bytes>>, authority: &str) {
    sender.ready().await.unwrap();
    let request = Request::get("/bench")
        .header(HOST, authority)
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

struct Load {
    rps: f64,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(route: &Route, authority: &str, duration: Duration) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..CONCURRENCY {
        senders.push(route.connect().await);
    }
    let started = Instant::now();
    for mut sender in senders {
        let stop = Arc::clone(&stop);
        let count = Arc::clone(&count);
        let authority = authority.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(16 * 1024);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                request(&mut sender, &authority).await;
                latencies.push(t.elapsed());
                count.fetch_add(1, Ordering::Relaxed);
            }
            latencies
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(latencies);
    Load {
        seconds: elapsed,
        rps: count.load(Ordering::Relaxed) as f64 / elapsed,
        p50,
        p99,
    }
}

struct Sequential {
    p50: Duration,
}

async fn sequential(route: &Route, authority: &str) -> Sequential {
    let mut sender = route.connect().await;
    for _ in 0..100 {
        request(&mut sender, authority).await;
    }
    let mut latencies = Vec::with_capacity(SEQUENTIAL_REQUESTS);
    for _ in 0..SEQUENTIAL_REQUESTS {
        let t = Instant::now();
        request(&mut sender, authority).await;
        latencies.push(t.elapsed());
    }
    Sequential {
        p50: percentiles(latencies).0,
    }
}

/// CONNECT + TLS handshake to `host` through the proxy (no request: the upstream is not needed).
async fn handshake(proxy: &ProxyChild, host: &str, tls: &Arc<rustls::ClientConfig>) -> Duration {
    let started = Instant::now();
    let (status, head, tcp) = connect_tunnel(
        proxy.addr,
        Some(&basic_proxy_auth(&proxy.token)),
        &format!("{host}:443"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{head}");
    tcp.set_nodelay(true).unwrap();
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(host.to_owned().try_into().unwrap(), tcp)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    drop(stream);
    elapsed
}

/// What the upstream answers: a 70-byte JSON object, or with `BENCH_BODY_BYTES=N` that object
/// repeated to `N` bytes (what every byte of a body costs the proxy: the credential mask reads
/// them all).
fn answer() -> Bytes {
    const JSON: &[u8] = br#"{"login":"octocat","id":1,"node_id":"MDQ6VXNlcjE=","type":"User"}"#;
    match std::env::var("BENCH_BODY_BYTES")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
    {
        Some(n) => Bytes::from(JSON.iter().copied().cycle().take(n).collect::<Vec<u8>>()),
        None => Bytes::from_static(JSON),
    }
}

/// The local HTTPS upstream: HTTP/1.1 and HTTP/2, the same answer ([`answer`]) to everything.
struct Upstream {
    addr: SocketAddr,
}

impl Upstream {
    fn start(ca: &TestCa) -> Upstream {
        let issued = ca.issue(&["127.0.0.1", "localhost"]);
        let mut config = rustls::ServerConfig::builder_with_provider(moat_tests::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![issued.cert_der()], issued.key_der())
            .unwrap();
        config.alpn_protocols = if std::env::var("BENCH_UPSTREAM_H2").as_deref() == Ok("0") {
            vec![b"http/1.1".to_vec()]
        } else {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let body = answer();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let body = body.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                        let service = hyper::service::service_fn(move |_request| {
                            let body = body.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(Response::new(Full::new(body)))
                            }
                        });
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                        let builder = if h2 {
                            builder.http2_only()
                        } else {
                            builder.http1_only()
                        };
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    });
                }
            });
        });
        Upstream { addr }
    }
}

/// The proxy in a child process of its own.
struct ProxyChild {
    child: Child,
    addr: SocketAddr,
    token: String,
    ca: std::path::PathBuf,
}

impl ProxyChild {
    fn start(
        upstream_ca: &std::path::Path,
        dir: &std::path::Path,
        upstream: SocketAddr,
    ) -> ProxyChild {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve-proxy")
            .env("BENCH_UPSTREAM_CA", upstream_ca)
            .env("BENCH_DIR", dir)
            .env("BENCH_UPSTREAM_PORT", upstream.port().to_string())
            .env(
                "BENCH_RESOLVE",
                format!("upstream.bench.example:443:{upstream}"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let info: serde_json::Value = serde_json::from_str(&line).unwrap();
        ProxyChild {
            child,
            addr: info["addr"].as_str().unwrap().parse().unwrap(),
            token: info["token"].as_str().unwrap().to_owned(),
            ca: info["ca"].as_str().unwrap().into(),
        }
    }

    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS")
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM")
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child mode: a proxy with one run (a credential for 127.0.0.1 and the bench hosts, a request
/// log), until stdin closes.
fn serve_proxy_child() {
    #[cfg(unix)]
    let _ = moat::proxy::raise_open_file_limit();
    let dir = std::path::PathBuf::from(std::env::var("BENCH_DIR").unwrap());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = std::env::var("BENCH_PROXY_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
    {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build().unwrap();
    runtime.block_on(async {
        let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.join("moat-ca")).unwrap());
        let ca_path = ca.cert_path();
        let upstream = UpstreamConfig {
            native_roots: false,
            extra_ca_file: Some(std::env::var("BENCH_UPSTREAM_CA").unwrap().into()),
            resolve: ResolveOverrides::parse(&std::env::var("BENCH_RESOLVE").unwrap()).unwrap(),
            ..UpstreamConfig::default()
        };
        let runs = Arc::new(RunRegistry::new());
        let mut rules = ProxyRules::new();
        for host in ["127.0.0.1", "*.bench.example"] {
            rules.rules.push(ProxyRule::Credential {
                host: host.into(),
                header: "Authorization".into(),
                value: Secret::new("Bearer ghp_benchmarkToken0000000000000000000000"),
                grant: "bench".into(),
            });
        }
        let token = runs
            .register(RunSpec {
                id: "bench".into(),
                grants: vec![rules],
                policy: NetworkPolicy {
                    host_ports: vec![
                        std::env::var("BENCH_UPSTREAM_PORT")
                            .unwrap()
                            .parse()
                            .unwrap(),
                    ],
                    ..NetworkPolicy::default()
                },
                log: (std::env::var("BENCH_LOG").as_deref() != Ok("0"))
                    .then(|| dir.join("network.jsonl")),
                ..RunSpec::default()
            })
            .unwrap();
        let handle = Proxy::new(ca, runs, &upstream, ProxyConfig::default())
            .unwrap()
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let line = serde_json::json!({
            "addr": handle.addr().to_string(),
            "token": token.as_str(),
            "ca": ca_path,
        });
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
        // Until the parent goes away.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            let _ = std::io::stdin().read_line(&mut sink);
        })
        .await
        .unwrap();
    });
}

fn mitmdump() -> Option<String> {
    if let Ok(path) = std::env::var("MITMDUMP") {
        return Some(path);
    }
    let output = Command::new("sh")
        .args(["-c", "command -v mitmdump"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!path.is_empty()).then_some(path)
}

struct Mitm {
    child: Child,
    addr: SocketAddr,
    ca: std::path::PathBuf,
    version: String,
}

impl Mitm {
    fn start(path: &str, upstream_ca: &std::path::Path, dir: &std::path::Path) -> Option<Mitm> {
        let confdir = dir.join("mitmproxy");
        std::fs::create_dir_all(&confdir).ok()?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            l.local_addr().ok()?.port()
        };
        let version = Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(|l| l.trim().to_owned())
            })
            .unwrap_or_default();
        let child = Command::new(path)
            .args([
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                &port.to_string(),
            ])
            .args(["--set", &format!("confdir={}", confdir.display())])
            .args([
                "--set",
                &format!("ssl_verify_upstream_trusted_ca={}", upstream_ca.display()),
            ])
            .args([
                "--set",
                "modify_headers=/~q/Authorization/Bearer ghp_benchmarkToken0000000000000000000000",
            ])
            .args(["--set", "flow_detail=0", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let ca = confdir.join("mitmproxy-ca-cert.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if ca.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(Mitm {
                    child,
                    addr: SocketAddr::from(([127, 0, 0, 1], port)),
                    ca,
                    version,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut child = child;
        let _ = child.kill();
        None
    }
}

impl Drop for Mitm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
