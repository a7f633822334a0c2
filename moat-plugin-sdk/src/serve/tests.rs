//! The loop, in-process over `tokio::io::duplex`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{
    AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{ServeOptions, serve_io_with};
use crate::protocol::{self, code};
use crate::testkit::MockProvider;
use crate::{
    Credential, CredentialProvider, ErrorKind, GrantRequest, GrantStep, ProviderError,
    ProviderInfo, ProviderResult, ProxyRules, RefreshableProvider, Refreshed,
};

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    input: WriteHalf<DuplexStream>,
    output: Lines<BufReader<ReadHalf<DuplexStream>>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Harness {
    fn start(provider: impl CredentialProvider + 'static) -> Self {
        Self::start_with(provider, ServeOptions::new())
    }

    fn start_with(provider: impl CredentialProvider + 'static, options: ServeOptions) -> Self {
        let (host, plugin) = tokio::io::duplex(1 << 20);
        let (plugin_in, plugin_out) = tokio::io::split(plugin);
        let server = tokio::spawn(serve_io_with(provider, plugin_in, plugin_out, options));
        let (read, input) = tokio::io::split(host);
        Harness {
            input,
            output: BufReader::new(read).lines(),
            server,
        }
    }

    async fn send_line(&mut self, line: &str) {
        self.input.write_all(line.as_bytes()).await.unwrap();
        self.input.write_all(b"\n").await.unwrap();
    }

    async fn send(&mut self, message: Value) {
        self.send_line(&message.to_string()).await;
    }

    async fn request(&mut self, id: u64, method: &str, params: Value) {
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(message).await;
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(WAIT, self.output.next_line())
            .await
            .expect("an answer in time")
            .unwrap()
            .expect("an answer before EOF");
        assert!(!line.contains('\n'));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    async fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        self.request(id, method, params).await;
        let answer = self.recv().await;
        assert_eq!(answer["id"], id, "{answer}");
        assert_eq!(answer["jsonrpc"], "2.0");
        answer
    }

    async fn initialize(&mut self) -> Value {
        let params = json!({"protocol_versions": [1], "host_version": "moat test"});
        let answer = self.call(0, "initialize", params).await;
        answer["result"].clone()
    }

    /// Closes stdin; returns the remaining answers and the loop's result.
    async fn close(mut self) -> (Vec<Value>, std::io::Result<()>) {
        self.input.shutdown().await.unwrap();
        let mut rest = Vec::new();
        while let Some(line) = tokio::time::timeout(WAIT, self.output.next_line())
            .await
            .expect("EOF in time")
            .unwrap()
        {
            rest.push(serde_json::from_str(&line).unwrap());
        }
        let result = tokio::time::timeout(WAIT, self.server)
            .await
            .expect("the loop ends")
            .unwrap();
        (rest, result)
    }
}

fn credential() -> Value {
    serde_json::to_value(Credential::new("m", "tok")).unwrap()
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {answer}"))
}

/// A provider whose grant waits for the test, and notices when it is dropped mid-call.
#[derive(Default)]
struct Gated {
    release: Arc<Notify>,
    started: Arc<Notify>,
    dropped: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
    /// Ends the thread-blocking `block` mode (which gives up by itself after [`WAIT`]).
    unblock: Arc<AtomicBool>,
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[async_trait]
impl CredentialProvider for Gated {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("gated", "Waits for the test")
    }

