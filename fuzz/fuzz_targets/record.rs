//! Fuzz target: see `drover::fuzzing::record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::record(data));
