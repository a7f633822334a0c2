//! The runtime layer (`moat::runtime`) against the real Docker engine: the network, images,
//! the container lifecycle and the mounted init step. No part of Docker is faked.
//!
//! Each test labels what it creates with a [`TestLabel`], whose drop removes it. Without a
//! Docker engine these tests skip loudly (and fail under `CI=true`).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moat::runtime::image::{GENERATED_REPOSITORY, ImagePlan, ImageRequest};
use moat::runtime::init::{self, EXIT_INIT_FAILED};
use moat::runtime::progress::{ProgressEvent, RecordingProgress};
use moat::runtime::{
    BindMount, ContainerId, ContainerSpec, DockerRuntime, InitOptions, InitScript, NetworkInfo,
    NetworkSpec, OutputStream, Runtime, RuntimeError,
};
use moat_tests::TestCa;
use moat_tests::docker::{self, TestLabel};
use tokio::io::AsyncWriteExt;

/// A uid:gid that exists nowhere on the host, so ownership checks mean something.
const UID: u32 = 4321;
const GID: u32 = 4322;

/// How long one container may run in these tests before the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

/// Connects to 'host:port' targets with a 2 s timeout and prints `<target> <result> <seconds>`,
/// result `open:<first bytes>`, `timeout`, `refused` or `error-<errno>`.
const PROBE: &str = r#"
import socket, sys, time
for target in sys.argv[1:]:
    host, port = target.rsplit(':', 1)
    start = time.monotonic()
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((host, int(port)))
        try:
            data = s.recv(32).decode().strip()
        except Exception:
            data = ''
        result = 'open:' + data
    except socket.timeout:
        result = 'timeout'
    except OSError as e:
        result = 'refused' if e.errno == 111 else 'error-%d' % e.errno
    print('%s %s %.2f' % (target, result, time.monotonic() - start), flush=True)
"#;

struct Harness {
    rt: DockerRuntime,
    label: TestLabel,
    init: InitScript,
    image: String,
    dir: tempfile::TempDir,
    count: AtomicUsize,
}

#[derive(Debug)]
struct Ran {
    code: i64,
    stdout: String,
    stderr: String,
}

impl Harness {
    /// `None` when Docker is unavailable (outside CI).
    async fn new(test: &str) -> Option<Harness> {
        if !docker::available(test) {
            return None;
        }
        let image = docker::ensure_base_image().to_owned();
        let rt = DockerRuntime::connect()
            .await
            .expect("the engine `docker` reaches is reachable from moat too");
        let dir = tempfile::tempdir().unwrap();
        let init = InitScript::install(&dir.path().join("init")).unwrap();
        Some(Harness {
            rt,
            label: TestLabel::new(&test.replace('_', "-")),
            init,
            image,
            dir,
            count: AtomicUsize::new(0),
        })
    }

    /// A spec running `cmd` through moat's init as `uid:gid`, labelled for cleanup.
    fn spec(&self, cmd: &[&str], uid: u32, gid: u32) -> ContainerSpec {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let mut spec = ContainerSpec::new(
            format!("{}-{n}", self.label.id()),
            &self.image,
            cmd.iter().copied(),
        );
        let (key, value) = self.label.pair();
        spec.labels.insert(key, value);
        self.init.apply(
            &mut spec,
            &InitOptions {
                uid,
                gid,
                firewall: None,
            },
        );
        spec
    }

    async fn network(&self) -> NetworkInfo {
        let mut spec = NetworkSpec::named(format!("moat-test-{}", self.label.id()));
        let (key, value) = self.label.pair();
        spec.labels.insert(key, value);
        self.rt.ensure_network(&spec).await.unwrap()
    }

