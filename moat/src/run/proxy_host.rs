//! Where a run's proxy lives.
//!
//! Today the proxy lives inside the `moat run` process for the life of the run, one per process:
//! when moat dies, the container loses its only way out, so a run fails closed. The manager
//! talks to a [`ProxyHost`] rather than to the proxy library directly, so a shared daemon hosting
//! many runs (detached runs, later) can take this place without the manager changing: the proxy
//! library already serves several runs, each behind its own token.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use moat_plugin_sdk::ProxyRules;

use crate::proxy::{
    CertificateAuthority, Proxy, ProxyConfig, ProxyHandle, RunError, RunRegistry, RunSpec,
    RunToken, UpstreamConfig, UpstreamError,
};

/// The proxy a run registers with.
#[async_trait]
pub trait ProxyHost: Send + Sync {
    /// Where the proxy listens.
    fn addr(&self) -> SocketAddr;
    /// Registers a run: its rules, policy and log. Returns the token its container presents.
    fn register(&self, spec: RunSpec) -> Result<RunToken, RunError>;
    /// Replaces a run's rules at once (a refresh).
    fn replace_rules(&self, token: &RunToken, grants: Vec<ProxyRules>) -> Result<(), RunError>;
    /// Forgets a run: its token opens nothing from the next request on.
    fn remove(&self, token: &RunToken) -> bool;
    /// Stops listening (an in-process proxy) or lets go of the daemon (later).
    async fn shutdown(self: Box<Self>);
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyStartError {
    /// The upstream settings (`MOAT_EXTRA_CA_CERTS`, `MOAT_PROXY_RESOLVE`) are unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The listening address could not be bound.
    #[error("cannot listen on {addr} for the run's proxy: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The proxy inside this process.
pub struct InProcessProxy {
    runs: Arc<RunRegistry>,
    handle: ProxyHandle,
}

impl InProcessProxy {
    /// Starts a proxy on `listen` (port 0 picks one) with moat's CA.
    pub async fn start(
        ca: Arc<CertificateAuthority>,
        listen: SocketAddr,
        upstream: &UpstreamConfig,
    ) -> Result<InProcessProxy, ProxyStartError> {
        #[cfg(unix)]
        if let Err(err) = crate::proxy::raise_open_file_limit() {
            tracing::warn!(%err, "cannot raise the open file limit");
        }
        let runs = Arc::new(RunRegistry::new());
        let proxy = Proxy::new(ca, Arc::clone(&runs), upstream, ProxyConfig::default())?;
        let handle = proxy
            .listen(listen)
            .await
            .map_err(|source| ProxyStartError::Listen {
                addr: listen,
                source,
            })?;
        Ok(InProcessProxy { runs, handle })
    }
}

#[async_trait]
impl ProxyHost for InProcessProxy {
    fn addr(&self) -> SocketAddr {
        self.handle.addr()
    }

    fn register(&self, spec: RunSpec) -> Result<RunToken, RunError> {
        self.runs.register(spec)
    }

    fn replace_rules(&self, token: &RunToken, grants: Vec<ProxyRules>) -> Result<(), RunError> {
        self.runs.replace_rules(token, grants)
    }

    fn remove(&self, token: &RunToken) -> bool {
        self.runs.remove(token)
    }

    async fn shutdown(self: Box<Self>) {
        self.handle.shutdown().await;
    }
}
