//! `http_params`: see `vigil::fuzzing::http_params`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::http_params(data));
