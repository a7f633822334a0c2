//! The container's environment: how it finds the proxy and trusts its CA, then the providers'
//! placeholders, then the user's own variables.
//!
//! Layers, later wins: moat's proxy and CA settings → each grant's `container_env` → `moat.yaml`
//! `env` → `-e` flags. Except that the variables moat owns (the proxy, the CA, git's proxy
//! authentication, `MOAT_*`) cannot be set by any later layer: a `-e HTTPS_PROXY=...` would send
//! the container's traffic around the proxy (or to someone else's), so it is dropped with a
//! warning instead. Names are compared case-insensitively, since `https_proxy` and `HTTPS_PROXY`
//! are both read.
//!
//! The proxy URL carries the run's proxy token: it opens this run's rules on this proxy and
//! nothing else, and it is not a provider credential. The providers' values are placeholders.

use moat_plugin_sdk::EnvVar;

use crate::runtime::init::CA_FILE;

/// The name the container reaches the proxy by (an extra hosts entry).
pub const PROXY_HOST: &str = "moat-proxy";

/// The base URL of the providers' endpoints in the container (`http://moat-proxy:<port>`).
pub const ENDPOINT_URL_ENV: &str = "MOAT_ENDPOINT_URL";
/// The run's token for the providers' endpoints (`Authorization: Bearer <token>`).
pub const ENDPOINT_TOKEN_ENV: &str = "MOAT_ENDPOINT_TOKEN";

/// Variables that point a client at a CA file. Each is set to [`CA_FILE`]: every HTTPS connection
/// from the container goes through the proxy, whose certificates moat's CA signs.
const CA_VARIABLES: [&str; 5] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
];

/// Names no provider or user may set, compared without case. `GIT_CONFIG_*` carries git's
/// `http.proxyAuthMethod basic` (without it git sends no proxy credentials until challenged,
/// and HTTPS git fails with 407).
const RESERVED_EXACT: [&str; 8] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "FTP_PROXY",
    "CURL_ALL_PROXY",
    "GIT_PROXY_COMMAND",
    "GIT_CONFIG_PARAMETERS",
];
const RESERVED_PREFIXES: [&str; 2] = ["MOAT_", "GIT_CONFIG_"];

/// The proxy as the container sees it.
pub struct ProxyAccess<'a> {
    /// The proxy's port on [`PROXY_HOST`].
    pub port: u16,
    /// The run's proxy token (the password of the proxy URL).
    pub token: &'a str,
}

/// Where a user variable came from, for the warning when it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A grant's `container_env`.
    Provider,
    /// `env:` in `moat.yaml`.
    Config,
    /// `-e` on the command line.
    Flag,
}

/// The assembled environment and what was dropped on the way.
#[derive(Default)]
pub struct ContainerEnv {
    vars: Vec<EnvVar>,
    /// One line per dropped variable, for the user.
    pub warnings: Vec<String>,
}

// Values hold the proxy token: never printed.
impl std::fmt::Debug for ContainerEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.vars.iter().map(|var| var.name.as_str()).collect();
        f.debug_struct("ContainerEnv")
            .field("names", &names)
            .field("warnings", &self.warnings)
            .finish()
    }
}