    /// Create, attach, start, collect output, wait, remove.
    async fn run(&self, spec: &ContainerSpec) -> Ran {
        let id = self.rt.create(spec).await.unwrap();
        let mut attached = self.rt.attach(&id, false).await.unwrap();
        assert!(attached.stdin.is_none());
        self.rt.start(&id).await.unwrap();
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let collect = async {
            while let Some(chunk) = attached.output.next().await {
                let chunk = chunk.unwrap();
                match chunk.stream {
                    OutputStream::Stdout => stdout.extend_from_slice(&chunk.bytes),
                    OutputStream::Stderr => stderr.extend_from_slice(&chunk.bytes),
                }
            }
            self.rt.wait(&id).await.unwrap()
        };
        let code = tokio::time::timeout(LIMIT, collect)
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {LIMIT:?}", spec.name));
        self.rt.remove(&id).await.unwrap();
        Ran {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// All of the output until the streams close, as (stream, bytes) in order; fails after [`LIMIT`].
async fn drain(attached: &mut moat::runtime::Attached) -> Vec<(OutputStream, Vec<u8>)> {
    let collect = async {
        let mut chunks = Vec::new();
        while let Some(chunk) = attached.output.next().await {
            let chunk = chunk.unwrap();
            chunks.push((chunk.stream, chunk.bytes.to_vec()));
        }
        chunks
    };
    tokio::time::timeout(LIMIT, collect)
        .await
        .expect("the container's output did not end in time")
}

fn joined(chunks: &[(OutputStream, Vec<u8>)]) -> String {
    String::from_utf8_lossy(
        &chunks
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect::<Vec<u8>>(),
    )
    .into_owned()
}

/// A host listener that answers every connection with `tag` and closes it.
fn listen(ip: IpAddr, tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            use std::io::Write;
            let _ = stream.write_all(format!("{tag}\n").as_bytes());
        }
    });
    addr
}

/// The probe's result for `target` in `stdout` (`open:<tag>`, `timeout`, `refused`, ...) and
/// the seconds it took.
fn probe_result(stdout: &str, target: &str) -> (String, f64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{target} ")))
        .unwrap_or_else(|| panic!("no probe line for {target} in:\n{stdout}"));
    let mut parts = line.split(' ');
    parts.next();
    let result = parts.next().unwrap().to_owned();
    let secs = parts.next().unwrap().parse().unwrap();
    (result, secs)
}

fn probe_cmd(targets: &[String]) -> Vec<String> {
    let mut cmd = vec!["python3".to_owned(), "-c".to_owned(), PROBE.to_owned()];
    cmd.extend(targets.iter().cloned());
    cmd
}

