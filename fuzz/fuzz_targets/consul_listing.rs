//! Fuzz target: see `drover::fuzzing::consul_listing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::consul_listing(data));
