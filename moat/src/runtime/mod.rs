//! The container runtime: what `moat run` needs from a container engine, and Docker behind it.
//!
//! The manager (`run/`) talks to a [`Runtime`], a small object-safe trait, so it can be tested
//! with a fake and another engine can slot in later. [`DockerRuntime`] implements it through
//! bollard. Around it, one module per job:
//!
//! - `connect`: which engine (`DOCKER_HOST`, `DOCKER_CONTEXT`, the CLI's current context);
//! - `docker`: the Docker Engine API calls;
//! - `network`: the shared `moat` network (internal, no inter-container traffic), whose
//!   gateway address is where moat's proxy listens;
//! - [`image`]: which image to run, and the generated Dockerfile for `dependencies:`;
//! - [`init`]: the init script moat mounts (not bakes) into every container: CA trust, the
//!   strict-policy firewall, dropping root to the workspace owner;
//! - [`progress`]: where pull and build progress goes;
//! - `tty`: attaching to a TTY container with its bytes untouched (bollard's demuxer can eat
//!   them).
//!
//! A run, as the manager drives it (the proxy listens on `network.gateway`, which
//! [`NetworkInfo::gateway_is_local`] checks is possible; the CA directory is mounted with
//! [`init::mount_ca`]). Every call is cancel-safe in the sense that dropping its future (Ctrl-C)
//! leaves nothing half-done on moat's side: a dropped build or pull closes its connection and the
//! engine stops it; a created container stays until [`Runtime::remove`], which cleanup calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), moat::runtime::RuntimeError> {
//! use futures_util::StreamExt;
//! use moat::runtime::*;
//!
//! let docker = DockerRuntime::connect().await?;
//! let network = docker.ensure_network(&NetworkSpec::default()).await?;
//! let plan = ImagePlan::new(&ImageRequest::new(image::base_image(None, None)))?;
//! let image = plan.ensure(&docker, &progress::NoProgress).await?;
//! let init = InitScript::install(std::path::Path::new("/tmp/moat-init"))?;
//! let mut spec = ContainerSpec::new("run_0123456789ab", image, ["echo", "hello"]);
//! spec.network = Some(network.name.clone());
//! spec.extra_hosts.push(("moat-proxy".into(), network.gateway));
//! init.apply(&mut spec, &InitOptions { uid: 1000, gid: 1000, firewall: None });
//! let id = docker.create(&spec).await?;
//! let mut attached = docker.attach(&id, false).await?;
//! docker.start(&id).await?;
//! while let Some(chunk) = attached.output.next().await {
//!     let chunk = chunk?;
//!     // chunk.stream is Stdout or Stderr; chunk.bytes the data
//! }
//! let code = docker.wait(&id).await?;
//! docker.remove(&id).await?;
//! # let _ = code; Ok(()) }
//! ```

pub(crate) mod connect;
pub(crate) mod docker;
pub(crate) mod error;
pub mod image;
pub mod init;
pub(crate) mod network;
pub mod progress;
mod tty;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use tokio::io::AsyncWrite;

pub use connect::{Endpoint, EndpointOrigin};
pub use docker::DockerRuntime;
pub use error::RuntimeError;
pub use image::{BuildSpec, Dependency, ImagePlan, ImageRequest};
pub use init::{InitOptions, InitScript};
pub use network::{NetworkInfo, NetworkSpec};
pub use progress::{Progress, ProgressEvent};

/// The working directory of every container: the workspace is mounted here.
pub const WORKSPACE: &str = "/workspace";

/// The label on everything moat creates (containers, the network, generated images), value
/// `true`.
pub const MANAGED_LABEL: &str = "moat.managed";

/// The label naming the run a container belongs to (its run id).
pub const RUN_LABEL: &str = "moat.run";

