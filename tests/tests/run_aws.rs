//! `moat run --grant aws` end to end against the real Docker engine: a process in the container
//! gets AWS credentials through `credential_process` (the helper moat mounts, asking moat's
//! proxy), which the proxy obtains from a local stand-in for STS with the host's credentials.
//! The host's own AWS secret never reaches the container.

use std::time::Duration;

use moat_tests::docker::{self, docker};
use moat_tests::{FAKE_ROLE_ACCESS_KEY, MoatEnv, assert_no_secret, fake_sts, parse_form};

const ROLE: &str = "arn:aws:iam::123456789012:role/agent";
const HOST_KEY: &str = "AKIAHOSTKEYFORRUNTEST";
const HOST_SECRET: &str = "host-secret-for-the-run-test-0123456789abcdef";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_container_process_gets_role_credentials_through_credential_process() {
    if !docker::available("run_aws") {
        return;
    }
    let image = docker::ensure_base_image();
    let mut env = MoatEnv::new();
    let sts = fake_sts(env.ca(), HOST_KEY, None);
    let ca = env.ca_pem().to_owned();
    let missing = env.root().join("no-such-aws-file");
    env.set("MOAT_AWS_STS_URL", sts.url())
        .set("MOAT_EXTRA_CA_CERTS", ca)
        .set("AWS_EC2_METADATA_DISABLED", "true")
        .set("AWS_CONFIG_FILE", &missing)
        .set("AWS_SHARED_CREDENTIALS_FILE", &missing)
        .set("AWS_ACCESS_KEY_ID", HOST_KEY)
        .set("AWS_SECRET_ACCESS_KEY", HOST_SECRET)
        .set("MOAT_BASE_IMAGE", image);
    env.cmd()
        .args([
            "grant",
            "aws",
            "--role",
            ROLE,
            "--region",
            "eu-west-1",
            "--external-id",
            "ext-7",
        ])
        .assert()
        .success();
    assert_eq!(sts.requests().len(), 1, "the grant's check");

    // The stand-in for an AWS SDK: run the credential_process command line the config names,
    // twice (the second answer comes from moat's cache), and show what came back. Then look for
    // the host's secret everywhere a process in the container could: its environment, every
    // process's environment and command line, every file. The secret is split so that the
    // script's own text never holds it whole.
    let (head, tail) = HOST_SECRET.split_at(HOST_SECRET.len() / 2);
    let script = format!(
        r#"set -u
        echo "config: $AWS_CONFIG_FILE region: $AWS_REGION ca: $AWS_CA_BUNDLE"
        cat "$AWS_CONFIG_FILE"
        cmd=$(sed -n 's/^credential_process = //p' "$AWS_CONFIG_FILE")
        first=$($cmd) || {{ echo "helper failed"; exit 3; }}
        second=$($cmd) || {{ echo "helper failed"; exit 3; }}
        for answer in "$first" "$second"; do
            printf '%s' "$answer" | python3 -c 'import json, sys; d = json.load(sys.stdin); print("version:", d["Version"], "key:", d["AccessKeyId"], "secret:", d["SecretAccessKey"], "expires:", d["Expiration"])'
        done
        env; cat /proc/*/environ | tr '\0' '\n'; cat /proc/*/cmdline | tr '\0' ' '; echo
        a='{head}'; b='{tail}'
        grep -rlsF "$a$b" / --exclude-dir=proc --exclude-dir=sys; echo "grep-exit=$?""#
    );
    let out = env
        .cmd()
        .args(["run", "--grant", "aws", "--", "sh", "-c", &script])
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(
            "config: /moat/aws/config region: eu-west-1 ca: /etc/ssl/certs/moat-ca/ca.crt"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("credential_process = sh /moat/aws/credentials"),
        "{stdout}"
    );

    // Both answers: the role's temporary credentials, for this run's session.
    let runs = env.cmd().args(["list", "--json"]).output().unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let run_id = runs[0]["id"].as_str().unwrap().to_string();
    let answer = format!(
        "version: 1 key: {FAKE_ROLE_ACCESS_KEY} secret: fake-role-secret-moat-{run_id} expires: "
    );
    assert_eq!(stdout.matches(&answer).count(), 2, "{stdout}");
    // One AssumeRole for the run (the second answer was cached), signed with the host's key,
    // with the run's session name and the external id.
    let requests = sts.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let form = parse_form(&requests[1].body);
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("RoleArn"), Some(ROLE));
    assert_eq!(
        field("RoleSessionName"),
        Some(format!("moat-{run_id}").as_str())
    );
    assert_eq!(field("ExternalId"), Some("ext-7"));
    let auth = requests[1].header("authorization").unwrap();
    assert!(auth.contains(&format!("Credential={HOST_KEY}/")), "{auth}");

    // The host's secret and key id never entered the container.
    assert!(
        stdout.contains("grep-exit=1"),
        "grep found something: {stdout}"
    );
    assert_no_secret(&[&out.stdout, &out.stderr], HOST_SECRET);
    assert!(
        !stdout.contains(HOST_KEY),
        "the host's key id is in the container: {stdout}"
    );
    assert_no_secret(&[&out.stdout], "AWS_SECRET_ACCESS_KEY=");
    let run_dir = env.home().join("runs").join(&run_id);
    moat_tests::assert_no_secret_in_dir(&run_dir, HOST_SECRET);

    // Nothing left behind: the container and the staged config folder.
    let left = docker(&["ps", "-aq", "--filter", &format!("label=moat.run={run_id}")]);
    assert!(
        text(&left.stdout).trim().is_empty(),
        "container left behind"
    );
    assert_eq!(runs[0]["exit_code"], 0);
}
