//! `annexb`: see `vigil::fuzzing::annexb`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::annexb(data));
