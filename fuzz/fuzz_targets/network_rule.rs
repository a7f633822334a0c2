//! A network rule string (`api.example.com deny DELETE /**`), and a request judged by it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &str| moat::fuzzing::network_rule(data));
