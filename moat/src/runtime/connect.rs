//! Which container engine to talk to, the way the `docker` CLI decides it.
//!
//! bollard reads `DOCKER_HOST` and nothing else, so a user who switched engines with
//! `docker context use colima` would silently get the default socket. This module follows the CLI's
//! order: `DOCKER_HOST`, then `DOCKER_CONTEXT`, then `currentContext` in the CLI's
//! `config.json` (under `DOCKER_CONFIG`, default `~/.docker`), whose endpoint is in
//! `contexts/meta/<sha256 of the name>/meta.json` at `Endpoints.docker.Host`; then the default
//! socket. It only reads files: connecting is [`super::docker`]'s job.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::RuntimeError;

/// The engine's socket when nothing else is configured.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// An engine address and where it came from (for error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix:///path` or `tcp://host:port` (or whatever was configured, checked at connect).
    pub host: String,
    /// Why this host was chosen.
    pub origin: EndpointOrigin,
}

/// Where an [`Endpoint`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointOrigin {
    /// The `DOCKER_HOST` variable.
    DockerHost,
    /// A Docker CLI context: named by `DOCKER_CONTEXT` or by `currentContext`.
    Context {
        /// The context's name.
        name: String,
        /// `DOCKER_CONTEXT` named it (otherwise `config.json` did).
        from_env: bool,
    },
    /// Nothing configured: the platform default.
    Default,
}

impl fmt::Display for EndpointOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointOrigin::DockerHost => f.write_str("from DOCKER_HOST"),
            EndpointOrigin::Context {
                name,
                from_env: true,
            } => write!(f, "Docker context {name:?} from DOCKER_CONTEXT"),
            EndpointOrigin::Context { name, .. } => {
                write!(f, "current Docker context {name:?}")
            }
            EndpointOrigin::Default => f.write_str("the default socket"),
        }
    }
}

impl Endpoint {
    /// Resolve from this process's environment.
    pub fn from_env() -> Result<Endpoint, RuntimeError> {
        Endpoint::resolve(|name| std::env::var_os(name))
    }

    /// Resolve with `var` standing in for the environment (`HOME`, `DOCKER_HOST`,
    /// `DOCKER_CONTEXT`, `DOCKER_CONFIG`), so tests use a temporary home.
    pub fn resolve(var: impl Fn(&str) -> Option<OsString>) -> Result<Endpoint, RuntimeError> {
        let non_empty = |name: &str| var(name).filter(|v| !v.is_empty());
        if let Some(host) = non_empty("DOCKER_HOST") {
            return Ok(Endpoint {
                host: host.to_string_lossy().into_owned(),
                origin: EndpointOrigin::DockerHost,
            });
        }
        let config_dir = match non_empty("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir)),
            None => non_empty("HOME").map(|home| PathBuf::from(home).join(".docker")),
        };
        let (name, from_env) = match non_empty("DOCKER_CONTEXT") {
            Some(name) => (Some(name.to_string_lossy().into_owned()), true),
            None => (
                match &config_dir {
                    Some(dir) => current_context(&dir.join("config.json"))?,
                    None => None,
                },
                false,
            ),
        };
        match name {
            None => Ok(Endpoint::default_socket()),
            Some(name) if name == "default" => Ok(Endpoint::default_socket()),
            Some(name) => {
                let Some(dir) = config_dir else {
                    return Err(RuntimeError::Context {
                        context: name,
                        path: PathBuf::from("~/.docker"),
                        reason: "neither HOME nor DOCKER_CONFIG is set".into(),
                    });
                };
                let host = context_host(&dir, &name)?;
                Ok(Endpoint {
                    host,
                    origin: EndpointOrigin::Context { name, from_env },
                })
            }
        }
    }

    fn default_socket() -> Endpoint {
        Endpoint {
            host: DEFAULT_HOST.into(),
            origin: EndpointOrigin::Default,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.host, self.origin)
    }
}

