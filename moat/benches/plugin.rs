//! The plugin benchmark: `cargo bench -p moat --bench plugin` (results in `BENCHMARKS.md`).
//!
//! Three measurements, each against a baseline taken in the same run and interleaved with it, so
//! that load from elsewhere on the machine hits both alike:
//!
//! 1. **Warm call**: `configure_proxy` on a running plugin through moat's real host path
//!    ([`PluginProvider`] → moat's JSON-RPC client → pipe → the SDK's `serve` in a child
//!    process), against a bare line echo: the same request line written to `cat` over a pipe and
//!    read back with the same tokio pipe types, from the same caller. Measured twice: called from
//!    the future `block_on` runs on the main thread (where moat's CLI commands run), and from a
//!    task on the runtime's workers. A third line writes the request straight to the SDK plugin
//!    (no client, no moat), to split the cost between host and plugin. Targets: p50
//!    within 2x of the echo, and under 100 µs.
//! 2. **Cold call**: a [`PluginProvider`] that is not running: spawn, `initialize`, one
//!    `configure_proxy`, then the graceful `shutdown` until the process is reaped. Against spawning
//!    and reaping the same executable told to exit at once (`--exit-at-once`, checked first thing
//!    in `main`), so both sides pay the same exec and loading costs; `/bin/true`, and the same
//!    executable spawned with moat's spawn options (own process group, `PR_SET_PDEATHSIG` in
//!    `pre_exec`, hence fork), are shown for reference. Target: p50 within 2x.
//! 3. **Listing**: the real `moat` binary (this build's) running `moat grant providers` with 50
//!    plugins on `PATH`: with the info cache, against the listing with no plugins (target p50
//!    within 1.5x); without the cache, every plugin asked (target p50 under 300 ms).
//!
//! The plugin is this executable: started with `--moat-plugin` it serves an SDK provider named
//! after its file name (`moat-provider-<name>`), which is what the host checks. It is copied once
//! to a temporary directory, and hard-linked as `moat-provider-b01` … `b50` (the info cache keys on
//! the canonical path, which symlinks would collapse to one).
//!
//! Prints p50/p90/p99 and the ratios; a missed target prints a `FAIL` line and makes the exit
//! status 1. Knobs: `BENCH_SCALE` (default 1.0) multiplies the sample counts; `BENCH_ONLY`
//! (`warm`, `cold`, `listing`, comma-separated) runs only those parts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moat::plugin::{PluginProvider, Timeouts};
use moat_plugin_sdk::{
    Credential, CredentialProvider, GrantRequest, GrantStep, ProviderInfo, ProviderResult,
    ProxyRule, ProxyRules, Secret, async_trait, protocol,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const EXIT_AT_ONCE: &str = "--exit-at-once";
const PLUGINS: usize = 50;
/// The `PATH` around the plugin directory: the usual system directories, nothing with plugins.
const SYSTEM_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.iter().skip(1).any(|a| a == EXIT_AT_ONCE) {
        std::process::exit(0);
    }
    if args.iter().skip(1).any(|a| a == protocol::PLUGIN_FLAG) {
        plugin_main(args.first());
    }
    std::process::exit(bench_main());
}

// ---------------------------------------------------------------------------------------------
// The plugin side.

/// A provider that answers at once: the cost measured is the protocol's, not the provider's.
struct BenchProvider {
    name: String,
}

#[async_trait]
impl CredentialProvider for BenchProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new(self.name.clone(), "benchmark plugin")
    }

    async fn grant(&self, _: GrantRequest) -> ProviderResult<GrantStep> {
        Ok(GrantStep::Done {
            credential: Credential::new(self.name.clone(), "bench-token"),
            notes: vec![],
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new().with(ProxyRule::Credential {
            host: "api.bench.test".into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: self.name.clone(),
        }))
    }
}

fn plugin_main(argv0: Option<&OsString>) -> ! {
    let file_name = argv0
        .and_then(|a| Path::new(a).file_name())
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    let name = file_name
        .strip_prefix(protocol::EXECUTABLE_PREFIX)
        .unwrap_or("bench")
        .to_string();
    moat_plugin_sdk::serve(BenchProvider { name })
}

