//! Provider endpoints through the real proxy: requests sent to the proxy itself with a run's
//! token reach that run's providers (built-in or plugin alike, through the run manager's
//! adapter), and nobody else's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use moat::proxy::{
    CertificateAuthority, Endpoint, EndpointCall, EndpointHandler, Proxy, ProxyConfig, ProxyHandle,
    RunRegistry, RunSpec, RunToken, UpstreamConfig,
};
use moat::run::ProviderEndpoint;
use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{Credential, CredentialProvider, EndpointResponse, async_trait};

struct Harness {
    handle: Option<ProxyHandle>,
    runs: Arc<RunRegistry>,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let ca = Arc::new(CertificateAuthority::load_or_create_in(&dir.path().join("ca")).unwrap());
        let upstream = UpstreamConfig {
            native_roots: false,
            ..UpstreamConfig::default()
        };
        let runs = Arc::new(RunRegistry::new());
        let proxy = Proxy::new(ca, Arc::clone(&runs), &upstream, ProxyConfig::default()).unwrap();
        let handle = runtime
            .block_on(proxy.listen("127.0.0.1:0".parse().unwrap()))
            .unwrap();
        Harness {
            handle: Some(handle),
            runs,
            dir,
            runtime,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.handle.as_ref().unwrap().addr()
    }

    fn register(&self, id: &str, endpoints: Vec<Endpoint>) -> RunToken {
        self.runs
            .register(RunSpec {
                id: id.into(),
                log: Some(self.dir.path().join(format!("{id}/network.jsonl"))),
                endpoints,
                ..RunSpec::default()
            })
            .unwrap()
    }

    /// A request sent to the proxy itself, as the container's helper sends it.
    fn get(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> (u16, BTreeMap<String, String>, String) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let mut request = client.get(format!("http://{}{path}", self.addr()));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        (status, headers, response.text().unwrap())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.runtime.block_on(handle.shutdown());
        }
    }
}

/// The endpoints of a provider for one run, through the manager's adapter.
fn provider_endpoints(provider: MockProvider, run: &str) -> Vec<Endpoint> {
    let name = provider.info().name;
    let provider: Arc<dyn CredentialProvider> = Arc::new(provider);
    ProviderEndpoint::endpoints(&name, &provider, &Credential::new(name.clone(), "t"), run)
}

fn bearer(token: &RunToken) -> String {
    format!("Bearer {}", token.as_str())
}

#[test]
fn a_runs_token_reaches_its_providers_endpoint_and_nothing_else() {
    let proxy = Harness::start();
    // The testkit's endpoint provider (what a plugin's adapter also is) answers its path back.
    let alpha = proxy.register(
        "run_alpha",
        provider_endpoints(MockProvider::new("alpha").endpoint(), "run_alpha"),
    );
    let plain = proxy.register("run_plain", Vec::new());
    let beta = proxy.register(
        "run_beta",
        provider_endpoints(MockProvider::new("beta").endpoint(), "run_beta"),
    );

    let (status, headers, body) = proxy.get("/_alpha/credentials?x=1", Some(&bearer(&alpha)));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "/_alpha/credentials?x=1");
    assert_eq!(headers["cache-control"], "no-store");

    // Wrong token, a token of another form, no token.
    let (status, headers, _) = proxy.get(
        "/_alpha/credentials",
        Some(&format!("Bearer {}", "0".repeat(64))),
    );
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer");
    let basic = format!("Basic {}", alpha.as_str());
    assert_eq!(proxy.get("/_alpha/credentials", Some(&basic)).0, 401);
    assert_eq!(proxy.get("/_alpha/credentials", None).0, 400);

    // Other runs' tokens: a run without endpoints, and a run with its own; neither reaches alpha.
    assert_eq!(
        proxy.get("/_alpha/credentials", Some(&bearer(&plain))).0,
        404
    );
    assert_eq!(
        proxy.get("/_alpha/credentials", Some(&bearer(&beta))).0,
        404
    );
    let (status, _, body) = proxy.get("/_beta/x", Some(&bearer(&beta)));
    assert_eq!((status, body.as_str()), (200, "/_beta/x"));

    // Paths no endpoint of the run covers are not routed.
    assert_eq!(proxy.get("/_alphabet", Some(&bearer(&alpha))).0, 404);
    assert_eq!(proxy.get("/", Some(&bearer(&alpha))).0, 404);

    // A removed run's token opens nothing any more.
    assert!(proxy.runs.remove(&alpha));
    assert_eq!(
        proxy.get("/_alpha/credentials", Some(&bearer(&alpha))).0,
        401
    );
}

/// Records what the proxy hands an endpoint.
#[derive(Default)]
struct Recording(Mutex<Vec<EndpointCall>>);

#[async_trait]
impl EndpointHandler for Recording {
    async fn call(&self, call: EndpointCall) -> EndpointResponse {
        self.0.lock().unwrap().push(call);
        EndpointResponse {
            status: 201,
            headers: BTreeMap::from([("x-answer".to_string(), "yes".to_string())]),
            body: "{\"ok\":true}".into(),
        }
    }
}

#[test]
fn the_handler_gets_method_path_headers_and_body_but_never_the_token() {
    let proxy = Harness::start();
    let recording = Arc::new(Recording::default());
    let token = proxy.register(
        "run_rec",
        vec![Endpoint {
            path: "/_rec".into(),
            handler: recording.clone(),
        }],
    );
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .post(format!("http://{}/_rec/sub?q=1", proxy.addr()))
        .header("authorization", bearer(&token))
        .header("x-custom", "a")
        .body("{\"ask\":1}")
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    assert_eq!(response.headers()["x-answer"], "yes");
    assert_eq!(response.text().unwrap(), "{\"ok\":true}");
    let calls = recording.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, "/_rec/sub?q=1");
    assert_eq!(calls[0].body, "{\"ask\":1}");
    assert_eq!(calls[0].headers["x-custom"], "a");
    assert!(!calls[0].headers.contains_key("authorization"));
    assert!(
        calls[0]
            .headers
            .values()
            .all(|v| !v.contains(token.as_str()))
    );

    // Too large a body is refused before it is read, and before the handler.
    let head = proxy.runtime.block_on(async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
        let request = format!(
            "POST /_rec HTTP/1.1\r\nHost: moat-proxy\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
            bearer(&token),
            moat::proxy::ENDPOINT_MAX_BODY + 1
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an answer before the body")
            .unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eq!(recording.0.lock().unwrap().len(), 1);

    // The request log has a line for the call, without the token.
    let lines = moat_tests::read_log(
        &proxy.dir.path().join("run_rec/network.jsonl"),
        1,
        std::time::Duration::from_secs(10),
    );
    assert_eq!(lines[0]["url"], "endpoint:/_rec/sub?q=1", "{lines:?}");
    assert_eq!(lines[0]["status_code"], 201, "{lines:?}");
    let log = serde_json::to_string(&lines).unwrap();
    assert!(!log.contains(token.as_str()), "{log}");
}

#[test]
fn bad_endpoint_paths_are_refused_at_registration() {
    let proxy = Harness::start();
    let err = proxy
        .runs
        .register(RunSpec {
            endpoints: vec![Endpoint {
                path: "no-slash".into(),
                handler: Arc::new(Recording::default()),
            }],
            ..RunSpec::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("invalid endpoint path"), "{err}");
    assert!(proxy.runs.is_empty());
}
