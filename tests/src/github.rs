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
