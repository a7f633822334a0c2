//! The plugin host under load: `cargo bench -p moat --bench plugin_soak` (figures in
//! RELIABILITY.md).
//!
//! One plugin (this executable, started with `--moat-plugin`, served by the SDK) answers
//! `configure_proxy` after a random delay of 0–2 ms. 16 tasks share one [`PluginProvider`] and
//! make `SOAK_CALLS` calls (default 10,000) between them; about one call in four is cancelled by
//! dropping its future after a random 0–3 ms, wherever it is (waiting for the pipe, written,
//! waiting for the answer). Checked:
//!
//! - every call was answered with the right rules or cancelled: no error, nothing lost;
//! - the plugin kept running through the cancellations (one process for the whole soak);
//! - after `shutdown`, the plugin process is gone (reaped, not a zombie), no child of this process
//!   is left, and this process holds as many pipes and descriptors as before the plugin started.
//!
//! Prints the counts and exits 1 on any failed check.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use moat::plugin::{PluginProvider, Timeouts};
use moat_plugin_sdk::{
    Credential, CredentialProvider, GrantRequest, GrantStep, ProviderInfo, ProviderResult,
    ProxyRule, ProxyRules, Secret, async_trait, protocol,
};

const TASKS: usize = 16;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.iter().skip(1).any(|a| a == protocol::PLUGIN_FLAG) {
        moat_plugin_sdk::serve(SlowProvider {
            rng: std::sync::Mutex::new(Rng::seeded()),
        });
    }
    std::process::exit(soak());
}

/// A provider whose `configure_proxy` takes 0–2 ms, so that cancellations find calls in flight.
struct SlowProvider {
    rng: std::sync::Mutex<Rng>,
}

#[async_trait]
impl CredentialProvider for SlowProvider {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("soak", "soak test plugin")
    }

    async fn grant(&self, _: GrantRequest) -> ProviderResult<GrantStep> {
        Ok(GrantStep::Done {
            credential: Credential::new("soak", "soak-token"),
            notes: vec![],
        })
    }

    async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
        let micros = self.rng.lock().unwrap().below(2000);
        tokio::time::sleep(Duration::from_micros(micros)).await;
        Ok(ProxyRules::new().with(ProxyRule::Credential {
            host: "api.soak.test".into(),
            header: "Authorization".into(),
            value: Secret::new(format!("Bearer {}", credential.token.expose())),
            grant: "soak".into(),
        }))
    }
}

/// xorshift64*: enough randomness for delays, no dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Rng((nanos ^ u64::from(std::process::id())) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// This process's open descriptors, and how many of them are pipes.
fn descriptors() -> (usize, usize) {
    let mut all = 0;
    let mut pipes = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        all += 1;
        if std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("pipe:"))
        {
            pipes += 1;
        }
    }
    (all, pipes)
}

/// The processes whose parent is this one.
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

fn soak() -> i32 {
    let calls: u64 = std::env::var("SOAK_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir
        .path()
        .join(format!("{}soak", protocol::EXECUTABLE_PREFIX));
    std::fs::copy(std::env::current_exe().unwrap(), &plugin).unwrap();
    // A first plugin started, called and shut down in a runtime of its own, so that what tokio
    // sets up once per process (the SIGCHLD handler's socket pair) is counted in `before`; the
    // runtime is dropped before the count after too.
    {
        let warm_up = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        warm_up.block_on(async {
            let provider = PluginProvider::start(&plugin, "soak", Timeouts::default())
                .await
                .expect("the soak plugin starts");
            provider
                .configure_proxy(&Credential::new("soak", "warm-up"))
                .await
                .expect("a first call");
            provider.shutdown().await;
        });
    }
    let before = descriptors();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    let started = Instant::now();
    let (answered, cancelled, errors, pid_start, pid_end) = runtime.block_on(async {
        let provider = Arc::new(
            PluginProvider::start(&plugin, "soak", Timeouts::default())
                .await
                .expect("the soak plugin starts"),
        );
        let pid_start = provider.pid().await;
        let next = Arc::new(AtomicU64::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let cancelled = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (provider, next, answered, cancelled, errors) = (
                Arc::clone(&provider),
                Arc::clone(&next),
                Arc::clone(&answered),
                Arc::clone(&cancelled),
                Arc::clone(&errors),
            );
            tasks.push(tokio::spawn(async move {
                let mut rng = Rng((Rng::seeded().0 ^ ((task as u64 + 1) << 32)) | 1);
                let credential = Credential::new("soak", format!("soak-token-{task}"));
                while next.fetch_add(1, Ordering::Relaxed) < calls {
                    let call = provider.configure_proxy(&credential);
                    let outcome = if rng.below(4) == 0 {
                        let after = Duration::from_micros(rng.below(3000));
                        tokio::time::timeout(after, call).await.ok()
                    } else {
                        Some(call.await)
                    };
                    match outcome {
                        None => {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Ok(rules)) => {
                            let right = matches!(
                                rules.rules.as_slice(),
                                [ProxyRule::Credential { value, .. }]
                                    if value.expose() == format!("Bearer soak-token-{task}")
                            );
                            if right {
                                answered.fetch_add(1, Ordering::Relaxed);
                            } else {
                                errors.lock().unwrap().push("a wrong answer".into());
                            }
                        }
                        Some(Err(err)) => errors.lock().unwrap().push(err.to_string()),
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let pid_end = provider.pid().await;
        provider.shutdown().await;
        let errors = std::mem::take(&mut *errors.lock().unwrap());
        (
            answered.load(Ordering::Relaxed),
            cancelled.load(Ordering::Relaxed),
            errors,
            pid_start,
            pid_end,
        )
    });
    let elapsed = started.elapsed();
    drop(runtime);
    // Descriptors are closed by then; give the kernel a moment to drop the reaped process.
    std::thread::sleep(Duration::from_millis(200));
    let after = descriptors();
    let left = children();

    println!(
        "plugin soak: {calls} configure_proxy calls from {TASKS} tasks in {:.1} s: {answered} answered, {cancelled} cancelled, {} failed",
        elapsed.as_secs_f64(),
        errors.len()
    );
    println!(
        "  plugin process: {pid_start:?} at the start, {pid_end:?} at the end; children left: {left:?}"
    );
    println!(
        "  descriptors (all, pipes): {before:?} before the soak's runtime and plugin, {after:?} after shutdown"
    );
    if answered + cancelled != calls as usize {
        failures.push(format!(
            "{} calls unaccounted for",
            calls as usize - answered - cancelled
        ));
    }
    if !errors.is_empty() {
        let mut shown = errors.clone();
        shown.sort();
        shown.dedup();
        failures.push(format!("{} calls failed: {shown:?}", errors.len()));
    }
    if pid_start.is_none() || pid_start != pid_end {
        failures.push("the plugin was restarted during the soak".into());
    }
    if let Some(pid) = pid_start
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        failures.push(format!("the plugin process {pid} is still there"));
    }
    if !left.is_empty() {
        failures.push(format!("child processes left: {left:?}"));
    }
    if after != before {
        failures.push(format!("descriptors before {before:?}, after {after:?}"));
    }
    for failure in &failures {
        println!("FAIL {failure}");
    }
    i32::from(!failures.is_empty())
}
