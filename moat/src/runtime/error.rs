//! The runtime's one error type.
//!
//! Each variant says what failed in terms the user knows (the socket tried, the image, the
//! package name), and [`RuntimeError::hint`] says what to do about it, so the CLI can print one
//! report without knowing Docker. No variant carries an environment value: a container's env may
//! hold the run's proxy token.

use std::path::PathBuf;

/// What can go wrong talking to a container engine.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Nothing answered at the endpoint (socket missing, connection refused, timeout).
    #[error("cannot reach the container engine at {endpoint} ({origin}): {cause}")]
    EngineUnreachable {
        /// The host or socket tried, e.g. `unix:///var/run/docker.sock`.
        endpoint: String,
        /// Where that endpoint came from: `DOCKER_HOST`, `Docker context "colima"`, `default`.
        origin: String,
        /// The underlying failure.
        cause: String,
    },
    /// The endpoint uses a transport moat does not speak yet (ssh://, TLS).
    #[error("container engine endpoint {endpoint} ({origin}) is not supported: {reason}")]
    UnsupportedEndpoint {
        /// The host as configured.
        endpoint: String,
        /// Where it came from.
        origin: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The Docker CLI configuration names a context moat cannot read.
    #[error("Docker context {context:?}: {reason} ({})", path.display())]
    Context {
        /// The context's name.
        context: String,
        /// The file read (or missing).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An image is absent and could not be pulled.
    #[error("image {image} is not available locally and could not be pulled: {cause}")]
    ImageUnavailable {
        /// The image reference.
        image: String,
        /// The engine's answer.
        cause: String,
    },
    /// Building a generated image failed.
    #[error("building image {tag} failed: {message}")]
    Build {
        /// The tag being built.
        tag: String,
        /// The build's error (its output went to the progress sink).
        message: String,
    },
    /// A `dependencies:` entry is not something moat can install.
    #[error("invalid dependency {name:?}: {reason}")]
    InvalidDependency {
        /// The entry as written.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The container does not exist (never created, or removed under us).
    #[error("container {id} does not exist (removed while moat was using it?)")]
    ContainerGone {
        /// The container's id or name.
        id: String,
    },
    /// A container (or network) with that name already exists.
    #[error("a container named {name} already exists")]
    NameInUse {
        /// The name asked for.
        name: String,
    },
    /// The engine refused or failed an operation.
    #[error("container engine: {action} failed: {message}")]
    Engine {
        /// What moat asked for, e.g. `create container run_0123abcd4567`.
        action: String,
        /// The engine's message.
        message: String,
    },
    /// A local file operation (writing the init script, reading a build context file).
    #[error("{what}: {source}")]
    Io {
        /// What moat was doing.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// What the user can do about it. Every variant has one today; `Option` leaves room for
    /// errors that need none.
    pub fn hint(&self) -> Option<String> {
        match self {
            RuntimeError::EngineUnreachable { cause, .. }
                if cause.to_lowercase().contains("permission denied") =>
            {
                Some(
                    "the engine's socket refused you: add your user to the `docker` group \
                     (`sudo usermod -aG docker $USER`, then log in again) or use rootless Docker \
                     and point DOCKER_HOST at its socket"
                        .into(),
                )
            }
            RuntimeError::EngineUnreachable { .. } => Some(
                "start Docker (or Colima, Podman's Docker socket, ...), pick a working context with \
                 `docker context use <name>`, or point DOCKER_HOST at the engine \
                 (e.g. DOCKER_HOST=unix:///var/run/docker.sock); `docker info` shows what the CLI reaches"
                    .into(),
            ),
            RuntimeError::UnsupportedEndpoint { .. } => Some(
                "moat speaks to the engine over a unix socket or plain tcp://; forward the remote \
                 socket locally (e.g. `ssh -NL /tmp/docker.sock:/var/run/docker.sock host`) and set \
                 DOCKER_HOST=unix:///tmp/docker.sock"
                    .into(),
            ),
            RuntimeError::Context { .. } => Some(
                "list contexts with `docker context ls`, switch with `docker context use <name>` \
                 (or `docker context use default`), or set DOCKER_HOST"
                    .into(),
            ),
            RuntimeError::ImageUnavailable { .. } => Some(
                "pull it yourself (`docker pull <image>`) or, without a registry, build moat's local \
                 base image with `scripts/base-image.sh` and use it: \
                 MOAT_BASE_IMAGE=moat-base:bookworm (or --image / `base_image:` in moat.yaml)"
                    .into(),
            ),
            RuntimeError::Build { .. } => Some(
                "the build output above shows the failing step; check the names under \
                 `dependencies:` in moat.yaml (Debian package names) and that the base image is \
                 Debian-based with apt-get"
                    .into(),
            ),
            RuntimeError::InvalidDependency { .. } => Some(
                "`dependencies:` takes Debian package names (lowercase letters, digits, + - .), \
                 the runtimes node, python, go, or npm:<package> (an npm package installed \
                 globally); search names with `apt-cache search <word>`"
                    .into(),
            ),
            RuntimeError::NameInUse { name } => Some(format!(
                "remove the old one with `docker rm -f {name}` or choose another name"
            )),
            RuntimeError::ContainerGone { .. } => {
                Some("something outside moat removed the container (`docker rm`)".into())
            }
            RuntimeError::Engine { .. } => Some(
                "the engine's message says why; `docker info` shows the engine's state and \
                 `docker ps -a --filter label=moat.managed=true` what moat left running"
                    .into(),
            ),
            RuntimeError::Io { .. } => {
                Some("check the path's permissions and free space (MOAT_HOME)".into())
            }
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            what: what.into(),
            source,
        }
    }
}
