//! `mp4`: see `vigil::fuzzing::mp4`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::mp4(data));