/// A container's id as the engine knows it (or its name: the engine accepts both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(pub String);

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ContainerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A host path mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute path on the host (it must exist).
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Everything needed to create a container. `Debug` shows env *names* only: values may hold the
/// run's proxy token.
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The container's name (moat uses the run id).
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Labels; [`ContainerSpec::new`] sets `moat.managed=true`, so [`Runtime::list`] finds every
    /// container moat made.
    pub labels: BTreeMap<String, String>,
    /// Replaces the image's entrypoint; `None` keeps it.
    pub entrypoint: Option<Vec<String>>,
    /// The command (arguments to the entrypoint).
    pub cmd: Vec<String>,
    /// Environment; never logged.
    pub env: BTreeMap<String, String>,
    /// Working directory, [`WORKSPACE`] unless changed.
    pub workdir: String,
    /// `uid[:gid]` or a user name to start as; `None` keeps the image's (moat's init starts as
    /// root and drops privileges itself).
    pub user: Option<String>,
    /// Bind mounts.
    pub mounts: Vec<BindMount>,
    /// Extra `/etc/hosts` entries, e.g. `("moat-proxy", gateway)`.
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// The network to join (by name); `None` is the engine's default bridge.
    pub network: Option<String>,
    /// Capabilities to add, e.g. `NET_ADMIN` for the init's firewall.
    pub cap_add: Vec<String>,
    /// Allocate a TTY (output then arrives as one stream, reported as stdout).
    pub tty: bool,
    /// Keep stdin open so [`Runtime::attach`] can write to it.
    pub open_stdin: bool,
    /// The TTY's size from the start, `(rows, columns)`, so a command that reads it at once
    /// does not see 0x0 before the first [`Runtime::resize`] (engines before API 1.42 ignore it).
    pub console_size: Option<(u16, u16)>,
}

impl ContainerSpec {
    /// A spec with the given name, image and command, everything else default (workdir
    /// [`WORKSPACE`], no mounts, default network).
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        image: impl Into<String>,
        cmd: impl IntoIterator<Item = S>,
    ) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            labels: BTreeMap::from([(MANAGED_LABEL.to_owned(), "true".to_owned())]),
            entrypoint: None,
            cmd: cmd.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            workdir: WORKSPACE.into(),
            user: None,
            mounts: Vec::new(),
            extra_hosts: Vec::new(),
            network: None,
            cap_add: Vec::new(),
            tty: false,
            open_stdin: false,
            console_size: None,
        }
    }
}

impl fmt::Debug for ContainerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContainerSpec")
            .field("name", &self.name)
            .field("image", &self.image)
            .field("labels", &self.labels)
            .field("entrypoint", &self.entrypoint)
            .field("cmd", &self.cmd)
            .field("env", &EnvNames(&self.env))
            .field("workdir", &self.workdir)
            .field("user", &self.user)
            .field("mounts", &self.mounts)
            .field("extra_hosts", &self.extra_hosts)
            .field("network", &self.network)
            .field("cap_add", &self.cap_add)
            .field("tty", &self.tty)
            .field("open_stdin", &self.open_stdin)
            .field("console_size", &self.console_size)
            .finish()
    }
}

/// Labels as the engine API types want them.
pub(crate) fn label_map(
    labels: &BTreeMap<String, String>,
) -> std::collections::HashMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Formats env as `{NAME=<redacted>, ...}`.
struct EnvNames<'a>(&'a BTreeMap<String, String>);

impl fmt::Debug for EnvNames<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for key in self.0.keys() {
            set.entry(&format_args!("{key}=<redacted>"));
        }
        set.finish()
    }
}

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output (and everything, under a TTY).
    Stdout,
    /// Standard error.
    Stderr,
}

/// A piece of the container's output, as the engine delivered it (not split into lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Where it came from.
    pub stream: OutputStream,
    /// The bytes.
    pub bytes: Bytes,
}

/// The container's output, demultiplexed; ends when the container's streams close.
pub type OutputStreamBox = Pin<Box<dyn Stream<Item = Result<OutputChunk, RuntimeError>> + Send>>;

/// What [`Runtime::attach`] returns. Attach before [`Runtime::start`] so no output is lost.
pub struct Attached {
    /// The output.
    pub output: OutputStreamBox,
    /// The container's stdin, when asked for (needs [`ContainerSpec::open_stdin`]). Shutting it
    /// down closes the container's stdin.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
}

