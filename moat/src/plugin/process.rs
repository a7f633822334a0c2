//! One running plugin: the child process, the JSON-RPC client over its stdio, its stderr, and
//! the rules for ending it.
//!
//! The host owns the process. Every call has a timeout; a timeout, a crash or a protocol violation
//! ends the process (SIGKILL to its process group) and reaps it before the error is returned, so
//! the caller never sees an error while a process lingers. Graceful shutdown is `shutdown` (≤ 2 s),
//! then end of file on stdin, then ≤ 2 s for the exit, then SIGKILL. A reaper task owns the child
//! and always `wait`s for it: no zombie; once the plugin has exited, however it ended, its process
//! group is killed too, so nothing it started in its group outlives it. On Linux the child also
//! gets `PR_SET_PDEATHSIG`, so it dies with moat even when moat is killed with SIGKILL; it runs in
//! its own process group, so a Ctrl-C on the terminal reaches only moat, which then ends its
//! plugins itself.

#![cfg_attr(
    unix,
    expect(
        unsafe_code,
        reason = "kill(2) of the process group; pre_exec for PR_SET_PDEATHSIG"
    )
)]

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use moat_plugin_sdk::protocol::{
    self, InitializeParams, InitializeResult, PROTOCOL_VERSION, code, method,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::process::ChildStdin;
use tokio::sync::{Notify, OnceCell, watch};

use super::client::{Client, RpcError};
use super::error::{ExitReport, Failure, PluginFault, redact_quoted};
use super::pin::HashedFile;
use super::transport::{LineReceiver, OutputHold, Shared, forward_stderr};

/// The environment variable that overrides every timeout except `grant`'s, in seconds.
pub const TIMEOUT_ENV: &str = "MOAT_PLUGIN_TIMEOUT_SECS";

/// How long moat waits for a plugin. Every call has a limit; fields so tests can shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Start-up and the `initialize` answer (5 s).
    pub initialize: Duration,
    /// Every method other than `grant` and `initialize` (30 s).
    pub call: Duration,
    /// `grant` when someone can answer questions (120 s).
    pub grant_interactive: Duration,
    /// `grant` with `--no-input` (30 s).
    pub grant: Duration,
    /// The answer to `shutdown` (2 s).
    pub shutdown: Duration,
    /// The exit after stdin is closed, or after the plugin closed its stdout (2 s).
    pub exit: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            initialize: Duration::from_secs(5),
            call: Duration::from_secs(30),
            grant_interactive: Duration::from_secs(120),
            grant: Duration::from_secs(30),
            shutdown: Duration::from_secs(2),
            exit: Duration::from_secs(2),
        }
    }
}

impl Timeouts {
    /// The defaults, with `MOAT_PLUGIN_TIMEOUT_SECS` (seconds, fractions allowed) replacing the
    /// limit of every call but `grant` when it is set to a positive number.
    pub fn from_env() -> Self {
        Self::default().with_override(std::env::var(TIMEOUT_ENV).ok().as_deref())
    }

    fn with_override(mut self, value: Option<&str>) -> Self {
        let seconds = value.and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(limit) = seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
        {
            self.initialize = limit;
            self.call = limit;
        }
        self
    }

    /// The limit for `grant`.
    pub fn for_grant(&self, interactive: bool) -> Duration {
        if interactive {
            self.grant_interactive
        } else {
            self.grant
        }
    }
}

/// The values of moat's environment variables whose names say they are secret (see
/// [`moat_plugin_sdk::looks_secret_variable`]), as a set to scrub from what plugins say: a plugin
/// inherits moat's environment and may read, log or quote such a value before moat was ever
/// handed it.
pub fn environment_secrets() -> moat_plugin_sdk::SecretSet {
    std::env::vars_os()
        .filter(|(name, _)| {
            name.to_str()
                .is_some_and(moat_plugin_sdk::looks_secret_variable)
        })
        .filter_map(|(_, value)| value.into_string().ok())
        .map(moat_plugin_sdk::Secret::new)
        .collect()
}

/// The value of the environment variable `name` (a prompt's `env`), as a secret to scrub.
pub fn env_secret(name: &str) -> Option<moat_plugin_sdk::Secret> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .map(moat_plugin_sdk::Secret::new)
}

/// The client talking to one plugin.
type Rpc = Client<ChildStdin>;

