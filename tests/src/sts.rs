//! A stand-in for AWS STS's `AssumeRole` (the query protocol the AWS SDKs speak), as much of it
//! as moat calls.

use crate::ca::TestCa;
use crate::https::{FakeHttps, Recorded, Reply};

/// The temporary credentials [`fake_sts`] hands out (the secret and session token carry the
/// session name, so a test can tell sessions apart).
pub const FAKE_ROLE_ACCESS_KEY: &str = "ASIAFAKEROLEKEY00001";

/// Starts a fake STS (see [`FakeHttps::start`]) that accepts requests signed with
/// `host_access_key` (SigV4's `Credential=<key>/...` in `authorization`; the signature itself is
/// not checked):
///
/// - `POST /` with `Action=AssumeRole`: `200` with credentials [`FAKE_ROLE_ACCESS_KEY`],
///   `fake-role-secret-<session>`, `fake-role-session-<session>`, expiring an hour from now;
///   unless the role's name contains `denied` (`403 AccessDenied`);
/// - a request signed with `expired_key` (when given): `403 ExpiredToken`;
/// - signed with any other key: `403 InvalidClientTokenId`;
/// - anything else: `400`.
///
/// Point moat at it with `MOAT_AWS_STS_URL` = [`FakeHttps::url`] and `MOAT_EXTRA_CA_CERTS` =
/// the CA's PEM file.
pub fn fake_sts(ca: &TestCa, host_access_key: &str, expired_key: Option<&str>) -> FakeHttps {
    let accepted = format!("Credential={host_access_key}/");
    let expired = expired_key.map(|key| format!("Credential={key}/"));
    FakeHttps::start(ca, move |request: &Recorded| {
        let form = parse_form(&request.body);
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        if request.method != "POST" || field("Action") != "AssumeRole" {
            return error(400, "InvalidAction", "unsupported");
        }
        let auth = request.header("authorization").unwrap_or_default();
        if expired.as_deref().is_some_and(|e| auth.contains(e)) {
            return error(
                403,
                "ExpiredToken",
                "The security token included in the request is expired",
            );
        }
        if !auth.contains(&accepted) {
            return error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            );
        }
        let role = field("RoleArn");
        if role
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .contains("denied")
        {
            return error(
                403,
                "AccessDenied",
                &format!("User is not authorized to perform: sts:AssumeRole on resource: {role}"),
            );
        }
        let session = field("RoleSessionName");
        let expiration = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Reply::text(
            200,
            format!(
                r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>
      <Arn>{role}/{session}</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>{FAKE_ROLE_ACCESS_KEY}</AccessKeyId>
      <SecretAccessKey>fake-role-secret-{session}</SecretAccessKey>
      <SessionToken>fake-role-session-{session}</SessionToken>
      <Expiration>{expiration}</Expiration>
    </Credentials>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>fake-request</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#
            ),
        )
        .with_header("content-type", "text/xml")
    })
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::text(
        status,
        format!(
            r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>fake-request</RequestId>
</ErrorResponse>"#
        ),
    )
    .with_header("content-type", "text/xml")
}

/// `application/x-www-form-urlencoded` pairs, decoded.
pub fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
