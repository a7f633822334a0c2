//! [`Runtime`] on the Docker Engine API, through bollard.
//!
//! bollard speaks the newest API version by default; engines in the field are older (this
//! machine's is 20.10, API 1.41), so [`DockerRuntime::connect_to`] negotiates the version first,
//! which doubles as the "is anything there" check that turns a dead socket into
//! [`RuntimeError::EngineUnreachable`]. Engine answers become typed errors here (404 on a container:
//! gone; 409 on create: name in use), so nothing above this module parses Docker messages.
//!
//! bollard traces request bodies at `trace` level through the `log` crate, and a create body holds
//! the container's env: `main.rs` turns the `bollard` target off. This module itself never logs an
//! env value.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::models::{
    BuildInfo, ContainerCreateBody, CreateImageInfo, HostConfig, Mount, MountType, NetworkInspect,
};
use bollard::query_parameters::{
    AttachContainerOptions, BuildImageOptions, CreateContainerOptions, CreateImageOptions,
    InspectContainerOptions, InspectNetworkOptions, KillContainerOptions, ListContainersOptions,
    ListNetworksOptions, RemoveContainerOptions, ResizeContainerTTYOptions, StopContainerOptions,
    WaitContainerOptions,
};
use futures_util::StreamExt;
use tokio::io::AsyncWrite;

use super::connect::Endpoint;
use super::error::RuntimeError;
use super::image::BuildSpec;
use super::network::{self, NetworkInfo, NetworkSpec};
use super::progress::{Progress, ProgressEvent};
use super::tty::{self, AttachFailure};
use super::{
    Attached, ContainerId, ContainerSpec, ContainerStatus, ContainerSummary, OutputChunk,
    OutputStream, Runtime,
};

/// How long connecting (and negotiating the API version) may take before the engine counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Per-request limit for the engine's first answer (headers). Streams (build, pull, wait,
/// attach) are not limited once they started.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Docker through bollard. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    endpoint: Endpoint,
}

/// An exclusive lock on `<temp>/moat-network-<name>.lock`, taken on a blocking thread. `None`
/// when the file cannot be opened or locked (another user's file we cannot read, a read-only
/// temp dir): then the oldest-wins rule alone keeps runs on one network.
async fn network_lock(name: &str) -> Option<std::fs::File> {
    let path = std::env::temp_dir().join(format!("moat-network-{name}.lock"));
    tokio::task::spawn_blocking(move || {
        // Read access is enough for flock(2), so another user's lock file still serves.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .ok()?;
        file.lock().ok()?;
        Some(file)
    })
    .await
    .ok()
    .flatten()
}