impl ContainerEnv {
    /// moat's own layer: the proxy (when there is one) and the CA. `None` is a run with no proxy
    /// at all, which gets nothing from moat.
    pub fn new(proxy: Option<ProxyAccess<'_>>) -> ContainerEnv {
        let mut env = ContainerEnv::default();
        let Some(proxy) = proxy else {
            return env;
        };
        let url = format!("http://moat:{}@{PROXY_HOST}:{}", proxy.token, proxy.port);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            env.vars.push(EnvVar::new(name, url.clone()));
        }
        // The container's own loopback is its own; everything else goes through the proxy.
        for name in ["NO_PROXY", "no_proxy"] {
            env.vars.push(EnvVar::new(name, "localhost,127.0.0.1,::1"));
        }
        for name in CA_VARIABLES {
            env.vars.push(EnvVar::new(name, CA_FILE));
        }
        let git = [
            ("http.proxyAuthMethod", "basic"),
            ("safe.directory", "/workspace"),
        ];
        env.vars
            .push(EnvVar::new("GIT_CONFIG_COUNT", git.len().to_string()));
        for (index, (key, value)) in git.iter().enumerate() {
            env.vars
                .push(EnvVar::new(format!("GIT_CONFIG_KEY_{index}"), *key));
            env.vars
                .push(EnvVar::new(format!("GIT_CONFIG_VALUE_{index}"), *value));
        }
        env
    }

    /// Adds a layer: each variable replaces an earlier one of the same name, unless moat owns
    /// the name (then it is dropped, with a warning).
    pub fn layer(&mut self, origin: Origin, vars: impl IntoIterator<Item = EnvVar>) {
        for var in vars {
            if is_reserved(&var.name) {
                self.warnings.push(format!(
                    "ignoring {} from {}: moat sets it so that traffic goes through its proxy",
                    var.name,
                    origin.describe()
                ));
                continue;
            }
            match self.vars.iter_mut().find(|old| old.name == var.name) {
                Some(old) => old.value = var.value,
                None => self.vars.push(var),
            }
        }
    }

    /// Sets a variable of moat's own (`TERM`, the init's settings), bypassing the reserved check.
    pub fn set_own(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.vars.iter_mut().find(|old| old.name == name) {
            Some(old) => old.value = value,
            None => self.vars.push(EnvVar::new(name, value)),
        }
    }

    /// Tells the container how to reach its providers' endpoints ([`ENDPOINT_URL_ENV`],
    /// [`ENDPOINT_TOKEN_ENV`]): the proxy itself (requests sent directly, not through it as a
    /// proxy) and the run's token, sent as `Authorization: Bearer`. Set only for runs that grant
    /// a provider with endpoints; the token is the one the proxy URL already carries.
    pub fn set_endpoint_access(&mut self, port: u16, token: &str) {
        self.set_own(ENDPOINT_URL_ENV, format!("http://{PROXY_HOST}:{port}"));
        self.set_own(ENDPOINT_TOKEN_ENV, token);
    }

    /// Removes `name` if it was set by a provider; moat's own variables stay.
    pub fn withhold(&mut self, name: &str) {
        if !is_reserved(name) {
            self.vars.retain(|var| var.name != name);
        }
    }

    /// The value of `name`, if set.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|var| var.name == name)
            .map(|var| var.value.as_str())
    }

    /// The variables, in the order they were first set.
    #[cfg(test)]
    pub fn vars(&self) -> &[EnvVar] {
        &self.vars
    }

    /// `NAME=value` strings, as the container runtime takes them.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .map(|var| (var.name.clone(), var.value.clone()))
            .collect()
    }
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Origin::Provider => "a provider's environment",
            Origin::Config => "moat.yaml env",
            Origin::Flag => "-e",
        }
    }
}

/// Whether moat owns `name` (any case).
pub fn is_reserved(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    RESERVED_EXACT.contains(&upper.as_str())
        || CA_VARIABLES.contains(&upper.as_str())
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| upper.starts_with(prefix))
}

