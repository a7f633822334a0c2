//! `moat grant aws` end to end: the real binary and the real AWS SDK against a local stand-in
//! for STS (reached through MOAT_AWS_STS_URL, trusted through MOAT_EXTRA_CA_CERTS), with the
//! host's credentials in the environment the SDK reads.

use std::process::Output;

use moat_tests::{FakeHttps, MoatEnv, assert_no_secret_in_dir, fake_sts, parse_form};
use predicates::prelude::*;
use predicates::str::contains;

const ROLE: &str = "arn:aws:iam::123456789012:role/agent";
const HOST_KEY: &str = "AKIAHOSTKEYFORTESTS01";
const HOST_SECRET: &str = "host-secret-key-never-in-a-container-0123456789";
const EXPIRED_KEY: &str = "AKIAEXPIREDHOSTKEY001";

/// An environment whose AWS SDK finds nothing but what the test sets: no config files, no
/// instance metadata (never probed), the fake STS.
fn env_with_sts(key: Option<&str>) -> (MoatEnv, FakeHttps) {
    let mut env = MoatEnv::new();
    let sts = fake_sts(env.ca(), HOST_KEY, Some(EXPIRED_KEY));
    let ca = env.ca_pem().to_owned();
    let missing = env.root().join("no-such-aws-file");
    env.set("MOAT_AWS_STS_URL", sts.url())
        .set("MOAT_EXTRA_CA_CERTS", ca)
        .set("AWS_EC2_METADATA_DISABLED", "true")
        .set("AWS_CONFIG_FILE", &missing)
        .set("AWS_SHARED_CREDENTIALS_FILE", &missing);
    if let Some(key) = key {
        env.set("AWS_ACCESS_KEY_ID", key)
            .set("AWS_SECRET_ACCESS_KEY", HOST_SECRET);
    }
    (env, sts)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn grant_assumes_the_role_with_the_host_credentials_and_stores_the_settings() {
    let (env, sts) = env_with_sts(Some(HOST_KEY));
    env.cmd()
        .args([
            "grant",
            "aws",
            "--role",
            ROLE,
            "--region=eu-west-1",
            "--session-duration",
            "1h",
            "--external-id",
            "ext-42",
        ])
        .assert()
        .success()
        .stdout(contains("Credential saved to"))
        .stderr(contains(
            "Assumed role agent (region eu-west-1, sessions of 1h)",
        ));

    let requests = sts.requests();
    assert_eq!(requests.len(), 1);
    let form = parse_form(&requests[0].body);
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(field("RoleArn").as_deref(), Some(ROLE));
    assert_eq!(field("RoleSessionName").as_deref(), Some("moat-grant-test"));
    assert_eq!(field("DurationSeconds").as_deref(), Some("3600"));
    assert_eq!(field("ExternalId").as_deref(), Some("ext-42"));
    // Signed by the host's key, for the grant's region.
    let auth = requests[0].header("authorization").unwrap();
    assert!(auth.contains(&format!("Credential={HOST_KEY}/")), "{auth}");
    assert!(auth.contains("/eu-west-1/sts/"), "{auth}");

    let show = env
        .cmd()
        .args(["grant", "show", "aws", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(json["metadata"]["role_arn"], ROLE);
    assert_eq!(json["metadata"]["region"], "eu-west-1");
    assert_eq!(json["metadata"]["session_duration"], "1h");
    assert_eq!(json["metadata"]["external_id"], "ext-42");
    assert_eq!(json["source"], "flag");
    // The host's secret is nowhere in moat's home.
    assert_no_secret_in_dir(env.home(), HOST_SECRET);
}

#[test]
fn the_profile_comes_from_aws_profile_and_is_stored() {
    let (mut env, _sts) = env_with_sts(Some(HOST_KEY));
    // A profile that exists in a config file, with the host's keys.
    let config = env.root().join("aws-config");
    std::fs::write(
        &config,
        format!(
            "[profile work]\naws_access_key_id = {HOST_KEY}\naws_secret_access_key = {HOST_SECRET}\n"
        ),
    )
    .unwrap();
    env.set("AWS_CONFIG_FILE", &config)
        .set("AWS_PROFILE", "work")
        .set("AWS_ACCESS_KEY_ID", "")
        .set("AWS_SECRET_ACCESS_KEY", "");
    env.cmd()
        .args(["grant", "aws", "--role", ROLE])
        .assert()
        .success()
        .stderr(contains("Using AWS profile from AWS_PROFILE: work"));
    let show = env
        .cmd()
        .args(["grant", "show", "aws"])
        .assert()
        .success()
        .get_output()
        .clone();
    let shown = text(&show);
    assert!(shown.contains("Profile:  work"), "{shown}");
    assert!(shown.contains("Region:   us-east-1"), "{shown}");
    assert!(shown.contains("Session_duration: 15m"), "{shown}");
}

#[test]
fn access_denied_exits_4_with_a_hint_and_stores_nothing() {
    let (env, sts) = env_with_sts(Some(HOST_KEY));
    let output = env
        .cmd()
        .args([
            "grant",
            "aws",
            "--role",
            "arn:aws:iam::123456789012:role/denied",
        ])
        .assert()
        .code(4)
        .stderr(contains("AccessDenied"))
        .stderr(contains("trust policy"))
        .get_output()
        .clone();
    assert_eq!(sts.requests().len(), 1);
    assert!(
        !env.home().join("credentials/aws.enc").exists(),
        "{}",
        text(&output)
    );
}

#[test]
fn expired_host_credentials_exit_4_and_say_so() {
    let (env, _sts) = env_with_sts(Some(EXPIRED_KEY));
    env.cmd()
        .args(["grant", "aws", "--role", ROLE])
        .assert()
        .code(4)
        .stderr(contains("the host's AWS credentials have expired"))
        .stderr(contains("Renew them"));
    assert!(!env.home().join("credentials/aws.enc").exists());
}

#[test]
fn no_host_credentials_say_how_to_configure_them() {
    let (env, sts) = env_with_sts(None);
    env.cmd()
        .args(["grant", "aws", "--role", ROLE])
        .assert()
        .code(3)
        .stderr(contains("no AWS credentials found on the host"))
        .stderr(contains("aws configure"));
    assert!(sts.requests().is_empty(), "nothing was sent unsigned");
    assert!(!env.home().join("credentials/aws.enc").exists());
}

#[test]
fn invalid_input_is_refused_before_sts() {
    let (env, sts) = env_with_sts(Some(HOST_KEY));
    env.cmd()
        .args(["grant", "aws", "--role", ROLE, "--session-duration", "15"])
        .assert()
        .code(1)
        .stderr(contains("invalid session duration \"15\""));
    env.cmd()
        .args(["grant", "aws", "--role", "arn:aws:iam::1:role/x"])
        .assert()
        .code(1)
        .stderr(contains("not an IAM role ARN"));
    env.cmd()
        .args(["grant", "aws", "--role", ROLE, "--no-such-flag", "x"])
        .assert()
        .code(2)
        .stderr(contains("takes no option --no-such-flag"))
        .stderr(contains("--session-duration <DURATION>"));
    assert!(sts.requests().is_empty());
}

#[test]
fn without_role_it_is_asked_or_named() {
    let (env, sts) = env_with_sts(Some(HOST_KEY));
    // Piped: the hidden prompt reads a line.
    env.cmd()
        .args(["grant", "aws"])
        .write_stdin(format!("{ROLE}\n"))
        .assert()
        .success();
    assert_eq!(sts.requests().len(), 1);
    // --no-input: nobody to ask, exit 5.
    env.cmd()
        .args(["grant", "aws", "--no-input"])
        .assert()
        .code(5)
        .stderr(contains("pass it: moat grant aws --role <ARN>"));
}

#[test]
fn help_lists_the_options_and_providers_lists_aws() {
    let (env, _sts) = env_with_sts(Some(HOST_KEY));
    env.cmd()
        .args(["grant", "aws", "--help"])
        .assert()
        .success()
        .stdout(contains("--role <ARN>"))
        .stdout(contains("--region <REGION>"))
        .stdout(contains("--session-duration <DURATION>"))
        .stdout(contains("--external-id <ID>"))
        .stdout(contains("--aws-profile <NAME>"));
    env.cmd()
        .args(["grant", "providers"])
        .assert()
        .success()
        .stdout(
            predicate::str::is_match(
                r"aws\s+AWS IAM role \(short-lived credentials via credential_process\)\s+builtin",
            )
            .unwrap(),
        );
}
