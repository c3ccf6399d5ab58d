//! `sdp_offer`: see `vigil::fuzzing::sdp_offer`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vigil::fuzzing::sdp_offer(data));
