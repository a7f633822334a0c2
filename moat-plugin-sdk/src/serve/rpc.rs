//! Typed dispatch: one jsonrpsee `RpcModule` method per protocol method, calling the provider.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jsonrpsee::types::{ErrorObjectOwned, Params};
use jsonrpsee::{Methods, RpcModule};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::protocol::{
    CleanupParams, ContainerEnvResult, CredentialParams, Empty, EndpointParams, ErrorData,
    GrantParams, InitializeParams, InitializeResult, MountsParams, PROTOCOL_VERSION,
    PrepareContainerParams, RunStoppedParams, RunStoppedResult, code, method,
};
use crate::{Capability, CredentialProvider, ErrorKind, ProviderError, ProviderInfo};

/// The protocol majors this SDK can serve, newest first.
pub(crate) const SUPPORTED_VERSIONS: &[u32] = &[PROTOCOL_VERSION];

/// What every handler sees.
pub(crate) struct Ctx {
    pub(crate) provider: Box<dyn CredentialProvider>,
    pub(crate) plugin_version: Option<String>,
    /// Set by a successful `initialize`.
    pub(crate) initialized: AtomicBool,
    /// Set by `shutdown`.
    pub(crate) shutdown: AtomicBool,
}

/// A provider error on the wire: code `PROVIDER_ERROR`, the message, `data: {kind, hint}`.
pub(crate) fn provider_error(error: ProviderError) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        code::PROVIDER_ERROR,
        error.message,
        Some(ErrorData {
            kind: error.kind,
            hint: error.hint,
        }),
    )
}

/// A capability method called on a provider without the capability: `-32601` (the code that
/// means "unsupported" to the host), with `data.kind = "unsupported"`.
fn unsupported(ctx: &Ctx, method: &str) -> ErrorObjectOwned {
    let name = ctx.provider.info().name;
    ErrorObjectOwned::owned(
        METHOD_NOT_FOUND,
        format!("method '{method}' is not supported by provider {name}"),
        Some(ErrorData {
            kind: ErrorKind::Unsupported,
            hint: None,
        }),
    )
}

/// Params as `T`; missing params read as `{}`.
fn parse<T: DeserializeOwned>(method: &str, params: &Params<'_>) -> Result<T, ErrorObjectOwned> {
    let text = params.as_str().unwrap_or("{}");
    serde_json::from_str(text).map_err(|e| {
        ErrorObjectOwned::owned(
            INVALID_PARAMS,
            format!("invalid params for '{method}': {e}"),
            Some(ErrorData {
                kind: ErrorKind::InvalidInput,
                hint: None,
            }),
        )
    })
}

