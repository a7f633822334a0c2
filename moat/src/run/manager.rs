//! The manager: one run from its grants to its exit code, and everything undone after it.
//!
//! It knows providers only through the contract: for each grant it calls `configure_proxy`
//! (through grant resolution, before anything is created), `container_env`, `mounts` and, for an
//! agent provider, `prepare_container`; the refresh capability while the run lasts;
//! `run_stopped` and `cleanup` exactly once at the end. A built-in, a plugin and a test double
//! all go through the same code, and nothing here names one.
//!
//! Every resource a run takes is recorded in `Acquired` as it is taken, and `Manager::release`
//! gives all of them back, in reverse, exactly once: after a normal exit, a Ctrl-C, a container
//! that died or was removed, and an error half-way through creation alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moat_plugin_sdk::{
    CleanupToken, ContainerFiles, Credential, CredentialProvider, EnvVar, MountsRequest,
    PrepareOpts, ProviderError, ProxyRules, RunStoppedContext,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::audit::{AuditError, AuditEvent, AuditLog};
use super::container_env::{ContainerEnv, Origin, PROXY_HOST, ProxyAccess};
use super::endpoint::ProviderEndpoint;
use super::id::RunId;
use super::logs::{LogWriter, Stream};
use super::metadata::{RunMetadata, RunState};
use super::proxy_host::{InProcessProxy, ProxyHost, ProxyStartError};
use super::refresh::{RefreshEvent, RefreshSink, RefreshTarget, Refresher};
use super::store::{RunPaths, RunStore, RunStoreError};
use super::terminal::{HostTerminal, RawMode, TtySize};
use crate::credential::CredentialStore;
use crate::home::MoatHome;
use crate::provider::{GrantsError, ResolvedGrant};
use crate::proxy::UpstreamConfig;
use crate::proxy::{
    Blocked, CaError, CertificateAuthority, NetworkPolicy, PolicyMode, RunSpec, RunToken,
};
use crate::runtime::init::{CA_DIR, INIT_FILES_DIR};
use crate::runtime::progress::Progress;
use crate::runtime::{
    BindMount, ContainerId, ContainerSpec, ImagePlan, ImageRequest, InitOptions, InitScript,
    MANAGED_LABEL, NetworkSpec, OutputStream, RUN_LABEL, Runtime, RuntimeError,
};

/// The container user's home (moat's init creates it when the image has none).
pub const CONTAINER_HOME: &str = "/home/moatuser";
/// How long a stopped container gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What to run, fully decided (flags merged over `moat.yaml` by the CLI).
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The host folder mounted at `/workspace`.
    pub workspace: PathBuf,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// `--name`, else `moat.yaml`'s `name`.
    pub name: Option<String>,
    /// `moat.yaml`'s `name`, used when `--name` is absent.
    pub configured_name: Option<String>,
    /// `moat.yaml`'s `env`.
    pub config_env: Vec<EnvVar>,
    /// `-e` flags.
    pub flag_env: Vec<EnvVar>,
    /// Keep stdin open and, on a terminal, allocate a TTY.
    pub interactive: bool,
    /// Allocate a TTY (only with `interactive`, when stdin is a terminal).
    pub tty: bool,
    /// The image to run: its base and `dependencies:`.
    pub image: ImageRequest,
    /// The network policy.
    pub policy: NetworkPolicy,
    /// Extra bind mounts (`moat.yaml`'s `mounts`, resolved to absolute paths).
    pub mounts: Vec<BindMount>,
    /// The agent command this run is (`moat <agent>`), recorded in the run's metadata.
    pub agent: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run's id.
    pub id: RunId,
    /// The command's exit code (`None` when it never ran).
    pub exit_code: Option<i64>,
    /// Stopped by Ctrl-C or `moat stop` rather than by the command itself.
    pub stopped: bool,
    /// How long each step of the run took, in order (see [`Phases`]).
    pub phases: Vec<(&'static str, Duration)>,
    /// From the manager's start to the command's first output byte (`None`: it printed nothing).
    pub first_output: Option<Duration>,
}

/// The time each step of a run took, for `moat run -v` (a debug line per step) and the
/// benchmark (`RunOutcome::phases`). A step's time runs from the end of the one before, so the
/// steps add up to the whole run. Costs one clock read per step.
#[derive(Debug)]
struct Phases {
    started: Instant,
    last: Instant,
    list: Vec<(&'static str, Duration)>,
}

impl Default for Phases {
    fn default() -> Self {
        let now = Instant::now();
        Phases {
            started: now,
            last: now,
            list: Vec::new(),
        }
    }
}

impl Phases {
    /// Ends the step `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        tracing::debug!(phase = name, ms = took.as_secs_f64() * 1e3, "run phase");
        self.list.push((name, took));
    }
}

