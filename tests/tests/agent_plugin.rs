//! A plugin's agent command, end to end: the hand-written fixture plugin
//! (`moat/tests/fixtures/plugins/fake_plugin.py`) declares `moat <name>` in its `initialize`
//! answer, and the real `moat` binary offers it as a subcommand and runs it through the same
//! manager path as `moat run` and the built-in agents: the plugin's grant added on its own, its
//! `prepare_container` staging, its rules on the wire, the run's metadata naming the agent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use moat_tests::docker;
use moat_tests::{FakeHttps, MoatEnv, Reply, assert_no_secret};

const TOKEN: &str = "tok-RealPluginAgentSecret0123456789";

fn fake_plugin_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../moat/tests/fixtures/plugins/fake_plugin.py")
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Installs the fixture as `moat-provider-<name>` in `env`'s bin folder, as an agent plugin that
/// declares `command` (JSON).
fn install_agent_plugin(env: &MoatEnv, name: &str, command: &serde_json::Value) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = env.bin_dir().join(format!("moat-provider-{name}"));
    let script = format!(
        "#!/bin/sh\nFAKE_MODE=ok\nexport FAKE_MODE\nFAKE_NAME={name}\nexport FAKE_NAME\n\
         FAKE_CAPS=agent\nexport FAKE_CAPS\nFAKE_AGENT_COMMAND={}\nexport FAKE_AGENT_COMMAND\n\
         exec python3 {} \"$@\"\n",
        sh_quote(&command.to_string()),
        sh_quote(&fake_plugin_script().display().to_string()),
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The declared command: a shell script standing in for an agent. It prints what the container
/// holds (the plugin's staged variable, the placeholder, its arguments) and calls the plugin's
/// API host through the proxy.
fn declared(name: &str) -> serde_json::Value {
    let script = "echo \"staged=$FAKE_AGENT placeholder=$FAKE_TOKEN\"; echo \"args=$*\"; \
                  curl -sS --max-time 20 https://api.fake.test/whoami; echo";
    serde_json::json!({
        "name": name,
        "about": "Run the plugin's stand-in agent",
        "argv": ["sh", "-c", script, "agent"],
        "options": [
            {"long": "say", "short": "s", "help": "Say a word", "value_name": "WORD",
             "argv": ["said:{value}"], "batch": true},
            {"long": "loud", "help": "Shout", "argv": ["LOUD"], "conflicts_with": ["quiet"]},
            {"long": "quiet", "help": "Whisper", "argv": ["quiet"], "conflicts_with": ["loud"]}
        ],
        "hosts": ["api.fake.test"],
        "grants": [name]
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_plugins_agent_command_is_listed_in_help_and_validated_without_docker() {
    let env = MoatEnv::new();
    install_agent_plugin(&env, "pluggy", &declared("pluggy"));
    let help = env.cmd().args(["--help"]).output().unwrap();
    assert!(help.status.success(), "{}", text(&help.stderr));
    assert!(
        text(&help.stdout).contains("pluggy") && text(&help.stdout).contains("stand-in agent"),
        "{}",
        text(&help.stdout)
    );
    let sub = env.cmd().args(["pluggy", "--help"]).output().unwrap();
    let sub_help = text(&sub.stdout);
    assert!(sub.status.success(), "{}", text(&sub.stderr));
    assert!(sub_help.contains("--say <WORD>"), "{sub_help}");
    assert!(sub_help.contains("--grant"), "{sub_help}");
    // Declared conflicts are enforced.
    env.cmd()
        .args(["pluggy", "--loud", "--quiet"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot be used with"));
    // Nothing granted: the error says what to run.
    env.cmd()
        .args(["pluggy", "-s", "hi"])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("moat grant pluggy"));
}

#[test]
fn a_plugins_agent_command_runs_through_the_manager_with_its_grant_added() {
    if !docker::available("agent_plugin_e2e") {
        return;
    }
    let image = docker::ensure_base_image();
    let mut env = MoatEnv::new();
    install_agent_plugin(&env, "pluggy", &declared("pluggy"));
    let upstream = FakeHttps::start_for(env.ca(), &["api.fake.test"], |request| {
        // Says whether the real token arrived, without sending it into the container.
        let real = request.header("authorization") == Some(&*format!("Bearer {TOKEN}"));
        Reply::text(200, format!("upstream-saw-real-token={real}"))
    });
    env.set(
        "MOAT_PROXY_RESOLVE",
        format!("api.fake.test:443:127.0.0.1:{}", upstream.port()),
    );
    let ca = env.ca_pem().to_path_buf();
    env.set("MOAT_EXTRA_CA_CERTS", ca);
    env.set("MOAT_BASE_IMAGE", image);
    env.cmd()
        .args(["grant", "pluggy", "--no-input"])
        .env("FAKE_TOKEN", TOKEN)
        .assert()
        .success();

    let out = env
        .cmd()
        .args([
            "pluggy", "--say", "hello", "--policy", "strict", "--", "extra",
        ])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // argv, then the option's words, then the user's arguments.
    assert!(stdout.contains("args=said:hello extra"), "{stdout}");
    // The plugin's prepare_container and container_env reached the container.
    assert!(
        stdout.contains("staged=1 placeholder=moat-placeholder"),
        "{stdout}"
    );
    // The declared host is reachable under the strict policy, and the plugin's rule added the
    // real token on the wire.
    assert!(stdout.contains("upstream-saw-real-token=true"), "{stdout}");
    assert_eq!(upstream.requests().len(), 1);
    assert!(stderr.contains("Started agent \"pluggy\""), "{stderr}");
    assert_no_secret(&[&out.stdout, &out.stderr], TOKEN);

    let list = env.cmd().args(["list", "--json"]).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let run = &runs[0];
    assert_eq!(run["agent"], "pluggy", "{run}");
    assert_eq!(run["grants"], serde_json::json!(["pluggy"]), "{run}");
    assert_eq!(run["state"], "stopped", "{run}");
    // `--say` is a batch option: not interactive.
    assert!(run.get("interactive").is_none_or(|v| v == false), "{run}");
}