impl fmt::Debug for Attached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attached")
            .field("stdin", &self.stdin.is_some())
            .finish_non_exhaustive()
    }
}

/// A container's state, from [`Runtime::inspect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// The engine's id.
    pub id: String,
    /// Running (or paused/restarting) now.
    pub running: bool,
    /// The engine's status word: `created`, `running`, `exited`, `dead`, ...
    pub status: String,
    /// The exit code once it stopped.
    pub exit_code: Option<i64>,
    /// Killed by the kernel's OOM killer.
    pub oom_killed: bool,
}

/// What moat needs from a container engine. Object-safe: the manager holds a
/// `Arc<dyn Runtime>`.
///
/// Errors are [`RuntimeError`]s with hints. Idempotence where cleanup needs it: [`Runtime::remove`]
/// of a missing container and [`Runtime::stop`] of a stopped one succeed.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The runtime's name for metadata (`docker`).
    fn name(&self) -> &'static str;

    /// Check the engine answers.
    async fn ping(&self) -> Result<(), RuntimeError>;

    /// Whether an image with this reference is present locally.
    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Pull an image, reporting progress. Failure is [`RuntimeError::ImageUnavailable`].
    async fn pull_image(&self, image: &str, progress: &dyn Progress) -> Result<(), RuntimeError>;

    /// Build an image from a Dockerfile and context files, reporting its output.
    async fn build_image(
        &self,
        spec: &BuildSpec,
        progress: &dyn Progress,
    ) -> Result<(), RuntimeError>;

    /// Create the network if it is missing (safe when another process does the same at the same
    /// time) and return its name and gateway.
    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo, RuntimeError>;

    /// Remove a network; a missing one is fine.
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError>;

    /// Create (not start) a container.
    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError>;

    /// Attach to the output (and stdin when `stdin`), before [`Runtime::start`].
    async fn attach(&self, id: &ContainerId, stdin: bool) -> Result<Attached, RuntimeError>;

    /// Start a created container.
    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// Resize the container's TTY.
    async fn resize(&self, id: &ContainerId, rows: u16, cols: u16) -> Result<(), RuntimeError>;

    /// Wait for the container to exit and return its exit code (non-zero is not an error).
    /// A container that does not exist (removed under us) is [`RuntimeError::ContainerGone`].
    async fn wait(&self, id: &ContainerId) -> Result<i64, RuntimeError>;

    /// SIGTERM, then SIGKILL after `timeout`. Stopping a stopped container succeeds.
    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<(), RuntimeError>;

    /// Send a signal (`KILL`, `TERM`, `INT`, ...) to the container's main process.
    async fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RuntimeError>;

    /// Remove the container, running or not. A missing container succeeds.
    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError>;

    /// The container's state.
    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError>;

    /// Containers, running or not, carrying `label` (`key` or `key=value`), e.g.
    /// `moat.managed=true` to find what earlier runs left behind.
    async fn list(&self, label: &str) -> Result<Vec<ContainerSummary>, RuntimeError>;
}

/// One container from [`Runtime::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// The engine's id.
    pub id: ContainerId,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Running now.
    pub running: bool,
    /// The engine's state word: `created`, `running`, `exited`, ...
    pub state: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_spec_shows_env_names_but_never_values() {
        let mut spec = ContainerSpec::new("run_0123456789ab", "img", ["env"]);
        spec.env.insert(
            "HTTPS_PROXY".into(),
            "http://moat:tok3n-s3cret@moat-proxy:1".into(),
        );
        spec.env
            .insert("GH_TOKEN".into(), "ghp_placeholder_value".into());
        let debug = format!("{spec:?}");
        let pretty = format!("{spec:#?}");
        for text in [&debug, &pretty] {
            assert!(!text.contains("tok3n-s3cret"), "{text}");
            assert!(!text.contains("ghp_placeholder_value"), "{text}");
            assert!(text.contains("HTTPS_PROXY=<redacted>"), "{text}");
            assert!(text.contains("GH_TOKEN=<redacted>"), "{text}");
        }
        assert!(debug.contains("run_0123456789ab") && debug.contains("/workspace"));
    }
}