/// Why a run failed (the command's own non-zero exit is not a failure: see [`RunOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum RunFailure {
    /// A grant is missing or unreadable (nothing was created).
    #[error(transparent)]
    Grants(#[from] GrantsError),
    /// The container engine.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Run storage.
    #[error(transparent)]
    Store(#[from] RunStoreError),
    /// The run's audit log.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The proxy could not start.
    #[error(transparent)]
    Proxy(#[from] ProxyStartError),
    /// moat's CA.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// The proxy refused the run's registration.
    #[error("cannot register the run with the proxy: {0}")]
    Register(#[from] crate::proxy::RunError),
    /// A provider failed during setup.
    #[error("{grant}: {error}")]
    Provider {
        /// The grant.
        grant: String,
        /// The provider's error (already scrubbed of secrets by the plugin layer).
        error: ProviderError,
    },
    /// The workspace folder.
    #[error("workspace {}: {reason}", path.display())]
    Workspace {
        /// The path given.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file of the run could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Ctrl-C before the command started.
    #[error("interrupted before the command started")]
    Interrupted,
}

impl RunFailure {
    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            RunFailure::Grants(err) => err.hint(),
            RunFailure::Runtime(err) => err.hint(),
            RunFailure::Store(err) => err.hint(),
            RunFailure::Ca(err) => err.hint(),
            RunFailure::Provider { error, .. } => error.hint.clone(),
            RunFailure::Workspace { .. } => {
                Some("Pass an existing folder: moat run [PATH] -- COMMAND".into())
            }
            RunFailure::Proxy(ProxyStartError::Listen { .. }) => Some(
                "moat's proxy listens on the host side of the containers' network. With Docker \
                 Desktop, Colima or a remote engine that address is not on this machine, and \
                 moat run needs a Docker engine running on this machine for now."
                    .into(),
            ),
            _ => None,
        }
    }
}

/// Where the run's progress and messages go.
pub trait RunReporter: Send + Sync {
    /// A status line (`Started <name> (<id>)`, `Stopping run ...`).
    fn status(&self, line: &str);
    /// A warning.
    fn warn(&self, line: &str);
    /// The proxy refused a request (once per host and reason): say what would allow it, since
    /// clients hide a proxy's refusal ("CONNECT tunnel failed, response 407").
    fn blocked(&self, blocked: &Blocked);
    /// Pull and build progress.
    fn progress(&self) -> &dyn Progress;
}

/// The terminal the command is attached to.
pub struct RunIo {
    /// Where the container's stdout goes.
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// Where the container's stderr goes.
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
    /// What feeds the container's stdin (interactive runs).
    pub stdin: Option<Box<dyn tokio::io::AsyncRead + Send + Unpin>>,
    /// The host terminal of a TTY run ([`RunRequest::tty`]): raw while the command runs, its
    /// size passed on to the container's TTY.
    pub terminal: Option<Box<dyn HostTerminal>>,
}

/// What the manager needs, besides the request.
pub struct Manager {
    /// `$MOAT_HOME`.
    pub home: MoatHome,
    /// Where refreshed credentials are kept (the profile's store).
    pub credentials: Arc<CredentialStore>,
    /// The container engine.
    pub runtime: Arc<dyn Runtime>,
    /// Messages for the user.
    pub reporter: Arc<dyn RunReporter>,
    /// How the proxy reaches real hosts (extra CAs, address overrides); the CLI reads it from
    /// the environment before anything is created.
    pub upstream: UpstreamConfig,
}

/// Everything a run has taken so far, given back by [`Acquired::release`].
#[derive(Default)]
struct Acquired {
    meta: Option<RunMetadata>,
    paths: Option<RunPaths>,
    proxy: Option<Box<dyn ProxyHost>>,
    token: Option<RunToken>,
    container: Option<ContainerId>,
    refresher: Option<Refresher>,
    /// `(grant, provider, cleanup token)` from `mounts`.
    cleanups: Vec<(String, Arc<dyn CredentialProvider>, CleanupToken)>,
    /// Grants whose `run_stopped` hook is called at the end.
    hooks: Vec<(String, Arc<dyn CredentialProvider>)>,
    audit: Option<Arc<AuditLog>>,
    /// The steps' times so far.
    phases: Phases,
    /// When the command's first output byte arrived.
    first_output: Option<Instant>,
}

impl Manager {
    /// Runs `request` with `grants` (already resolved), until the command exits or `stop` turns
    /// true. Everything the run took is given back before this returns, whatever happened.
    pub async fn run(
        &self,
        request: RunRequest,
        grants: Vec<ResolvedGrant>,
        io: RunIo,
        mut stop: watch::Receiver<bool>,
    ) -> Result<RunOutcome, RunFailure> {
        let mut acquired = Acquired::default();
        let started = acquired.phases.started;
        let workspace = check_workspace(&request.workspace)?;
        // No engine: fail before creating anything.
        self.runtime.ping().await?;
        acquired.phases.mark("ping");

        let runs = RunStore::new(&self.home);
        let result = self
            .create_and_run(
                &runs,
                &workspace,
                &request,
                grants,
                io,
                &mut stop,
                &mut acquired,
            )
            .await;
        let mut phases = std::mem::take(&mut acquired.phases);
        let first_output = acquired.first_output.map(|at| at - started);
        let outcome = self.release(&runs, acquired, &result, &mut phases).await;
        tracing::debug!(elapsed = ?started.elapsed(), ?first_output, "run finished");
        match (result, outcome) {
            (Ok(mut outcome), Ok(())) => {
                outcome.phases = phases.list;
                outcome.first_output = first_output;
                Ok(outcome)
            }
            (Err(err), _) => Err(err),
            (Ok(_), Err(err)) => Err(err),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the steps read in order"
    )]
    async fn create_and_run(
        &self,
        runs: &RunStore,
        workspace: &Path,
        request: &RunRequest,
        grants: Vec<ResolvedGrant>,
        mut io: RunIo,
        stop: &mut watch::Receiver<bool>,
        acquired: &mut Acquired,
    ) -> Result<RunOutcome, RunFailure> {
        // The run's directory and metadata, at once, so `moat list` sees it.
        let name = runs.pick_name(request.name.as_deref(), request.configured_name.as_deref())?;
        let id = RunId::generate();
        let mut meta = RunMetadata::new(id.clone(), name.clone(), workspace);
        meta.command = request.command.clone();
        meta.grants = grants.iter().map(|g| g.name().to_owned()).collect();
        meta.network = request.policy.clone();
        meta.interactive = request.interactive;
        meta.agent = request.agent.clone();
        meta.owner_pid = Some(std::process::id());
        let paths = runs.create(&meta)?;
        acquired.paths = Some(paths.clone());
        let audit = Arc::new(AuditLog::open(&paths.audit)?);
        acquired.audit = Some(Arc::clone(&audit));
        for grant in &grants {
            audit_append(
                &audit,
                &AuditEvent::Credential {
                    grant: grant.name().to_owned(),
                    provider: grant.entry.info.name.clone(),
                    source: grant.entry.source.to_string(),
                },
            );
        }
        runs.set_state(&mut meta, RunState::Starting)?;
        acquired.meta = Some(meta);
        acquired.phases.mark("storage");

        // The image (pulled or built with progress; Ctrl-C abandons it), the network and moat's
        // CA do not depend on each other: they are made ready at the same time (two engine round
        // trips and a read of the CA's files, one wait instead of three).
        let mut image_request = request.image.clone();
        let strict = request.policy.policy == PolicyMode::Strict;
        image_request.firewall = strict;
        let plan = ImagePlan::new(&image_request)?;
        let network_spec = NetworkSpec::default();
        let home = self.home.clone();
        let ready = async {
            tokio::try_join!(
                async {
                    Ok::<_, RunFailure>(
                        plan.ensure(self.runtime.as_ref(), self.reporter.progress())
                            .await?,
                    )
                },
                async { Ok(self.runtime.ensure_network(&network_spec).await?) },
                async {
                    let load = tokio::task::spawn_blocking(move || {
                        CertificateAuthority::load_or_create(&home)
                    });
                    match load.await {
                        Ok(ca) => Ok(ca?),
                        Err(err) => std::panic::resume_unwind(err.into_panic()),
                    }
                },
            )
        };
        let (image, network, ca) = tokio::select! {
            ready = ready => ready?,
            _ = wait_stop(stop) => return Err(RunFailure::Interrupted),
        };
        // Saved with the container's id (or at the end, when the run fails before).
        if let Some(meta) = acquired.meta.as_mut() {
            meta.image = Some(image.clone());
        }
        acquired.phases.mark("image, network, CA");

        // The proxy on the network's host side.
        let ca = Arc::new(ca);
        let proxy = InProcessProxy::start(
            Arc::clone(&ca),
            SocketAddr::new(network.gateway, 0),
            &self.upstream,
        )
        .await?;
        let proxy_addr = proxy.addr();
        let proxy: Box<dyn ProxyHost> = Box::new(proxy);
        let (blocked_tx, mut blocked_rx) = tokio::sync::mpsc::unbounded_channel();
        // Providers with endpoints answer their paths for this run's container only.
        let endpoints: Vec<_> = grants
            .iter()
            .flat_map(|grant| {
                ProviderEndpoint::endpoints(
                    grant.name(),
                    &grant.entry.provider,
                    &grant.credential,
                    id.as_str(),
                )
            })
            .collect();
        let has_endpoints = !endpoints.is_empty();
        let token = proxy.register(RunSpec {
            id: id.to_string(),
            grants: grants.iter().map(|g| g.rules.clone()).collect(),
            policy: request.policy.clone(),
            log: Some(paths.network.clone()),
            blocked: Some(blocked_tx),
            endpoints,
        })?;
        acquired.token = Some(token.clone());
        acquired.proxy = Some(proxy);
        acquired.phases.mark("proxy");

        // What the providers put into the container.
        let mut env = ContainerEnv::new(Some(ProxyAccess {
            port: proxy_addr.port(),
            token: token.as_str(),
        }));
        if has_endpoints {
            env.set_endpoint_access(proxy_addr.port(), token.as_str());
        }
        let mut mounts = vec![
            BindMount {
                source: workspace.to_path_buf(),
                target: crate::runtime::WORKSPACE.into(),
                read_only: false,
            },
            BindMount {
                source: ca.public_dir(),
                target: CA_DIR.into(),
                read_only: true,
            },
        ];
        let files_dir = paths.dir.join("init-files");
        let mut has_init_files = false;
        let mut withheld = Vec::new();
        for grant in &grants {
            let provider = Arc::clone(&grant.entry.provider);
            let vars = provider
                .container_env(&grant.credential)
                .await
                .map_err(|error| RunFailure::Provider {
                    grant: grant.name().to_owned(),
                    error,
                })?;
            env.layer(Origin::Provider, vars);
            let files = provider
                .mounts(MountsRequest {
                    credential: grant.credential.clone(),
                    container_home: CONTAINER_HOME.into(),
                })
                .await
                .map_err(|error| RunFailure::Provider {
                    grant: grant.name().to_owned(),
                    error,
                })?;
            // An agent provider also stages its agent's configuration (placeholders only).
            let files = match provider.as_agent() {
                Some(agent) => {
                    let staged = agent
                        .prepare_container(PrepareOpts {
                            credential: Some(grant.credential.clone()),
                            container_home: CONTAINER_HOME.into(),
                            workspace: Some(workspace.to_path_buf()),
                            grants: grants.iter().map(|g| g.name().to_owned()).collect(),
                            mcp_servers: BTreeMap::new(),
                            runtime_context: None,
                            options: serde_json::Value::Null,
                        })
                        .await
                        .map_err(|error| RunFailure::Provider {
                            grant: grant.name().to_owned(),
                            error,
                        })?;
                    env.layer(Origin::Provider, staged.env);
                    withheld.extend(staged.withhold_env);
                    merge_files(
                        files,
                        staged.files,
                        &mut acquired.cleanups,
                        grant.name(),
                        &provider,
                    )
                }
                None => files,
            };
            if let Some(cleanup) = files.cleanup {
                acquired
                    .cleanups
                    .push((grant.name().to_owned(), Arc::clone(&provider), cleanup));
            }
            for mount in files.mounts {
                mounts.push(BindMount {
                    source: mount.source,
                    target: mount.target.display().to_string(),
                    read_only: mount.read_only,
                });
            }
            for file in files.init_files {
                stage_init_file(&files_dir, &file.path, &file.content)?;
                has_init_files = true;
            }
            if provider.as_run_stopped().is_some() {
                acquired.hooks.push((grant.name().to_owned(), provider));
            }
        }
        if has_init_files {
            mounts.push(BindMount {
                source: files_dir,
                target: INIT_FILES_DIR.into(),
                read_only: true,
            });
        }
        for name in &withheld {
            env.withhold(name);
        }
        env.layer(Origin::Config, request.config_env.clone());
        env.layer(Origin::Flag, request.flag_env.clone());
        for warning in &env.warnings {
            self.reporter.warn(warning);
        }
        if request.tty {
            env.set_own("TERM", "xterm-256color");
        }
        mounts.extend(request.mounts.iter().cloned());
        acquired.phases.mark("providers");

        // The container: moat's init (mounted) starts as root, trusts the CA, sets the firewall
        // under the strict policy, and drops to the workspace's owner.
        let init = InitScript::install(&self.home.root().join("runtime"))?;
        let mut spec = ContainerSpec::new(id.as_str(), image.clone(), request.command.clone());
        spec.labels.insert(RUN_LABEL.into(), id.to_string());
        spec.labels.insert(MANAGED_LABEL.into(), "true".into());
        spec.env = env.to_pairs().into_iter().collect::<BTreeMap<_, _>>();
        spec.mounts = mounts;
        spec.network = Some(network.name.clone());
        spec.extra_hosts.push((PROXY_HOST.into(), network.gateway));
        spec.tty = request.tty;
        spec.open_stdin = request.interactive;
        if request.tty {
            spec.console_size = io
                .terminal
                .as_ref()
                .and_then(|terminal| terminal.size())
                .map(|size| (size.rows, size.cols));
        }
        let mut options = InitOptions::owner_of(workspace)?;
        options.firewall = strict.then_some(proxy_addr);
        init.apply(&mut spec, &options);
        let container = self.runtime.create(&spec).await?;
        acquired.container = Some(container.clone());
        audit_append(
            &audit,
            &AuditEvent::Container {
                action: "created".into(),
                id: container.0.clone(),
                image: image.clone(),
            },
        );
        if let Some(meta) = acquired.meta.as_mut() {
            meta.container_id = Some(container.0.clone());
            runs.save(meta)?;
        }
        acquired.phases.mark("create");

        // Attach before start, so no output is lost.
        let attached = self.runtime.attach(&container, request.interactive).await?;
        let logs = LogWriter::open(&paths.logs).map_err(|source| RunFailure::Io {
            path: paths.logs.clone(),
            source,
        })?;
        if *stop.borrow() {
            return Err(RunFailure::Interrupted);
        }
        acquired.phases.mark("attach");
        self.runtime.start(&container).await?;
        if let Some(meta) = acquired.meta.as_mut() {
            runs.set_state(meta, RunState::Running)?;
        }
        acquired.phases.mark("start");
        match &request.agent {
            Some(agent) => self
                .reporter
                .status(&format!("Started agent \"{agent}\" as {name} ({id})")),
            None => self.reporter.status(&format!("Started {name} ({id})")),
        }
        let (mut raw_mode, resizer) = match io.terminal.take() {
            Some(terminal) if request.tty => self.attach_terminal(terminal, &container).await,
            _ => (None, None),
        };

        // While it runs: refresh, output, stdin.
        let sink = Arc::new(ProxySink {
            proxy_rules: Mutex::new(None),
            credentials: Arc::clone(&self.credentials),
            store_keys: grants
                .iter()
                .map(|g| (g.name().to_owned(), g.entry.info.store_key().to_owned()))
                .collect(),
            reporter: Arc::clone(&self.reporter),
        });
        let targets = grants
            .iter()
            .map(|grant| RefreshTarget {
                grant: grant.name().to_owned(),
                provider: Arc::clone(&grant.entry.provider),
                credential: grant.credential.clone(),
                rules: grant.rules.clone(),
            })
            .collect();
        // The sink swaps rules through the proxy host, which `acquired` owns; it reaches it by a
        // channel so that the refresher holds no borrow of it.
        let (rules_tx, mut rules_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<ProxyRules>>();
        *sink.proxy_rules.lock().expect("not poisoned") = Some(rules_tx);
        acquired.refresher = Some(Refresher::start(targets, sink));

        let (first_tx, mut first_rx) = tokio::sync::oneshot::channel();
        let output = pump_output(attached.output, logs, io.stdout, io.stderr, first_tx);
        let output = tokio::spawn(output);
        let stdin_task = match (attached.stdin, io.stdin.take()) {
            (Some(mut container_stdin), Some(mut host_stdin)) => Some(tokio::spawn(async move {
                let _ = tokio::io::copy(&mut host_stdin, &mut container_stdin).await;
                let _ = container_stdin.shutdown().await;
            })),
            _ => None,
        };

        let mut stopped = false;
        let wait = self.runtime.wait(&container);
        tokio::pin!(wait);
        let exit = loop {
            tokio::select! {
                exit = &mut wait => break exit,
                Some(blocked) = blocked_rx.recv() => {
                    self.reporter.blocked(&blocked);
                    audit_append(&audit, &AuditEvent::Policy {
                        host: blocked.host.clone(),
                        method: blocked.method.clone(),
                        path: blocked.path.clone(),
                        reason: blocked.reason.to_string(),
                    });
                }
                Some(rules) = rules_rx.recv() => {
                    if let (Some(proxy), Some(token)) = (acquired.proxy.as_ref(), acquired.token.as_ref())
                        && let Err(err) = proxy.replace_rules(token, rules)
                    {
                        self.reporter.warn(&format!("cannot swap the refreshed rules: {err}"));
                    }
                }
                _ = wait_stop(stop), if !stopped => {
                    stopped = true;
                    // Stopped from outside (SIGTERM, a SIGINT not typed here): the terminal is
                    // the user's again before moat says anything.
                    drop(raw_mode.take());
                    self.reporter.status(&format!("Stopping run {id}..."));
                    if let Some(meta) = acquired.meta.as_mut() {
                        let _ = runs.set_state(meta, RunState::Stopping);
                    }
                    // On a TTY the command is likely an interactive shell, which ignores
                    // SIGTERM: hang up its terminal first, as closing a terminal window would.
                    if request.tty
                        && let Err(err) = self.runtime.kill(&container, "HUP").await
                    {
                        tracing::debug!(%err, "cannot send SIGHUP to the container");
                    }
                    if let Err(err) = self.runtime.stop(&container, STOP_GRACE).await {
                        self.reporter.warn(&format!("cannot stop the container: {err}"));
                    }
                }
            }
        };
        if let Some(task) = stdin_task {
            task.abort();
        }
        // The output ends when the container's streams close, right after it exits.
        match tokio::time::timeout(Duration::from_secs(5), output).await {
            Ok(Ok(Err(err))) => self.reporter.warn(&format!("output: {err}")),
            Ok(_) => {}
            Err(_) => self
                .reporter
                .warn("the container's output did not end; stopped reading it"),
        }
        if let Some(resizer) = resizer {
            resizer.abort();
        }
        drop(raw_mode);
        // Sent by now unless the output task is still stuck (then: unknown).
        acquired.first_output = first_rx.try_recv().ok();
        let code = exit?;
        // `moat stop` from another process marks the run `stopping` before stopping it.
        let stopped_elsewhere = runs
            .load(&id)
            .map(|saved| saved.state() == RunState::Stopping)
            .unwrap_or(false);
        if stopped_elsewhere && let Some(meta) = acquired.meta.as_mut() {
            let _ = meta.transition(RunState::Stopping);
        }
        audit_append(
            &audit,
            &AuditEvent::Exec {
                command: request.command.clone(),
                exit_code: Some(code),
            },
        );
        if let Some(meta) = acquired.meta.as_mut() {
            meta.exit_code = Some(code);
        }
        acquired.phases.mark("wait");
        Ok(RunOutcome {
            id,
            exit_code: Some(code),
            stopped: stopped || stopped_elsewhere,
            phases: Vec::new(),
            first_output: None,
        })
    }

    /// Puts the host terminal in raw mode (keys, Ctrl-C included, go to the container's TTY)
    /// and keeps the container's TTY at the terminal's size until the returned task is aborted.
    async fn attach_terminal(
        &self,
        mut terminal: Box<dyn HostTerminal>,
        container: &ContainerId,
    ) -> (Option<RawMode>, Option<tokio::task::JoinHandle<()>>) {
        let raw = match terminal.raw() {
            Ok(raw) => Some(raw),
            Err(err) => {
                self.reporter
                    .warn(&format!("cannot put the terminal in raw mode: {err}"));
                None
            }
        };
        let runtime = Arc::clone(&self.runtime);
        let container = container.clone();
        let resizer = tokio::spawn(async move {
            let mut size = terminal.size();
            loop {
                if let Some(TtySize { rows, cols }) = size
                    && let Err(err) = runtime.resize(&container, rows, cols).await
                {
                    tracing::debug!(%err, "cannot resize the container's TTY");
                }
                match terminal.resized().await {
                    Some(new) => size = Some(new),
                    None => return,
                }
            }
        });
        (raw, Some(resizer))
    }

    /// Gives back everything in `acquired`, in reverse order of taking, and records how the run
    /// ended. Each step runs even when an earlier one failed.
    async fn release(
        &self,
        runs: &RunStore,
        mut acquired: Acquired,
        result: &Result<RunOutcome, RunFailure>,
        phases: &mut Phases,
    ) -> Result<(), RunFailure> {
        if let Some(refresher) = acquired.refresher.take() {
            refresher.stop().await;
        }
        let mut provider_meta = BTreeMap::new();
        if let Some(meta) = acquired.meta.as_ref() {
            for (grant, provider) in &acquired.hooks {
                let Some(hook) = provider.as_run_stopped() else {
                    continue;
                };
                let context = RunStoppedContext {
                    run_id: meta.id.to_string(),
                    workspace: meta.workspace.clone(),
                    started_at: meta.started_at.unwrap_or(meta.created_at),
                    exit_code: meta.exit_code.and_then(|code| i32::try_from(code).ok()),
                };
                match hook.run_stopped(context).await {
                    Ok(values) => provider_meta.extend(values),
                    Err(err) => self.reporter.warn(&format!("{grant}: run_stopped: {err}")),
                }
            }
        }
        for (grant, provider, token) in acquired.cleanups.drain(..).rev() {
            if let Err(err) = provider.cleanup(token).await {
                self.reporter.warn(&format!("{grant}: cleanup: {err}"));
            }
        }
        phases.mark("hooks");
        if let Some(container) = acquired.container.take() {
            match self.runtime.remove(&container).await {
                // The audit log that recorded the container's creation records its end too.
                Ok(()) => {
                    if let Some(audit) = acquired.audit.as_ref() {
                        let image = acquired.meta.as_ref().and_then(|m| m.image.clone());
                        audit_append(
                            audit,
                            &AuditEvent::Container {
                                action: "removed".into(),
                                id: container.0.clone(),
                                image: image.unwrap_or_default(),
                            },
                        );
                    }
                }
                Err(err) => self
                    .reporter
                    .warn(&format!("cannot remove container {container}: {err}")),
            }
        }
        phases.mark("remove");
        if let Some(proxy) = acquired.proxy.take() {
            if let Some(token) = acquired.token.take() {
                proxy.remove(&token);
            }
            proxy.shutdown().await;
        }
        phases.mark("proxy shutdown");
        let Some(mut meta) = acquired.meta.take() else {
            return Ok(());
        };
        meta.provider_meta.extend(provider_meta);
        match result {
            Ok(outcome) if outcome.stopped || outcome.exit_code == Some(0) => {
                if meta.state() == RunState::Running {
                    let _ = meta.transition(RunState::Stopping);
                }
                let _ = meta.transition(RunState::Stopped);
            }
            Ok(outcome) => {
                let code = outcome.exit_code.unwrap_or(-1);
                let _ = meta.fail(format!("exit code {code}"));
            }
            // Ctrl-C before the command started: stopped by the user, like a Ctrl-C after.
            Err(RunFailure::Interrupted) => {
                let _ = meta.transition(RunState::Stopping);
                let _ = meta.transition(RunState::Stopped);
            }
            Err(err) => {
                let _ = meta.fail(err.to_string());
            }
        }
        runs.save(&meta)?;
        phases.mark("metadata");
        Ok(())
    }
}

/// Refreshed rules reach the proxy through a channel the run loop drains; refreshed credentials
/// go to the store; events to the user.
struct ProxySink {
    proxy_rules: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Vec<ProxyRules>>>>,
    credentials: Arc<CredentialStore>,
    /// Grant name → where its credential is stored (a provider may share another's key).
    store_keys: BTreeMap<String, String>,
    reporter: Arc<dyn RunReporter>,
}

impl RefreshSink for ProxySink {
    fn apply_rules(&self, rules: Vec<ProxyRules>) {
        if let Some(tx) = self.proxy_rules.lock().expect("not poisoned").as_ref() {
            let _ = tx.send(rules);
        }
    }

    fn store(&self, grant: &str, credential: &Credential) {
        let key = self.store_keys.get(grant).map_or(grant, String::as_str);
        if let Err(err) = self.credentials.save(key, credential) {
            self.reporter.warn(&format!(
                "{grant}: cannot store the refreshed credential: {err}"
            ));
        }
    }

    fn report(&self, event: RefreshEvent) {
        match event {
            RefreshEvent::Refreshed { grant, .. } => {
                tracing::info!(%grant, "credential refreshed");
            }
            RefreshEvent::Failed {
                grant,
                error,
                expires_at,
                retry_in,
            } => {
                let until = expires_at
                    .map(|at| format!(" until it expires at {}", at.format("%H:%M:%S UTC")))
                    .unwrap_or_default();
                self.reporter.warn(&format!(
                    "{grant}: refresh failed: {error}; the current credential stays in use{until}; \
                     retrying in {}s",
                    retry_in.as_secs()
                ));
            }
        }
    }
}

/// Copies the container's output to the terminal and `logs.jsonl` as it arrives.
async fn pump_output(
    mut output: crate::runtime::OutputStreamBox,
    mut logs: LogWriter,
    mut stdout: Box<dyn AsyncWrite + Send + Unpin>,
    mut stderr: Box<dyn AsyncWrite + Send + Unpin>,
    first: tokio::sync::oneshot::Sender<Instant>,
) -> Result<(), String> {
    let mut failure = None;
    let mut first = Some(first);
    while let Some(chunk) = output.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                failure = Some(err.to_string());
                break;
            }
        };
        let (stream, writer) = match chunk.stream {
            OutputStream::Stdout => (Stream::Stdout, &mut stdout),
            OutputStream::Stderr => (Stream::Stderr, &mut stderr),
        };
        // A closed terminal (moat's output piped into `head`) must not stop the log.
        let _ = writer.write_all(&chunk.bytes).await;
        let _ = writer.flush().await;
        if let Some(first) = first.take() {
            let _ = first.send(Instant::now());
        }
        if let Err(err) = logs.write(stream, &chunk.bytes) {
            failure.get_or_insert(format!("logs.jsonl: {err}"));
        }
    }
    if let Err(err) = logs.close() {
        failure.get_or_insert(format!("logs.jsonl: {err}"));
    }
    failure.map_or(Ok(()), Err)
}