// ---------------------------------------------------------------------------------------------
// Statistics and reporting.

struct Stats {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    n: usize,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut sorted = samples.to_vec();
        sorted.sort();
        let at = |p: f64| sorted[((sorted.len() as f64 - 1.0) * p).round() as usize];
        Stats {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            n: sorted.len(),
        }
    }
}

fn show(label: &str, stats: &Stats, unit: Unit) {
    let f = |d: Duration| unit.format(d);
    println!(
        "  {label:<48} p50 {:>10}  p90 {:>10}  p99 {:>10}  (n={})",
        f(stats.p50),
        f(stats.p90),
        f(stats.p99),
        stats.n
    );
}

#[derive(Clone, Copy)]
enum Unit {
    Micros,
    Millis,
}

impl Unit {
    fn format(self, d: Duration) -> String {
        match self {
            Unit::Micros => format!("{:.1} µs", d.as_secs_f64() * 1e6),
            Unit::Millis => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        }
    }
}

fn ratio(a: &Stats, b: &Stats) -> f64 {
    a.p50.as_secs_f64() / b.p50.as_secs_f64()
}

#[derive(Default)]
struct Verdicts {
    failed: Vec<String>,
}

impl Verdicts {
    fn check(&mut self, ok: bool, what: String) {
        if ok {
            println!("  PASS  {what}");
        } else {
            println!("  FAIL  {what}");
            self.failed.push(what);
        }
    }
}

fn scaled(n: usize) -> usize {
    let scale: f64 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0);
    ((n as f64 * scale).round() as usize).max(1)
}

// ---------------------------------------------------------------------------------------------
// The benchmarks.

struct Setup {
    _root: tempfile::TempDir,
    /// `moat-provider-bench`: a copy of this executable.
    plugin: PathBuf,
    /// 50 hard links to it, `moat-provider-b01` …
    fifty: PathBuf,
    /// An empty directory, for the listing without plugins.
    empty: PathBuf,
    /// `MOAT_HOME` for the listings.
    home: PathBuf,
}

fn setup() -> Setup {
    let root = tempfile::tempdir().expect("temporary directory");
    let bin = root.path().join("bin");
    let fifty = root.path().join("fifty");
    let empty = root.path().join("empty");
    let home = root.path().join("home");
    for dir in [&bin, &fifty, &empty, &home] {
        std::fs::create_dir(dir).unwrap();
    }
    let plugin = bin.join(format!("{}bench", protocol::EXECUTABLE_PREFIX));
    let me = std::env::current_exe().expect("current executable");
    std::fs::copy(&me, &plugin).expect("copy of the benchmark executable");
    for i in 1..=PLUGINS {
        let link = fifty.join(format!("{}b{i:02}", protocol::EXECUTABLE_PREFIX));
        if std::fs::hard_link(&plugin, &link).is_err() {
            std::fs::copy(&plugin, &link).unwrap();
        }
    }
    Setup {
        _root: root,
        plugin,
        fifty,
        empty,
        home,
    }
}

fn bench_main() -> i32 {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("moat plugin benchmarks ({cpus} CPUs; release build)");
    let setup = setup();
    // As in moat's `main`: a multi-threaded runtime, the command run by `block_on`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut verdicts = Verdicts::default();
    let started = Instant::now();
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|o| o.trim() == part);
    if run("warm") {
        runtime.block_on(warm(&setup, &mut verdicts));
    }
    if run("cold") {
        runtime.block_on(cold(&setup, &mut verdicts));
    }
    if run("listing") {
        listing(&setup, &mut verdicts);
    }
    drop(runtime);
    println!("(took {:.1} s)", started.elapsed().as_secs_f64());
    if verdicts.failed.is_empty() {
        println!("all targets met");
        0
    } else {
        println!("FAIL: {} target(s) missed:", verdicts.failed.len());
        for what in &verdicts.failed {
            println!("  - {what}");
        }
        1
    }
}

