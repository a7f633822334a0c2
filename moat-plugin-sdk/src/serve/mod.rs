//! Turning a provider into a `moat-provider-<name>` executable.
//!
//! ```no_run
//! use moat_plugin_sdk::*;
//!
//! struct Foo;
//!
//! #[async_trait]
//! impl CredentialProvider for Foo {
//!     fn info(&self) -> ProviderInfo {
//!         ProviderInfo::new("foo", "Foo API token")
//!     }
//!     async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
//!         // Ask for a token, validate it, return it (see the crate docs for a full grant).
//!         # Ok(GrantStep::Ask { prompts: vec![Prompt::secret("token", "Foo token")], notes: vec![] })
//!     }
//!     async fn configure_proxy(&self, credential: &Credential) -> ProviderResult<ProxyRules> {
//!         // Say which header carries the token on which host.
//!         # Ok(ProxyRules::new())
//!     }
//! }
//!
//! fn main() {
//!     moat_plugin_sdk::serve(Foo)
//! }
//! ```
//!
//! What [`serve`] does, in order:
//!
//! 1. Without [`--moat-plugin`](crate::protocol::PLUGIN_FLAG) among the arguments it prints a
//!    short explanation to stderr and exits with status 2: run by hand, a plugin never waits on
//!    a terminal.
//! 2. It installs a [`tracing`] subscriber writing JSON lines to stderr
//!    (`{"timestamp":…,"level":"INFO","message":…,"target":…}`), filtered by `MOAT_PLUGIN_LOG`,
//!    else `RUST_LOG`, else `info`; moat forwards those lines to its own log under the provider's
//!    name. Log what you like, never a secret ([`Secret`](crate::Secret)'s `Debug` redacts itself).
//! 3. On Unix it takes the protocol channel away from the rest of the process: the real stdin and
//!    stdout are duplicated onto close-on-exec descriptors used only by the protocol, fd 1 is
//!    pointed at stderr and fd 0 at `/dev/null`. A stray `println!`, or a child process the
//!    provider spawns, cannot corrupt the channel or read protocol bytes. (Windows has no such
//!    guard: there, never print to stdout.)
//! 4. It runs [`serve_io`] on a single-threaded tokio runtime (requests are still concurrent
//!    tasks; see [`ServeOptions::worker_threads`]) and exits 0 when stdin closes (1 on an I/O
//!    error).
//!
//! The loop ([`serve_io`]) answers newline-delimited JSON-RPC 2.0 (`schema/README.md` in the
//! moat repository is the specification):
//!
//! * `initialize` first: the highest protocol major both sides speak is picked; none in common is
//!   error [`UNSUPPORTED_VERSION`](crate::protocol::code::UNSUPPORTED_VERSION) naming both sides'
//!   versions, with `data.kind = "unsupported"`. Any other request before a successful
//!   `initialize` (except `shutdown`) is error
//!   [`NOT_INITIALIZED`](crate::protocol::code::NOT_INITIALIZED). The result carries
//!   [`CredentialProvider::info`] with `capabilities` recomputed from the `as_*()` accessors
//!   (what is implemented, not what is declared), the agent's commands, the endpoints and the
//!   refresh interval.
//! * Requests run concurrently: one that is not answered at once continues as a task of its own
//!   (on the default single-threaded runtime each call is first polled where it was read, so an
//!   immediate answer costs no task); one writer task owns stdout, so answers never interleave. A
//!   request whose provider call panics is answered with `-32603`.
//! * A [`ProviderError`](crate::ProviderError) becomes error
//!   [`PROVIDER_ERROR`](crate::protocol::code::PROVIDER_ERROR) with the error's message and
//!   `data = {kind, hint}`.
//! * A capability method (`refresh`, `prepare_container`, `endpoint`, `run_stopped`) on a
//!   provider whose `as_*()` accessor returns `None` is answered exactly like an unknown method:
//!   `-32601`, which the host reads as "unsupported"; the SDK adds `data.kind = "unsupported"`.
//!   `refresh` on a credential for which
//!   [`can_refresh`](crate::RefreshableProvider::can_refresh) is false is a provider error of
//!   kind `refresh_not_supported`.
//! * Params that do not fit the method's type are `-32602`; missing params read as `{}`; unknown
//!   fields are ignored.
//! * Notifications (no `id`): `$/cancel {"id": …}` aborts that request and answers it with
//!   [`CANCELLED`](crate::protocol::code::CANCELLED); any other notification is ignored.
//! * Lines that are not JSON get `-32700` with id `null`, batches (arrays) and other non-request
//!   JSON `-32600`, lines longer than [`MAX_LINE_BYTES`]
//!   `-32600` (skipped up to their newline); the loop keeps serving after each.
//! * `shutdown` answers `{}`; the plugin exits once stdin closes. On stdin EOF in-flight requests
//!   get [`ServeOptions::drain_timeout`] (5 s) to finish; the rest are answered `CANCELLED`.

mod rpc;
mod server;
mod stdio;
mod wire;

#[cfg(test)]
mod tests;

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::CredentialProvider;
use crate::protocol::MAX_LINE_BYTES;

/// How [`serve_with`] and [`serve_io_with`] behave. Build with [`ServeOptions::new`] and the
/// setters; every field has a default.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    plugin_version: Option<String>,
    drain_timeout: Duration,
    max_line_bytes: Option<usize>,
    worker_threads: Option<usize>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            plugin_version: None,
            drain_timeout: Duration::from_secs(5),
            max_line_bytes: None,
            worker_threads: None,
        }
    }
}