fn strs(cmd: &[String]) -> Vec<&str> {
    cmd.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn the_shared_network_reaches_the_gateway_and_nothing_outside() {
    let Some(h) = Harness::new("the_shared_network_reaches_the_gateway").await else {
        return;
    };
    let started = Instant::now();
    let network = h.network().await;
    let create_network = started.elapsed();
    // Ensuring it again finds the same network.
    let started = Instant::now();
    assert_eq!(h.network().await, network);
    let ensure_existing = started.elapsed();
    let gateway = network.gateway;
    assert!(gateway.is_ipv4(), "{gateway}");
    assert!(
        network.gateway_is_local(),
        "a local engine's gateway is this host's: {gateway}"
    );

    let on_gateway = listen(gateway, "gateway");
    let on_loopback = listen("127.0.0.1".parse().unwrap(), "loopback");
    let on_any = listen("0.0.0.0".parse().unwrap(), "any");
    let targets = [
        on_gateway.to_string(),
        format!("{gateway}:{}", on_loopback.port()),
        format!("{gateway}:{}", on_any.port()),
        "192.0.2.1:443".to_owned(),
        format!("moat-proxy:{}", on_gateway.port()),
    ];
    let cmd = probe_cmd(&targets);
    let mut spec = h.spec(&strs(&cmd), UID, GID);
    spec.network = Some(network.name.clone());
    spec.extra_hosts.push(("moat-proxy".into(), gateway));

    let started = Instant::now();
    let id = h.rt.create(&spec).await.unwrap();
    let create_container = started.elapsed();
    let mut attached = h.rt.attach(&id, false).await.unwrap();
    let started = Instant::now();
    h.rt.start(&id).await.unwrap();
    let start = started.elapsed();
    let stdout = joined(&drain(&mut attached).await);
    let code = h.rt.wait(&id).await.unwrap();
    let started = Instant::now();
    h.rt.remove(&id).await.unwrap();
    let remove = started.elapsed();
    assert_eq!(code, 0, "{stdout}");

    let (gw, _) = probe_result(&stdout, &targets[0]);
    let (loopback, _) = probe_result(&stdout, &targets[1]);
    let (any, _) = probe_result(&stdout, &targets[2]);
    let (outside, outside_secs) = probe_result(&stdout, &targets[3]);
    let (by_name, _) = probe_result(&stdout, &targets[4]);
    eprintln!(
        "measured: create network {create_network:?}, ensure existing {ensure_existing:?}, \
         create container {create_container:?}, start {start:?}, remove {remove:?}\n\
         gateway listener: {gw}; 127.0.0.1 listener via gateway: {loopback}; \
         0.0.0.0 listener via gateway: {any}; 192.0.2.1:443 (TEST-NET-1): {outside} after {outside_secs} s; \
         moat-proxy name: {by_name}"
    );
    assert_eq!(
        gw, "open:gateway",
        "the proxy's address is reachable:\n{stdout}"
    );
    assert_eq!(
        by_name, "open:gateway",
        "moat-proxy resolves to the gateway:\n{stdout}"
    );
    assert_ne!(
        loopback, "open:loopback",
        "host loopback is not reachable:\n{stdout}"
    );
    assert!(!outside.starts_with("open"), "no way out:\n{stdout}");
    // What the strict policy's firewall is for: a host service on 0.0.0.0 is reachable.
    assert_eq!(any, "open:any", "measured on this engine:\n{stdout}");

    // For the record (not a timed assertion): a whole `true` through moat's runtime and init
    // on this network, against `docker run --rm` of the same image.
    let mut ours = Duration::ZERO;
    let mut theirs = Duration::ZERO;
    for _ in 0..3 {
        let mut spec = h.spec(&["true"], UID, GID);
        spec.network = Some(network.name.clone());
        spec.extra_hosts.push(("moat-proxy".into(), gateway));
        let started = Instant::now();
        assert_eq!(h.run(&spec).await.code, 0);
        ours += started.elapsed();
        let label = format!("{}={}", h.label.pair().0, h.label.id());
        let started = Instant::now();
        let out = docker::docker(&["run", "--rm", "--label", &label, &h.image, "true"]);
        theirs += started.elapsed();
        assert!(out.status.success(), "{out:?}");
    }
    eprintln!(
        "measured: `true` through the runtime and init {:?} per run, `docker run --rm` {:?}",
        ours / 3,
        theirs / 3
    );
}

#[tokio::test]
async fn ensure_network_is_race_safe_and_refuses_a_network_with_a_way_out() {
    let Some(h) = Harness::new("ensure_network_is_race_safe").await else {
        return;
    };
    let mut spec = NetworkSpec::named(format!("moat-race-{}", h.label.id()));
    let (key, value) = h.label.pair();
    spec.labels.insert(key, value);
    let results = futures_util::future::join_all((0..4).map(|_| h.rt.ensure_network(&spec))).await;
    let infos: Vec<NetworkInfo> = results.into_iter().map(Result::unwrap).collect();
    assert!(infos.iter().all(|i| *i == infos[0]), "{infos:?}");
    let listed = docker::docker(&["network", "ls", "-q", "--filter", &h.label.filter()]);
    let ids: Vec<_> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "exactly one network survives the race: {ids:?}"
    );
    assert!(infos[0].id.starts_with(&ids[0]));
    h.rt.remove_network(&spec.name).await.unwrap();
    h.rt.remove_network(&spec.name).await.unwrap();

    // Someone else's network under moat's name, with a route out: refused.
    let name = format!("moat-open-{}", h.label.id());
    let label = format!("{}={}", h.label.pair().0, h.label.id());
    let out = docker::docker(&["network", "create", "--label", &label, &name]);
    assert!(out.status.success(), "{out:?}");
    let err =
        h.rt.ensure_network(&NetworkSpec::named(&name))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("not internal"), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("docker network rm {name}")),
        "{err}"
    );
}