/// Why a call did not return a result.
#[derive(Debug)]
pub enum CallError {
    /// The plugin answered with a JSON-RPC error; the connection is fine.
    Remote(jsonrpsee::types::ErrorObjectOwned),
    /// The result does not match the protocol (redacted serde message); the connection is fine.
    BadResult(String),
    /// The connection could not go on: the process was stopped and reaped, and this says why.
    Fatal(PluginFault),
}

/// The child process, owned by a reaper task that always waits for it.
#[derive(Debug)]
struct ChildHandle {
    pid: Option<u32>,
    kill: Arc<Notify>,
    status: watch::Receiver<Option<Option<ExitStatus>>>,
    stderr_done: watch::Receiver<bool>,
}

impl ChildHandle {
    /// Waits up to `limit` for the process to end on its own.
    async fn wait_for(&self, limit: Duration) -> Option<ExitReport> {
        let mut status = self.status.clone();
        let ended = tokio::time::timeout(limit, status.wait_for(Option::is_some)).await;
        match ended {
            Ok(Ok(status)) => Some(report(*status)),
            Ok(Err(_)) => Some(ExitReport::Unknown),
            Err(_) => None,
        }
    }

    /// Kills the process group and waits until the process is reaped.
    async fn kill(&self) -> ExitReport {
        self.kill.notify_one();
        let mut status = self.status.clone();
        match status.wait_for(Option::is_some).await {
            Ok(status) => report(*status),
            Err(_) => ExitReport::Unknown,
        }
    }

    /// Waits (briefly) until the stderr task has read everything, so error reports are complete.
    async fn stderr_drained(&self) {
        let mut done = self.stderr_done.clone();
        let _ = tokio::time::timeout(Duration::from_millis(500), done.wait_for(|d| *d)).await;
    }
}

fn report(status: Option<Option<ExitStatus>>) -> ExitReport {
    match status.flatten() {
        Some(status) => ExitReport::Status(status),
        None => ExitReport::Unknown,
    }
}

/// SIGKILL to the whole process group of `pid` (the plugin is its group's leader).
fn kill_group(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// Says, at the default level and once per plugin executable in this moat process, that a plugin
/// did not exit when its stdin ended: it costs every command that starts it `waited`.
fn warn_ignored_end_of_input(name: &str, path: &Path, waited: Duration) {
    static WARNED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if warned.iter().any(|p| p == path) {
        tracing::debug!(provider = %name, "plugin did not exit; killing it");
        return;
    }
    warned.push(path.to_path_buf());
    tracing::warn!(
        "plugin {name} ({}) did not exit within {} of the end of its input, so moat killed it; \
         this costs every command that uses it that long. A plugin must exit when its stdin \
         ends: report this to its author.",
        path.display(),
        super::error::seconds(waited)
    );
}

/// A running plugin and the client talking to it.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    client: RwLock<Option<Arc<Rpc>>>,
    child: ChildHandle,
    timeouts: Timeouts,
    ended: OnceCell<ExitReport>,
    /// The SHA-256 of the executable, taken just before it was started, when asked for.
    sha256: Option<String>,
}