fn audit_append(audit: &AuditLog, event: &AuditEvent) {
    if let Err(err) = audit.append(event) {
        tracing::warn!(%err, "cannot append to the audit log");
    }
}

/// Resolves when `stop` turns true (or its sender is gone, which never happens while a run is
/// driven by the CLI).
async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The workspace as an absolute, existing folder.
fn check_workspace(path: &Path) -> Result<PathBuf, RunFailure> {
    let absolute = std::fs::canonicalize(path).map_err(|err| RunFailure::Workspace {
        path: path.to_path_buf(),
        reason: match err.kind() {
            std::io::ErrorKind::NotFound => "no such folder".into(),
            _ => err.to_string(),
        },
    })?;
    if !absolute.is_dir() {
        return Err(RunFailure::Workspace {
            path: path.to_path_buf(),
            reason: "not a folder".into(),
        });
    }
    Ok(absolute)
}

/// `mounts`' files and an agent's staged files together. Each call may hand out its own cleanup
/// token; `mounts`' is kept on the result and the agent's is recorded at once, so both are given
/// back at the end.
fn merge_files(
    mut files: ContainerFiles,
    staged: ContainerFiles,
    cleanups: &mut Vec<(String, Arc<dyn CredentialProvider>, CleanupToken)>,
    grant: &str,
    provider: &Arc<dyn CredentialProvider>,
) -> ContainerFiles {
    files.mounts.extend(staged.mounts);
    files.init_files.extend(staged.init_files);
    if let Some(cleanup) = staged.cleanup {
        cleanups.push((grant.to_owned(), Arc::clone(provider), cleanup));
    }
    files
}

/// Writes a provider's init file under `dir`, at its path relative to the container's home.
fn stage_init_file(dir: &Path, path: &Path, content: &str) -> Result<(), RunFailure> {
    let relative = path
        .strip_prefix(CONTAINER_HOME)
        .ok()
        .filter(|rel| {
            rel.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        })
        .ok_or_else(|| RunFailure::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("init files must be under {CONTAINER_HOME}"),
            ),
        })?;
    let target = dir.join(relative);
    let io = |source| RunFailure::Io {
        path: target.clone(),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    crate::home::atomic_write(&target, content.as_bytes(), 0o644).map_err(io)?;
    Ok(())
}
