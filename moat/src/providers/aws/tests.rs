use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::TimeDelta;
use moat_plugin_sdk::{Answer, ErrorKind, Secret};

use super::sts::{RoleCredentials, StsError, StsFailure};
use super::*;

const ROLE: &str = "arn:aws:iam::123456789012:role/agent";

/// A role source that records what it was asked and answers numbered credentials valid 1 h
/// from `T0`, or fails as told.
#[derive(Default)]
struct FakeSts {
    calls: AtomicUsize,
    asked: Mutex<Vec<(RoleSettings, String)>>,
    fail: Option<StsFailure>,
}

#[async_trait]
impl RoleSource for FakeSts {
    async fn assume(
        &self,
        settings: &RoleSettings,
        session_name: &str,
    ) -> Result<RoleCredentials, StsError> {
        let serial = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.asked
            .lock()
            .unwrap()
            .push((settings.clone(), session_name.to_string()));
        if let Some(failure) = self.fail {
            return Err(StsError::new(failure, "refused by the fake"));
        }
        Ok(RoleCredentials {
            access_key_id: format!("ASIAFAKE{serial}"),
            secret_access_key: Secret::new(format!("fake-secret-{serial}")),
            session_token: Secret::new(format!("fake-session-{serial}")),
            expiration: t0() + TimeDelta::hours(1),
        })
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-05T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn provider(fake: Arc<FakeSts>) -> AwsProvider {
    let mut provider = AwsProvider::with_source(fake);
    provider.clock = t0;
    provider
}

fn request(options: &[(&str, &str)]) -> GrantRequest {
    GrantRequest {
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        interactive: true,
        ..GrantRequest::default()
    }
}

#[tokio::test]
async fn grant_with_options_assumes_the_role_once_and_stores_the_settings() {
    let fake = Arc::new(FakeSts::default());
    let step = provider(Arc::clone(&fake))
        .grant(request(&[
            ("role", ROLE),
            ("region", "eu-west-1"),
            ("session-duration", "1h"),
            ("external-id", "ext-1"),
            ("aws-profile", "work"),
        ]))
        .await
        .unwrap();
    let GrantStep::Done { credential, notes } = step else {
        panic!("{step:?}")
    };
    assert_eq!(credential.provider, "aws");
    assert_eq!(credential.token.expose(), ROLE);
    assert_eq!(credential.metadata["region"], "eu-west-1");
    assert_eq!(credential.metadata["session_duration"], "1h");
    assert_eq!(credential.metadata["external_id"], "ext-1");
    assert_eq!(credential.metadata["profile"], "work");
    assert_eq!(credential.metadata["token_source"], "flag");
    assert!(
        notes.iter().any(|n| n.contains("Assumed role agent")),
        "{notes:?}"
    );
    let asked = fake.asked.lock().unwrap();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].1, "moat-grant-test");
    assert_eq!(asked[0].0.duration, Duration::from_secs(3600));
    assert_eq!(asked[0].0.external_id.as_deref(), Some("ext-1"));
    assert_eq!(asked[0].0.profile.as_deref(), Some("work"));
}

#[tokio::test]
async fn without_role_it_is_asked_hidden_and_the_answer_is_used() {
    let fake = Arc::new(FakeSts::default());
    let p = provider(Arc::clone(&fake));
    let step = p.grant(request(&[("aws-profile", "work")])).await.unwrap();
    let GrantStep::Ask { prompts, .. } = step else {
        panic!("{step:?}")
    };
    assert_eq!(prompts[0].id, "role");
    assert_eq!(prompts[0].kind, moat_plugin_sdk::PromptKind::Secret);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);

    let answered = request(&[("aws-profile", "work")])
        .with_answer("role", Answer::Secret(Secret::new(format!(" {ROLE}\n"))));
    let GrantStep::Done { credential, .. } = p.grant(answered).await.unwrap() else {
        panic!("not done")
    };
    assert_eq!(credential.token.expose(), ROLE);
    assert_eq!(credential.metadata["token_source"], "prompt");
    assert_eq!(credential.metadata["region"], "us-east-1");
    assert_eq!(credential.metadata["session_duration"], "15m");
}

