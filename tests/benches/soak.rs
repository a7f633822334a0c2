//! The proxy under load and over time: `cargo bench -p moat-tests --bench soak` (figures in
//! RELIABILITY.md). Loopback only, bounded loops.
//!
//! The proxy runs in a child process (this executable, `--serve-proxy`) with one run: a
//! credential rule for the upstream's host, the request log on. A local HTTPS upstream answers
//! `200` only when the request carries the injected credential (`401` otherwise, which counts as a
//! failure). Each round:
//!
//! 1. opens `SOAK_CONNECTIONS` (default 1,000) intercepted connections at once (CONNECT, TLS with
//!    the proxy's leaf, HTTP/1.1 keep-alive) and keeps them all open;
//! 2. sends `SOAK_REQUESTS` (default 100,000) requests over them, all connections concurrently;
//! 3. closes every connection, waits (up to 10 s) for the proxy to give back its descriptors,
//!    then for it to give freed memory back to the system (`proxy::RECLAIM_DELAY`).
//!
//! Checked: no failed request (an error, or any status but `200`); after each round, the proxy's
//! open descriptors (`/proc/<pid>/fd`) back to their idle count, its RSS within 8 MiB of its idle
//! level, and the bytes its allocator counts as allocated (glibc's `mallinfo2`, asked over the
//! child's stdin) not growing from round to round (a leak, where RSS alone cannot tell a leak from
//! pages the allocator kept); the request log holds one line per request and never the credential.
//! `SOAK_ROUNDS` (default 3) repeats the round. Prints the figures; exits 1 on any failed check.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use moat::proxy::{
    CertificateAuthority, NetworkPolicy, Proxy, ProxyConfig, RECLAIM_DELAY, ResolveOverrides,
    RunRegistry, RunSpec, UpstreamConfig,
};
use moat_plugin_sdk::{ProxyRule, ProxyRules, Secret};
use moat_tests::{
    TestCa, basic_proxy_auth, client_tls, connect_tunnel, proc_status_kib, roots_from_pem,
};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

const HOST_NAME: &str = "api.soak.example";
const CREDENTIAL: &str = "Bearer ghp_soakTestToken00000000000000000000000";

/// How far above idle the proxy's RSS may be once it has given freed memory back (it keeps the
/// tables sized for the peak's concurrency, and the allocator some slack).
const RSS_MARGIN_KIB: u64 = 8 * 1024;
/// How much more may be allocated after each round than after the first: 128 bytes for each of
/// the default round's 1,000 connections, less than any connection's state (its TLS session alone
/// is kilobytes), so a leak of one per connection fails.
const LEAK_MARGIN_KIB_PER_ROUND: u64 = 128;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--serve-proxy") {
        serve_proxy_child();
        return;
    }
    std::process::exit(soak());
}

fn soak() -> i32 {
    #[cfg(unix)]
    let limit = moat::proxy::raise_open_file_limit().unwrap_or(0);
    let connections = env_or("SOAK_CONNECTIONS", 1000) as usize;
    let requests = env_or("SOAK_REQUESTS", 100_000);
    let rounds = env_or("SOAK_ROUNDS", 3);
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_pem = ca.write_pem(work.path().join("upstream-ca"));
    let upstream = start_upstream(&ca);
    let mut proxy = ProxyChild::start(&ca_pem, work.path(), upstream);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tls = client_tls(roots_from_pem(&proxy.ca), &[b"http/1.1"]);
    let mut failures = Vec::new();
    println!(
        "proxy soak: {rounds} rounds of {connections} concurrent intercepted connections and {requests} requests (open-file limit {limit})"
    );

    // Warm up (the leaf minted, threads and buffers allocated), then take the idle level.
    let warm = runtime.block_on(round(&proxy, &tls, 50, 500));
    let (fds_idle, rss_idle) = settle(&proxy, None);
    let heap_idle = proxy.heap();
    println!(
        "  idle after a warm-up of {} requests: {fds_idle} descriptors, RSS {rss_idle} KiB, allocated {} KiB",
        warm.ok, heap_idle.allocated_kib
    );
    let mut allocated_after_first = None;
    let mut total = warm.ok + warm.failed;
    for n in 1..=rounds {
        let report = runtime.block_on(round(&proxy, &tls, connections, requests));
        total += report.ok + report.failed;
        let (fds, rss) = settle(&proxy, Some(fds_idle));
        let heap = proxy.heap();
        println!(
            "  round {n}: {} ok, {} failed in {:.1} s ({:.0} req/s); open at once: {} descriptors, peak RSS {} KiB; after: {fds} descriptors, RSS {rss} KiB, allocated {} KiB",
            report.ok,
            report.failed,
            report.seconds,
            (report.ok + report.failed) as f64 / report.seconds,
            report.fds_open,
            proxy.peak_rss_kib(),
            heap.allocated_kib,
        );
        if report.failed > 0 {
            failures.push(format!(
                "round {n}: {} failed requests: {:?}",
                report.failed, report.errors
            ));
        }
        if fds > fds_idle {
            failures.push(format!(
                "round {n}: {fds} descriptors after, {fds_idle} idle"
            ));
        }
        if rss > rss_idle + RSS_MARGIN_KIB {
            failures.push(format!(
                "round {n}: RSS {rss} KiB after, {rss_idle} KiB idle"
            ));
        }
        // Tables sized for the peak's concurrency stay (they do not grow with more rounds of
        // it); anything allocated per connection or request and never freed grows every round.
        let first = *allocated_after_first.get_or_insert(heap.allocated_kib);
        let growth = heap.allocated_kib.saturating_sub(first);
        if growth > LEAK_MARGIN_KIB_PER_ROUND * (n - 1) {
            failures.push(format!(
                "round {n}: {growth} KiB more allocated than after round 1, a leak"
            ));
        }
    }

    let log = std::fs::read_to_string(work.path().join("network.jsonl")).unwrap_or_default();
    let lines = log.lines().count() as u64;
    println!("  request log: {lines} lines for {total} requests");
    if lines != total {
        failures.push(format!(
            "the request log has {lines} lines for {total} requests"
        ));
    }
    let secret = CREDENTIAL.trim_start_matches("Bearer ");
    if log.contains(secret) {
        failures.push("the request log holds the credential".into());
    }
    for failure in &failures {
        println!("FAIL {failure}");
    }
    i32::from(!failures.is_empty())
}