/// Registers `name`: parse the params as `P`, run `handler`.
fn register<P, T, F, Fut>(module: &mut RpcModule<Arc<Ctx>>, name: &'static str, handler: F)
where
    P: DeserializeOwned + Send + 'static,
    T: Serialize + Clone + 'static,
    F: Fn(Arc<Ctx>, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ErrorObjectOwned>> + Send + 'static,
{
    register_if(module, name, |_| true, handler);
}

/// Registers capability method `name`: answer "unsupported" unless `implemented` (checked before
/// the params are looked at), else parse the params as `P` and run `handler`.
fn register_if<P, T, F, Fut>(
    module: &mut RpcModule<Arc<Ctx>>,
    name: &'static str,
    implemented: fn(&dyn CredentialProvider) -> bool,
    handler: F,
) where
    P: DeserializeOwned + Send + 'static,
    T: Serialize + Clone + 'static,
    F: Fn(Arc<Ctx>, P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T, ErrorObjectOwned>> + Send + 'static,
{
    module
        .register_async_method(name, move |params, ctx, _| {
            let handler = handler.clone();
            async move {
                if !implemented(ctx.provider.as_ref()) {
                    return Err(unsupported(&ctx, name));
                }
                let params: P = parse(name, &params)?;
                handler(Arc::clone(&ctx), params).await
            }
        })
        .expect("protocol method names are unique");
}

/// `initialize`: pick the highest common major, describe the provider.
pub(crate) fn initialize(
    ctx: &Ctx,
    params: InitializeParams,
) -> Result<InitializeResult, ErrorObjectOwned> {
    let picked = params
        .protocol_versions
        .iter()
        .copied()
        .filter(|v| SUPPORTED_VERSIONS.contains(v))
        .max();
    let Some(protocol_version) = picked else {
        let host = if params.host_version.is_empty() {
            "the host".to_string()
        } else {
            params.host_version.clone()
        };
        let message = format!(
            "no common protocol version: {host} speaks {:?}, this plugin ({} {}) speaks {:?}",
            params.protocol_versions,
            env!("CARGO_PKG_NAME"),
            env!("CARGO_PKG_VERSION"),
            SUPPORTED_VERSIONS,
        );
        let hint = "Upgrade moat or the plugin so that both speak the same protocol version";
        tracing::error!(host_versions = ?params.protocol_versions, "{message}");
        return Err(ErrorObjectOwned::owned(
            code::UNSUPPORTED_VERSION,
            message,
            Some(ErrorData {
                kind: ErrorKind::Unsupported,
                hint: Some(hint.into()),
            }),
        ));
    };
    let result = describe(ctx.provider.as_ref(), protocol_version, &ctx.plugin_version);
    ctx.initialized.store(true, Ordering::SeqCst);
    tracing::debug!(
        protocol_version,
        host = %params.host_version,
        provider = %result.info.name,
        "initialized"
    );
    Ok(result)
}

/// The `initialize` result for `provider`: its info, with capabilities computed from the `as_*`
/// accessors (what is implemented, not what is declared).
pub(crate) fn describe(
    provider: &dyn CredentialProvider,
    protocol_version: u32,
    plugin_version: &Option<String>,
) -> InitializeResult {
    let mut info: ProviderInfo = provider.info();
    let mut capabilities = Vec::new();
    let agent = provider.as_agent();
    let endpoint = provider.as_endpoint();
    let refreshable = provider.as_refreshable();
    if agent.is_some() {
        capabilities.push(Capability::Agent);
    }
    if endpoint.is_some() {
        capabilities.push(Capability::Endpoint);
    }
    if refreshable.is_some() {
        capabilities.push(Capability::Refresh);
    }
    if provider.as_run_stopped().is_some() {
        capabilities.push(Capability::RunStopped);
    }
    for declared in &info.capabilities {
        if *declared != Capability::Unknown && !capabilities.contains(declared) {
            tracing::warn!(
                capability = ?declared,
                "info() declares a capability whose as_*() accessor returns None; not advertised"
            );
        }
    }
    info.capabilities = capabilities;
    InitializeResult {
        protocol_version,
        info,
        agent_commands: agent.map(|a| a.commands()).unwrap_or_default(),
        endpoints: endpoint.map(|e| e.endpoints()).unwrap_or_default(),
        refresh_interval_secs: refreshable.map(|r| r.refresh_interval().as_secs()),
        plugin_version: plugin_version.clone(),
    }
}

/// The module with every v1 method.
pub(crate) fn module(ctx: Arc<Ctx>) -> Methods {
    let mut module = RpcModule::new(ctx);

    module
        .register_method(method::INITIALIZE, |params, ctx, _| {
            let params: InitializeParams = parse(method::INITIALIZE, &params)?;
            initialize(ctx, params)
        })
        .expect("protocol method names are unique");

    register(
        &mut module,
        method::GRANT,
        |ctx, p: GrantParams| async move { ctx.provider.grant(p).await.map_err(provider_error) },
    );
    register(
        &mut module,
        method::CONFIGURE_PROXY,
        |ctx, p: CredentialParams| async move {
            let rules = ctx.provider.configure_proxy(&p.credential).await;
            rules.map_err(provider_error)
        },
    );
    register(
        &mut module,
        method::CONTAINER_ENV,
        |ctx, p: CredentialParams| async move {
            let env = ctx.provider.container_env(&p.credential).await;
            env.map(|env| ContainerEnvResult { env })
                .map_err(provider_error)
        },
    );
    register(
        &mut module,
        method::MOUNTS,
        |ctx, p: MountsParams| async move { ctx.provider.mounts(p).await.map_err(provider_error) },
    );
    register(
        &mut module,
        method::CLEANUP,
        |ctx, p: CleanupParams| async move {
            let done = ctx.provider.cleanup(p.token).await;
            done.map(|()| Empty {}).map_err(provider_error)
        },
    );
    register_if(
        &mut module,
        method::REFRESH,
        |p| p.as_refreshable().is_some(),
        |ctx, p: CredentialParams| async move {
            let Some(refreshable) = ctx.provider.as_refreshable() else {
                return Err(unsupported(&ctx, method::REFRESH));
            };
            if !refreshable.can_refresh(&p.credential) {
                let error = ProviderError::new(
                    ErrorKind::RefreshNotSupported,
                    "this credential cannot be refreshed",
                );
                return Err(provider_error(error));
            }
            refreshable
                .refresh(&p.credential)
                .await
                .map_err(provider_error)
        },
    );
    register_if(
        &mut module,
        method::PREPARE_CONTAINER,
        |p| p.as_agent().is_some(),
        |ctx, p: PrepareContainerParams| async move {
            let Some(agent) = ctx.provider.as_agent() else {
                return Err(unsupported(&ctx, method::PREPARE_CONTAINER));
            };
            agent.prepare_container(p).await.map_err(provider_error)
        },
    );
    register_if(
        &mut module,
        method::ENDPOINT,
        |p| p.as_endpoint().is_some(),
        |ctx, p: EndpointParams| async move {
            let Some(endpoint) = ctx.provider.as_endpoint() else {
                return Err(unsupported(&ctx, method::ENDPOINT));
            };
            endpoint.endpoint(p).await.map_err(provider_error)
        },
    );
    register_if(
        &mut module,
        method::RUN_STOPPED,
        |p| p.as_run_stopped().is_some(),
        |ctx, p: RunStoppedParams| async move {
            let Some(hook) = ctx.provider.as_run_stopped() else {
                return Err(unsupported(&ctx, method::RUN_STOPPED));
            };
            let metadata = hook.run_stopped(p).await.map_err(provider_error)?;
            Ok(RunStoppedResult { metadata })
        },
    );
    register(
        &mut module,
        method::SHUTDOWN,
        |ctx, _: serde::de::IgnoredAny| async move {
            ctx.shutdown.store(true, Ordering::SeqCst);
            tracing::debug!("shutdown requested; exiting when stdin closes");
            Ok::<_, ErrorObjectOwned>(Empty {})
        },
    );

    module.into()
}

/// True for methods that may be called before `initialize`.
pub(crate) fn allowed_before_initialize(name: &str) -> bool {
    name == method::INITIALIZE || name == method::SHUTDOWN
}