#[tokio::test]
#[expect(unsafe_code, reason = "geteuid(2): are the tests running as root")]
async fn init_drops_to_the_workspace_owner_propagates_exit_codes_and_trusts_the_ca() {
    let Some(h) = Harness::new("init_drops_to_the_workspace_owner").await else {
        return;
    };
    let workspace = h.dir.path().join("workspace");
    std::fs::create_dir(&workspace).unwrap();
    // As root (CI), give the workspace an owner that exists nowhere, as a user's checkout would
    // be; otherwise it is the user's. Either way the container runs as that owner.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&workspace, Some(UID), Some(GID)).unwrap();
    }
    let owner = InitOptions::owner_of(&workspace).unwrap();
    let (uid, gid) = (owner.uid, owner.gid);
    let ca_dir = h.dir.path().join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.crt"), TestCa::new().pem()).unwrap();

    let script = r#"
        echo "uid=$(id -u) gid=$(id -g) user=$(id -un) home=$HOME pwd=$(pwd)"
        touch "$HOME/x" && echo home-writable
        grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status
        echo to-stderr >&2
        echo data > /workspace/written
        mkdir /workspace/dir
        python3 -c 'import ssl; print("ca-trusted" if any("moat test CA" in str(c["subject"]) for c in ssl.create_default_context().get_ca_certs()) else "ca-missing")'
        env | grep -c '^MOAT_' || true
        exit 3
    "#;
    let mut spec = h.spec(&["sh", "-c", script], uid, gid);
    spec.mounts.push(BindMount {
        source: workspace.clone(),
        target: "/workspace".into(),
        read_only: false,
    });
    init::mount_ca(&mut spec, &ca_dir);
    let ran = h.run(&spec).await;
    assert_eq!(ran.code, 3, "{ran:?}");
    assert!(
        ran.stdout.contains(&format!(
            "uid={uid} gid={gid} user=moatuser home=/home/moatuser pwd=/workspace"
        )),
        "{ran:?}"
    );
    assert!(ran.stdout.contains("home-writable"), "{ran:?}");
    assert!(ran.stdout.contains("CapEff:\t0000000000000000"), "{ran:?}");
    assert!(ran.stdout.contains("CapBnd:\t0000000000000000"), "{ran:?}");
    assert!(ran.stdout.contains("NoNewPrivs:\t1"), "{ran:?}");
    assert!(ran.stdout.contains("ca-trusted"), "{ran:?}");
    assert!(
        ran.stdout.ends_with("0\n"),
        "MOAT_* variables are unset: {ran:?}"
    );
    assert_eq!(
        ran.stderr, "to-stderr\n",
        "stdout and stderr are apart: {ran:?}"
    );
    use std::os::unix::fs::MetadataExt;
    for path in ["written", "dir"] {
        let meta = std::fs::metadata(workspace.join(path)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid), "{path}");
    }
    assert_eq!(
        std::fs::read_to_string(workspace.join("written")).unwrap(),
        "data\n"
    );

    // The CA mount is read-only, and the workspace mount is not.
    let mut spec = h.spec(
        &["sh", "-c", "echo x > /etc/ssl/certs/moat-ca/ca.crt"],
        0,
        0,
    );
    init::mount_ca(&mut spec, &ca_dir);
    let ran = h.run(&spec).await;
    assert_ne!(ran.code, 0, "{ran:?}");
    assert!(ran.stderr.contains("Read-only"), "{ran:?}");
}

#[tokio::test]
async fn exit_codes_command_not_found_and_root() {
    let Some(h) = Harness::new("exit_codes_command_not_found_and_root").await else {
        return;
    };
    let ran = h.run(&h.spec(&["true"], UID, GID)).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (0, ""), "{ran:?}");
    let ran = h.run(&h.spec(&["sh", "-c", "exit 42"], UID, GID)).await;
    assert_eq!(ran.code, 42, "{ran:?}");
    let ran = h.run(&h.spec(&["no-such-command-moat"], UID, GID)).await;
    assert_eq!(ran.code, 127, "{ran:?}");
    assert!(ran.stderr.contains("no-such-command-moat"), "{ran:?}");
    // As root (a workspace owned by root) the command stays root, and 127 holds there too.
    let ran = h.run(&h.spec(&["id", "-u"], 0, 0)).await;
    assert_eq!((ran.code, ran.stdout.as_str()), (0, "0\n"), "{ran:?}");
    let ran = h.run(&h.spec(&["no-such-command-moat"], 0, 0)).await;
    assert_eq!(ran.code, 127, "{ran:?}");
    // Without a firewall image, asking for the firewall fails closed before the command runs.
    let mut spec = h.spec(&["echo", "must-not-run"], UID, GID);
    h.init.apply(
        &mut spec,
        &InitOptions {
            uid: UID,
            gid: GID,
            firewall: Some("127.0.0.1:1".parse().unwrap()),
        },
    );
    let ran = h.run(&spec).await;
    assert_eq!(ran.code, EXIT_INIT_FAILED, "{ran:?}");
    assert!(!ran.stdout.contains("must-not-run"), "{ran:?}");
    assert!(ran.stderr.contains("needs iptables"), "{ran:?}");
}

