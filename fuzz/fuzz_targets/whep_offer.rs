//! `whep_offer`: see `vigil::fuzzing::whep_offer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::whep_offer(data));