    async fn grant(&self, request: GrantRequest) -> ProviderResult<GrantStep> {
        let guard = DropFlag(Arc::clone(&self.dropped));
        self.started.notify_one();
        match request.answer("mode").and_then(|a| a.as_text()) {
            Some("fail") => {
                return Err(
                    ProviderError::new(ErrorKind::InvalidCredential, "token rejected")
                        .with_hint("Run 'moat grant gated' with a valid token"),
                );
            }
            Some("panic") => panic!("provider bug"),
            Some("sleep") => tokio::time::sleep(Duration::from_millis(100)).await,
            // Blocking code before the first await, as a careless provider writes it: the
            // thread is held until the test says so.
            Some("block") => {
                let started = std::time::Instant::now();
                while !self.unblock.load(Ordering::SeqCst) && started.elapsed() < WAIT {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            _ => self.release.notified().await,
        }
        self.finished.store(true, Ordering::SeqCst);
        std::mem::forget(guard);
        Ok(GrantStep::Done {
            credential: Credential::new("gated", "tok"),
            notes: vec![],
        })
    }

    async fn configure_proxy(&self, _: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new())
    }
}

fn mode(mode: &str) -> Value {
    json!({"answers": {"mode": {"text": mode}}, "interactive": false})
}

#[tokio::test]
async fn the_handshake_describes_the_provider() {
    let provider = MockProvider::new("m").alias("mm").agent().refreshable();
    let options = ServeOptions::new().plugin_version("9.9.9");
    let mut h = Harness::start_with(provider, options);
    let result = h.initialize().await;
    let parsed: protocol::InitializeResult = serde_json::from_value(result.clone()).unwrap();
    assert_eq!(parsed.protocol_version, protocol::PROTOCOL_VERSION);
    assert_eq!(parsed.info.name, "m");
    assert_eq!(parsed.info.aliases, vec!["mm".to_string()]);
    assert_eq!(result["info"]["capabilities"], json!(["agent", "refresh"]));
    assert_eq!(parsed.agent_commands.len(), 1);
    assert!(parsed.endpoints.is_empty());
    assert_eq!(parsed.refresh_interval_secs, Some(60));
    assert_eq!(parsed.plugin_version.as_deref(), Some("9.9.9"));
    let (rest, result) = h.close().await;
    assert!(rest.is_empty());
    result.unwrap();
}

#[tokio::test]
async fn the_highest_common_version_is_picked() {
    let mut h = Harness::start(MockProvider::new("m"));
    let params = json!({"protocol_versions": [7, 1, 0]});
    let answer = h.call(1, "initialize", params).await;
    assert_eq!(answer["result"]["protocol_version"], 1);
    assert!(answer["result"].get("plugin_version").is_none());
}

#[tokio::test]
async fn a_version_mismatch_names_both_sides() {
    let mut h = Harness::start(MockProvider::new("m"));
    let params = json!({"protocol_versions": [3, 2], "host_version": "moat 9.0.0"});
    let answer = h.call(1, "initialize", params).await;
    assert_eq!(error_code(&answer), i64::from(code::UNSUPPORTED_VERSION));
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("moat 9.0.0 speaks [3, 2]"), "{message}");
    assert!(message.contains("speaks [1]"), "{message}");
    assert_eq!(answer["error"]["data"]["kind"], "unsupported");
    assert!(answer["error"]["data"]["hint"].is_string());
    // Still not initialized.
    let answer = h.call(2, "grant", json!({})).await;
    assert_eq!(error_code(&answer), i64::from(code::NOT_INITIALIZED));
}

