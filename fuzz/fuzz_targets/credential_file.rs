//! A damaged or hostile `.enc` credential file, and the JSON inside one.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| moat::fuzzing::credential_file(data));
