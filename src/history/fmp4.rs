//! Fragmented MP4 for Media Source Extensions: an init segment per sample entry (SPS/PPS)
//! and self-contained media fragments, one per GOP.
//!
//! ```text
//! init:      ftyp (iso5)  moov [mvhd, trak [tkhd, mdia [... stsd avc1/avcC, empty tables]], mvex [trex]]
//! fragment:  moof [mfhd sequence, traf [tfhd default-base-is-moof, tfdt (v1), trun]]  mdat
//! ```
//! Each `trun` sample carries its duration, size and flags (sync or not), so a fragment needs
//! nothing from the one before it: a player may fetch them in any order (seeking).
//!
//! Spec: ISO/IEC 14496-12 §8.8 (movie fragments); W3C "ISO BMFF Byte Stream Format" for MSE.

use std::ops::Range;

use bytes::Bytes;

use super::boxes::{self, BoxBuf};
use super::error::MuxError;
use super::h264::ParamSets;
use super::plan::{ByteSource, Plan, to_90k};

/// The largest fragment built in memory (a GOP this big is not a GOP vigil records).
pub const MAX_FRAGMENT_BYTES: usize = 256 << 20;

/// `Content-Type` for init and media segments; add `codecs="<ParamSets::info().codec()>"`
/// for MSE.
pub const CONTENT_TYPE: &str = "video/mp4";

