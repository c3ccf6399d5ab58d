//! `whip_offer`: see `vigil::fuzzing::whip_offer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::whip_offer(data));