impl Connection {
    /// Starts `path --moat-plugin` with `MOAT_PLUGIN=1` and connects a client to it. With
    /// `hashed`, the executable is hashed first (see [`Connection::binary_sha256`]). Must run in
    /// a tokio runtime.
    pub async fn spawn(
        path: &Path,
        name: &str,
        timeouts: Timeouts,
        hashed: bool,
    ) -> Result<Self, PluginFault> {
        let fault = |failure| PluginFault {
            name: name.to_string(),
            path: path.to_path_buf(),
            method: method::INITIALIZE.to_string(),
            failure,
            stderr_tail: Vec::new(),
        };
        let hashed_file = match hashed {
            true => Some(HashedFile::read(path).await.map_err(|err| {
                fault(Failure::Spawn(format!("cannot read it to check it: {err}")))
            })?),
            false => None,
        };
        let shared = Arc::new(Shared::new(name.to_string(), path.to_path_buf()));
        // From its first byte: a plugin may log a secret of its environment while starting.
        shared.remember_secrets(&environment_secrets());
        let mut child = match spawn_child(path).await {
            Ok(child) => child,
            Err(err) => return Err(fault(Failure::Spawn(err.to_string()))),
        };
        let pid = child.id();
        if let Some(hashed) = &hashed_file
            && !hashed.is_running(pid)
        {
            // Another file than the one hashed was started: it is not talked to.
            kill_group(pid);
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(fault(Failure::Spawn(
                "the executable was replaced while it was being started".into(),
            )));
        }
        let (stdin, stdout, stderr) = (
            child.stdin.take().expect("stdin is piped"),
            child.stdout.take().expect("stdout is piped"),
            child.stderr.take().expect("stderr is piped"),
        );
        tracing::debug!(provider = %name, path = %path.display(), pid, "plugin started");

        let (stderr_tx, stderr_done) = watch::channel(false);
        let stderr_shared = shared.clone();
        tokio::spawn(async move {
            forward_stderr(stderr, stderr_shared).await;
            let _ = stderr_tx.send(true);
        });

        let kill = Arc::new(Notify::new());
        let (status_tx, status) = watch::channel(None);
        let reaper_kill = kill.clone();
        let reaper_name = name.to_string();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => {
                    // It exited on its own: whatever it started in its process group (a
                    // background child, stdio inherited or not) goes with it. The group outlives
                    // its reaped leader while it has members, so its id cannot be reused by then;
                    // once it is empty, the kill finds no one (pids are not reused within the
                    // instant between the two calls). Children that made their own session or
                    // group are out of reach.
                    kill_group(pid);
                    status
                }
                () = reaper_kill.notified() => {
                    kill_group(pid);
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            tracing::debug!(provider = %reaper_name, pid, ?status, "plugin reaped");
            let _ = status_tx.send(Some(status.ok()));
        });

        let rpc = Client::start(
            stdin,
            LineReceiver::new(stdout, shared.clone()),
            shared.clone(),
        );