/// `currentContext` from the CLI's config, `None` when the file or the key is absent.
fn current_context(config: &Path) -> Result<Option<String>, RuntimeError> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RuntimeError::io(format!("reading {}", config.display()), e)),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| RuntimeError::Context {
            context: "(current)".into(),
            path: config.to_owned(),
            reason: format!("not valid JSON: {e}"),
        })?;
    Ok(value
        .get("currentContext")
        .and_then(|v| v.as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned))
}

/// The docker endpoint of a named context: `contexts/meta/<sha256(name)>/meta.json`.
fn context_host(config_dir: &Path, name: &str) -> Result<String, RuntimeError> {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let path = config_dir
        .join("contexts")
        .join("meta")
        .join(&hex)
        .join("meta.json");
    let error = |reason: String| RuntimeError::Context {
        context: name.to_owned(),
        path: path.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            error("no such context (its meta.json is missing)".into())
        } else {
            error(format!("unreadable: {e}"))
        }
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| error(format!("not valid JSON: {e}")))?;
    let host = value
        .pointer("/Endpoints/docker/Host")
        .and_then(|v| v.as_str())
        .filter(|h| !h.is_empty())
        .ok_or_else(|| error("it has no Endpoints.docker.Host".into()))?;
    // TLS material for the context lives beside the metadata; moat cannot use it yet, and
    // connecting without it would be a confusing failure.
    let tls = config_dir
        .join("contexts")
        .join("tls")
        .join(&hex)
        .join("docker");
    if tls.is_dir() {
        return Err(RuntimeError::UnsupportedEndpoint {
            endpoint: host.to_owned(),
            origin: format!("Docker context {name:?}"),
            reason: "the context uses TLS client certificates".into(),
        });
    }
    Ok(host.to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeHome {
        dir: tempfile::TempDir,
        vars: HashMap<String, OsString>,
    }

    impl FakeHome {
        fn new() -> FakeHome {
            let dir = tempfile::tempdir().unwrap();
            let mut vars = HashMap::new();
            vars.insert("HOME".to_owned(), dir.path().as_os_str().to_owned());
            FakeHome { dir, vars }
        }
        fn set(&mut self, name: &str, value: impl Into<OsString>) -> &mut Self {
            self.vars.insert(name.to_owned(), value.into());
            self
        }
        fn docker_dir(&self) -> PathBuf {
            self.dir.path().join(".docker")
        }
        fn write_config(&self, dir: &Path, json: &str) {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join("config.json"), json).unwrap();
        }
        fn add_context(&self, dir: &Path, name: &str, host: &str) -> PathBuf {
            let hex: String = Sha256::digest(name.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let meta = dir.join("contexts/meta").join(hex);
            std::fs::create_dir_all(&meta).unwrap();
            let json = serde_json::json!({
                "Name": name,
                "Metadata": {},
                "Endpoints": { "docker": { "Host": host, "SkipTLSVerify": false } }
            });
            std::fs::write(meta.join("meta.json"), json.to_string()).unwrap();
            meta
        }
        fn resolve(&self) -> Result<Endpoint, RuntimeError> {
            Endpoint::resolve(|name| self.vars.get(name).cloned())
        }
    }

    #[test]
    fn nothing_configured_is_the_default_socket() {
        let home = FakeHome::new();
        let endpoint = home.resolve().unwrap();
        assert_eq!(endpoint.host, "unix:///var/run/docker.sock");
        assert_eq!(endpoint.origin, EndpointOrigin::Default);
        // A config without a current context, or naming "default", is the same.
        home.write_config(&home.docker_dir(), r#"{"auths":{}}"#);
        assert_eq!(home.resolve().unwrap().origin, EndpointOrigin::Default);
        home.write_config(&home.docker_dir(), r#"{"currentContext":"default"}"#);
        assert_eq!(home.resolve().unwrap().origin, EndpointOrigin::Default);
    }

    #[test]
    fn the_current_context_in_config_json_is_followed() {
        let home = FakeHome::new();
        let dir = home.docker_dir();
        home.write_config(&dir, r#"{"currentContext":"colima","auths":{}}"#);
        home.add_context(
            &dir,
            "colima",
            "unix:///home/me/.colima/default/docker.sock",
        );
        home.add_context(&dir, "other", "tcp://10.0.0.2:2375");
        let endpoint = home.resolve().unwrap();
        assert_eq!(endpoint.host, "unix:///home/me/.colima/default/docker.sock");
        assert_eq!(
            endpoint.to_string(),
            "unix:///home/me/.colima/default/docker.sock (current Docker context \"colima\")"
        );
    }

    #[test]
    fn docker_context_overrides_config_and_docker_host_overrides_both() {
        let mut home = FakeHome::new();
        let dir = home.docker_dir();
        home.write_config(&dir, r#"{"currentContext":"colima"}"#);
        home.add_context(&dir, "colima", "unix:///colima.sock");
        home.add_context(&dir, "remote", "tcp://10.0.0.2:2375");
        home.set("DOCKER_CONTEXT", "remote");
        let endpoint = home.resolve().unwrap();
        assert_eq!(endpoint.host, "tcp://10.0.0.2:2375");
        assert_eq!(
            endpoint.origin,
            EndpointOrigin::Context {
                name: "remote".into(),
                from_env: true
            }
        );
        home.set("DOCKER_CONTEXT", "default");
        assert_eq!(home.resolve().unwrap().origin, EndpointOrigin::Default);

        home.set("DOCKER_HOST", "unix:///run/user/1000/docker.sock");
        let endpoint = home.resolve().unwrap();
        assert_eq!(endpoint.host, "unix:///run/user/1000/docker.sock");
        assert_eq!(endpoint.origin, EndpointOrigin::DockerHost);
        // An empty DOCKER_HOST counts as unset, as in the CLI.
        home.set("DOCKER_HOST", "");
        assert_eq!(home.resolve().unwrap().origin, EndpointOrigin::Default);
    }

    #[test]
    fn docker_config_moves_the_config_directory() {
        let mut home = FakeHome::new();
        let elsewhere = home.dir.path().join("elsewhere");
        home.write_config(&elsewhere, r#"{"currentContext":"lima"}"#);
        home.add_context(&elsewhere, "lima", "unix:///lima.sock");
        // ~/.docker says something else and must be ignored.
        home.write_config(&home.docker_dir(), r#"{"currentContext":"nope"}"#);
        home.set("DOCKER_CONFIG", elsewhere.as_os_str());
        assert_eq!(home.resolve().unwrap().host, "unix:///lima.sock");
    }

    #[test]
    fn a_missing_or_broken_context_is_an_error_naming_it_and_the_file() {
        let home = FakeHome::new();
        let dir = home.docker_dir();
        home.write_config(&dir, r#"{"currentContext":"gone"}"#);
        let err = home.resolve().unwrap_err();
        let message = err.to_string();
        assert!(message.contains("\"gone\""), "{message}");
        assert!(message.contains("contexts/meta/"), "{message}");
        assert!(message.contains("no such context"), "{message}");
        assert!(err.hint().unwrap().contains("docker context use"));

        let meta = home.add_context(&dir, "gone", "unix:///x.sock");
        std::fs::write(meta.join("meta.json"), r#"{"Endpoints":{}}"#).unwrap();
        let message = home.resolve().unwrap_err().to_string();
        assert!(message.contains("Endpoints.docker.Host"), "{message}");

        home.write_config(&dir, "{not json");
        let message = home.resolve().unwrap_err().to_string();
        assert!(message.contains("config.json"), "{message}");
    }

    #[test]
    fn a_tls_context_is_refused_clearly() {
        let home = FakeHome::new();
        let dir = home.docker_dir();
        home.write_config(&dir, r#"{"currentContext":"secure"}"#);
        let meta = home.add_context(&dir, "secure", "tcp://10.0.0.9:2376");
        let hex = meta.file_name().unwrap();
        std::fs::create_dir_all(dir.join("contexts/tls").join(hex).join("docker")).unwrap();
        let err = home.resolve().unwrap_err();
        assert!(
            matches!(err, RuntimeError::UnsupportedEndpoint { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("TLS"), "{err}");
    }
}
