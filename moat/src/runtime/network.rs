//! The network containers run on: one shared, internal bridge network named `moat`.
//!
//! Why this shape (issue 9, measured on this machine): on an `--internal` Docker network a
//! container has no route out (TCP to the internet and DNS for outside names fail) but still
//! reaches the host's address on that bridge, the network's *gateway*. moat's proxy listens on
//! that address only (not on 0.0.0.0, not on loopback), and containers reach it as `moat-proxy`
//! through an extra hosts entry. One network for all runs, because creating and removing a
//! network per run costs time and leaks address pools when a run dies; inter-container traffic is
//! off (`enable_icc=false`) so two runs on it cannot talk to each other.
//!
//! What this does not stop: a host service bound on 0.0.0.0 (or on the gateway address) is
//! reachable from the container through the gateway. The strict policy closes that with the
//! init's firewall ([`super::init`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use bollard::models::{NetworkCreateRequest, NetworkInspect};

use super::error::RuntimeError;

/// The shared network's name.
pub const DEFAULT_NETWORK: &str = "moat";

/// The bridge driver option that turns inter-container traffic off.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";

/// The network to ensure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Its name (`DEFAULT_NETWORK`, `moat`, unless a test wants its own).
    pub name: String,
    /// Labels set when moat creates it.
    pub labels: BTreeMap<String, String>,
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            name: DEFAULT_NETWORK.into(),
            labels: BTreeMap::from([(super::MANAGED_LABEL.to_owned(), "true".to_owned())]),
        }
    }
}

impl NetworkSpec {
    /// A network of that name with moat's label.
    pub fn named(name: impl Into<String>) -> Self {
        NetworkSpec {
            name: name.into(),
            ..NetworkSpec::default()
        }
    }

    /// The engine request: bridge, internal, inter-container traffic off.
    pub(crate) fn create_request(&self) -> NetworkCreateRequest {
        NetworkCreateRequest {
            name: self.name.clone(),
            driver: Some("bridge".into()),
            internal: Some(true),
            attachable: Some(false),
            options: Some(HashMap::from([(ICC_OPTION.to_owned(), "false".to_owned())])),
            labels: Some(super::label_map(&self.labels)),
            ..Default::default()
        }
    }
}

/// An ensured network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Its name.
    pub name: String,
    /// The engine's id.
    pub id: String,
    /// The host's address on it: where the proxy listens, `moat-proxy` in containers.
    pub gateway: IpAddr,
    /// Its subnet, e.g. `172.18.0.0/16`.
    pub subnet: Option<String>,
}

impl NetworkInfo {
    /// Whether this host can listen on the gateway address, i.e. the engine runs on this
    /// machine's kernel (native Linux Docker). With Docker Desktop, Colima or a remote engine the
    /// gateway lives in another machine, and moat's proxy cannot listen where containers reach it.
    pub fn gateway_is_local(&self) -> bool {
        std::net::TcpListener::bind((self.gateway, 0)).is_ok()
    }
}

/// Check an existing (or just created) network is one moat may use, and read its gateway.
///
/// A network called `moat` that someone created without `--internal` would give containers a
/// way out around the proxy: refused, with the command that fixes it.
pub(crate) fn info_from_inspect(
    name: &str,
    inspect: NetworkInspect,
) -> Result<NetworkInfo, RuntimeError> {
    let refuse = |why: &str| RuntimeError::Engine {
        action: format!("use network {name}"),
        message: format!(
            "{why}; moat needs an internal network without inter-container traffic \
             (remove it with `docker network rm {name}` and moat recreates it)"
        ),
    };
    if inspect.internal != Some(true) {
        return Err(refuse(
            "it is not internal (containers on it reach the outside)",
        ));
    }
    let icc = inspect
        .options
        .as_ref()
        .and_then(|o| o.get(ICC_OPTION))
        .map(String::as_str);
    if icc != Some("false") {
        return Err(refuse("inter-container traffic is on"));
    }
    let config = inspect
        .ipam
        .as_ref()
        .and_then(|ipam| ipam.config.as_ref())
        .and_then(|configs| {
            configs.iter().find(|c| {
                c.gateway
                    .as_deref()
                    .and_then(|g| g.parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip.is_ipv4())
            })
        })
        .ok_or_else(|| refuse("it has no IPv4 gateway"))?;
    let gateway = config
        .gateway
        .as_deref()
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| refuse("its gateway is not an IP address"))?;
    Ok(NetworkInfo {
        name: name.to_owned(),
        id: inspect.id.unwrap_or_default(),
        gateway,
        subnet: config.subnet.clone(),
    })
}

#[cfg(test)]
mod tests {
    use bollard::models::{Ipam, IpamConfig};

    use super::*;

    fn inspect(internal: bool, icc: Option<&str>, gateway: Option<&str>) -> NetworkInspect {
        NetworkInspect {
            id: Some("abc".into()),
            internal: Some(internal),
            options: icc.map(|v| HashMap::from([(ICC_OPTION.to_owned(), v.to_owned())])),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some("172.30.0.0/16".into()),
                    gateway: gateway.map(str::to_owned),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_create_request_is_internal_without_icc_and_labelled() {
        let request = NetworkSpec::default().create_request();
        assert_eq!(request.name, "moat");
        assert_eq!(request.internal, Some(true));
        assert_eq!(request.options.unwrap()[ICC_OPTION], "false");
        assert_eq!(request.labels.unwrap()["moat.managed"], "true");
    }

    #[test]
    fn an_internal_network_without_icc_gives_its_gateway() {
        let info =
            info_from_inspect("moat", inspect(true, Some("false"), Some("172.30.0.1"))).unwrap();
        assert_eq!(info.gateway, "172.30.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(info.subnet.as_deref(), Some("172.30.0.0/16"));
        assert_eq!(info.id, "abc");
        // 192.0.2.1 (TEST-NET-1) is nobody's address; loopback is everybody's.
        let remote = NetworkInfo {
            gateway: "192.0.2.1".parse().unwrap(),
            ..info.clone()
        };
        assert!(!remote.gateway_is_local());
        let local = NetworkInfo {
            gateway: "127.0.0.1".parse().unwrap(),
            ..info
        };
        assert!(local.gateway_is_local());
    }

    #[test]
    fn a_network_with_a_way_out_or_icc_is_refused() {
        let err = info_from_inspect("moat", inspect(false, Some("false"), Some("172.30.0.1")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not internal") && err.contains("docker network rm moat"),
            "{err}"
        );
        let err = info_from_inspect("moat", inspect(true, None, Some("172.30.0.1")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("inter-container"), "{err}");
        let err = info_from_inspect("moat", inspect(true, Some("false"), None))
            .unwrap_err()
            .to_string();
        assert!(err.contains("gateway"), "{err}");
    }
}