        Ok(Connection {
            shared,
            client: RwLock::new(Some(Arc::new(rpc))),
            child: ChildHandle {
                pid,
                kill,
                status,
                stderr_done,
            },
            timeouts,
            ended: OnceCell::new(),
            sha256: hashed_file.map(HashedFile::into_sha256),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.pid
    }

    /// The provider name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The executable.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The timeouts in force.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Scrubs `secret` from everything this plugin writes, before moat logs or keeps it.
    pub fn remember_secret(&self, secret: &moat_plugin_sdk::Secret) {
        self.shared.remember_secret(secret);
    }

    /// Scrubs every secret of `secrets` from everything this plugin writes.
    pub fn remember_secrets(&self, secrets: &moat_plugin_sdk::SecretSet) {
        self.shared.remember_secrets(secrets);
    }

    /// The SHA-256 (lower-case hex) of the executable this process was started from, when it was
    /// started hashed: credentials are pinned to it (see [`super::pin`]).
    pub fn binary_sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// Holds back what the plugin logs until the guard is dropped (see `Shared::hold_output`).
    pub fn hold_output(&self) -> OutputHold {
        self.shared.hold_output()
    }

    /// The last lines the plugin wrote on stderr (for reports and `moat plugin check`).
    pub fn stderr_tail(&self) -> Vec<String> {
        self.shared.stderr_tail()
    }

    /// True until the connection failed or was shut down (or began to).
    pub fn is_alive(&self) -> bool {
        self.ended.get().is_none()
            && self.child.status.borrow().is_none()
            && self.client().is_some()
    }

    fn client(&self) -> Option<Arc<Rpc>> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn take_client(&self) -> Option<Arc<Rpc>> {
        self.client
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Calls `method` with `params` (an object) and waits at most `limit` for the answer. When
    /// the connection cannot go on (a timeout, the plugin's exit, a protocol violation), the
    /// process is stopped and reaped first ([`Connection::fail`]) and the error is the
    /// [`PluginFault`] that says why.
    pub async fn call<P, R>(
        &self,
        method: &str,
        params: &P,
        limit: Duration,
    ) -> Result<R, CallError>
    where
        P: Serialize + Sync,
        R: DeserializeOwned,
    {
        let failure = match self.client() {
            // Failed or shut down by another caller.
            None => Failure::Io("the connection was already closed".into()),
            Some(client) => match tokio::time::timeout(limit, client.request(method, params)).await
            {
                Err(_) => Failure::Timeout(limit),
                Ok(Ok(raw)) => {
                    return serde_json::from_str(raw.get())
                        .map_err(|err| CallError::BadResult(redact_quoted(&err.to_string())));
                }
                Ok(Err(RpcError::Remote(error))) => return Err(CallError::Remote(error)),
                Ok(Err(RpcError::Encode(err))) => {
                    return Err(CallError::BadResult(redact_quoted(&err.to_string())));
                }
                // What moat's reader saw: a protocol violation, or the end of the plugin's stdout.
                Ok(Err(RpcError::Closed(failure))) => failure,
            },
        };
        Err(CallError::Fatal(self.fail(method, failure).await))
    }

    /// Ends a connection that failed with `failure` during `method`: the process is stopped and
    /// reaped, then the fault is returned with the tail of its stderr. Idempotent; concurrent
    /// callers share one teardown. [`Connection::call`] does this itself on a fatal error.
    pub async fn fail(&self, method: &str, failure: Failure) -> PluginFault {
        let report = *self
            .ended
            .get_or_init(|| async {
                drop(self.take_client());
                match &failure {
                    // It closed its stdout or the pipe broke: give it a moment to exit on its own,
                    // so the report says how it ended.
                    Failure::Exited(_) | Failure::Io(_) => {
                        match self.child.wait_for(self.timeouts.exit).await {
                            Some(report) => report,
                            None => {
                                self.child.kill().await;
                                ExitReport::ClosedStdout
                            }
                        }
                    }
                    // It is alive and answered; ask it to leave with end of file first.
                    Failure::Handshake(_) => match self.child.wait_for(self.timeouts.exit).await {
                        Some(report) => report,
                        None => self.child.kill().await,
                    },
                    _ => self.child.kill().await,
                }
            })
            .await;
        self.child.stderr_drained().await;
        let failure = match failure {
            Failure::Exited(_) => Failure::Exited(report),
            Failure::Io(_) if matches!(report, ExitReport::Status(_)) => Failure::Exited(report),
            other => other,
        };
        let fault = PluginFault {
            name: self.shared.name.clone(),
            path: self.shared.path.clone(),
            method: method.to_string(),
            failure,
            stderr_tail: self.shared.stderr_tail(),
        };
        tracing::debug!(provider = %fault.name, "{fault}");
        fault
    }

    /// Graceful shutdown: `shutdown` (answered within [`Timeouts::shutdown`]), end of file on
    /// stdin, up to [`Timeouts::exit`] for the exit, then SIGKILL to the group. Always reaps.
    pub async fn shutdown(&self) {
        self.ended
            .get_or_init(|| async {
                if let Some(client) = self.take_client() {
                    let answer = client.request(method::SHUTDOWN, &protocol::Empty {});
                    if let Ok(Err(_)) = tokio::time::timeout(self.timeouts.shutdown, answer).await {
                        // Not the error itself: a plugin's message is not scrubbed here.
                        tracing::debug!(provider = %self.shared.name, "shutdown was not answered");
                    }
                    // End of file on its stdin, even while another caller still holds the client
                    // (bounded: a caller stuck writing to a full pipe holds stdin until its own
                    // limit; the kill below does not wait for it).
                    let _ = tokio::time::timeout(self.timeouts.shutdown, client.close()).await;
                }
                match self.child.wait_for(self.timeouts.exit).await {
                    Some(report) => report,
                    None => {
                        warn_ignored_end_of_input(
                            &self.shared.name,
                            &self.shared.path,
                            self.timeouts.exit,
                        );
                        self.child.kill().await
                    }
                }
            })
            .await;
        self.child.stderr_drained().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.ended.get().is_none() {
            // Not shut down: the reaper kills and reaps it (or, if the runtime is gone, the
            // child's kill_on_drop does).
            self.child.kill.notify_one();
        }
    }
}

/// Spawns the plugin: `--moat-plugin`, `MOAT_PLUGIN=1`, piped stdio, its own process group, killed
/// on drop and (Linux) when moat dies. Retries briefly on ETXTBSY, which a concurrent fork holding
/// a just-written executable open can cause.
async fn spawn_child(path: &Path) -> std::io::Result<tokio::process::Child> {
    let mut attempts = 0;
    loop {
        let mut command = tokio::process::Command::new(path);
        command
            .arg(protocol::PLUGIN_FLAG)
            .env(protocol::PLUGIN_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(level) = super::plugin_log_level() {
            command.env(protocol::LOG_ENV, level);
        }
        #[cfg(unix)]
        command.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = std::process::id();
            // SAFETY: the closure runs between fork and exec; it only calls prctl and getppid,
            // both async-signal-safe, and allocates nothing, as pre_exec requires.
            unsafe {
                command.pre_exec(move || {
                    // Die with the thread that spawned us, i.e. with moat (its runtime's threads
                    // live as long as it does).
                    if libc::prctl(
                        libc::PR_SET_PDEATHSIG,
                        libc::SIGKILL as libc::c_ulong,
                        0,
                        0,
                        0,
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    // moat died between fork and prctl: do not outlive it.
                    if u32::try_from(libc::getppid()).ok() != Some(parent) {
                        return Err(std::io::Error::other(
                            "moat exited while starting the plugin",
                        ));
                    }
                    Ok(())
                });
            }
        }
        match command.spawn() {
            Err(err) if is_text_busy(&err) && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempts)).await;
            }
            result => return result,
        }
    }
}

