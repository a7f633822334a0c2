//! What a plugin writes on its stdout, read by moat: line framing (`moat_plugin_sdk::wire`), the
//! JSON-RPC envelope, `$/log`, and the results read as protocol v1 types.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzzing::plugin_stdout(data));
