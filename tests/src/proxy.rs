//! Driving `moat proxy` from tests: the running process, and raw clients that speak to a proxy
//! the way curl and libraries do (CONNECT, then TLS with a chosen SNI and ALPN).

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::ca::crypto_provider;
use crate::env::{MoatEnv, moat_bin};

/// A running `moat proxy --json` (killed on drop). Its stderr goes to a file, read by
/// [`ProxyProcess::stderr`].
pub struct ProxyProcess {
    child: Child,
    info: serde_json::Value,
    stderr_path: PathBuf,
}

impl std::fmt::Debug for ProxyProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyProcess")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

impl ProxyProcess {
    /// Starts `moat proxy --json <args>` in `env` with `extra` variables on top of
    /// [`MoatEnv::vars`], and waits (up to 30 s) for its JSON line.
    ///
    /// # Panics
    ///
    /// If it does not start or exits first; the message includes its stderr.
    pub fn start(env: &MoatEnv, args: &[&str], extra: &[(&str, &str)]) -> ProxyProcess {
        let stderr_path = env.root().join(format!(
            "proxy-stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let stderr = std::fs::File::create(&stderr_path).expect("create the stderr file");
        let mut child = Command::new(moat_bin())
            .arg("proxy")
            .arg("--json")
            .args(args)
            .env_clear()
            .envs(env.vars())
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .current_dir(env.work_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn moat proxy");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the proxy never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "moat proxy printed nothing; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let info: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("moat proxy printed {line:?}, not JSON: {err}"));
        ProxyProcess {
            child,
            info,
            stderr_path,
        }
    }

    /// The JSON line it printed.
    pub fn info(&self) -> &serde_json::Value {
        &self.info
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.info["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("address in the JSON line")
    }

    /// The run's proxy token.
    pub fn token(&self) -> &str {
        self.info["token"].as_str().expect("token in the JSON line")
    }

    /// `http://moat:<token>@<addr>`.
    pub fn url(&self) -> &str {
        self.info["proxy_url"].as_str().expect("proxy_url")
    }

    /// The CA certificate clients must trust.
    pub fn ca_cert(&self) -> PathBuf {
        PathBuf::from(self.info["ca_cert"].as_str().expect("ca_cert"))
    }

    /// The request log.
    pub fn log_path(&self) -> PathBuf {
        PathBuf::from(self.info["log"].as_str().expect("log"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process's peak resident memory (`VmHWM`), in KiB (Linux).
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// The process's resident memory now (`VmRSS`), in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// The request log's lines, waiting up to `timeout` for at least `count` of them.
    pub fn log_lines(&self, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
        read_log(&self.log_path(), count, timeout)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `VmXXX:` field of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The JSON lines of a `network.jsonl`, waiting up to `timeout` for at least `count`.
pub fn read_log(path: &Path, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        // Complete lines only: a long line may be caught half written (seen under load with a
        // 16 KiB line); the rest of it comes with the next read.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<serde_json::Value> = complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("bad log line {line:?}: {err}"))
            })
            .collect();
        if lines.len() >= count || Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Basic base64(moat:<token>)`, the `Proxy-Authorization` value of a proxy URL.
pub fn basic_proxy_auth(token: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("moat:{token}"));
    format!("Basic {encoded}")
}

/// A root store holding the certificates of a PEM file (moat's CA, for clients of the proxy).
pub fn roots_from_pem(path: &Path) -> rustls::RootCertStore {
    let pem = std::fs::read(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots
            .add(cert.expect("PEM certificate"))
            .expect("a trust anchor");
    }
    roots
}

/// Opens a tunnel: `CONNECT authority` with `proxy_auth` (a full `Proxy-Authorization` value),
/// then the proxy's status code and response head. The stream is left after the head.
pub async fn connect_tunnel(
    proxy: SocketAddr,
    proxy_auth: Option<&str>,
    authority: &str,
) -> std::io::Result<(u16, String, TcpStream)> {
    let mut tcp = TcpStream::connect(proxy).await?;
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = proxy_auth {
        request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;
    let head = read_head(&mut tcp).await?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head, tcp))
}

/// Reads a response head byte by byte up to the blank line (leaving the body unread).
pub async fn read_head(tcp: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A TLS client configuration trusting `roots`, offering `alpn`.
pub fn client_tls(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .expect("default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A tunnel to `authority` through the proxy, then a TLS handshake naming `sni` (a DNS name, or
/// an IP literal, which sends no SNI).
pub async fn tls_through_proxy(
    proxy: SocketAddr,
    token: &str,
    authority: &str,
    sni: &str,
    tls: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let (status, head, tcp) =
        connect_tunnel(proxy, Some(&basic_proxy_auth(token)), authority).await?;
    if status != 200 {
        return Err(std::io::Error::other(format!("CONNECT refused: {head}")));
    }
    let name = ServerName::try_from(sni.to_owned())
        .map_err(|err| std::io::Error::other(format!("bad name {sni}: {err}")))?;
    TlsConnector::from(tls).connect(name, tcp).await
}