impl ServeOptions {
    /// The defaults: no plugin version, a 5 s drain on exit, lines up to
    /// [`MAX_LINE_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The plugin's own version, reported in `initialize` (`plugin_version`) and shown by
    /// `moat grant providers`. Pass your crate's: `env!("CARGO_PKG_VERSION")`.
    pub fn plugin_version(mut self, version: impl Into<String>) -> Self {
        self.plugin_version = Some(version.into());
        self
    }

    /// How long in-flight requests may run after stdin closes before they are cancelled
    /// (default 5 s). Also bounds flushing the last answers.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Runs [`serve_with`]'s tokio runtime on `workers` threads (at least 2) instead of one.
    ///
    /// By default a plugin runs every request on a single thread: requests still run
    /// concurrently (each that does not answer at once is its own task), and a call costs the
    /// fewest thread hand-offs. A provider that blocks inside `async` code (CPU-heavy work, a
    /// synchronous library) stalls every other request on that thread, including the handling of
    /// `$/cancel`: move such work to [`tokio::task::spawn_blocking`], or ask for worker threads
    /// here, with which every request gets its own task at once and the reading of stdin never
    /// waits for provider code. Ignored by [`serve_io_with`], which runs on the caller's runtime
    /// (and behaves the same way according to that runtime's kind).
    pub fn worker_threads(mut self, workers: usize) -> Self {
        self.worker_threads = Some(workers.max(2));
        self
    }

    /// The longest line accepted (default and maximum [`MAX_LINE_BYTES`]); lower it only for
    /// tests.
    pub fn max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = Some(max.min(MAX_LINE_BYTES));
        self
    }
}

/// Runs `provider` as a moat plugin over this process's stdin and stdout, then exits.
///
/// The whole `main` of a plugin: `fn main() { moat_plugin_sdk::serve(MyProvider) }`. See the
/// [module documentation](self) for what it does. To report your plugin's version, use
/// [`serve_with`] and [`ServeOptions::plugin_version`].
pub fn serve<P: CredentialProvider + 'static>(provider: P) -> ! {
    serve_with(provider, ServeOptions::default())
}

/// [`serve`] with options:
///
/// ```no_run
/// # use moat_plugin_sdk::testkit::MockProvider as MyProvider;
/// use moat_plugin_sdk::serve::ServeOptions;
///
/// fn main() {
///     let options = ServeOptions::new().plugin_version(env!("CARGO_PKG_VERSION"));
///     moat_plugin_sdk::serve_with(MyProvider::new("foo"), options)
/// }
/// ```
pub fn serve_with<P: CredentialProvider + 'static>(provider: P, options: ServeOptions) -> ! {
    let args: Vec<_> = std::env::args_os().collect();
    if !stdio::started_by_moat(args.iter().cloned()) {
        eprint!("{}", stdio::explanation(args.first(), &provider.info()));
        std::process::exit(2);
    }
    stdio::init_tracing();
    let guarded = stdio::take_stdio();
    if let Err(e) = &guarded
        && cfg!(unix)
    {
        tracing::warn!(error = %e, "could not guard stdout; serving on the plain stdio");
    }
    let mut builder = match options.worker_threads {
        Some(workers) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers);
            builder
        }
        None => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().thread_name("moat-plugin").build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "could not start the tokio runtime");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(async move {
        let (reader, writer) = match guarded {
            Ok(stdio) => stdio::async_stdio(stdio)?,
            Err(_) => stdio::plain_stdio(),
        };
        serve_io_with(provider, reader, writer, options).await
    });
    // Blocking threads (a provider stuck in a sync call) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "the plugin's stdio failed");
            std::process::exit(1)
        }
    }
}

/// The protocol loop over any reader and writer, for tests, benchmarks and embedding: reads
/// requests from `reader` until it ends, writes one answer line per request to `writer`, and
/// returns once in-flight requests have finished (or were cancelled after
/// [`ServeOptions::drain_timeout`]) and `writer` is flushed and shut down.
///
/// Touches no process state (no argv check, no logging set-up, no descriptor juggling), so it
/// can run in-process over [`tokio::io::duplex`]:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use moat_plugin_sdk::testkit::MockProvider;
/// use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
///
/// let (mut host, plugin) = tokio::io::duplex(64 * 1024);
/// let (plugin_in, plugin_out) = tokio::io::split(plugin);
/// let server = tokio::spawn(moat_plugin_sdk::serve_io(MockProvider::new("m"), plugin_in, plugin_out));
///
/// host.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocol_versions\":[1]}}\n").await.unwrap();
/// let (read, mut write) = tokio::io::split(host);
/// let mut lines = BufReader::new(read).lines();
/// let answer = lines.next_line().await.unwrap().unwrap();
/// assert!(answer.contains("\"protocol_version\":1"));
///
/// write.shutdown().await.unwrap(); // stdin EOF: the loop ends
/// server.await.unwrap().unwrap();
/// # }
/// ```
///
/// # Errors
///
/// An I/O error reading `reader`, or writing `writer`.
pub async fn serve_io<P, R, W>(provider: P, reader: R, writer: W) -> std::io::Result<()>
where
    P: CredentialProvider + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    serve_io_with(provider, reader, writer, ServeOptions::default()).await
}

/// [`serve_io`] with options.
///
/// # Errors
///
/// An I/O error reading `reader`, or writing `writer`.
pub async fn serve_io_with<P, R, W>(
    provider: P,
    reader: R,
    writer: W,
    options: ServeOptions,
) -> std::io::Result<()>
where
    P: CredentialProvider + 'static,
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    server::run(Box::new(provider), reader, writer, options).await
}
