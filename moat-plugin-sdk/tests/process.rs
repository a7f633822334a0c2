//! `serve` as a real process: the example plugin `moat-provider-hello`, built by `cargo test`
//! (and `cargo build --all-targets`) alongside this test.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn plugin() -> PathBuf {
    // target/<profile>/deps/process-<hash> -> target/<profile>/examples/moat-provider-hello
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(format!(
        "moat-provider-hello{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        path.exists(),
        "{} is missing: run `cargo test -p moat-plugin-sdk` (which builds the examples) or \
         `cargo build -p moat-plugin-sdk --examples` first",
        path.display()
    );
    path
}

fn wait(child: &mut Child, limit: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the plugin did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn run_by_hand_it_explains_itself_instead_of_waiting() {
    let mut child = Command::new(plugin())
        .stdin(Stdio::piped()) // kept open: it must not read it
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with("moat-provider-hello is a moat provider plugin"),
        "{stderr}"
    );
    assert!(stderr.contains("Try: moat grant hello"), "{stderr}");
}

#[test]
fn it_speaks_the_protocol_and_keeps_stray_output_off_stdout() {
    let mut child = Command::new(plugin())
        .arg("--moat-plugin")
        .env("MOAT_PLUGIN", "1")
        .env("MOAT_PLUGIN_LOG", "trace")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        BufReader::new(stderr).read_to_string(&mut text).unwrap();
        text
    });

    let mut call = |id: u64, method: &str, params: Value| -> Value {
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout carried a non-JSON line ({e}): {line:?}"));
        assert_eq!(answer["id"], id);
        answer
    };

    let init = call(1, "initialize", json!({"protocol_versions": [1]}));
    assert_eq!(init["result"]["protocol_version"], 1);
    assert_eq!(init["result"]["info"]["name"], "hello");
    assert_eq!(init["result"]["plugin_version"], env!("CARGO_PKG_VERSION"));

    let ask = call(2, "grant", json!({"answers": {}, "interactive": true}));
    assert_eq!(ask["result"]["step"], "ask");
    assert_eq!(ask["result"]["prompts"][0]["env"], "HELLO_TOKEN");

    let answers = json!({"answers": {"token": {"secret": "s3cr3t-value"}}});
    let done = call(3, "grant", answers);
    assert_eq!(done["result"]["step"], "done");
    assert_eq!(done["result"]["credential"]["token"], "s3cr3t-value");

    let bad = call(4, "grant", json!({"answers": {"token": {"secret": "bad"}}}));
    assert_eq!(bad["error"]["code"], -32000);
    assert_eq!(bad["error"]["data"]["kind"], "invalid_credential");

    let credential = done["result"]["credential"].clone();
    let rules = call(5, "configure_proxy", json!({"credential": credential}));
    assert_eq!(rules["result"]["rules"][0]["value"], "Bearer s3cr3t-value");

    let unsupported = call(6, "prepare_container", json!({"container_home": "/home/u"}));
    assert_eq!(unsupported["error"]["code"], -32601);

    let bye = call(7, "shutdown", json!({}));
    assert_eq!(bye["result"], json!({}));

    drop(stdin);
    let status = wait(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.is_empty(), "unexpected stdout: {rest}");

    let stderr = stderr.join().unwrap();
    assert!(
        stderr.contains("a stray print from provider code"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("s3cr3t-value"),
        "a secret reached stderr: {stderr}"
    );
    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let granted = logs
        .iter()
        .find(|l| l["message"] == "granted")
        .unwrap_or_else(|| panic!("no JSON log line for the grant: {stderr}"));
    assert_eq!(granted["level"], "INFO");
    assert_eq!(granted["token"], "Secret([REDACTED])");
}