#[tokio::test]
async fn stdin_is_written_and_a_tty_is_resized() {
    let Some(h) = Harness::new("stdin_is_written_and_a_tty_is_resized").await else {
        return;
    };
    // Plain stdin: cat echoes what is written until stdin closes.
    let mut spec = h.spec(&["cat"], UID, GID);
    spec.open_stdin = true;
    let id = h.rt.create(&spec).await.unwrap();
    let mut attached = h.rt.attach(&id, true).await.unwrap();
    h.rt.start(&id).await.unwrap();
    let mut stdin = attached.stdin.take().expect("stdin was asked for");
    stdin.write_all(b"hello through stdin\n").await.unwrap();
    stdin.shutdown().await.unwrap();
    let out = joined(&drain(&mut attached).await);
    assert_eq!(h.rt.wait(&id).await.unwrap(), 0);
    assert_eq!(out, "hello through stdin\n");
    h.rt.remove(&id).await.unwrap();

    // A TTY: resized before the command asks for its size.
    let mut spec = h.spec(
        &["sh", "-c", "read line; stty size; echo got=$line"],
        UID,
        GID,
    );
    spec.open_stdin = true;
    spec.tty = true;
    let id = h.rt.create(&spec).await.unwrap();
    let mut attached = h.rt.attach(&id, true).await.unwrap();
    h.rt.start(&id).await.unwrap();
    h.rt.resize(&id, 33, 101).await.unwrap();
    let mut stdin = attached.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    let chunks = drain(&mut attached).await;
    assert!(
        chunks
            .iter()
            .all(|(stream, _)| *stream == OutputStream::Stdout),
        "a TTY has one stream"
    );
    assert_eq!(h.rt.wait(&id).await.unwrap(), 0);
    let text = joined(&chunks);
    assert!(text.contains("33 101"), "{text:?}");
    assert!(text.contains("got=go"), "{text:?}");
    h.rt.remove(&id).await.unwrap();

    // TTY output is raw: bytes that look like a multiplexing header pass through untouched.
    let mut spec = h.spec(
        &["printf", r"\001\000\000\000\377\377\377\377hello\n"],
        UID,
        GID,
    );
    spec.tty = true;
    let id = h.rt.create(&spec).await.unwrap();
    let mut attached = h.rt.attach(&id, false).await.unwrap();
    assert!(attached.stdin.is_none());
    h.rt.start(&id).await.unwrap();
    let bytes: Vec<u8> = drain(&mut attached)
        .await
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    assert_eq!(h.rt.wait(&id).await.unwrap(), 0);
    assert_eq!(bytes, b"\x01\x00\x00\x00\xff\xff\xff\xffhello\r\n");
    h.rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn kill_stop_wait_remove_and_a_container_removed_under_us() {
    let Some(h) = Harness::new("kill_stop_wait_remove").await else {
        return;
    };
    // Killed from outside: an exit code, not an error.
    let id =
        h.rt.create(&h.spec(&["sleep", "60"], UID, GID))
            .await
            .unwrap();
    h.rt.start(&id).await.unwrap();
    let status = h.rt.inspect(&id).await.unwrap();
    assert!(status.running && status.status == "running", "{status:?}");
    assert_eq!(status.exit_code, None);
    h.rt.kill(&id, "KILL").await.unwrap();
    assert_eq!(h.rt.wait(&id).await.unwrap(), 137);
    let status = h.rt.inspect(&id).await.unwrap();
    assert!(!status.running && status.status == "exited", "{status:?}");
    assert_eq!(status.exit_code, Some(137));
    // Killing a stopped container and removing twice are fine (cleanup is idempotent).
    h.rt.kill(&id, "KILL").await.unwrap();
    h.rt.remove(&id).await.unwrap();
    h.rt.remove(&id).await.unwrap();
    assert!(matches!(
        h.rt.inspect(&id).await,
        Err(RuntimeError::ContainerGone { .. })
    ));
    assert!(matches!(
        h.rt.wait(&id).await,
        Err(RuntimeError::ContainerGone { .. })
    ));
    assert!(matches!(
        h.rt.start(&id).await,
        Err(RuntimeError::ContainerGone { .. })
    ));

    // Stop: the engine's init is PID 1 and passes SIGTERM on, so the command ends at once, long
    // before the grace period's SIGKILL (a command that was PID 1 itself would ignore SIGTERM
    // and take the whole 30 s). Stop only once the command runs.
    let spec = h.spec(&["sh", "-c", "echo ready; exec sleep 60"], UID, GID);
    let id = h.rt.create(&spec).await.unwrap();
    let mut attached = h.rt.attach(&id, false).await.unwrap();
    h.rt.start(&id).await.unwrap();
    let ready = tokio::time::timeout(LIMIT, attached.output.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&ready.bytes[..], b"ready\n");
    let started = Instant::now();
    h.rt.stop(&id, Duration::from_secs(30)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    // 128 + SIGTERM: ended by the signal, not killed.
    assert_eq!(h.rt.wait(&id).await.unwrap(), 143);
    h.rt.stop(&id, Duration::from_secs(1)).await.unwrap();
    h.rt.remove(&id).await.unwrap();

    // `docker rm -f` while moat waits: an error, not an exit code.
    let id =
        h.rt.create(&h.spec(&["sleep", "60"], UID, GID))
            .await
            .unwrap();
    h.rt.start(&id).await.unwrap();
    let waiter = {
        let rt = h.rt.clone();
        let id = id.clone();
        tokio::spawn(async move { rt.wait(&id).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = docker::docker(&["rm", "-f", &id.0]);
    assert!(out.status.success(), "{out:?}");
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(err, RuntimeError::ContainerGone { .. }), "{err}");

    // The same name twice.
    let spec = h.spec(&["true"], UID, GID);
    let first = h.rt.create(&spec).await.unwrap();
    let err = h.rt.create(&spec).await.unwrap_err();
    assert!(matches!(err, RuntimeError::NameInUse { .. }), "{err}");

    // Listing by label finds it, with moat's own label.
    let (key, value) = h.label.pair();
    let listed = h.rt.list(&format!("{key}={value}")).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, first);
    assert_eq!(listed[0].name, spec.name);
    assert_eq!(
        (listed[0].running, listed[0].state.as_str()),
        (false, "created")
    );
    assert_eq!(listed[0].labels["moat.managed"], "true");
    let managed = h.rt.list("moat.managed=true").await.unwrap();
    assert!(managed.iter().any(|c| c.id == first), "{managed:?}");
    h.rt.remove(&first).await.unwrap();
    assert!(
        h.rt.list(&format!("{key}={value}"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.label.leftovers().is_empty(), "{:?}", h.label.leftovers());
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_says_how_to_provide_one() {
    let Some(h) = Harness::new("an_image_that_cannot_be_pulled").await else {
        return;
    };
    // A registry on a closed loopback port: the pull fails at once, no traffic leaves the host.
    let image = "127.0.0.1:1/moat-absent:latest";
    let progress = RecordingProgress::new();
    let plan = ImagePlan::new(&ImageRequest::new(image)).unwrap();
    let err = plan.ensure(&h.rt, &progress).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageUnavailable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(image), "{err}");
    let hint = err.hint().unwrap();
    assert!(
        hint.contains("scripts/base-image.sh")
            && hint.contains("MOAT_BASE_IMAGE=moat-base:bookworm"),
        "{hint}"
    );
    assert_eq!(
        progress.events().first(),
        Some(&ProgressEvent::Begin(format!("Pulling {image}")))
    );
    // A container of a missing image is the same error.
    let mut spec = h.spec(&["true"], UID, GID);
    spec.image = image.into();
    let err = h.rt.create(&spec).await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::ImageUnavailable { .. }),
        "{err}"
    );

    // A present base is used as it is, without pulling.
    let progress = RecordingProgress::new();
    let plan = ImagePlan::new(&ImageRequest::new(&h.image)).unwrap();
    assert_eq!(plan.ensure(&h.rt, &progress).await.unwrap(), h.image);
    assert!(progress.events().is_empty(), "{:?}", progress.events());
    assert!(h.rt.image_exists(&h.image).await.unwrap());
    assert!(!h.rt.image_exists(image).await.unwrap());
}

/// Build the plan's image with the test's label (removed at the end), from scratch.
fn labelled(h: &Harness, request: &ImageRequest) -> ImagePlan {
    let mut plan = ImagePlan::new(request).unwrap();
    let ImagePlan::Build(spec) = &mut plan else {
        panic!("expected a build: {plan:?}")
    };
    assert!(spec.tag.starts_with(&format!("{GENERATED_REPOSITORY}:")));
    let (key, value) = h.label.pair();
    spec.labels.insert(key, value);
    // A leftover of an interrupted earlier run would turn the build into a reuse.
    docker::docker(&["rmi", "-f", &spec.tag]);
    plan
}

#[tokio::test]
async fn dependencies_build_an_image_once_and_reuse_it() {
    let Some(h) = Harness::new("dependencies_build_an_image_once").await else {
        return;
    };
    let mut request = ImageRequest::new(&h.image);
    request.dependencies = vec!["jq".into()];
    let plan = labelled(&h, &request);
    let progress = RecordingProgress::new();
    let started = Instant::now();
    let image = plan.ensure(&h.rt, &progress).await.unwrap();
    eprintln!(
        "measured: building {image} (jq) took {:?}",
        started.elapsed()
    );
    assert_eq!(image, plan.image());
    let lines = progress.lines();
    assert_eq!(
        lines.first(),
        Some(&format!("Building {image}")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("apt-get install")),
        "{lines:?}"
    );
    assert_eq!(lines.last(), Some(&format!("Built {image}")), "{lines:?}");

    let mut spec = h.spec(
        &["sh", "-c", "jq --version && echo '{\"a\":7}' | jq .a"],
        UID,
        GID,
    );
    spec.image = image.clone();
    let ran = h.run(&spec).await;
    assert_eq!(ran.code, 0, "{ran:?}");
    assert!(ran.stdout.starts_with("jq-1."), "{ran:?}");
    assert!(ran.stdout.ends_with("\n7\n"), "{ran:?}");

    // Same inputs: reused, nothing built.
    let progress = RecordingProgress::new();
    let again = ImagePlan::new(&request).unwrap();
    assert_eq!(again.image(), image);
    assert_eq!(again.ensure(&h.rt, &progress).await.unwrap(), image);
    assert_eq!(
        progress.events(),
        [ProgressEvent::Done(format!(
            "Using image {image} (built before)"
        ))]
    );

    // A package that does not exist: a build error with the failing step in the progress.
    let mut request = ImageRequest::new(&h.image);
    request.dependencies = vec!["moat-no-such-package".into()];
    let plan = labelled(&h, &request);
    let progress = RecordingProgress::new();
    let err = plan.ensure(&h.rt, &progress).await.unwrap_err();
    assert!(matches!(err, RuntimeError::Build { .. }), "{err}");
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.contains("moat-no-such-package")),
        "{:?}",
        progress.lines()
    );
    assert!(!h.rt.image_exists(plan.image()).await.unwrap());
}

#[tokio::test]
async fn the_strict_firewall_allows_only_the_proxy() {
    let Some(h) = Harness::new("the_strict_firewall_allows_only_the_proxy").await else {
        return;
    };
    let mut request = ImageRequest::new(&h.image);
    request.firewall = true;
    let plan = labelled(&h, &request);
    let image = plan.ensure(&h.rt, &RecordingProgress::new()).await.unwrap();
    let network = h.network().await;
    let proxy = listen(network.gateway, "proxy");
    let other = listen(network.gateway, "other");
    let any = listen("0.0.0.0".parse().unwrap(), "any");
    let targets = [
        format!("moat-proxy:{}", proxy.port()),
        other.to_string(),
        format!("{}:{}", network.gateway, any.port()),
        "192.0.2.1:443".to_owned(),
    ];

    for uid in [UID, 0] {
        // The command tries to take the firewall down first, then probes.
        let script = format!(
            "iptables -P OUTPUT ACCEPT 2>/dev/null && echo firewall-changed; \
             iptables -F OUTPUT 2>/dev/null && echo firewall-flushed; \
             exec python3 -c \"$0\" {}",
            targets.join(" ")
        );
        let mut spec = h.spec(&["sh", "-c", &script, PROBE], uid, uid);
        spec.image = image.clone();
        spec.network = Some(network.name.clone());
        spec.extra_hosts
            .push(("moat-proxy".into(), network.gateway));
        h.init.apply(
            &mut spec,
            &InitOptions {
                uid,
                gid: uid,
                firewall: Some(proxy),
            },
        );
        assert_eq!(spec.cap_add, ["NET_ADMIN"]);
        let ran = h.run(&spec).await;
        assert_eq!(ran.code, 0, "uid {uid}: {ran:?}");
        assert!(!ran.stdout.contains("firewall-"), "uid {uid}: {ran:?}");
        let (to_proxy, _) = probe_result(&ran.stdout, &targets[0]);
        let (to_other, other_secs) = probe_result(&ran.stdout, &targets[1]);
        let (to_any, any_secs) = probe_result(&ran.stdout, &targets[2]);
        let (outside, outside_secs) = probe_result(&ran.stdout, &targets[3]);
        eprintln!(
            "measured (uid {uid}, firewall): proxy {to_proxy}; other gateway port {to_other} \
             ({other_secs} s); 0.0.0.0 service {to_any} ({any_secs} s); 192.0.2.1:443 {outside} \
             ({outside_secs} s)"
        );
        assert_eq!(to_proxy, "open:proxy", "uid {uid}: {ran:?}");
        for (result, secs) in [
            (to_other, other_secs),
            (to_any, any_secs),
            (outside, outside_secs),
        ] {
            assert_eq!(result, "refused", "uid {uid}: {ran:?}");
            assert!(secs < 1.0, "fails fast: {secs} s");
        }
    }
}

#[tokio::test]
async fn the_init_script_mount_works_on_an_image_moat_did_not_build() {
    // Guards the claim "mounted, not baked": the base image has no moat file in it, and the
    // script directory holds only the script.
    let Some(h) = Harness::new("the_init_script_mount_works").await else {
        return;
    };
    let entries: Vec<_> = std::fs::read_dir(h.init.host_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, [init::SCRIPT_NAME]);
    let ran = h.run(&h.spec(&["ls", "/moat/init"], UID, GID)).await;
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "moat-init.sh\n"),
        "{ran:?}"
    );
    let id = ContainerId(format!("{}-never-created", h.label.id()));
    assert!(matches!(h.rt.remove(&id).await, Ok(())));
    assert!(Path::new(h.init.host_dir()).is_dir());
}

