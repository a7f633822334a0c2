//! The network flags `moat run` and `moat proxy` share, and how they combine with `moat.yaml`.

use clap::Args;

use super::{CliError, code};
use crate::proxy::{NetworkPolicy, PolicyMode};

/// `--policy`, `--allow`, `--rule`, `--host-port`.
#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// Network policy: permissive (allow unless a rule denies) or strict (only the grants'
    /// hosts and --allow) [default: moat.yaml's network.policy, or permissive].
    #[arg(long, value_name = "POLICY")]
    policy: Option<PolicyMode>,

    /// A host (or *.suffix, host:port) reachable under the strict policy (repeatable). The
    /// grants' hosts always are.
    #[arg(long = "allow", value_name = "HOST")]
    allow: Vec<String>,

    /// A method and path rule, "HOST allow|deny METHOD|* /glob" (repeatable; first match wins).
    #[arg(long = "rule", value_name = "RULE")]
    rules: Vec<String>,

    /// A port of a service on this machine that may be reached through the proxy (as
    /// localhost, 127.0.0.1, ::1 or moat-host; repeatable). Others are refused.
    #[arg(long = "host-port", value_name = "PORT")]
    host_ports: Vec<u16>,
}

impl NetworkArgs {
    /// The flags over `base` (moat.yaml's `network`, or the default): the mode replaces, hosts,
    /// rules and ports add up. A bad pattern or rule is a usage error, found before anything
    /// starts.
    pub fn over(&self, base: &NetworkPolicy) -> Result<NetworkPolicy, CliError> {
        let mut policy = base.clone();
        if let Some(mode) = self.policy {
            policy.policy = mode;
        }
        policy.allow.extend(self.allow.iter().cloned());
        for rule in &self.rules {
            let entry = crate::config::parse_rule(rule).map_err(|err| {
                CliError::new(format!("invalid --rule {rule:?}: {err}")).code(code::USAGE)
            })?;
            crate::config::merge_rules(&mut policy.rules, entry);
        }
        policy.host_ports.extend(self.host_ports.iter().copied());
        crate::proxy::policy::validate(&policy)
            .map_err(|err| CliError::new(err.to_string()).code(code::USAGE))?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::proxy::HostRules;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        network: NetworkArgs,
    }

    fn over(args: &[&str], base: &NetworkPolicy) -> Result<NetworkPolicy, CliError> {
        let flags =
            Flags::try_parse_from(std::iter::once("moat").chain(args.iter().copied())).unwrap();
        flags.network.over(base)
    }

    #[test]
    fn flags_add_to_the_file_and_the_mode_replaces_it() {
        let base = NetworkPolicy {
            policy: PolicyMode::Strict,
            allow: vec!["pypi.org".into()],
            rules: vec![HostRules {
                host: "api.github.com".into(),
                rules: vec!["deny DELETE /**".into()],
            }],
            host_ports: vec![5432],
        };
        let policy = over(
            &[
                "--allow",
                "files.pythonhosted.org",
                "--rule",
                "api.github.com deny POST /admin/**",
                "--host-port",
                "8080",
            ],
            &base,
        )
        .unwrap();
        assert_eq!(policy.policy, PolicyMode::Strict);
        assert_eq!(policy.allow, ["pypi.org", "files.pythonhosted.org"]);
        assert_eq!(
            policy.rules[0].rules,
            ["deny DELETE /**", "deny POST /admin/**"]
        );
        assert_eq!(policy.host_ports, [5432, 8080]);
        let permissive = over(&["--policy", "permissive"], &base).unwrap();
        assert_eq!(permissive.policy, PolicyMode::Permissive);
    }

    #[test]
    fn a_bad_rule_is_a_usage_error() {
        let err = over(
            &["--rule", "api.github.com maybe GET /"],
            &NetworkPolicy::default(),
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), code::USAGE);
    }
}
