//! The `.idx` sidecar: one fixed 24-byte little-endian record per access unit
//! (docs/segment-format.md). Pure encode/decode; never panics on any input.

/// Size of one record in bytes.
pub const RECORD_LEN: usize = 24;

/// Flag bit 0: the access unit is a keyframe (IDR).
pub const FLAG_KEYFRAME: u32 = 1;

/// The largest AU a reader accepts; a bigger record is treated as corrupt.
pub const MAX_AU_LEN: u32 = 32 << 20;

/// One index record: where an access unit is and when it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the AU in the `.h264` file.
    pub offset: u64,
    /// AU length in bytes.
    pub len: u32,
    /// Capture wall-clock time, µs since the Unix epoch (UTC).
    pub pts_us: i64,
    /// Bit 0: keyframe.
    pub flags: u32,
}

impl Record {
    /// Whether the AU is a keyframe.
    pub fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// The byte just past the AU.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }

    /// Serialises the record.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[12..20].copy_from_slice(&self.pts_us.to_le_bytes());
        b[20..24].copy_from_slice(&self.flags.to_le_bytes());
        b
    }

    /// Parses one record from exactly [`RECORD_LEN`] bytes.
    pub fn decode(b: &[u8; RECORD_LEN]) -> Self {
        // The slices below are fixed sub-ranges of a 24-byte array, so the conversions
        // cannot fail; `from_le_bytes` on arrays keeps it panic-free.
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[0..8]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&b[8..12]);
        let mut p = [0u8; 8];
        p.copy_from_slice(&b[12..20]);
        let mut f = [0u8; 4];
        f.copy_from_slice(&b[20..24]);
        Self {
            offset: u64::from_le_bytes(o),
            len: u32::from_le_bytes(l),
            pts_us: i64::from_le_bytes(p),
            flags: u32::from_le_bytes(f),
        }
    }
}

/// Parses every complete record in `buf`; a trailing partial record is ignored.
pub fn decode_all(buf: &[u8]) -> Vec<Record> {
    buf.chunks_exact(RECORD_LEN)
        .map(|c| {
            let mut a = [0u8; RECORD_LEN];
            a.copy_from_slice(c);
            Record::decode(&a)
        })
        .collect()
}

/// Checks a record against the data file it indexes and the record before it: the bytes
/// must lie within `data_len`, follow the previous AU, and time must not run backwards.
/// Readers skip (and recovery truncates at) the first record that fails.
pub fn is_plausible(rec: &Record, prev: Option<&Record>, data_len: u64) -> bool {
    if rec.len == 0 || rec.offset.checked_add(u64::from(rec.len)).is_none_or(|e| e > data_len) {
        return false;
    }
    match prev {
        Some(p) => rec.offset >= p.end() && rec.pts_us >= p.pts_us,
        None => true,
    }
}

/// How many records from the start of `recs` are plausible ([`is_plausible`], and no AU
/// longer than [`MAX_AU_LEN`]): readers use that prefix and recovery truncates after it.
pub fn plausible_prefix(recs: &[Record], data_len: u64) -> usize {
    let mut prev = None;
    for (i, r) in recs.iter().enumerate() {
        if r.len > MAX_AU_LEN || !is_plausible(r, prev, data_len) {
            return i;
        }
        prev = Some(r);
    }
    recs.len()
}

/// Where the video of `recs` ends: the last AU's time plus the mean frame interval (one
/// 30 fps frame for a single AU). Saturates rather than overflows on hostile times.
pub fn estimated_end_us(recs: &[Record]) -> Option<i64> {
    let (first, last) = (recs.first()?.pts_us, recs.last()?.pts_us);
    let frame_us = match recs.len() {
        1 => 33_333,
        n => ((i128::from(last) - i128::from(first)) / (n as i128 - 1)).clamp(1, i128::from(i64::MAX)) as i64,
    };
    Some(last.saturating_add(frame_us.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Record { offset: 1 << 40, len: 12345, pts_us: -5, flags: FLAG_KEYFRAME };
        assert_eq!(Record::decode(&r.encode()), r);
        assert!(r.is_keyframe());
    }

    #[test]
    fn torn_tail_is_ignored() {
        let a = Record { offset: 0, len: 10, pts_us: 1, flags: 1 };
        let b = Record { offset: 10, len: 5, pts_us: 2, flags: 0 };
        let mut buf = [a.encode(), b.encode()].concat();
        buf.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_all(&buf), vec![a, b]);
    }

    #[test]
    fn plausibility() {
        let a = Record { offset: 0, len: 10, pts_us: 1, flags: 1 };
        assert!(is_plausible(&a, None, 10));
        assert!(!is_plausible(&a, None, 9));
        let overflow = Record { offset: u64::MAX, len: 10, pts_us: 1, flags: 0 };
        assert!(!is_plausible(&overflow, None, u64::MAX));
        let back = Record { offset: 10, len: 1, pts_us: 0, flags: 0 };
        assert!(!is_plausible(&back, Some(&a), 100));
        let huge = Record { offset: 10, len: MAX_AU_LEN + 1, pts_us: 5, flags: 0 };
        assert_eq!(plausible_prefix(&[a, back], 100), 1);
        assert_eq!(plausible_prefix(&[a, huge], u64::MAX), 1);
    }

    #[test]
    fn end_estimate_saturates() {
        let r = |pts_us| Record { offset: 0, len: 1, pts_us, flags: 0 };
        assert_eq!(estimated_end_us(&[]), None);
        assert_eq!(estimated_end_us(&[r(0)]), Some(33_333));
        assert_eq!(estimated_end_us(&[r(0), r(100), r(200)]), Some(300));
        // Times at both ends of i64 overflowed recovery's `(last - first) / (n - 1)`.
        assert_eq!(estimated_end_us(&[r(i64::MIN), r(i64::MAX)]), Some(i64::MAX));
        assert_eq!(estimated_end_us(&[r(5), r(5)]), Some(6));
    }
}
