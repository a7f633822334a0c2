//! Every worked example in `schema/README.md` (the ```jsonl blocks, one wire message per line)
//! reads as the protocol types say, with no misspelt field: each field of an example must survive
//! a round trip through the type. Requests are matched to responses by id within a block.

use std::collections::HashMap;
use std::path::PathBuf;

use moat_plugin_sdk::protocol::{self, method};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn readme() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema/README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ```jsonl blocks, each as (line number, line) pairs.
fn blocks(text: &str) -> Vec<Vec<(usize, String)>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<(usize, String)>> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        match &mut current {
            None if trimmed == "```jsonl" => current = Some(Vec::new()),
            Some(block) if trimmed == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => block.push((n + 1, line.to_string())),
            None => {}
        }
    }
    blocks
}

/// True when every member of `example` is in `reread` with the same value (defaults the type
/// adds are fine; a field the type does not know is not).
fn covered(example: &Value, reread: &Value, path: &str, problems: &mut Vec<String>) {
    match (example, reread) {
        (Value::Object(e), Value::Object(r)) => {
            for (key, value) in e {
                match r.get(key) {
                    Some(other) => covered(value, other, &format!("{path}.{key}"), problems),
                    None => problems.push(format!("{path}.{key} is not a field of the type")),
                }
            }
        }
        (Value::Array(e), Value::Array(r)) if e.len() == r.len() => {
            for (i, (a, b)) in e.iter().zip(r).enumerate() {
                covered(a, b, &format!("{path}[{i}]"), problems);
            }
        }
        (a, b) if a == b => {}
        (a, b) => problems.push(format!("{path}: {a} reads back as {b}")),
    }
}

fn check<T: DeserializeOwned + Serialize>(what: &str, value: &Value) -> Result<(), String> {
    let parsed: T =
        serde_json::from_value(value.clone()).map_err(|e| format!("{what} does not parse: {e}"))?;
    let reread = serde_json::to_value(&parsed).unwrap();
    let mut problems = Vec::new();
    covered(value, &reread, what, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn check_params(name: &str, params: &Value) -> Result<(), String> {
    use protocol::*;
    let what = format!("{name} params");
    match name {
        method::INITIALIZE => check::<InitializeParams>(&what, params),
        method::GRANT => check::<GrantParams>(&what, params),
        method::CONFIGURE_PROXY | method::CONTAINER_ENV | method::REFRESH => {
            check::<CredentialParams>(&what, params)
        }
        method::MOUNTS => check::<MountsParams>(&what, params),
        method::CLEANUP => check::<CleanupParams>(&what, params),
        method::PREPARE_CONTAINER => check::<PrepareContainerParams>(&what, params),
        method::ENDPOINT => check::<EndpointParams>(&what, params),
        method::RUN_STOPPED => check::<RunStoppedParams>(&what, params),
        method::SHUTDOWN => check::<Empty>(&what, params),
        method::CANCEL => check::<CancelParams>(&what, params),
        method::LOG => check::<LogParams>(&what, params),
        other => Err(format!("unknown method {other}")),
    }
}

fn check_result(name: &str, result: &Value) -> Result<(), String> {
    use protocol::*;
    let what = format!("{name} result");
    match name {
        method::INITIALIZE => check::<InitializeResult>(&what, result),
        method::GRANT => check::<GrantResult>(&what, result),
        method::CONFIGURE_PROXY => check::<ConfigureProxyResult>(&what, result),
        method::CONTAINER_ENV => check::<ContainerEnvResult>(&what, result),
        method::MOUNTS => check::<MountsResult>(&what, result),
        method::CLEANUP | method::SHUTDOWN => check::<Empty>(&what, result),
        method::REFRESH => check::<RefreshResult>(&what, result),
        method::PREPARE_CONTAINER => check::<PrepareContainerResult>(&what, result),
        method::ENDPOINT => check::<EndpointResult>(&what, result),
        method::RUN_STOPPED => check::<RunStoppedResult>(&what, result),
        other => Err(format!("unknown method {other}")),
    }
}

fn check_error(error: &Value) -> Result<(), String> {
    let code = error["code"]
        .as_i64()
        .ok_or("error without an integer code")?;
    error["message"].as_str().ok_or("error without a message")?;
    match error.get("data") {
        Some(data) => check::<protocol::ErrorData>("error.data", data),
        None if code == i64::from(protocol::code::PROVIDER_ERROR) => {
            Err("a provider error without data".into())
        }
        None => Ok(()),
    }
}

#[test]
fn the_worked_examples_match_the_types() {
    let text = readme();
    let blocks = blocks(&text);
    assert!(
        blocks.len() >= 15,
        "found only {} example blocks",
        blocks.len()
    );
    let mut problems = Vec::new();
    let mut seen_methods = std::collections::BTreeSet::new();
    for block in blocks {
        let mut methods: HashMap<String, String> = HashMap::new();
        for (n, line) in block {
            let message: Value = match serde_json::from_str(&line) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("line {n}: not JSON: {e}"));
                    continue;
                }
            };
            if message["jsonrpc"] != "2.0" {
                problems.push(format!("line {n}: no \"jsonrpc\":\"2.0\""));
            }
            let id = message.get("id").map(Value::to_string);
            let outcome = match (message["method"].as_str(), id) {
                (Some(name), id) => {
                    seen_methods.insert(name.to_string());
                    if let Some(id) = id {
                        methods.insert(id, name.to_string());
                    }
                    let params = message.get("params").cloned().unwrap_or(Value::Null);
                    check_params(name, &params)
                }
                (None, Some(id)) => match (message.get("result"), message.get("error")) {
                    (Some(result), None) => match methods.get(&id) {
                        Some(name) => check_result(name, result),
                        None => Err(format!("a result for id {id} without its request")),
                    },
                    (None, Some(error)) => check_error(error),
                    _ => Err("a response needs exactly one of result and error".into()),
                },
                (None, None) => Err("neither a request nor a response".into()),
            };
            if let Err(e) = outcome {
                problems.push(format!("line {n}: {e}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "schema/README.md:\n  {}",
        problems.join("\n  ")
    );
    for name in [
        method::INITIALIZE,
        method::GRANT,
        method::CONFIGURE_PROXY,
        method::CONTAINER_ENV,
        method::MOUNTS,
        method::CLEANUP,
        method::REFRESH,
        method::PREPARE_CONTAINER,
        method::ENDPOINT,
        method::RUN_STOPPED,
        method::SHUTDOWN,
        method::CANCEL,
        method::LOG,
    ] {
        assert!(seen_methods.contains(name), "no worked example of {name}");
    }
}
