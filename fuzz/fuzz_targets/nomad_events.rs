//! Fuzz target: see `drover::fuzzing::nomad_events`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover::fuzzing::nomad_events(data));
