//! What an upstream sends on a WebSocket of a host moat adds credentials to: its frames, masked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzzing::upstream_websocket(data));