impl DockerRuntime {
    /// Connect to the engine the environment names ([`Endpoint::from_env`]).
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        DockerRuntime::connect_to(Endpoint::from_env()?).await
    }

    /// Connect to `endpoint` and check it answers.
    pub async fn connect_to(endpoint: Endpoint) -> Result<DockerRuntime, RuntimeError> {
        let unreachable = |cause: String| RuntimeError::EngineUnreachable {
            endpoint: endpoint.host.clone(),
            origin: endpoint.origin.to_string(),
            cause,
        };
        let unsupported = |reason: &str| RuntimeError::UnsupportedEndpoint {
            endpoint: endpoint.host.clone(),
            origin: endpoint.origin.to_string(),
            reason: reason.to_owned(),
        };
        let host = endpoint.host.as_str();
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            if !Path::new(path).exists() {
                return Err(unreachable(format!("no socket at {path}")));
            }
            Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            if std::env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty()) {
                return Err(unsupported(
                    "DOCKER_TLS_VERIFY is set and moat has no TLS transport",
                ));
            }
            Docker::connect_with_http(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("ssh://") {
            return Err(unsupported("ssh:// endpoints are not supported yet"));
        } else {
            return Err(unsupported(
                "only unix:// and tcp:// endpoints are supported",
            ));
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = match tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version()).await {
            Ok(Ok(docker)) => docker,
            Ok(Err(e)) => return Err(unreachable(describe(&e))),
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        Ok(DockerRuntime { docker, endpoint })
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Turn a bollard error into ours; transport failures mean the engine went away.
    fn error(&self, action: impl Into<String>, e: BollardError) -> RuntimeError {
        match e {
            BollardError::HyperLegacyError { .. }
            | BollardError::IOError { .. }
            | BollardError::RequestTimeoutError
            | BollardError::SocketNotFoundError(_) => RuntimeError::EngineUnreachable {
                endpoint: self.endpoint.host.clone(),
                origin: self.endpoint.origin.to_string(),
                cause: describe(&e),
            },
            e => RuntimeError::Engine {
                action: action.into(),
                message: describe(&e),
            },
        }
    }

    /// A container operation's error: 404 means the container is gone.
    fn container_error(&self, action: &str, id: &ContainerId, e: BollardError) -> RuntimeError {
        if status(&e) == Some(404) {
            return RuntimeError::ContainerGone { id: id.0.clone() };
        }
        self.error(format!("{action} container {id}"), e)
    }

    async fn inspect_network_by_id(&self, id: &str) -> Result<NetworkInspect, BollardError> {
        self.docker
            .inspect_network(id, None::<InspectNetworkOptions>)
            .await
    }

    /// Networks named exactly `name`, oldest first (ties by id), so racing processes agree.
    async fn networks_named(&self, name: &str) -> Result<Vec<String>, RuntimeError> {
        let options = ListNetworksOptions {
            filters: Some(HashMap::from([("name".to_owned(), vec![name.to_owned()])])),
        };
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| self.error(format!("list networks named {name}"), e))?;
        let mut found: Vec<(Option<chrono::DateTime<chrono::FixedOffset>>, String)> = networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(name))
            .filter_map(|n| {
                let created = n
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok());
                n.id.map(|id| (created, id))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }
}

impl DockerRuntime {
    /// Attach to a TTY container with bytes passed through untouched ([`super::tty`]).
    async fn attach_tty(&self, id: &ContainerId, stdin: bool) -> Result<Attached, RuntimeError> {
        let unreachable = |e: std::io::Error| RuntimeError::EngineUnreachable {
            endpoint: self.endpoint.host.clone(),
            origin: self.endpoint.origin.to_string(),
            cause: e.to_string(),
        };
        let conn = tty::connect(&self.endpoint.host)
            .await
            .map_err(unreachable)?;
        let version = self.docker.client_version().to_string();
        let (conn, first) = tty::attach(conn, &version, &id.0, stdin)
            .await
            .map_err(|failure| match failure {
                AttachFailure::Io(e) => unreachable(e),
                AttachFailure::Status(404, _) => RuntimeError::ContainerGone { id: id.0.clone() },
                AttachFailure::Status(_, message) => RuntimeError::Engine {
                    action: format!("attach to container {id}"),
                    message,
                },
            })?;
        let (read, write) = tokio::io::split(conn);
        let action = format!("read output of container {id}");
        let output = tty::byte_stream(first, read).map(move |chunk| {
            chunk
                .map(|bytes| OutputChunk {
                    stream: OutputStream::Stdout,
                    bytes,
                })
                .map_err(|e| RuntimeError::Engine {
                    action: action.clone(),
                    message: e.to_string(),
                })
        });
        let stdin: Option<Pin<Box<dyn AsyncWrite + Send>>> =
            if stdin { Some(Box::pin(write)) } else { None };
        Ok(Attached {
            output: Box::pin(output),
            stdin,
        })
    }
}

/// The HTTP status of an engine answer, if it was one.
fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// The engine's message when it sent one, else bollard's description.
fn describe(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } if !message.is_empty() => {
            message.trim().to_owned()
        }
        BollardError::DockerStreamError { error } => error.trim().to_owned(),
        // Transport errors say what failed only in their sources ("client error (Connect)" on
        // top, "Connection refused" or "Permission denied" below).
        e => crate::http::error_chain(e),
    }
}

