//! `sdpfrag`: see `vigil::fuzzing::sdpfrag`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::sdpfrag(data));
