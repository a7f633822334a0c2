//! `moat proxy`: the credential-injecting proxy on its own, for one set of grants, until Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use moat_plugin_sdk::{ProxyRule, ProxyRules};
use serde::Serialize;

use super::network::NetworkArgs;
use super::{CliError, CliResult, Context, code};
use crate::provider::resolve_grants;
use crate::proxy::{
    Blocked, CertificateAuthority, NetworkPolicy, Proxy, ProxyConfig, RESOLVE_ENV, RunRegistry,
    RunSpec, UpstreamConfig,
};

const PROXY_HELP: &str = "\
Starts moat's TLS-intercepting proxy for the given grants and prints how to use it: the address,
a proxy URL carrying this session's proxy token (not a provider credential), and the CA
certificate clients must trust. Stored credentials are injected on the wire; the client only ever
sends placeholders. Every request is appended to the request log (headers redacted).

Upstream trust: the system's roots, plus the PEM file named by MOAT_EXTRA_CA_CERTS.
Upstream addresses: DNS, unless MOAT_PROXY_RESOLVE maps host:port to another address, like
curl's --resolve: MOAT_PROXY_RESOLVE='api.github.com:443:127.0.0.1:8443,...'.
Services on this machine (localhost, 127.0.0.1, ::1, moat-host) are refused unless --host-port
lists their port; link-local addresses (169.254.0.0/16 and fe80::/10, where cloud metadata
answers), 0.0.0.0 and the machine's other interface addresses are always refused. Credentials are never added to cleartext http:// requests.
A refused request gets a 407 whose body says how to allow it; since clients often hide it, each
refused host and reason is also printed once on stderr with the --allow, --rule or --host-port
that would allow it. Listening on a non-loopback address (--listen 0.0.0.0:0) lets other machines
use your credentials through the proxy: moat warns.

Examples:
  moat proxy --grant github
  curl --proxy \"$PROXY_URL\" --cacert ~/.moat/proxy/ca/public/ca.crt https://api.github.com/user
  moat proxy --grant github --policy strict --allow registry.npmjs.org
  moat proxy --grant github --rule 'api.github.com deny DELETE /**' --json";

/// Run the credential-injecting proxy on its own.
#[derive(Debug, Args)]
#[command(after_help = PROXY_HELP)]
pub struct ProxyArgs {
    /// A provider whose stored credential is injected (repeatable).
    #[arg(long = "grant", value_name = "PROVIDER")]
    grants: Vec<String>,

    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,

    #[command(flatten)]
    network: NetworkArgs,

    /// The request log to append to [default: $MOAT_HOME/proxy/network.jsonl].
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,

    /// Print the connection details as one line of JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Started<'a> {
    address: String,
    proxy_url: String,
    token: &'a str,
    ca_cert: String,
    log: String,
    grants: Vec<String>,
}

