//! The built executable speaks protocol v1: `initialize` answers with the provider's info, and
//! `shutdown` ends it. (Being an integration test, this also makes `cargo test --workspace` build
//! the binary that moat's end-to-end plugin tests install.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

#[test]
fn the_executable_answers_initialize_and_shuts_down() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moat-provider-gitlab"))
        .arg("--moat-plugin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moat-provider-gitlab");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();

    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocol_versions":[1]}}}}"#
    )
    .unwrap();
    stdout.read_line(&mut line).unwrap();
    let answer: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(answer["id"], 1, "{line}");
    assert_eq!(answer["result"]["protocol_version"], 1, "{line}");
    assert_eq!(answer["result"]["info"]["name"], "gitlab", "{line}");

    line.clear();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"shutdown"}}"#).unwrap();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains(r#""id":2"#), "{line}");
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
