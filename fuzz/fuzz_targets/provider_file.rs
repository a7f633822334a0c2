//! A declared provider's YAML file, and the rules and variables it makes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &str| moat::fuzzing::provider_file(data));
