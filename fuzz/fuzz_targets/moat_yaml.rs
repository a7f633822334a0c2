//! A workspace's `moat.yaml`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &str| moat::fuzzing::moat_yaml(data));
