//! What a host writes to a plugin built on the SDK: the whole of its stdin, served by
//! `moat_plugin_sdk::serve_io_with` (line framing, request sorting, dispatch, error answers)
//! until the end of input. Every answer the server writes must be one JSON-RPC message per line.
#![no_main]

use std::time::Duration;

use moat_plugin_sdk::testkit::MockProvider;
use moat_plugin_sdk::{ServeOptions, serve_io_with};
use tokio::io::AsyncReadExt;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&limit, input)) = data.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    runtime.block_on(async {
        let (writer, mut answers) = tokio::io::duplex(1 << 16);
        let options = ServeOptions::new()
            .drain_timeout(Duration::from_millis(200))
            .max_line_bytes(32 + usize::from(limit) * 64);
        let provider = MockProvider::new("fuzz");
        let server = serve_io_with(provider, input, writer, options);
        let read = async {
            let mut out = Vec::new();
            answers.read_to_end(&mut out).await.map(|_| out)
        };
        let (served, out) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server, read)
        })
        .await
        .expect("the server ends within 20 s of the end of its input");
        let _ = served;
        let out = out.expect("the answers can be read");
        for line in out.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value = serde_json::from_slice(line)
                .unwrap_or_else(|e| panic!("the server wrote a line that is not JSON: {e}"));
            assert_eq!(value.get("jsonrpc").and_then(|v| v.as_str()), Some("2.0"), "not JSON-RPC 2.0");
        }
    });
});