pub async fn run(context: &Context, args: ProxyArgs) -> CliResult {
    let policy = args.network.over(&NetworkPolicy::default())?;
    let log = match &args.log {
        Some(path) => {
            check_log_folder(path)?;
            path.clone()
        }
        None => context.home.root().join("proxy").join("network.jsonl"),
    };
    let upstream = UpstreamConfig::from_env()?;

    let resolved = resolve_grants(&context.registry, &context.store, &args.grants).await?;
    let names: Vec<String> = resolved.iter().map(|g| g.name().to_owned()).collect();
    let grants: Vec<ProxyRules> = resolved.into_iter().map(|g| g.rules).collect();
    // For the example printed below, a host from the grants' own rules: the CLI names no
    // provider's hosts itself.
    let example_host = grants
        .iter()
        .flat_map(|rules| &rules.rules)
        .find_map(|rule| match rule {
            ProxyRule::Credential { host, .. } if !host.starts_with("*.") => Some(host.clone()),
            _ => None,
        });

    #[cfg(unix)]
    if let Err(err) = crate::proxy::raise_open_file_limit() {
        tracing::warn!(%err, "cannot raise the open file limit");
    }
    let ca = CertificateAuthority::load_or_create(&context.home)?;

    let runs = Arc::new(RunRegistry::new());
    let (blocked, refusals) = tokio::sync::mpsc::unbounded_channel();
    let token = runs.register(RunSpec {
        id: format!("proxy-{}", std::process::id()),
        grants,
        policy,
        log: Some(log.clone()),
        blocked: Some(blocked),
        endpoints: Vec::new(),
    })?;
    tokio::spawn(report_blocked(refusals, "moat proxy"));
    let ca_cert = ca.cert_path();
    let proxy = Proxy::new(
        Arc::new(ca),
        Arc::clone(&runs),
        &upstream,
        ProxyConfig::default(),
    )?;
    let handle = proxy.listen(args.listen).await.map_err(|err| {
        CliError::new(format!("cannot listen on {}: {err}", args.listen))
            .hint("Pick another address with --listen, e.g. --listen 127.0.0.1:0.")
    })?;
    let address = handle.addr();
    let reachable = reachable_address(address);
    let proxy_url = format!("http://moat:{}@{reachable}", token.as_str());
    if !address.ip().is_loopback() {
        anstream::eprintln!(
            "warning: moat proxy listens on {address}, which other machines can reach: anyone \
             who learns the proxy URL can use your credentials through it. Use --listen \
             127.0.0.1:0 to keep it on this machine."
        );
    }

    if args.json {
        let started = Started {
            address: address.to_string(),
            proxy_url: proxy_url.clone(),
            token: token.as_str(),
            ca_cert: ca_cert.display().to_string(),
            log: log.display().to_string(),
            grants: names.clone(),
        };
        let line = serde_json::to_string(&started)
            .map_err(|err| CliError::new(format!("cannot print JSON: {err}")))?;
        println!("{line}");
    } else {
        let grants = if names.is_empty() {
            "none (requests pass through unchanged)".to_owned()
        } else {
            names.join(", ")
        };
        println!("moat proxy listening on {address}");
        println!("  proxy URL:    {proxy_url}");
        println!("  CA:           {}", ca_cert.display());
        println!("  request log:  {}", log.display());
        println!("  grants:       {grants}");
        println!();
        let host = example_host
            .as_deref()
            .unwrap_or("<a host your grants name>");
        println!(
            "Try: curl --proxy '{proxy_url}' --cacert '{}' https://{host}/",
            ca_cert.display()
        );
        if !upstream.resolve.is_empty() {
            println!("({RESOLVE_ENV} overrides some upstream addresses.)");
        }
        println!("Press Ctrl-C to stop.");
    }

    wait_for_stop().await;
    runs.remove(&token);
    handle.shutdown().await;
    Ok(())
}

/// Prints one line on stderr per refused host and reason (the proxy sends each once), with the
/// flag that would allow it, until every sender is gone. `moat proxy` and `moat run` use it.
pub(super) async fn report_blocked(
    mut refusals: tokio::sync::mpsc::UnboundedReceiver<Blocked>,
    prefix: &'static str,
) {
    while let Some(blocked) = refusals.recv().await {
        anstream::eprintln!("{prefix}: {blocked}");
    }
}

/// The address a client on this machine uses: a wildcard listen address (`0.0.0.0`, `::`)
/// becomes the loopback address of its family.
fn reachable_address(address: SocketAddr) -> SocketAddr {
    match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), address.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), address.port())
        }
        _ => address,
    }
}

/// `--log` must go into a folder that exists: a typo must not create a tree of folders.
fn check_log_folder(path: &Path) -> Result<(), CliError> {
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => return Ok(()),
    };
    if folder.is_dir() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "cannot write the request log {}: the folder {} does not exist",
        path.display(),
        folder.display()
    ))
    .hint("Create the folder first, or pick a file in an existing one with --log.")
    .code(code::USAGE))
}

/// Ctrl-C, or SIGTERM on Unix.
pub(super) async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