fn credential() -> Credential {
    Credential::new("bench", "bench-token-0123456789abcdef")
}

/// The line moat sends for `configure_proxy`, as its client writes it.
fn request_line(id: u64) -> String {
    let params = serde_json::json!({ "credential": credential() });
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "configure_proxy",
        "params": params,
    });
    format!("{request}\n")
}

/// Where the caller of a warm call runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The future given to `block_on` on the main thread, as moat's CLI commands run (`moat
    /// proxy` asks each provider for its rules from there).
    Cli,
    /// A task on the runtime's workers, as background work (a refresh loop, the proxy) runs.
    Task,
}

impl Caller {
    fn label(self) -> &'static str {
        match self {
            Caller::Cli => "called from the CLI (block_on, main thread)",
            Caller::Task => "called from a runtime task",
        }
    }
}

/// Samples of one warm measurement.
struct Warm {
    echo: Vec<Duration>,
    direct: Vec<Duration>,
    call: Vec<Duration>,
}

/// `rounds` rounds of `per_round` calls of each kind, interleaved, after a warm-up.
async fn measure_warm(plugin: PathBuf, rounds: usize, per_round: usize) -> Warm {
    // The baseline: `cat` echoing the request line, over the tokio pipes moat's transport uses.
    let mut cat = tokio::process::Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cat");
    let mut cat_in = cat.stdin.take().unwrap();
    let mut cat_out = BufReader::new(cat.stdout.take().unwrap());
    let line = request_line(1);
    let mut echoed = Vec::with_capacity(1024);
    let mut echo_once = async || {
        let t = Instant::now();
        cat_in.write_all(line.as_bytes()).await.unwrap();
        cat_in.flush().await.unwrap();
        echoed.clear();
        cat_out.read_until(b'\n', &mut echoed).await.unwrap();
        let elapsed = t.elapsed();
        assert_eq!(echoed.len(), line.len());
        elapsed
    };

    // The SDK plugin alone: the same line written straight to its stdin, the answer read back
    // (no client, no moat), to split the cost between the two sides.
    let mut raw = tokio::process::Command::new(&plugin)
        .arg(protocol::PLUGIN_FLAG)
        .env(protocol::PLUGIN_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the bench plugin");
    let mut raw_in = raw.stdin.take().unwrap();
    let mut raw_out = BufReader::new(raw.stdout.take().unwrap());
    let init =
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocol_versions":[1]}}"#;
    raw_in
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::with_capacity(1024);
    raw_out.read_until(b'\n', &mut answer).await.unwrap();
    let mut direct_once = async || {
        let t = Instant::now();
        raw_in.write_all(line.as_bytes()).await.unwrap();
        raw_in.flush().await.unwrap();
        answer.clear();
        raw_out.read_until(b'\n', &mut answer).await.unwrap();
        let elapsed = t.elapsed();
        assert!(answer.starts_with(br#"{"jsonrpc":"2.0","id":1,"result""#));
        elapsed
    };

    // The real host path.
    let provider = PluginProvider::start(&plugin, "bench", Timeouts::default())
        .await
        .expect("the bench plugin starts");
    let credential = credential();
    let call_once = async || {
        let t = Instant::now();
        let rules = provider.configure_proxy(&credential).await.unwrap();
        let elapsed = t.elapsed();
        assert_eq!(rules.rules.len(), 1);
        elapsed
    };

    for _ in 0..per_round / 2 {
        echo_once().await;
        direct_once().await;
        call_once().await;
    }
    let mut warm = Warm {
        echo: Vec::with_capacity(rounds * per_round),
        direct: Vec::with_capacity(rounds * per_round),
        call: Vec::with_capacity(rounds * per_round),
    };
    for _ in 0..rounds {
        for _ in 0..per_round {
            warm.echo.push(echo_once().await);
        }
        for _ in 0..per_round {
            warm.direct.push(direct_once().await);
        }
        for _ in 0..per_round {
            warm.call.push(call_once().await);
        }
    }
    provider.shutdown().await;
    drop((cat_in, raw_in));
    let _ = cat.wait().await;
    let _ = raw.wait().await;
    warm
}

async fn warm(setup: &Setup, verdicts: &mut Verdicts) {
    let rounds = 10;
    let per_round = scaled(500);
    println!();
    println!(
        "Warm call: configure_proxy on a running plugin ({rounds} interleaved rounds of \
         {per_round} per kind)"
    );
    for caller in [Caller::Cli, Caller::Task] {
        let measure = measure_warm(setup.plugin.clone(), rounds, per_round);
        let warm = match caller {
            Caller::Cli => measure.await,
            Caller::Task => tokio::spawn(measure).await.unwrap(),
        };
        println!(" {}:", caller.label());
        let echo = Stats::of(&warm.echo);
        let direct = Stats::of(&warm.direct);
        let call = Stats::of(&warm.call);
        show(
            "bare echo: the line to `cat` over a pipe",
            &echo,
            Unit::Micros,
        );
        show("the line straight to the SDK plugin", &direct, Unit::Micros);
        show("PluginProvider::configure_proxy", &call, Unit::Micros);
        let r = ratio(&call, &echo);
        println!(
            "  ratio (p50): {r:.2}x the bare echo (the SDK plugin alone: {:.2}x)",
            ratio(&direct, &echo)
        );
        let short = match caller {
            Caller::Cli => "from the CLI",
            Caller::Task => "from a task",
        };
        verdicts.check(
            r <= 2.0,
            format!("warm call {short}: p50 within 2x of the bare echo ({r:.2}x)"),
        );
        let micros = call.p50.as_secs_f64() * 1e6;
        verdicts.check(
            micros < 100.0,
            format!("warm call {short}: p50 under 100 µs ({micros:.1} µs)"),
        );
    }
}

async fn cold(setup: &Setup, verdicts: &mut Verdicts) {
    let n = scaled(150);
    println!();
    println!(
        "Cold call: spawn + initialize + configure_proxy (+ shutdown, reaped) ({n} interleaved)"
    );
    let spawn_and_reap = |program: &Path, arg: Option<&str>| {
        let t = Instant::now();
        let status = Command::new(program)
            .args(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("spawn");
        let elapsed = t.elapsed();
        assert!(status.success());
        elapsed
    };
    let init = {
        let provider = PluginProvider::start(&setup.plugin, "bench", Timeouts::default())
            .await
            .expect("the bench plugin starts");
        provider.shutdown().await;
        provider.initialize_result().clone()
    };
    let credential = credential();
    // What moat's spawn adds by itself: its own process group, and `PR_SET_PDEATHSIG` set in
    // `pre_exec`, which makes std fork instead of `posix_spawn`.
    #[expect(unsafe_code, reason = "pre_exec, exactly as moat's own spawn")]
    let spawn_like_moat = |program: &Path| {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command
            .arg(EXIT_AT_ONCE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                );
                Ok(())
            });
        }
        let t = Instant::now();
        let status = command.status().expect("spawn");
        let elapsed = t.elapsed();
        assert!(status.success());
        elapsed
    };
    let bin_true = Path::new("/bin/true");
    let mut trivial = Vec::new();
    let mut forked = Vec::new();
    let mut system_true = Vec::new();
    let mut first = Vec::new();
    let mut full = Vec::new();
    for i in 0..n + 5 {
        let a = spawn_and_reap(&setup.plugin, Some(EXIT_AT_ONCE));
        let f = spawn_like_moat(&setup.plugin);
        let b = spawn_and_reap(bin_true, None);
        let provider = PluginProvider::new(&setup.plugin, init.clone(), Timeouts::default());
        let t = Instant::now();
        provider.configure_proxy(&credential).await.unwrap();
        let c = t.elapsed();
        provider.shutdown().await;
        let d = t.elapsed();
        if i >= 5 {
            trivial.push(a);
            forked.push(f);
            system_true.push(b);
            first.push(c);
            full.push(d);
        }
    }
    let (trivial, system_true) = (Stats::of(&trivial), Stats::of(&system_true));
    let forked = Stats::of(&forked);
    let (first, full) = (Stats::of(&first), Stats::of(&full));
    show(
        "spawn + reap: this executable, exits at once",
        &trivial,
        Unit::Micros,
    );
    show(
        "  the same, spawned as moat does (fork)",
        &forked,
        Unit::Micros,
    );
    show(
        "spawn + reap: /bin/true (for reference)",
        &system_true,
        Unit::Micros,
    );
    show("cold call: spawn .. first result", &first, Unit::Micros);
    show(
        "cold call: spawn .. result, shutdown, reaped",
        &full,
        Unit::Micros,
    );
    let r_first = ratio(&first, &trivial);
    let r_full = ratio(&full, &trivial);
    println!(
        "  ratio (p50): {r_first:.2}x to the first result, {r_full:.2}x to reaped \
         (vs /bin/true: {:.2}x, {:.2}x)",
        ratio(&first, &system_true),
        ratio(&full, &system_true)
    );
    verdicts.check(
        r_full <= 2.0,
        format!(
            "cold call p50 (spawn to reaped) within 2x of spawning and reaping a trivial binary \
             ({r_full:.2}x)"
        ),
    );
}

fn moat_command(setup: &Setup, plugin_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moat"));
    let path = format!("{}:{SYSTEM_PATH}", plugin_dir.display());
    command
        .args(["grant", "providers"])
        .env_clear()
        .env("PATH", path)
        .env("HOME", &setup.home)
        .env("MOAT_HOME", &setup.home)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    command
}

fn run_listing(setup: &Setup, plugin_dir: &Path) -> Duration {
    let t = Instant::now();
    let status = moat_command(setup, plugin_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("moat runs");
    let elapsed = t.elapsed();
    assert!(status.success(), "moat grant providers failed");
    elapsed
}

fn listing(setup: &Setup, verdicts: &mut Verdicts) {
    let n = scaled(40);
    let n_cold = scaled(15);
    println!();
    println!(
        "moat grant providers ({}), {PLUGINS} plugins on PATH ({n} interleaved; {n_cold} cold)",
        env!("CARGO_BIN_EXE_moat")
    );
    let cache_file = setup.home.join("cache").join("plugins.json");

    // The first listing fills the cache; check that it lists every plugin and warns about none.
    let out = moat_command(setup, &setup.fifty)
        .output()
        .expect("moat runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let listed = stdout.lines().filter(|l| l.contains("plugin (")).count();
    assert_eq!(listed, PLUGINS, "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "{stderr}");
    assert!(cache_file.exists(), "the listing wrote no cache");

    let mut none = Vec::new();
    let mut cached = Vec::new();
    for i in 0..n + 3 {
        let a = run_listing(setup, &setup.empty);
        let b = run_listing(setup, &setup.fifty);
        if i >= 3 {
            none.push(a);
            cached.push(b);
        }
    }
    let mut cold = Vec::new();
    for _ in 0..n_cold {
        std::fs::remove_file(&cache_file).unwrap();
        cold.push(run_listing(setup, &setup.fifty));
    }
    let (none, cached, cold) = (Stats::of(&none), Stats::of(&cached), Stats::of(&cold));
    show("no plugins", &none, Unit::Millis);
    show("50 plugins, cached", &cached, Unit::Millis);
    show("50 plugins, no cache (all 50 started)", &cold, Unit::Millis);
    let r = ratio(&cached, &none);
    println!("  ratio (p50): cached {r:.2}x the listing with no plugins");
    verdicts.check(
        r <= 1.5,
        format!("cached listing p50 within 1.5x of the listing with none ({r:.2}x)"),
    );
    let ms = cold.p50.as_secs_f64() * 1e3;
    verdicts.check(
        ms < 300.0,
        format!("cold listing p50 under 300 ms ({ms:.1} ms)"),
    );
}