#[tokio::test]
async fn bad_input_fails_before_sts_is_called() {
    let fake = Arc::new(FakeSts::default());
    let p = provider(Arc::clone(&fake));
    for options in [
        vec![("role", "arn:aws:iam::123:role/x")],
        vec![("role", ROLE), ("session-duration", "15")],
        vec![("role", ROLE), ("session-duration", "13h")],
        vec![("role", ROLE), ("region", "Not A Region")],
        vec![("role", ROLE), ("external-id", "x")],
        // A bad option fails even before the role is asked.
        vec![("session-duration", "soon")],
    ] {
        let err = p.grant(request(&options)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{options:?}");
    }
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_assume_role_is_a_rejection_with_a_hint() {
    let fake = Arc::new(FakeSts {
        fail: Some(StsFailure::AccessDenied),
        ..FakeSts::default()
    });
    let err = provider(fake)
        .grant(request(&[("role", ROLE)]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidCredential);
    assert!(err.message.contains("refused by the fake"), "{err}");
    assert!(err.hint.unwrap().contains("trust policy"));
}

fn stored() -> Credential {
    RoleSettings {
        role_arn: ROLE.into(),
        region: "eu-west-1".into(),
        duration: Duration::from_secs(900),
        external_id: Some("ext-1".into()),
        profile: None,
    }
    .to_credential("flag")
}

fn endpoint_request(run: &str, path: &str) -> EndpointRequest {
    EndpointRequest {
        credential: stored(),
        run_id: run.into(),
        method: "GET".into(),
        path: path.into(),
        headers: BTreeMap::new(),
        body: String::new(),
    }
}

#[tokio::test]
async fn the_endpoint_answers_credential_process_json_and_caches_per_run() {
    let fake = Arc::new(FakeSts::default());
    let p = provider(Arc::clone(&fake));
    let answer = p
        .endpoint(endpoint_request("run_0123abcd", ENDPOINT_PATH))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "Version": 1,
            "AccessKeyId": "ASIAFAKE1",
            "SecretAccessKey": "fake-secret-1",
            "SessionToken": "fake-session-1",
            "Expiration": "2026-01-05T11:00:00Z",
        })
    );
    {
        let asked = fake.asked.lock().unwrap();
        assert_eq!(asked[0].1, "moat-run_0123abcd");
        assert_eq!(asked[0].0.external_id.as_deref(), Some("ext-1"));
        assert_eq!(asked[0].0.region, "eu-west-1");
    }
    // Cached for the same run (the clock stands still), a new session for another run.
    let again = p
        .endpoint(endpoint_request("run_0123abcd", "/_aws/credentials?x=1"))
        .await
        .unwrap();
    assert!(again.body.contains("ASIAFAKE1"));
    let other = p
        .endpoint(endpoint_request("run_other", ENDPOINT_PATH))
        .await
        .unwrap();
    assert!(other.body.contains("ASIAFAKE2"));
    assert_eq!(fake.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_endpoint_refuses_other_paths_and_methods_and_reports_sts_failures() {
    let fake = Arc::new(FakeSts::default());
    let p = provider(Arc::clone(&fake));
    let other = p
        .endpoint(endpoint_request("run_1", "/_aws/credentialsX"))
        .await
        .unwrap();
    assert_eq!(other.status, 404);
    let mut post = endpoint_request("run_1", ENDPOINT_PATH);
    post.method = "POST".into();
    assert_eq!(p.endpoint(post).await.unwrap().status, 405);
    assert_eq!(fake.calls.load(Ordering::SeqCst), 0);

    for (failure, kind, words) in [
        (
            StsFailure::AccessDenied,
            ErrorKind::InvalidCredential,
            "trust policy",
        ),
        (
            StsFailure::NoHostCredentials,
            ErrorKind::CredentialNotFound,
            "aws configure",
        ),
        (
            StsFailure::ExpiredHostCredentials,
            ErrorKind::CredentialExpired,
            "Renew",
        ),
        (StsFailure::Timeout, ErrorKind::Network, "network"),
    ] {
        let failing = provider(Arc::new(FakeSts {
            fail: Some(failure),
            ..FakeSts::default()
        }));
        let err = failing
            .endpoint(endpoint_request("run_1", ENDPOINT_PATH))
            .await
            .unwrap_err();
        assert_eq!(err.kind, kind, "{failure:?}");
        assert!(err.hint.unwrap().contains(words), "{failure:?}");
    }
}

#[tokio::test]
async fn no_header_is_injected_and_aws_hosts_are_allowed() {
    let rules = provider(Arc::new(FakeSts::default()))
        .configure_proxy(&stored())
        .await
        .unwrap();
    assert!(rules.rules.is_empty());
    assert_eq!(rules.hosts(), vec!["*.amazonaws.com", "*.amazonaws.com.cn"]);
}

#[test]
fn session_names_fit_sts() {
    assert_eq!(session_name("run_0123abcd"), "moat-run_0123abcd");
    assert_eq!(session_name("a b/c"), "moat-a-b-c");
    assert_eq!(session_name(""), "moat-run");
    assert_eq!(session_name(&"x".repeat(100)).len(), 64);
}

#[tokio::test]
async fn the_container_gets_the_config_helper_and_region_but_no_secret() {
    let p = provider(Arc::new(FakeSts::default()));
    let env = p.container_env(&stored()).await.unwrap();
    let get = |name: &str| {
        env.iter()
            .find(|v| v.name == name)
            .map(|v| v.value.as_str())
    };
    assert_eq!(get("AWS_CONFIG_FILE"), Some("/moat/aws/config"));
    assert_eq!(get("AWS_REGION"), Some("eu-west-1"));
    assert_eq!(get("AWS_CA_BUNDLE"), Some("/etc/ssl/certs/moat-ca/ca.crt"));
    assert_eq!(get("AWS_PAGER"), Some(""));
    assert!(
        env.iter()
            .all(|v| !v.name.contains("SECRET") && !v.name.contains("ACCESS_KEY"))
    );

    assert_eq!(
        files::config("eu-west-1"),
        "[default]\ncredential_process = sh /moat/aws/credentials\nregion = eu-west-1\n"
    );
    let helper = files::HELPER_SCRIPT;
    assert!(helper.starts_with("#!/bin/sh\n"));
    assert!(helper.contains("--max-time 10"));
    assert!(helper.contains("--noproxy '*'"));
    assert!(helper.contains("\"$MOAT_ENDPOINT_URL/_aws/credentials\""));
    // The token goes in a header read from stdin, never on curl's command line.
    assert!(helper.contains("printf 'Authorization: Bearer %s\\n' \"$MOAT_ENDPOINT_TOKEN\" |"));
    assert!(helper.contains("-H @-"));
}

#[tokio::test]
async fn mounts_stage_a_read_only_folder_that_cleanup_removes() {
    let root = tempfile::tempdir().unwrap();
    let mut p = provider(Arc::new(FakeSts::default()));
    p.staging = root.path().to_path_buf();
    let files = p
        .mounts(MountsRequest {
            credential: stored(),
            container_home: "/home/moatuser".into(),
        })
        .await
        .unwrap();
    assert_eq!(files.mounts.len(), 1);
    let mount = &files.mounts[0];
    assert_eq!(mount.target, Path::new("/moat/aws"));
    assert!(mount.read_only);
    let config = std::fs::read_to_string(mount.source.join("config")).unwrap();
    assert!(config.contains("region = eu-west-1"));
    let helper = mount.source.join("credentials");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&helper).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // A token naming anything else is ignored; ours is removed.
    let outside = tempfile::tempdir().unwrap();
    p.cleanup(CleanupToken(outside.path().display().to_string()))
        .await
        .unwrap();
    assert!(outside.path().exists());
    p.cleanup(files.cleanup.unwrap()).await.unwrap();
    assert!(!mount.source.exists());
}

/// The helper itself, run by sh with curl against a local stand-in for the proxy: the body on
/// 2xx, else the body on stderr and exit 1; the token arrives as a Bearer header.
#[tokio::test]
async fn the_helper_prints_the_answer_or_fails_with_it() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("curl is needed on the host for this test");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..2 {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tcp.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let ok = head.contains("Authorization: Bearer tok-123\r\n");
            let (status, body) = if ok && seen.is_empty() {
                ("200 OK", "{\"Version\":1}")
            } else {
                ("500 Internal Server Error", "moat: aws: denied\nhint")
            };
            seen.push(head);
            let reply = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(reply.as_bytes()).await.unwrap();
        }
        seen
    });
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("credentials");
    std::fs::write(&script, files::HELPER_SCRIPT).unwrap();
    let run = |script: PathBuf| async move {
        tokio::process::Command::new("sh")
            .arg(script)
            .env("MOAT_ENDPOINT_URL", format!("http://{addr}"))
            .env("MOAT_ENDPOINT_TOKEN", "tok-123")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("http_proxy", "http://127.0.0.1:9")
            .output()
            .await
            .unwrap()
    };
    let ok = run(script.clone()).await;
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "{\"Version\":1}\n");
    let failed = run(script.clone()).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(failed.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&failed.stderr),
        "moat: aws: denied\nhint\n"
    );
    let seen = server.await.unwrap();
    assert!(
        seen[0].starts_with("GET /_aws/credentials HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    // Without the variables, a clear error and no request.
    let bare = tokio::process::Command::new("sh")
        .arg(&script)
        .env_remove("MOAT_ENDPOINT_URL")
        .output()
        .await
        .unwrap();
    assert_eq!(bare.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("MOAT_ENDPOINT_URL"));
}