/// `image` with `:latest` when it names no tag or digest: pulling a bare name would pull every
/// tag.
fn with_default_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

/// The build context: the Dockerfile and the spec's files, as a tar archive.
fn build_context(spec: &BuildSpec) -> Result<Vec<u8>, RuntimeError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, bytes)
            .map_err(|e| RuntimeError::io(format!("adding {path} to the build context"), e))
    };
    add("Dockerfile", spec.dockerfile.as_bytes())?;
    for (path, bytes) in &spec.files {
        add(path, bytes)?;
    }
    tar.into_inner()
        .map_err(|e| RuntimeError::io("finishing the build context", e))
}

/// Build output as progress lines: one event per non-empty line.
fn report_build(info: &BuildInfo, progress: &dyn Progress) {
    for text in [info.stream.as_deref(), info.status.as_deref()]
        .into_iter()
        .flatten()
    {
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            progress.event(ProgressEvent::Line(line.to_owned()));
        }
    }
}

/// Pull status as progress: byte counts while downloading, a line for each status change.
fn report_pull(info: &CreateImageInfo, progress: &dyn Progress) {
    let id = info.id.clone().unwrap_or_default();
    if let Some(detail) = &info.progress_detail
        && let Some(current) = detail.current
    {
        progress.event(ProgressEvent::Bytes {
            id,
            current: current.max(0) as u64,
            total: detail.total.filter(|t| *t > 0).map(|t| t as u64),
        });
        return;
    }
    if let Some(status) = &info.status {
        let line = if id.is_empty() {
            status.clone()
        } else {
            format!("{id}: {status}")
        };
        progress.event(ProgressEvent::Line(line));
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn ping(&self) -> Result<(), RuntimeError> {
        self.docker
            .ping()
            .await
            .map(drop)
            .map_err(|e| self.error("ping", e))
    }

    async fn image_exists(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.error(format!("inspect image {image}"), e)),
        }
    }

    async fn pull_image(&self, image: &str, progress: &dyn Progress) -> Result<(), RuntimeError> {
        let reference = with_default_tag(image);
        progress.event(ProgressEvent::Begin(format!("Pulling {reference}")));
        let options = CreateImageOptions {
            from_image: Some(reference.clone()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => report_pull(&info, progress),
                Err(e) => {
                    return Err(match self.error(format!("pull {reference}"), e) {
                        RuntimeError::Engine { message, .. } => RuntimeError::ImageUnavailable {
                            image: image.to_owned(),
                            cause: message,
                        },
                        other => other,
                    });
                }
            }
        }
        if !self.image_exists(&reference).await? {
            return Err(RuntimeError::ImageUnavailable {
                image: image.to_owned(),
                cause: "the pull ended without the image".into(),
            });
        }
        progress.event(ProgressEvent::Done(format!("Pulled {reference}")));
        Ok(())
    }

    async fn build_image(
        &self,
        spec: &BuildSpec,
        progress: &dyn Progress,
    ) -> Result<(), RuntimeError> {
        let context = build_context(spec)?;
        progress.event(ProgressEvent::Begin(format!("Building {}", spec.tag)));
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(spec.tag.clone()),
            rm: true,
            forcerm: true,
            labels: Some(super::label_map(&spec.labels)),
            ..Default::default()
        };
        let body = bollard::body_full(context.into());
        let mut stream = self.docker.build_image(options, None, Some(body));
        let build_error = |message: String| RuntimeError::Build {
            tag: spec.tag.clone(),
            message,
        };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    return Err(match self.error(format!("build {}", spec.tag), e) {
                        RuntimeError::Engine { message, .. } => build_error(message),
                        other => other,
                    });
                }
            };
            report_build(&info, progress);
            if let Some(detail) = &info.error_detail {
                let message = detail.message.clone().unwrap_or_default();
                return Err(build_error(message.trim().to_owned()));
            }
        }
        if !self.image_exists(&spec.tag).await? {
            return Err(build_error("the build ended without an image".into()));
        }
        progress.event(ProgressEvent::Done(format!("Built {}", spec.tag)));
        Ok(())
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<NetworkInfo, RuntimeError> {
        let name = spec.name.as_str();
        // This engine does not refuse a second network of the same name, and a run that lists
        // before another's create is visible makes its own: runs on this machine take turns
        // (a file lock, held until the network is chosen). The oldest-wins rule below still
        // covers processes that cannot share the lock.
        let _turn = network_lock(name).await;
        let mut existing = self.networks_named(name).await?;
        let mut created = None;
        if existing.is_empty() {
            match self.docker.create_network(spec.create_request()).await {
                Ok(response) => created = Some(response.id),
                // Another run created it first: use theirs.
                Err(e) if status(&e) == Some(409) => {}
                Err(e) => return Err(self.error(format!("create network {name}"), e)),
            }
            existing = self.networks_named(name).await?;
        }
        // Several runs that created it at the same moment all keep the oldest; a loser removes
        // its own copy (an engine without an atomic name check lets duplicates through).
        let Some(chosen) = existing.first().cloned() else {
            return Err(RuntimeError::Engine {
                action: format!("create network {name}"),
                message: "the network vanished right after it was created".into(),
            });
        };
        if let Some(mine) = &created
            && *mine != chosen
        {
            let _ = self.docker.remove_network(mine).await;
        }
        let inspect = self
            .inspect_network_by_id(&chosen)
            .await
            .map_err(|e| self.error(format!("inspect network {name}"), e))?;
        let info = network::info_from_inspect(name, inspect)?;
        tracing::debug!(
            network = %info.name,
            gateway = %info.gateway,
            created = created.is_some(),
            "network ready"
        );
        Ok(info)
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(self.error(format!("remove network {name}"), e)),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<ContainerId, RuntimeError> {
        let mounts = spec
            .mounts
            .iter()
            .map(|m| Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let host_config = HostConfig {
            mounts: Some(mounts),
            extra_hosts: Some(
                spec.extra_hosts
                    .iter()
                    .map(|(host, ip)| format!("{host}:{ip}"))
                    .collect(),
            ),
            network_mode: spec.network.clone(),
            cap_add: (!spec.cap_add.is_empty()).then(|| spec.cap_add.clone()),
            // The engine's init (tini) is PID 1: it passes SIGTERM on to the command, which as PID
            // 1 itself would ignore it (no handler) and be killed only after the grace period,
            // and it reaps the command's orphans.
            init: Some(true),
            console_size: spec
                .console_size
                .map(|(rows, cols)| vec![usize::from(rows), usize::from(cols)]),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: Some(spec.cmd.clone()),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            working_dir: Some(spec.workdir.clone()),
            user: spec.user.clone(),
            labels: Some(super::label_map(&spec.labels)),
            tty: Some(spec.tty),
            open_stdin: Some(spec.open_stdin),
            stdin_once: Some(spec.open_stdin),
            attach_stdin: Some(spec.open_stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        tracing::debug!(
            name = %spec.name,
            image = %spec.image,
            network = ?spec.network,
            env_names = ?spec.env.keys().collect::<Vec<_>>(),
            "creating container"
        );
        match self.docker.create_container(Some(options), body).await {
            Ok(response) => Ok(ContainerId(response.id)),
            Err(e) if status(&e) == Some(409) => Err(RuntimeError::NameInUse {
                name: spec.name.clone(),
            }),
            Err(e) if status(&e) == Some(404) => Err(RuntimeError::ImageUnavailable {
                image: spec.image.clone(),
                cause: describe(&e),
            }),
            Err(e) => Err(self.error(format!("create container {}", spec.name), e)),
        }
    }

    async fn attach(&self, id: &ContainerId, stdin: bool) -> Result<Attached, RuntimeError> {
        let inspect = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.container_error("attach to", id, e))?;
        if inspect.config.and_then(|c| c.tty).unwrap_or(false) {
            return self.attach_tty(id, stdin).await;
        }
        let options = AttachContainerOptions {
            stream: true,
            stdin,
            stdout: true,
            stderr: true,
            logs: false,
            detach_keys: None,
        };
        let attached = self
            .docker
            .attach_container(&id.0, Some(options))
            .await
            .map_err(|e| self.container_error("attach to", id, e))?;
        let this = self.clone();
        let id_for_errors = id.clone();
        let output = attached.output.filter_map(move |item| {
            let result = match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    Some(Ok(OutputChunk {
                        stream: OutputStream::Stdout,
                        bytes: message,
                    }))
                }
                Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk {
                    stream: OutputStream::Stderr,
                    bytes: message,
                })),
                Ok(LogOutput::StdIn { .. }) => None,
                Err(e) => Some(Err(this.container_error(
                    "read output of",
                    &id_for_errors,
                    e,
                ))),
            };
            std::future::ready(result)
        });
        Ok(Attached {
            output: Box::pin(output),
            stdin: stdin.then_some(attached.input),
        })
    }

    async fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.docker
            .start_container(&id.0, None)
            .await
            .map_err(|e| self.container_error("start", id, e))
    }

    async fn resize(&self, id: &ContainerId, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        let options = ResizeContainerTTYOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        self.docker
            .resize_container_tty(&id.0, options)
            .await
            .map_err(|e| self.container_error("resize", id, e))
    }

    async fn wait(&self, id: &ContainerId) -> Result<i64, RuntimeError> {
        let options = WaitContainerOptions {
            condition: "not-running".into(),
        };
        let mut stream = self.docker.wait_container(&id.0, Some(options));
        let code = match stream.next().await {
            Some(Ok(response)) => response.status_code,
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(self.container_error("wait for", id, e)),
            None => {
                return Err(RuntimeError::Engine {
                    action: format!("wait for container {id}"),
                    message: "the engine closed the wait without an exit status".into(),
                });
            }
        };
        // `docker rm -f` also ends a wait, with SIGKILL's 137: tell that apart from a kill.
        if code == 137
            && matches!(
                self.inspect(id).await,
                Err(RuntimeError::ContainerGone { .. })
            )
        {
            return Err(RuntimeError::ContainerGone { id: id.0.clone() });
        }
        Ok(code)
    }

    async fn stop(&self, id: &ContainerId, timeout: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptions {
            t: Some(i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX)),
            signal: None,
        };
        self.docker
            .stop_container(&id.0, Some(options))
            .await
            .map_err(|e| self.container_error("stop", id, e))
    }

    async fn kill(&self, id: &ContainerId, signal: &str) -> Result<(), RuntimeError> {
        let options = KillContainerOptions {
            signal: signal.to_owned(),
        };
        match self.docker.kill_container(&id.0, Some(options)).await {
            Ok(()) => Ok(()),
            // Not running any more: nothing to signal.
            Err(e) if status(&e) == Some(409) => Ok(()),
            Err(e) => Err(self.container_error("kill", id, e)),
        }
    }

    async fn remove(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        match self.docker.remove_container(&id.0, Some(options)).await {
            Ok(()) => Ok(()),
            // Gone already, or another remove is under way.
            Err(e) if matches!(status(&e), Some(404) | Some(409)) => Ok(()),
            Err(e) => Err(self.error(format!("remove container {id}"), e)),
        }
    }

    async fn list(&self, label: &str) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![label.to_owned()],
            )])),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.error(format!("list containers labelled {label}"), e))?;
        Ok(containers
            .into_iter()
            .map(|c| {
                let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                ContainerSummary {
                    id: ContainerId(c.id.unwrap_or_default()),
                    name: c
                        .names
                        .and_then(|names| names.into_iter().next())
                        .map(|n| n.trim_start_matches('/').to_owned())
                        .unwrap_or_default(),
                    labels: c.labels.unwrap_or_default().into_iter().collect(),
                    running: state == "running",
                    state,
                }
            })
            .collect())
    }

    async fn inspect(&self, id: &ContainerId) -> Result<ContainerStatus, RuntimeError> {
        let inspect = self
            .docker
            .inspect_container(&id.0, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.container_error("inspect", id, e))?;
        let state = inspect.state.unwrap_or_default();
        let running = state.running.unwrap_or(false);
        Ok(ContainerStatus {
            id: inspect.id.unwrap_or_else(|| id.0.clone()),
            running,
            status: state.status.map(|s| s.to_string()).unwrap_or_default(),
            exit_code: if running { None } else { state.exit_code },
            oom_killed: state.oom_killed.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_image_name_gets_latest_and_tags_or_digests_are_kept() {
        assert_eq!(with_default_tag("debian"), "debian:latest");
        assert_eq!(
            with_default_tag("debian:bookworm-slim"),
            "debian:bookworm-slim"
        );
        assert_eq!(
            with_default_tag("localhost:5000/team/img"),
            "localhost:5000/team/img:latest"
        );
        assert_eq!(
            with_default_tag("localhost:5000/img:1"),
            "localhost:5000/img:1"
        );
        assert_eq!(with_default_tag("img@sha256:abc"), "img@sha256:abc");
    }

    #[test]
    fn the_build_context_holds_the_dockerfile_and_files() {
        let spec = BuildSpec {
            tag: "t".into(),
            dockerfile: "FROM x\n".into(),
            files: [("a/b.txt".to_owned(), b"hi".to_vec())].into(),
            labels: Default::default(),
            base: None,
        };
        let bytes = build_context(&spec).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            seen.push((entry.path().unwrap().display().to_string(), text));
        }
        assert_eq!(
            seen,
            [
                ("Dockerfile".to_owned(), "FROM x\n".to_owned()),
                ("a/b.txt".to_owned(), "hi".to_owned())
            ]
        );
    }

    fn from_docker_host(host: impl Into<String>) -> Endpoint {
        Endpoint {
            host: host.into(),
            origin: super::super::EndpointOrigin::DockerHost,
        }
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable_naming_the_socket_and_the_fix() {
        let endpoint = from_docker_host("unix:///nonexistent/moat/docker.sock");
        let err = DockerRuntime::connect_to(endpoint).await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("unix:///nonexistent/moat/docker.sock"),
            "{message}"
        );
        assert!(message.contains("from DOCKER_HOST"), "{message}");
        let hint = err.hint().unwrap();
        assert!(
            hint.contains("docker context use") && hint.contains("DOCKER_HOST"),
            "{hint}"
        );
    }

    #[tokio::test]
    async fn a_refused_tcp_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let endpoint = from_docker_host(format!("tcp://127.0.0.1:{port}"));
        let err = DockerRuntime::connect_to(endpoint).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::EngineUnreachable { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ssh_endpoints_are_refused_with_a_way_around() {
        let endpoint = from_docker_host("ssh://me@remote");
        let err = DockerRuntime::connect_to(endpoint).await.unwrap_err();
        assert!(
            matches!(err, RuntimeError::UnsupportedEndpoint { .. }),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("ssh -NL"));
    }

    #[tokio::test]
    async fn a_dead_socket_says_why_in_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        // The socket file stays after the listener is gone: connecting is refused.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = DockerRuntime::connect_to(from_docker_host(format!("unix://{}", path.display())))
            .await
            .unwrap_err();
        let RuntimeError::EngineUnreachable { cause, .. } = &err else {
            panic!("{err}")
        };
        assert!(cause.contains("Connection refused"), "{cause}");
    }

    #[test]
    fn a_socket_that_refuses_the_user_gets_the_docker_group_hint() {
        let err = RuntimeError::EngineUnreachable {
            endpoint: "unix:///var/run/docker.sock".into(),
            origin: "the default socket".into(),
            cause: "error trying to connect: Permission denied (os error 13)".into(),
        };
        assert!(
            err.hint().unwrap().contains("docker` group"),
            "{:?}",
            err.hint()
        );
    }
}
