//! Just enough of RFC 6184 (H.264 over RTP, packetization-mode 1) to know, per access unit,
//! whether it is a keyframe and what capture time its `vigil.capture.ts` SEI carries.
//!
//! No decoding and no reassembly of slice data: single NAL units and STAP-A are read in
//! place; of FU-A fragments only the header byte is looked at, except for an SEI NAL split
//! over several packets (rare, small), which is collected to be parsed.

/// The 16-byte UUID of vigil's capture-time `user_data_unregistered` SEI.
pub const SEI_UUID: &[u8; 16] = b"vigil.capture.ts";

const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;
/// An SEI longer than this is not ours (ours is 28 bytes); stop collecting it.
const MAX_SEI: usize = 4096;

/// What was seen so far in the access unit being received.
#[derive(Debug, Default)]
pub struct FrameScan {
    /// An IDR slice was seen.
    pub keyframe: bool,
    /// Capture wall-clock time from the SEI, µs since the Unix epoch.
    pub capture_us: Option<u64>,
    fu_sei: Option<Vec<u8>>,
}

impl FrameScan {
    pub fn reset(&mut self) {
        self.keyframe = false;
        self.capture_us = None;
        self.fu_sei = None;
    }

    /// Feeds one RTP payload of the access unit.
    pub fn push_payload(&mut self, p: &[u8]) {
        let Some(&b0) = p.first() else { return };
        match b0 & 0x1f {
            1..=23 => self.nal(p),
            STAP_A => {
                let mut i = 1;
                while i + 2 <= p.len() {
                    let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                    i += 2;
                    if size == 0 || i + size > p.len() {
                        break;
                    }
                    self.nal(&p[i..i + size]);
                    i += size;
                }
            }
            FU_A => {
                let Some(&fu) = p.get(1) else { return };
                let (start, end, ty) = (fu & 0x80 != 0, fu & 0x40 != 0, fu & 0x1f);
                if start {
                    self.fu_sei = None;
                    if ty == NAL_IDR {
                        self.keyframe = true;
                    }
                    if ty == NAL_SEI {
                        let mut buf = Vec::with_capacity(64);
                        buf.push((b0 & 0xe0) | ty);
                        buf.extend_from_slice(&p[2..]);
                        self.fu_sei = Some(buf);
                    }
                } else if let Some(buf) = self.fu_sei.as_mut() {
                    if buf.len() + p.len() > MAX_SEI {
                        self.fu_sei = None;
                    } else {
                        buf.extend_from_slice(&p[2..]);
                    }
                }
                if end && let Some(buf) = self.fu_sei.take() {
                    self.nal(&buf);
                }
            }
            _ => {} // STAP-B, MTAP, FU-B: not allowed in packetization-mode 1
        }
    }

    fn nal(&mut self, nal: &[u8]) {
        match nal[0] & 0x1f {
            NAL_IDR => self.keyframe = true,
            NAL_SEI if self.capture_us.is_none() => {
                self.capture_us = find_capture_ts(&nal[1..nal.len().min(MAX_SEI)]);
            }
            _ => {}
        }
    }
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Finds the vigil UUID in an SEI payload (emulation-prevention bytes still in) and returns the
/// big-endian u64 that follows it.
pub fn find_capture_ts(sei_ebsp: &[u8]) -> Option<u64> {
    let rbsp = unescape(sei_ebsp);
    let pos = rbsp.windows(SEI_UUID.len()).position(|w| w == SEI_UUID)?;
    let ts = rbsp.get(pos + 16..pos + 24)?;
    Some(u64::from_be_bytes(ts.try_into().ok()?))
}

/// Builds vigil's SEI NAL (header included, emulation prevention applied): for tests and the
/// fake server example.
#[allow(dead_code)]
pub fn build_sei(capture_us: u64) -> Vec<u8> {
    let mut payload = vec![5u8, 24];
    payload.extend_from_slice(SEI_UUID);
    payload.extend_from_slice(&capture_us.to_be_bytes());
    payload.push(0x80);
    let mut out = vec![NAL_SEI];
    let mut zeros = 0;
    for b in payload {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sei_round_trip_with_emulation_prevention() {
        // 0x0000_0000_0000_0102 forces emulation prevention inside the timestamp.
        for ts in [0x0000_0000_0000_0102u64, 1_760_000_000_123_456, 0, u64::MAX] {
            let nal = build_sei(ts);
            let mut s = FrameScan::default();
            s.push_payload(&nal);
            assert_eq!(s.capture_us, Some(ts));
            assert!(!s.keyframe);
        }
    }

    #[test]
    fn stap_a_with_sei_and_idr() {
        let sei = build_sei(42);
        let idr = [0x65u8, 0x88, 0x84];
        let mut p = vec![0x78u8];
        for n in [&[0x09u8, 0xf0][..], &sei, &idr] {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        let mut s = FrameScan::default();
        s.push_payload(&p);
        assert_eq!(s.capture_us, Some(42));
        assert!(s.keyframe);
    }

    #[test]
    fn fu_a_sei_and_idr() {
        let sei = build_sei(7_000_000);
        let mut s = FrameScan::default();
        // SEI split in three fragments
        let body = &sei[1..];
        let chunks: Vec<&[u8]> = body.chunks(10).collect();
        for (i, c) in chunks.iter().enumerate() {
            let mut fu = 0x06u8;
            if i == 0 {
                fu |= 0x80;
            }
            if i == chunks.len() - 1 {
                fu |= 0x40;
            }
            let mut p = vec![0x7cu8, fu];
            p.extend_from_slice(c);
            s.push_payload(&p);
        }
        assert_eq!(s.capture_us, Some(7_000_000));
        s.push_payload(&[0x7c, 0x85, 1, 2, 3]);
        assert!(s.keyframe);
    }
}
