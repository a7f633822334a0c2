//! A stand-in for the GitHub REST API, as much of it as moat calls.

use serde_json::json;

use crate::ca::TestCa;
use crate::https::{FakeHttps, Recorded, Reply};

/// Starts a fake GitHub API (see [`FakeHttps::start`]) that accepts exactly one token.
///
/// - `GET /user` (any query string) with `authorization: Bearer <valid_token>` answers `200`
///   `{"login": login, "id": 1}`;
/// - `GET /user` with any other or no `authorization` answers `401`
///   `{"message": "Bad credentials"}`, like GitHub;
/// - anything else answers `404` `{"message": "Not Found"}`.
///
/// Point moat at it with `MOAT_GITHUB_API_URL` = [`FakeHttps::url`] and `MOAT_EXTRA_CA_CERTS` =
/// the CA's PEM file, or simply use [`crate::MoatEnv::with_github`].
pub fn fake_github(ca: &TestCa, valid_token: &str, login: &str) -> FakeHttps {
    let expected = format!("Bearer {valid_token}");
    let login = login.to_owned();
    FakeHttps::start(ca, move |request: &Recorded| {
        if request.method != "GET" || request.path_only() != "/user" {
            return Reply::not_found();
        }
        if request.header("authorization") == Some(expected.as_str()) {
            Reply::json(200, json!({ "login": login, "id": 1 }))
        } else {
            Reply::json(
                401,
                json!({
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                }),
            )
        }
    })
}

/// Starts a stand-in for `api.github.com` and `github.com` together (its certificate names both),
/// to reach through moat's proxy with `MOAT_PROXY_RESOLVE`. It checks credentials the way GitHub
/// does and never echoes them, except where asked to:
///
/// - `api.github.com/user` with `Bearer <token>`: `200` `{"login": "octocat", ...}` padded to
///   about 20 KB (a body larger than the request log keeps);
/// - `github.com/octo/repo.git/info/refs` with Basic `x-access-token:<token>` (git's ref
///   discovery): an empty repository's advertisement, so `git ls-remote` succeeds;
/// - `api.github.com/echo-token`: a badly behaved API that echoes the `authorization` it got;
/// - anything else: `401` `{"message": "Bad credentials"}`.
pub fn fake_github_hosts(ca: &TestCa, token: &str) -> FakeHttps {
    use base64::Engine as _;
    let bearer = format!("Bearer {token}");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"))
    );
    FakeHttps::start_for(
        ca,
        &["api.github.com", "github.com"],
        move |request: &Recorded| {
            let auth = request.header("authorization");
            match (request.header("host"), request.path_only()) {
                (Some("api.github.com"), "/user") if auth == Some(bearer.as_str()) => Reply::json(
                    200,
                    json!({ "login": "octocat", "id": 1, "padding": "x".repeat(20_000) }),
                ),
                (Some("github.com"), "/octo/repo.git/info/refs")
                    if auth == Some(basic.as_str()) =>
                {
                    // An empty repository's advertisement, in pkt-lines.
                    let refs =
                        "0000000000000000000000000000000000000000 capabilities^{}\0agent=fake\n";
                    let body = format!(
                        "001e# service=git-upload-pack\n0000{:04x}{refs}0000",
                        refs.len() + 4
                    );
                    Reply::text(200, body).with_header(
                        "content-type",
                        "application/x-git-upload-pack-advertisement",
                    )
                }
                (Some("api.github.com"), "/echo-token") => {
                    Reply::text(200, format!("you sent: {}", auth.unwrap_or_default()))
                }
                _ => Reply::json(401, json!({ "message": "Bad credentials" })),
            }
        },
    )
}
