//! `idx`: see `vigil::fuzzing::idx`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::idx(data));