/// Parses a `-e` argument: `KEY=VALUE`, or `KEY` alone to pass the host's value through (as
/// `docker run -e KEY` does; a variable the host does not have is an error, not an empty value).
pub fn parse_flag(arg: &str) -> Result<EnvVar, String> {
    let (name, value) = match arg.split_once('=') {
        Some((name, value)) => (name, value.to_owned()),
        None => {
            let value = std::env::var(arg).map_err(|_| {
                format!("-e {arg}: {arg} is not set on this machine; use -e {arg}=VALUE")
            })?;
            (arg, value)
        }
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "-e {arg}: {name:?} is not a variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    Ok(EnvVar::new(name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn with_proxy() -> ContainerEnv {
        ContainerEnv::new(Some(ProxyAccess {
            port: 41000,
            token: TOKEN,
        }))
    }

    #[test]
    fn endpoint_access_is_moats_own_and_only_when_asked() {
        let mut env = with_proxy();
        assert_eq!(env.get(ENDPOINT_URL_ENV), None);
        env.set_endpoint_access(41000, TOKEN);
        assert_eq!(env.get(ENDPOINT_URL_ENV), Some("http://moat-proxy:41000"));
        assert_eq!(env.get(ENDPOINT_TOKEN_ENV), Some(TOKEN));
        env.layer(
            Origin::Flag,
            vec![EnvVar::new(ENDPOINT_URL_ENV, "http://evil:1")],
        );
        assert_eq!(env.get(ENDPOINT_URL_ENV), Some("http://moat-proxy:41000"));
        assert_eq!(env.warnings.len(), 1);
    }

    #[test]
    fn the_proxy_and_ca_are_set_in_both_cases() {
        let env = with_proxy();
        let url = format!("http://moat:{TOKEN}@moat-proxy:41000");
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            assert_eq!(env.get(name), Some(url.as_str()), "{name}");
        }
        for name in CA_VARIABLES {
            assert_eq!(env.get(name), Some(CA_FILE), "{name}");
        }
        assert_eq!(env.get("GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(env.get("GIT_CONFIG_KEY_0"), Some("http.proxyAuthMethod"));
        assert_eq!(env.get("GIT_CONFIG_VALUE_0"), Some("basic"));
    }

    #[test]
    fn no_proxy_no_settings() {
        assert!(ContainerEnv::new(None).vars().is_empty());
    }

    #[test]
    fn later_layers_win_but_never_over_moats_own() {
        let mut env = with_proxy();
        env.layer(Origin::Provider, [EnvVar::new("GH_TOKEN", "placeholder")]);
        env.layer(
            Origin::Config,
            [
                EnvVar::new("EDITOR", "vi"),
                EnvVar::new("https_proxy", "http://evil:1"),
            ],
        );
        env.layer(
            Origin::Flag,
            [
                EnvVar::new("EDITOR", "nano"),
                EnvVar::new("HTTPS_PROXY", "http://evil:1"),
                EnvVar::new("Ssl_Cert_File", "/tmp/x"),
                EnvVar::new("GIT_CONFIG_COUNT", "0"),
                EnvVar::new("MOAT_FIREWALL", "off"),
            ],
        );
        assert_eq!(env.get("EDITOR"), Some("nano"));
        assert_eq!(env.get("GH_TOKEN"), Some("placeholder"));
        assert!(env.get("HTTPS_PROXY").unwrap().contains("moat-proxy"));
        assert!(env.get("https_proxy").unwrap().contains("moat-proxy"));
        assert_eq!(env.get("GIT_CONFIG_COUNT"), Some("2"));
        assert_eq!(env.warnings.len(), 5, "{:?}", env.warnings);
        assert!(env.warnings[0].contains("https_proxy from moat.yaml env"));
        assert!(env.warnings[1].contains("HTTPS_PROXY from -e"));
    }

    #[test]
    fn providers_cannot_redirect_the_proxy_either() {
        let mut env = with_proxy();
        env.layer(Origin::Provider, [EnvVar::new("ALL_PROXY", "socks5://x")]);
        assert_eq!(env.get("ALL_PROXY"), None);
        assert!(env.warnings[0].contains("a provider's environment"));
    }

    #[test]
    fn debug_shows_names_not_the_token() {
        let shown = format!("{:?}", with_proxy());
        assert!(shown.contains("HTTPS_PROXY"));
        assert!(!shown.contains(TOKEN));
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_flag("A=b=c").unwrap(), EnvVar::new("A", "b=c"));
        assert_eq!(parse_flag("EMPTY=").unwrap(), EnvVar::new("EMPTY", ""));
        assert!(parse_flag("=x").is_err());
        assert!(parse_flag("1A=x").is_err());
        assert!(parse_flag("A-B=x").is_err());
        let missing = parse_flag("MOAT_TEST_SURELY_UNSET_VARIABLE").unwrap_err();
        assert!(
            missing.contains("-e MOAT_TEST_SURELY_UNSET_VARIABLE=VALUE"),
            "{missing}"
        );
        // PATH is set wherever tests run.
        assert!(parse_flag("PATH").is_ok());
    }
}
