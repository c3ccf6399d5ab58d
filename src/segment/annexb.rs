//! H.264 Annex-B byte streams: NAL unit iteration, access-unit normalisation and the
//! capture-time SEI.
//!
//! Spec: ITU-T H.264 Annex B (byte stream format), §7.3.2.1 (NAL types), D.1.7
//! (`user_data_unregistered`). Pure functions over bytes: no I/O, no clocks, never panics on
//! any input (fuzzed by the `annexb` tests below and the fuzz target).

/// NAL unit types vigil cares about (H.264 Table 7-1).
pub mod nal {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The 16-byte UUID of vigil's capture-time SEI: ASCII `vigil.capture.ts`.
pub const CAPTURE_TS_UUID: [u8; 16] = *b"vigil.capture.ts";

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Iterates over the NAL units of an Annex-B buffer, yielding each NAL's bytes without its
/// start code (first byte is the NAL header). Trailing zero bytes before the next start code
/// are trimmed. Bytes before the first start code are skipped.
pub fn nal_units(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = find_start_code(buf, 0).map(|(_, after)| after);
    std::iter::from_fn(move || {
        let start = pos?;
        match find_start_code(buf, start) {
            Some((sc, after)) => {
                pos = Some(after);
                Some(trim_trailing_zeros(&buf[start..sc]))
            }
            None => {
                pos = None;
                Some(trim_trailing_zeros(&buf[start..]))
            }
        }
    })
    .filter(|n| !n.is_empty())
}

/// Finds the next `00 00 01` at or after `from`; returns (index of its first zero, index just
/// past the `01`).
fn find_start_code(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i + 3 <= buf.len() {
        // Skip quickly: the third byte of a start code is 1, so a byte > 1 at i+2 lets us
        // jump 3 ahead.
        let b2 = buf[i + 2];
        if b2 > 1 {
            i += 3;
            continue;
        }
        if b2 == 1 && buf[i] == 0 && buf[i + 1] == 0 {
            return Some((i, i + 3));
        }
        i += 1;
    }
    None
}

fn trim_trailing_zeros(mut n: &[u8]) -> &[u8] {
    while let [rest @ .., 0] = n {
        n = rest;
    }
    n
}

/// The NAL type (low 5 bits of the header byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// True if the Annex-B access unit contains an IDR slice.
pub fn is_keyframe(au: &[u8]) -> bool {
    nal_units(au).any(|n| nal_type(n) == nal::IDR)
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`) from a NAL payload.
pub fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Inserts emulation-prevention bytes so no `00 00 0x` (x ≤ 3) appears in the payload.
pub fn escape_rbsp(data: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
}

/// Builds the capture-time SEI NAL (with start code): `user_data_unregistered`, UUID
/// [`CAPTURE_TS_UUID`], 8-byte big-endian µs since the Unix epoch.
pub fn capture_time_sei(capture_us: i64) -> Vec<u8> {
    let mut payload = Vec::with_capacity(2 + 24);
    payload.push(5); // payload type: user_data_unregistered
    payload.push(24); // payload size
    payload.extend_from_slice(&CAPTURE_TS_UUID);
    payload.extend_from_slice(&(capture_us as u64).to_be_bytes());
    let mut out = Vec::with_capacity(4 + 1 + 32 + 1);
    out.extend_from_slice(&START_CODE);
    out.push(nal::SEI); // forbidden_zero 0, nal_ref_idc 0, type 6
    escape_rbsp(&payload, &mut out);
    out.push(0x80); // rbsp trailing bits
    out
}

/// Reads vigil's capture time from an SEI NAL (without start code), if it is one.
pub fn parse_capture_time_sei(nal_unit: &[u8]) -> Option<i64> {
    if nal_type(nal_unit) != nal::SEI {
        return None;
    }
    let rbsp = unescape_rbsp(&nal_unit[1..]);
    let mut p = 0;
    // An SEI may hold several messages; walk them.
    while p < rbsp.len() && rbsp[p] != 0x80 {
        let mut ptype = 0usize;
        while *rbsp.get(p)? == 0xff {
            ptype += 255;
            p += 1;
        }
        ptype += *rbsp.get(p)? as usize;
        p += 1;
        let mut psize = 0usize;
        while *rbsp.get(p)? == 0xff {
            psize += 255;
            p += 1;
        }
        psize += *rbsp.get(p)? as usize;
        p += 1;
        let body = rbsp.get(p..p.checked_add(psize)?)?;
        if ptype == 5 && psize >= 24 && body[..16] == CAPTURE_TS_UUID {
            let ts: [u8; 8] = body[16..24].try_into().ok()?;
            return Some(u64::from_be_bytes(ts) as i64);
        }
        p += psize;
    }
    None
}

/// Finds the capture time in an Annex-B access unit.
pub fn find_capture_time(au: &[u8]) -> Option<i64> {
    nal_units(au).find_map(parse_capture_time_sei)
}

/// Normalises access units to the segment contract (docs/segment-format.md): AUD first,
/// then the capture-time SEI, SPS/PPS before every IDR. Remembers the latest SPS/PPS so
/// an encoder that sends them only once still yields self-contained keyframes.
#[derive(Debug, Default)]
pub struct AuNormalizer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

/// One normalised access unit.
#[derive(Debug)]
pub struct NormalizedAu {
    /// Annex-B bytes, 4-byte start codes.
    pub data: Vec<u8>,
    /// Whether it holds an IDR slice.
    pub keyframe: bool,
    /// Whether it holds any picture slice at all (an AU with only parameter sets or SEI is
    /// not worth writing on its own).
    pub has_picture: bool,
}

impl AuNormalizer {
    /// A normaliser with no parameter sets seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest SPS (without start code), once seen.
    pub fn sps(&self) -> Option<&[u8]> {
        self.sps.as_deref()
    }

    /// The latest PPS (without start code), once seen.
    pub fn pps(&self) -> Option<&[u8]> {
        self.pps.as_deref()
    }

    /// Rewrites one Annex-B access unit (as an encoder or `h264parse alignment=au` emits it).
    /// Existing AUDs and vigil SEIs are dropped and re-emitted in the contract's order.
    pub fn normalize(&mut self, au: &[u8], capture_us: i64) -> NormalizedAu {
        let mut has_sps = false;
        let mut has_pps = false;
        let mut keyframe = false;
        let mut has_picture = false;
        for n in nal_units(au) {
            match nal_type(n) {
                nal::SPS => {
                    has_sps = true;
                    self.sps = Some(n.to_vec());
                }
                nal::PPS => {
                    has_pps = true;
                    self.pps = Some(n.to_vec());
                }
                nal::IDR => {
                    keyframe = true;
                    has_picture = true;
                }
                1..=4 => has_picture = true,
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(au.len() + 64);
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&[nal::AUD, 0xf0]); // primary_pic_type 7 (any), trailing bits
        out.extend_from_slice(&capture_time_sei(capture_us));
        if keyframe
            && !(has_sps && has_pps)
            && let (Some(sps), Some(pps)) = (&self.sps, &self.pps)
        {
            for ps in [sps, pps] {
                out.extend_from_slice(&START_CODE);
                out.extend_from_slice(ps);
            }
        }
        for n in nal_units(au) {
            let t = nal_type(n);
            if t == nal::AUD || parse_capture_time_sei(n).is_some() {
                continue;
            }
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(n);
        }
        NormalizedAu { data: out, keyframe, has_picture }
    }
}

/// Splits a byte stream of concatenated access units (an external writer with no `.idx`)
/// into AUs at each AUD. Returns the AU boundaries as byte ranges of complete AUs; bytes
/// after the last AUD are not yet known to be complete and are left out.
pub fn split_at_auds(buf: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut starts = Vec::new();
    let mut from = 0;
    while let Some((sc, after)) = find_start_code(buf, from) {
        if buf.get(after).map(|b| b & 0x1f) == Some(nal::AUD) {
            // Include a preceding zero for 4-byte start codes.
            let s = if sc > 0 && buf[sc - 1] == 0 { sc - 1 } else { sc };
            starts.push(s);
        }
        from = after;
    }
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&[0, 0, 0, 1]);
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn iterates_nals_with_3_and_4_byte_start_codes() {
        let buf = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9, 0, 0];
        let nals: Vec<&[u8]> = nal_units(&buf).collect();
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 9, 9][..]]);
    }

    #[test]
    fn sei_round_trips_including_escaped_bytes() {
        for ts in [0i64, 1, 0x0000_0000_0000_0300, 1_763_769_600_123_456, i64::MAX] {
            let sei = capture_time_sei(ts);
            let nal: Vec<&[u8]> = nal_units(&sei).collect();
            assert_eq!(nal.len(), 1);
            assert_eq!(parse_capture_time_sei(nal[0]), Some(ts), "ts {ts}");
            // No start-code emulation inside the NAL.
            assert!(nal[0].windows(3).all(|w| !(w[0] == 0 && w[1] == 0 && w[2] <= 3 && w[2] != 3)));
        }
    }

    #[test]
    fn normalizer_orders_aud_sei_params_idr() {
        let mut n = AuNormalizer::new();
        let first = n.normalize(&au(&[&[0x67, 0x42], &[0x68, 0xce], &[0x65, 0x88]]), 42);
        assert!(first.keyframe && first.has_picture);
        let types: Vec<u8> = nal_units(&first.data).map(nal_type).collect();
        assert_eq!(types, vec![9, 6, 7, 8, 5]);
        assert_eq!(find_capture_time(&first.data), Some(42));
        // A later IDR without parameter sets gets them re-inserted.
        let later = n.normalize(&au(&[&[0x09, 0xf0], &[0x65, 0x99]]), 43);
        let types: Vec<u8> = nal_units(&later.data).map(nal_type).collect();
        assert_eq!(types, vec![9, 6, 7, 8, 5]);
        // A P frame is just AUD, SEI, slice.
        let p = n.normalize(&au(&[&[0x41, 0x9a]]), 44);
        assert!(!p.keyframe && p.has_picture);
        let types: Vec<u8> = nal_units(&p.data).map(nal_type).collect();
        assert_eq!(types, vec![9, 6, 1]);
        // Normalising twice is stable (the old AUD and SEI are replaced, not duplicated).
        let again = n.normalize(&p.data, 45);
        let types: Vec<u8> = nal_units(&again.data).map(nal_type).collect();
        assert_eq!(types, vec![9, 6, 1]);
        assert_eq!(find_capture_time(&again.data), Some(45));
    }

    #[test]
    fn split_at_auds_returns_complete_aus_only() {
        let a = au(&[&[0x09, 0xf0], &[0x65, 1]]);
        let b = au(&[&[0x09, 0xf0], &[0x41, 2]]);
        let c = au(&[&[0x09, 0xf0], &[0x41, 3]]);
        let buf = [a.clone(), b.clone(), c].concat();
        let r = split_at_auds(&buf);
        assert_eq!(r, vec![0..a.len(), a.len()..a.len() + b.len()]);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    // Bias towards 0, 1, 3, 6 and 0xff to hit the interesting paths.
                    [0u8, 0, 1, 3, 6, 5, 0xff, (seed >> 16) as u8][(seed >> 28) as usize % 8]
                })
                .collect();
            let _ = nal_units(&buf).count();
            let _ = find_capture_time(&buf);
            for n in nal_units(&buf) {
                let _ = parse_capture_time_sei(n);
            }
            let _ = split_at_auds(&buf);
            let _ = AuNormalizer::new().normalize(&buf, 1);
        }
    }
}