/// `sample_flags` of a sync sample: `sample_depends_on` = 2 (depends on nothing).
const SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on` = 1, `sample_is_non_sync_sample`.
const NON_SYNC: u32 = 0x0101_0000;

/// The init segment for one sample entry: ftyp + moov with `mvex`, no samples.
pub fn init_segment(params: &ParamSets) -> Bytes {
    let mut b = BoxBuf::new();
    boxes::ftyp(&mut b, b"iso5", 0x200, &[b"iso5", b"iso6", b"mp41"]);
    let moov = b.open(b"moov");
    boxes::mvhd(&mut b, 0, 0);
    let trak = b.open(b"trak");
    boxes::tkhd(&mut b, 0, 0, params);
    boxes::mdia(&mut b, 0, 0, std::slice::from_ref(params), |b| {
        for t in [b"stts", b"stsc", b"stco"] {
            let o = b.open_full(t, 0, 0);
            b.u32(0); // entry_count
            b.close(o);
        }
        let o = b.open_full(b"stsz", 0, 0);
        b.u32(0); // sample_size
        b.u32(0); // sample_count
        b.close(o);
    });
    b.close(trak);
    let mvex = b.open(b"mvex");
    let o = b.open_full(b"trex", 0, 0);
    b.u32(1); // track_ID
    b.u32(1); // default_sample_description_index
    b.u32(0); // default_sample_duration
    b.u32(0); // default_sample_size
    b.u32(0); // default_sample_flags
    b.close(o);
    b.close(mvex);
    b.close(moov);
    Bytes::from(b.into_vec())
}

/// One sample of a media fragment.
#[derive(Debug, Clone)]
pub struct FragmentSample {
    /// The access unit as length-prefixed NAL units (see [`super::h264::annexb_to_avc`]).
    pub data: Bytes,
    /// Duration, 90 kHz.
    pub duration_90k: u32,
    /// Whether it is a sync sample (IDR).
    pub keyframe: bool,
}

/// A media fragment (moof + mdat) of `samples`, the first decoded at `base_decode_time`
/// (90 kHz). `sequence` counts fragments from 1.
pub fn media_fragment(sequence: u32, base_decode_time: u64, samples: &[FragmentSample]) -> Result<Bytes, MuxError> {
    let total: usize = samples.iter().map(|s| s.data.len()).sum();
    if total > MAX_FRAGMENT_BYTES {
        return Err(MuxError::TooLarge("fragment"));
    }
    let meta: Vec<(u32, u32, bool)> =
        samples.iter().map(|s| (s.duration_90k, s.data.len() as u32, s.keyframe)).collect();
    let mut b = moof(sequence, base_decode_time, &meta)?;
    for s in samples {
        b.extend_from_slice(&s.data);
    }
    Ok(Bytes::from(b))
}

/// moof + mdat header for samples of (duration, size, keyframe); the payload follows.
fn moof(sequence: u32, base_decode_time: u64, samples: &[(u32, u32, bool)]) -> Result<Vec<u8>, MuxError> {
    if samples.is_empty() {
        return Err(MuxError::NoSamples);
    }
    let payload: u64 = samples.iter().map(|s| u64::from(s.1)).sum();
    if payload > MAX_FRAGMENT_BYTES as u64 {
        return Err(MuxError::TooLarge("fragment"));
    }
    let mut b = BoxBuf::new();
    let moof = b.open(b"moof");
    let o = b.open_full(b"mfhd", 0, 0);
    b.u32(sequence);
    b.close(o);
    let traf = b.open(b"traf");
    let o = b.open_full(b"tfhd", 0, 0x02_0000); // default-base-is-moof
    b.u32(1); // track_ID
    b.close(o);
    let o = b.open_full(b"tfdt", 1, 0);
    b.u64(base_decode_time);
    b.close(o);
    // data-offset, sample-duration, sample-size, sample-flags present.
    let o = b.open_full(b"trun", 0, 0x0701);
    b.u32(samples.len() as u32); // bounded by MAX_FRAGMENT_BYTES (every sample ≥ 1 byte... or 0)
    let data_offset_at = b.len();
    b.u32(0);
    for &(duration, size, key) in samples {
        b.u32(duration);
        b.u32(size);
        b.u32(if key { SYNC } else { NON_SYNC });
    }
    b.close(o);
    b.close(traf);
    b.close(moof);
    let moof_len = b.len();
    // The moof of ≤ MAX_FRAGMENT_BYTES of samples is far below 2 GiB.
    b.patch_u32(data_offset_at, (moof_len + 8) as u32);
    let mut v = b.into_vec();
    v.reserve(8 + payload as usize);
    v.extend_from_slice(&((payload + 8) as u32).to_be_bytes());
    v.extend_from_slice(b"mdat");
    Ok(v)
}

impl Plan {
    /// The media fragment of `samples` (usually one of [`Plan::gops`]), read through
    /// `source`. Its decode time is the plan's media time (continuous, gaps squeezed, as in
    /// the progressive file) when `wall_time_base_us` is `None`; with `Some(base)` it is the
    /// capture time less `base` (so gaps between recordings stay gaps in the MSE buffer;
    /// earlier times clamp to 0). All samples must use one sample entry.
    pub fn fragment(
        &self,
        samples: Range<usize>,
        sequence: u32,
        wall_time_base_us: Option<i64>,
        source: &impl ByteSource,
    ) -> Result<Bytes, MuxError> {
        let all = self.samples().get(samples.clone()).ok_or(MuxError::NoSamples)?;
        let first = all.first().ok_or(MuxError::NoSamples)?;
        if all.iter().any(|s| s.entry != first.entry) {
            return Err(MuxError::TooLarge("a fragment may hold one sample entry only"));
        }
        let base = match wall_time_base_us {
            None => first.time_90k,
            Some(t0) => u64::try_from(to_90k(first.pts_us) - to_90k(t0)).unwrap_or(0),
        };
        let meta: Vec<(u32, u32, bool)> = all.iter().map(|s| (s.duration_90k, s.size, s.keyframe)).collect();
        let mut out = moof(sequence, base, &meta)?;
        self.read_samples(samples, source, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// The init segment for sample entry `entry` (`Sample::entry`).
    pub fn init_segment(&self, entry: u32) -> Option<Bytes> {
        self.entries().get(entry as usize).map(init_segment)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::dump::dump;
    use crate::history::plan::MemSource;
    use crate::history::plan::tests::segment;

    const T0: i64 = 1_795_305_600_000_000;

    #[test]
    fn init_and_fragments() {
        let mut mem = MemSource::default();
        let segs = vec![segment("f", T0, 2, 5, &mut mem)];
        let plan = Plan::build(&segs, T0..T0 + 1_000_000, &mem).unwrap();
        let init = plan.init_segment(0).unwrap();
        let text = dump(&init);
        assert!(text.contains("mvex") && text.contains("trex (32) track=1"), "{text}");
        assert!(text.contains("avc1") && text.contains("width=640 height=360"), "{text}");

        let gops = plan.gops();
        assert_eq!(gops, vec![0..5, 5..10]);
        let frag = plan.fragment(gops[1].clone(), 2, None, &mem).unwrap();
        let text = dump(&frag);
        assert!(text.contains("mfhd (16) sequence=2"), "{text}");
        assert!(text.contains("tfdt (20) v1 base_decode_time=15000"), "{text}");
        // data_offset points just past the mdat header.
        let moof_len = u32::from_be_bytes([frag[0], frag[1], frag[2], frag[3]]);
        assert!(text.contains(&format!("data_offset={}", moof_len + 8)), "{text}");
        assert!(text.contains("samples=5") && text.contains("f=0x2000000") && text.contains("f=0x1010000"));
        let wall = plan.fragment(gops[1].clone(), 2, Some(T0 - 1_000_000), &mem).unwrap();
        assert!(dump(&wall).contains("base_decode_time=105000"));
        // The same samples through the low-level API give the same bytes.
        let mut data = Vec::new();
        let samples: Vec<FragmentSample> = gops[1]
            .clone()
            .map(|i| {
                data.clear();
                plan.read_samples(i..i + 1, &mem, &mut data).unwrap();
                let s = plan.samples()[i];
                FragmentSample { data: Bytes::from(data.clone()), duration_90k: s.duration_90k, keyframe: s.keyframe }
            })
            .collect();
        assert_eq!(media_fragment(2, 15000, &samples).unwrap(), frag);
        assert!(matches!(media_fragment(1, 0, &[]), Err(MuxError::NoSamples)));
        assert!(plan.fragment(20..30, 1, None, &mem).is_err());
    }
}