#[tokio::test]
async fn a_docker_context_in_a_temporary_home_reaches_the_engine() {
    if !docker::available("a_docker_context_in_a_temporary_home") {
        return;
    }
    // The context points where the CLI's own endpoint is (this machine's engine); HOME is a
    // temporary directory, so nothing of the developer's Docker configuration is used.
    let out = docker::docker(&[
        "context",
        "inspect",
        "--format",
        "{{.Endpoints.docker.Host}}",
    ]);
    assert!(out.status.success(), "{out:?}");
    let host = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join(".docker");
    let name = "moat-test-context";
    let hex: String = {
        use sha2::Digest;
        sha2::Sha256::digest(name.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let meta = config.join("contexts/meta").join(hex);
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(
        meta.join("meta.json"),
        serde_json::json!({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({"currentContext": name}).to_string(),
    )
    .unwrap();
    let endpoint = moat::runtime::Endpoint::resolve(|var| match var {
        "HOME" => Some(home.path().as_os_str().to_owned()),
        _ => None,
    })
    .unwrap();
    assert_eq!(endpoint.host, host);
    assert_eq!(
        endpoint.origin,
        moat::runtime::EndpointOrigin::Context {
            name: name.into(),
            from_env: false
        }
    );
    let rt = DockerRuntime::connect_to(endpoint).await.unwrap();
    rt.ping().await.unwrap();
    assert_eq!(rt.name(), "docker");
}

#[tokio::test]
async fn a_build_spec_sends_its_context_files() {
    let Some(h) = Harness::new("a_build_spec_sends_its_context_files").await else {
        return;
    };
    let tag = format!("moat-test/context:{}", h.label.id());
    let spec = moat::runtime::BuildSpec {
        tag: tag.clone(),
        dockerfile: format!(
            "FROM {}\nCOPY greeting.txt nested/ /opt/moat-test/\n",
            h.image
        ),
        files: [
            (
                "greeting.txt".to_owned(),
                b"hello from the context\n".to_vec(),
            ),
            ("nested/inner.txt".to_owned(), b"inner\n".to_vec()),
        ]
        .into(),
        labels: [h.label.pair()].into(),
        base: Some(h.image.clone()),
    };
    let progress = RecordingProgress::new();
    h.rt.build_image(&spec, &progress).await.unwrap();
    assert!(h.rt.image_exists(&tag).await.unwrap());
    assert!(
        progress
            .lines()
            .iter()
            .any(|l| l.contains("COPY greeting.txt")),
        "{:?}",
        progress.lines()
    );
    let mut run = h.spec(
        &[
            "cat",
            "/opt/moat-test/greeting.txt",
            "/opt/moat-test/inner.txt",
        ],
        UID,
        GID,
    );
    run.image = tag;
    let ran = h.run(&run).await;
    assert_eq!(
        (ran.code, ran.stdout.as_str()),
        (0, "hello from the context\ninner\n"),
        "{ran:?}"
    );
}