#[tokio::test]
async fn requests_before_initialize_are_refused() {
    let mut h = Harness::start(MockProvider::new("m"));
    let answer = h
        .call(1, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert_eq!(error_code(&answer), i64::from(code::NOT_INITIALIZED));
    assert_eq!(answer["error"]["data"]["kind"], "invalid_input");
    // shutdown is always allowed.
    let answer = h.call(2, "shutdown", json!({})).await;
    assert_eq!(answer["result"], json!({}));
    h.initialize().await;
    let answer = h
        .call(3, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert!(answer["result"]["rules"].is_array(), "{answer}");
}

#[tokio::test]
async fn unknown_and_unimplemented_methods_are_unsupported() {
    let mut h = Harness::start(MockProvider::new("m"));
    h.initialize().await;
    let answer = h.call(1, "teleport", json!({})).await;
    assert_eq!(error_code(&answer), -32601);
    for (id, method) in [
        (2, "refresh"),
        (3, "prepare_container"),
        (4, "endpoint"),
        (5, "run_stopped"),
    ] {
        let answer = h.call(id, method, json!({})).await;
        assert_eq!(error_code(&answer), -32601, "{method}: {answer}");
        assert_eq!(answer["error"]["data"]["kind"], "unsupported");
    }
}

#[tokio::test]
async fn garbage_lines_are_answered_and_the_loop_goes_on() {
    let mut h = Harness::start_with(
        MockProvider::new("m"),
        ServeOptions::new().max_line_bytes(200),
    );
    h.initialize().await;

    h.send_line("this is not json").await;
    let answer = h.recv().await;
    assert_eq!(error_code(&answer), -32700);
    assert_eq!(answer["id"], Value::Null);

    h.send_line(&format!(
        "{{\"id\":1,\"method\":\"x\",\"pad\":\"{}\"}}",
        "a".repeat(300)
    ))
    .await;
    let answer = h.recv().await;
    assert_eq!(error_code(&answer), -32600);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than")
    );

    h.send_line(r#"[{"jsonrpc":"2.0","id":1,"method":"shutdown"}]"#)
        .await;
    let answer = h.recv().await;
    assert_eq!(error_code(&answer), -32600);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batch")
    );

    h.send_line(r#"{"jsonrpc":"2.0","id":[1],"method":"shutdown"}"#)
        .await;
    assert_eq!(error_code(&h.recv().await), -32600);

    h.input.write_all(&[0xff, 0xfe, b'\n']).await.unwrap();
    assert_eq!(error_code(&h.recv().await), -32700);

    // Blank lines, responses and unknown notifications get no answer.
    h.send_line("").await;
    h.send_line(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#).await;
    h.send(json!({"jsonrpc": "2.0", "method": "$/progress", "params": {}}))
        .await;
    h.send(json!({"jsonrpc": "2.0", "method": "grant", "params": {}}))
        .await;

    let answer = h
        .call(9, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert!(answer["result"].is_object(), "{answer}");
    let (rest, result) = h.close().await;
    assert!(rest.is_empty(), "{rest:?}");
    result.unwrap();
}

#[tokio::test]
async fn a_missing_jsonrpc_member_is_an_invalid_request() {
    let mut h = Harness::start(MockProvider::new("m"));
    h.send_line(r#"{"id":4,"method":"initialize","params":{"protocol_versions":[1]}}"#)
        .await;
    let answer = h.recv().await;
    assert_eq!(answer["id"], 4);
    assert_eq!(error_code(&answer), -32600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_call_does_not_block_others() {
    let provider = Gated::default();
    let release = Arc::clone(&provider.release);
    let mut h = Harness::start(provider);
    h.initialize().await;
    h.request(1, "grant", mode("wait")).await;
    let answer = h
        .call(2, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert_eq!(answer["result"]["rules"], json!([]));
    release.notify_one();
    let answer = h.recv().await;
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["step"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn with_worker_threads_blocking_provider_code_does_not_stall_reading() {
    let provider = Gated::default();
    let (started, finished, unblock) = (
        Arc::clone(&provider.started),
        Arc::clone(&provider.finished),
        Arc::clone(&provider.unblock),
    );
    let mut h = Harness::start(provider);
    h.initialize().await;
    h.request(1, "grant", mode("block")).await;
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the blocking call started");
    // Answered while the grant still holds its thread: no clock involved, the grant cannot end
    // before `unblock` (a stalled reader fails `call` after WAIT instead).
    let answer = h
        .call(2, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert_eq!(answer["id"], 2);
    assert!(
        !finished.load(Ordering::SeqCst),
        "the blocked call ended first"
    );
    unblock.store(true, Ordering::SeqCst);
    let answer = h.recv().await;
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["step"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_aborts_the_call_and_answers_it() {
    let provider = Gated::default();
    let dropped = Arc::clone(&provider.dropped);
    let finished = Arc::clone(&provider.finished);
    let started = Arc::clone(&provider.started);
    let mut h = Harness::start(provider);
    h.initialize().await;
    h.send(json!({"jsonrpc": "2.0", "id": "g-1", "method": "grant", "params": mode("wait")}))
        .await;
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the grant starts");
    // Cancelling an id that is not in flight is ignored.
    h.send(json!({"jsonrpc": "2.0", "method": "$/cancel", "params": {"id": 99}}))
        .await;
    h.send(json!({"jsonrpc": "2.0", "method": "$/cancel", "params": {"id": "g-1"}}))
        .await;
    let answer = h.recv().await;
    assert_eq!(answer["id"], "g-1");
    assert_eq!(error_code(&answer), i64::from(code::CANCELLED));
    assert_eq!(answer["error"]["data"]["kind"], "cancelled");
    tokio::time::timeout(WAIT, async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the provider's future is dropped");
    assert!(!finished.load(Ordering::SeqCst));
    // The id can be used again and the loop still serves.
    let answer = h
        .call(3, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert!(answer["result"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_finishes_in_flight_work_then_exits_cleanly() {
    let mut h = Harness::start(Gated::default());
    h.initialize().await;
    h.request(1, "grant", mode("sleep")).await;
    let (rest, result) = h.close().await;
    result.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["id"], 1);
    assert_eq!(rest[0]["result"]["step"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eof_cancels_what_does_not_finish_in_time() {
    let options = ServeOptions::new().drain_timeout(Duration::from_millis(100));
    let mut h = Harness::start_with(Gated::default(), options);
    h.initialize().await;
    h.request(1, "grant", mode("wait")).await;
    let (rest, result) = h.close().await;
    result.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(error_code(&rest[0]), i64::from(code::CANCELLED));
}

#[tokio::test]
async fn eof_right_away_is_a_clean_exit() {
    let h = Harness::start(MockProvider::new("m"));
    let (rest, result) = h.close().await;
    assert!(rest.is_empty());
    result.unwrap();
}

#[tokio::test]
async fn shutdown_answers_and_waits_for_eof() {
    let mut h = Harness::start(MockProvider::new("m"));
    h.initialize().await;
    let answer = h.call(1, "shutdown", Value::Null).await;
    assert_eq!(answer["result"], json!({}));
    let (rest, result) = h.close().await;
    assert!(rest.is_empty());
    result.unwrap();
}

#[tokio::test]
async fn provider_errors_carry_kind_and_hint() {
    let mut h = Harness::start(Gated::default());
    h.initialize().await;
    let answer = h.call(1, "grant", mode("fail")).await;
    assert_eq!(error_code(&answer), i64::from(code::PROVIDER_ERROR));
    assert_eq!(answer["error"]["message"], "token rejected");
    let data: protocol::ErrorData =
        serde_json::from_value(answer["error"]["data"].clone()).unwrap();
    assert_eq!(data.kind, ErrorKind::InvalidCredential);
    assert_eq!(
        data.hint.as_deref(),
        Some("Run 'moat grant gated' with a valid token")
    );
}

#[tokio::test]
async fn a_panicking_provider_still_answers() {
    let mut h = Harness::start(Gated::default());
    h.initialize().await;
    let answer = h.call(1, "grant", mode("panic")).await;
    assert_eq!(error_code(&answer), -32603);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("provider bug")
    );
    let answer = h
        .call(2, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert!(answer["result"].is_object());
}

#[tokio::test]
async fn unknown_fields_are_ignored_and_bad_params_are_invalid() {
    let mut h = Harness::start(MockProvider::new("m"));
    let params =
        json!({"protocol_versions": [1], "host_version": "x", "capabilities": {"new": true}});
    let answer = h.call(0, "initialize", params).await;
    assert_eq!(answer["result"]["protocol_version"], 1);

    let mut cred = credential();
    cred["future_field"] = json!({"nested": [1, 2]});
    let params = json!({"credential": cred, "also_new": 1});
    let answer = h.call(1, "configure_proxy", params).await;
    assert_eq!(answer["result"]["rules"][0]["value"], "Bearer tok");

    // Missing params read as {} (grant needs nothing).
    let line = r#"{"jsonrpc":"2.0","id":2,"method":"grant"}"#;
    h.send_line(line).await;
    assert_eq!(h.recv().await["result"]["step"], "done");

    let answer = h.call(3, "configure_proxy", json!({"credential": 5})).await;
    assert_eq!(error_code(&answer), -32602);
    assert_eq!(answer["error"]["data"]["kind"], "invalid_input");
}

#[tokio::test]
async fn duplicate_ids_in_flight_are_refused() {
    let provider = Gated::default();
    let release = Arc::clone(&provider.release);
    let mut h = Harness::start(provider);
    h.initialize().await;
    h.request(1, "grant", mode("wait")).await;
    let answer = h
        .call(1, "configure_proxy", json!({"credential": credential()}))
        .await;
    assert_eq!(error_code(&answer), -32600);
    release.notify_one();
    assert_eq!(h.recv().await["result"]["step"], "done");
}

#[tokio::test]
async fn every_method_round_trips() {
    let provider = MockProvider::new("m")
        .agent()
        .endpoint()
        .refreshable()
        .run_stopped_hook()
        .env("M_TOKEN", "placeholder");
    let calls = provider.clone();
    let mut h = Harness::start(provider);
    let info = h.initialize().await;
    assert_eq!(
        info["info"]["capabilities"],
        json!(["agent", "endpoint", "refresh", "run_stopped"])
    );
    assert_eq!(info["endpoints"][0]["path"], "/_m/");

    let cred = credential();
    let a = h
        .call(1, "grant", json!({"answers": {}, "interactive": true}))
        .await;
    let _: protocol::GrantResult = serde_json::from_value(a["result"].clone()).unwrap();
    let a = h
        .call(2, "configure_proxy", json!({"credential": cred}))
        .await;
    let _: protocol::ConfigureProxyResult = serde_json::from_value(a["result"].clone()).unwrap();
    let a = h
        .call(3, "container_env", json!({"credential": cred}))
        .await;
    assert_eq!(
        a["result"],
        json!({"env": [{"name": "M_TOKEN", "value": "placeholder"}]})
    );
    let a = h
        .call(
            4,
            "mounts",
            json!({"credential": cred, "container_home": "/home/u"}),
        )
        .await;
    let _: protocol::MountsResult = serde_json::from_value(a["result"].clone()).unwrap();
    let a = h.call(5, "cleanup", json!({"token": "staging-1"})).await;
    assert_eq!(a["result"], json!({}));
    let a = h.call(6, "refresh", json!({"credential": cred})).await;
    let r: protocol::RefreshResult = serde_json::from_value(a["result"].clone()).unwrap();
    assert_eq!(r.credential.token.expose(), "mock-token-refreshed");
    let a = h
        .call(7, "prepare_container", json!({"container_home": "/home/u"}))
        .await;
    let _: protocol::PrepareContainerResult = serde_json::from_value(a["result"].clone()).unwrap();
    let params = json!({"credential": cred, "method": "GET", "path": "/_m/x"});
    let a = h.call(8, "endpoint", params).await;
    assert_eq!(a["result"]["status"], 200);
    assert_eq!(a["result"]["body"], "/_m/x");
    let params = json!({"run_id": "r1", "workspace": "/w", "started_at": "2026-01-01T00:00:00Z"});
    let a = h.call(9, "run_stopped", params).await;
    assert_eq!(a["result"], json!({"metadata": {"run_id": "r1"}}));
    let a = h.call(10, "shutdown", json!({})).await;
    assert_eq!(a["result"], json!({}));

    assert_eq!(
        calls.calls(),
        vec![
            "grant",
            "configure_proxy",
            "container_env",
            "mounts",
            "cleanup:staging-1",
            "refresh",
            "configure_proxy",
            "prepare_container",
            "endpoint",
            "run_stopped"
        ]
    );
}

/// Refreshable, but not this credential.
struct EnvOnly;

#[async_trait]
impl CredentialProvider for EnvOnly {
    fn info(&self) -> ProviderInfo {
        ProviderInfo::new("env-only", "From the environment")
    }
    async fn grant(&self, _: GrantRequest) -> ProviderResult<GrantStep> {
        Err(ProviderError::unsupported("grant"))
    }
    async fn configure_proxy(&self, _: &Credential) -> ProviderResult<ProxyRules> {
        Ok(ProxyRules::new())
    }
    fn as_refreshable(&self) -> Option<&dyn RefreshableProvider> {
        Some(self)
    }
}

#[async_trait]
impl RefreshableProvider for EnvOnly {
    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(300)
    }
    fn can_refresh(&self, _: &Credential) -> bool {
        false
    }
    async fn refresh(&self, _: &Credential) -> ProviderResult<Refreshed> {
        unreachable!("can_refresh is false")
    }
}

#[tokio::test]
async fn refresh_respects_can_refresh() {
    let mut h = Harness::start(EnvOnly);
    let info = h.initialize().await;
    assert_eq!(info["refresh_interval_secs"], 300);
    let answer = h
        .call(1, "refresh", json!({"credential": credential()}))
        .await;
    assert_eq!(error_code(&answer), i64::from(code::PROVIDER_ERROR));
    assert_eq!(answer["error"]["data"]["kind"], "refresh_not_supported");
    let answer = h.call(2, "grant", json!({})).await;
    assert_eq!(answer["error"]["data"]["kind"], "unsupported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_are_each_answered_once() {
    let mut h = Harness::start(MockProvider::new("m"));
    h.initialize().await;
    for id in 1..=200 {
        h.request(id, "configure_proxy", json!({"credential": credential()}))
            .await;
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 1..=200 {
        let answer = h.recv().await;
        assert!(answer["result"].is_object());
        assert!(seen.insert(answer["id"].as_u64().unwrap()));
    }
    let (rest, result) = h.close().await;
    assert!(rest.is_empty());
    result.unwrap();
}

#[tokio::test]
async fn ids_jsonrpsee_cannot_hold_are_invalid_requests_answered_with_the_id() {
    let mut h = Harness::start(MockProvider::new("m"));
    h.initialize().await;
    h.send_line(r#"{"jsonrpc":"2.0","id":-4,"method":"configure_proxy","params":{}}"#)
        .await;
    let answer = h.recv().await;
    assert_eq!(answer["id"], -4);
    assert_eq!(error_code(&answer), -32600);
    // A string id is answered with the same string.
    h.send_line(r#"{"jsonrpc":"2.0","id":"x\u0079","method":"no_such_method"}"#)
        .await;
    let answer = h.recv().await;
    assert_eq!(answer["id"], "xy");
    assert_eq!(error_code(&answer), -32601);
}