struct Round {
    ok: u64,
    failed: u64,
    errors: Vec<String>,
    seconds: f64,
    fds_open: usize,
}

/// Opens `connections` tunnels, keeps them all open, sends `requests` over them, closes them.
async fn round(
    proxy: &ProxyChild,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    requests: u64,
) -> Round {
    let started = Instant::now();
    // Handshakes a few dozen at a time; the connections all stay open.
    let handshakes = Arc::new(Semaphore::new(64));
    let mut opening = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (handshakes, tls, addr, auth) = (
            Arc::clone(&handshakes),
            Arc::clone(tls),
            proxy.addr,
            basic_proxy_auth(&proxy.token),
        );
        opening.push(tokio::spawn(async move {
            let _permit = handshakes.acquire().await.unwrap();
            open(addr, &auth, &tls).await
        }));
    }
    let mut senders = Vec::with_capacity(connections);
    let mut errors = Vec::new();
    for task in opening {
        match task.await.unwrap() {
            Ok(sender) => senders.push(sender),
            Err(err) => errors.push(err),
        }
    }
    let fds_open = proxy.fds();
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(errors.len() as u64));
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(errors));
    let mut tasks = Vec::with_capacity(senders.len());
    for mut sender in senders {
        let (ok, failed, next, errors) = (
            Arc::clone(&ok),
            Arc::clone(&failed),
            Arc::clone(&next),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                match request(&mut sender).await {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        let mut errors = errors.lock().unwrap();
                        if errors.len() < 10 {
                            errors.push(err);
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let errors = std::mem::take(&mut *errors.lock().unwrap());
    Round {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        errors,
        seconds: started.elapsed().as_secs_f64(),
        fds_open,
    }
}

/// One intercepted keep-alive connection.
async fn open(
    proxy: SocketAddr,
    auth: &str,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<SendRequest<Empty<Bytes>>, String> {
    let (status, head, tcp) = connect_tunnel(proxy, Some(auth), &format!("{HOST_NAME}:443"))
        .await
        .map_err(|e| format!("CONNECT: {e}"))?;
    if status != 200 {
        return Err(format!("CONNECT: {head}"));
    }
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let stream = TlsConnector::from(Arc::clone(tls))
        .connect(HOST_NAME.try_into().unwrap(), tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn request(sender: &mut SendRequest<Empty<Bytes>>) -> Result<(), String> {
    sender.ready().await.map_err(|e| e.to_string())?;
    let request = Request::get("/soak")
        .header(HOST, HOST_NAME)
        .body(Empty::new())
        .unwrap();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// Waits (up to 10 s) for the proxy's descriptors to come down to `idle` (or to stop changing),
/// then for the proxy to give freed memory back ([`RECLAIM_DELAY`] after the last connection
/// closed), then reads its descriptors and RSS.
fn settle(proxy: &ProxyChild, idle: Option<usize>) -> (usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = proxy.fds();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let now = proxy.fds();
        let done = match idle {
            Some(idle) => now <= idle,
            None => now == last,
        };
        if done || Instant::now() > deadline {
            std::thread::sleep(RECLAIM_DELAY + Duration::from_secs(1));
            return (now, proxy.rss_kib());
        }
        last = now;
    }
}

/// The local HTTPS upstream: `200` with a small JSON body when the request carries the
/// credential the proxy injects, `401` otherwise.
fn start_upstream(ca: &TestCa) -> SocketAddr {
    let issued = ca.issue(&[HOST_NAME]);
    let mut config = rustls::ServerConfig::builder_with_provider(moat_tests::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![issued.cert_der()], issued.key_der())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(|request: Request<_>| async move {
                        let injected = request
                            .headers()
                            .get(AUTHORIZATION)
                            .is_some_and(|v| v.as_bytes() == CREDENTIAL.as_bytes());
                        let mut response = Response::new(Full::new(Bytes::from_static(
                            br#"{"login":"octocat","id":1}"#,
                        )));
                        if !injected {
                            *response.status_mut() = StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// What the child's allocator says: bytes allocated and not freed.
#[derive(Clone, Copy)]
struct Heap {
    allocated_kib: u64,
}

/// The proxy in a child process of its own, so its descriptors and memory are its own.
struct ProxyChild {
    child: Child,
    /// Questions to the child (`heap`, `trim`) and its answers.
    questions: std::process::ChildStdin,
    answers: BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
    token: String,
    ca: std::path::PathBuf,
}

impl ProxyChild {
    fn start(upstream_ca: &std::path::Path, dir: &std::path::Path, upstream: SocketAddr) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .arg("--serve-proxy")
            .env("SOAK_UPSTREAM_CA", upstream_ca)
            .env("SOAK_DIR", dir)
            .env("SOAK_RESOLVE", format!("{HOST_NAME}:443:{upstream}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut answers = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        let info: serde_json::Value = serde_json::from_str(&line).unwrap();
        ProxyChild {
            questions: child.stdin.take().unwrap(),
            answers,
            child,
            addr: info["addr"].as_str().unwrap().parse().unwrap(),
            token: info["token"].as_str().unwrap().to_owned(),
            ca: info["ca"].as_str().unwrap().into(),
        }
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|dir| dir.count())
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmRSS")
    }

    fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM")
    }

    /// The child's heap as its allocator counts it.
    fn heap(&mut self) -> Heap {
        writeln!(self.questions, "heap").unwrap();
        self.questions.flush().unwrap();
        let mut line = String::new();
        self.answers.read_line(&mut line).unwrap();
        let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
        let number = |key: &str| answer[key].as_u64().unwrap_or(0);
        Heap {
            allocated_kib: (number("in_use") + number("mapped")) / 1024,
        }
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Child mode: the proxy with one run (the credential rule, the request log), until stdin closes.
fn serve_proxy_child() {
    #[cfg(unix)]
    let _ = moat::proxy::raise_open_file_limit();
    let dir = std::path::PathBuf::from(std::env::var("SOAK_DIR").unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.join("moat-ca")).unwrap());
        let ca_path = ca.cert_path();
        let upstream = UpstreamConfig {
            native_roots: false,
            extra_ca_file: Some(std::env::var("SOAK_UPSTREAM_CA").unwrap().into()),
            resolve: ResolveOverrides::parse(&std::env::var("SOAK_RESOLVE").unwrap()).unwrap(),
            ..UpstreamConfig::default()
        };
        let runs = Arc::new(RunRegistry::new());
        let rules = ProxyRules::new().with(ProxyRule::Credential {
            host: HOST_NAME.into(),
            header: "Authorization".into(),
            value: Secret::new(CREDENTIAL),
            grant: "soak".into(),
        });
        let token = runs
            .register(RunSpec {
                id: "soak".into(),
                grants: vec![rules],
                policy: NetworkPolicy::default(),
                log: Some(dir.join("network.jsonl")),
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
        tokio::task::spawn_blocking(answer_heap_questions)
            .await
            .unwrap();
    });
}

/// Child mode's stdin: `heap` answers the allocator's figures as a JSON line, end of input stops
/// the proxy. Bytes still allocated tell a leak from pages the allocator merely kept.
fn answer_heap_questions() {
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { return };
        match line.trim() {
            "heap" => {}
            _ => continue,
        }
        let (in_use, mapped) = heap::allocated();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let answer = serde_json::json!({"in_use": in_use, "mapped": mapped, "rss_kib": rss});
        let _ = writeln!(stdout, "{answer}");
        let _ = stdout.flush();
    }
}

/// glibc's own account of the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "mallinfo2(3)")]
mod heap {
    /// Bytes allocated and not freed: in the arenas, and in chunks mapped on their own.
    pub fn allocated() -> (u64, u64) {
        // SAFETY: mallinfo2 only reads the allocator's statistics; it takes every arena's lock.
        let info = unsafe { libc::mallinfo2() };
        (info.uordblks as u64, info.hblkhd as u64)
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod heap {
    pub fn allocated() -> (u64, u64) {
        (0, 0)
    }
}