#[cfg(unix)]
fn is_text_busy(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(libc::ETXTBSY)
}

#[cfg(not(unix))]
fn is_text_busy(_: &std::io::Error) -> bool {
    false
}

/// The protocol versions this host speaks, newest first.
pub fn offered_versions() -> Vec<u32> {
    vec![PROTOCOL_VERSION]
}

/// Starts the plugin called `name` at `path` and runs the `initialize` handshake: the plugin
/// must pick a protocol version moat offered and call itself `name`. On any failure the process
/// is stopped and reaped before the fault is returned.
pub async fn handshake(
    path: &Path,
    name: &str,
    timeouts: Timeouts,
) -> Result<(Connection, InitializeResult), PluginFault> {
    handshake_with(path, name, timeouts, false).await
}

/// [`handshake`], with the executable hashed before it is started when `hashed` (see
/// [`Connection::binary_sha256`]).
pub async fn handshake_with(
    path: &Path,
    name: &str,
    timeouts: Timeouts,
    hashed: bool,
) -> Result<(Connection, InitializeResult), PluginFault> {
    let connection = Connection::spawn(path, name, timeouts, hashed).await?;
    let offered = offered_versions();
    let params = InitializeParams {
        protocol_versions: offered.clone(),
        host_version: format!("moat {}", env!("CARGO_PKG_VERSION")),
    };
    let answer = connection
        .call::<_, InitializeResult>(method::INITIALIZE, &params, timeouts.initialize)
        .await;
    let versions = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let problem = match answer {
        Err(CallError::Fatal(fault)) => return Err(fault),
        Err(CallError::Remote(error)) if error.code() == code::UNSUPPORTED_VERSION => format!(
            "it speaks none of the protocol versions moat offered ({}): {}",
            versions(&offered),
            error.message()
        ),
        Err(CallError::Remote(error)) => format!(
            "it answered initialize with error {}: {}",
            error.code(),
            error.message()
        ),
        Err(CallError::BadResult(detail)) => {
            format!(
                "its answer to initialize does not match protocol v{PROTOCOL_VERSION}: {detail}"
            )
        }
        Ok(result) if !offered.contains(&result.protocol_version) => format!(
            "it answered with protocol version {}, but moat offered only {}; install a version \
             of the plugin for protocol {} or a moat that speaks {}",
            result.protocol_version,
            versions(&offered),
            versions(&offered),
            result.protocol_version
        ),
        Ok(result) if result.info.name != name => format!(
            "it calls itself {:?}, but its executable is named {}{name}",
            result.info.name,
            protocol::EXECUTABLE_PREFIX
        ),
        Ok(result) => return Ok((connection, result)),
    };
    Err(connection
        .fail(method::INITIALIZE, Failure::Handshake(problem))
        .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_override_applies_to_every_call_but_grant() {
        let t = Timeouts::default().with_override(Some("1.5"));
        assert_eq!(t.initialize, Duration::from_millis(1500));
        assert_eq!(t.call, Duration::from_millis(1500));
        assert_eq!(t.for_grant(true), Duration::from_secs(120));
        assert_eq!(t.for_grant(false), Duration::from_secs(30));
        for bad in ["", "x", "-1", "0", "inf", "NaN"] {
            assert_eq!(
                Timeouts::default().with_override(Some(bad)),
                Timeouts::default()
            );
        }
    }
}
