//! Progressive MP4 files built on the fly, Moonfire-style: an immutable [`Mp4File`] is a
//! header built in memory followed by an `mdat` whose bytes are the planned access units,
//! read from the `.h264` files and converted to length-prefixed samples only when a byte
//! range of them is asked for. The length and ETag are known before any media byte is read,
//! so HTTP Range requests (206) are served without building the whole file.
//!
//! ```text
//! ftyp                      isom, compatible isom iso2 avc1 mp41
//! moov                      first ("faststart"): playable while downloading
//!   mvhd                    timescale 90000, duration = shown duration
//!   trak
//!     tkhd                  track 1, width × height of the first sample entry
//!     edts/elst             one edit: skip from the keyframe to the requested start
//!     mdia
//!       mdhd                timescale 90000, duration = media duration
//!       hdlr                vide
//!       minf
//!         vmhd, dinf/dref/url
//!         stbl
//!           stsd            one avc1 (+ avcC, pasp) per distinct SPS/PPS
//!           stts            durations, run-length coded
//!           stss            keyframes
//!           stsz            sample sizes
//!           stsc            one chunk per segment: samples per chunk, sample entry
//!           stco | co64     chunk offsets (co64 once they pass 4 GiB)
//! mdat                      samples, segment after segment (largesize past 4 GiB)
//! ```
//! No `ctts`: vigil records no B-frames, so decode order is presentation order.
//!
//! The ETag hashes [`FORMAT_VERSION`] and everything the bytes depend on; bump the version
//! whenever the output changes for the same inputs (the golden test below pins it).

use std::io::Write;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use super::boxes::{self, BoxBuf};
use super::error::MuxError;
use super::plan::{BATCH_BYTES, ByteSource, Plan};

/// Version of the bytes this module writes for given inputs; part of every ETag.
pub const FORMAT_VERSION: u32 = 1;

/// The `Content-Type` of the files.
pub const CONTENT_TYPE: &str = "video/mp4";

/// An immutable progressive MP4 file. Cheap to clone (shared); `Send + Sync`, so one can
/// serve many Range requests from a cache keyed by its ETag.
#[derive(Debug, Clone)]
pub struct Mp4File(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    plan: Plan,
    /// ftyp + moov + the mdat header.
    head: Bytes,
    /// Offset of each sample in the mdat payload, plus the payload length at the end.
    positions: Vec<u64>,
    etag: String,
}

impl Mp4File {
    /// Lays out the file of `plan` (builds the header; reads nothing).
    pub fn new(plan: Plan) -> Result<Self, MuxError> {
        Self::with_options(plan, false)
    }

    fn with_options(plan: Plan, force_co64: bool) -> Result<Self, MuxError> {
        if plan.samples().is_empty() || plan.entries().is_empty() {
            return Err(MuxError::NoSamples);
        }
        let mut positions = Vec::with_capacity(plan.samples().len() + 1);
        let mut pos = 0u64;
        for s in plan.samples() {
            positions.push(pos);
            pos += u64::from(s.size);
        }
        positions.push(pos);
        let payload_len = pos;
        let mdat_header_len: u64 = if payload_len + 8 > u64::from(u32::MAX) { 16 } else { 8 };

        // The moov's size depends on the width of the chunk offsets, not their values.
        let mut co64 = force_co64;
        let mut head_len = header(&plan, &positions, co64, 0).len() as u64;
        let last_chunk = plan.samples().len().saturating_sub(1);
        if !co64 && head_len + mdat_header_len + positions[last_chunk] > u64::from(u32::MAX) {
            co64 = true;
            head_len = header(&plan, &positions, co64, 0).len() as u64;
        }
        let mut head = header(&plan, &positions, co64, head_len + mdat_header_len);
        if mdat_header_len == 16 {
            head.extend_from_slice(&1u32.to_be_bytes());
            head.extend_from_slice(b"mdat");
            head.extend_from_slice(&(payload_len + 16).to_be_bytes());
        } else {
            head.extend_from_slice(&((payload_len + 8) as u32).to_be_bytes());
            head.extend_from_slice(b"mdat");
        }
        let etag = etag(&plan);
        Ok(Self(Arc::new(Inner { plan, head: Bytes::from(head), positions, etag })))
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.0.head.len() as u64 + self.0.positions.last().copied().unwrap_or(0)
    }

    /// Always false: a file holds at least one sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The strong entity tag, without the quotes the `ETag` header puts around it
    /// (`vigil-mp4-1-<hash>`): [`FORMAT_VERSION`] and a hash of every input the bytes
    /// depend on, so equal tags mean equal bytes.
    pub fn etag(&self) -> &str {
        &self.0.etag
    }

    /// The plan it was built from.
    pub fn plan(&self) -> &Plan {
        &self.0.plan
    }

    /// The header bytes (ftyp, moov, mdat header): what [`super::dump`] shows.
    pub fn head(&self) -> &Bytes {
        &self.0.head
    }

    /// The bytes of `range`, as an iterator of chunks (at most about 1 MiB of media each) that
    /// reads through `source` as it goes. Fails at once if the range is outside the file;
    /// a read error comes as the last item.
    pub fn read_range<S: ByteSource>(&self, range: Range<u64>, source: S) -> Result<RangeIter<S>, MuxError> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(MuxError::RangeNotSatisfiable { start: range.start, end: range.end, len });
        }
        Ok(RangeIter { file: self.clone(), source, pos: range.start, end: range.end })
    }

    /// Writes the bytes of `range` to `out`; returns how many.
    pub fn write_range<S: ByteSource>(
        &self,
        range: Range<u64>,
        source: S,
        out: &mut impl Write,
    ) -> Result<u64, MuxError> {
        let mut n = 0;
        for chunk in self.read_range(range, source)? {
            let chunk = chunk?;
            out.write_all(&chunk).map_err(MuxError::Output)?;
            n += chunk.len() as u64;
        }
        Ok(n)
    }
}

/// The chunks of a byte range of an [`Mp4File`] (see [`Mp4File::read_range`]).
#[derive(Debug)]
pub struct RangeIter<S> {
    file: Mp4File,
    source: S,
    pos: u64,
    end: u64,
}

impl<S: ByteSource> RangeIter<S> {
    fn media_chunk(&mut self) -> Result<Bytes, MuxError> {
        let inner = &self.file.0;
        let head_len = inner.head.len() as u64;
        let (p, p_end) = (self.pos - head_len, self.end - head_len);
        let positions = &inner.positions;
        let n = positions.len() - 1;
        // The sample holding byte p: positions[i] <= p < positions[i + 1].
        let i = positions[..n].partition_point(|&x| x <= p).saturating_sub(1);
        let mut j = i + 1;
        while j < n && positions[j] < p_end && positions[j] - positions[i] < BATCH_BYTES {
            j += 1;
        }
        let mut buf = Vec::with_capacity((positions[j] - positions[i]) as usize);
        inner.plan.read_samples(i..j, &self.source, &mut buf)?;
        let from = (p - positions[i]) as usize;
        let to = (p_end.min(positions[j]) - positions[i]) as usize;
        Ok(Bytes::from(buf).slice(from..to))
    }
}

impl<S: ByteSource> Iterator for RangeIter<S> {
    type Item = Result<Bytes, MuxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let head = &self.file.0.head;
        let head_len = head.len() as u64;
        if self.pos < head_len {
            let to = self.end.min(head_len);
            let chunk = head.slice(self.pos as usize..to as usize);
            self.pos = to;
            return Some(Ok(chunk));
        }
        match self.media_chunk() {
            Ok(chunk) if !chunk.is_empty() => {
                self.pos += chunk.len() as u64;
                Some(Ok(chunk))
            }
            Ok(_) => {
                // Cannot happen (positions are consistent); end rather than loop.
                self.pos = self.end;
                None
            }
            Err(e) => {
                self.pos = self.end;
                Some(Err(e))
            }
        }
    }
}

/// ftyp + moov, with chunk offsets counted from `mdat_payload_start`.
fn header(plan: &Plan, positions: &[u64], co64: bool, mdat_payload_start: u64) -> Vec<u8> {
    let samples = plan.samples();
    let time = boxes::mp4_time(samples[0].pts_us);
    let mut b = BoxBuf::new();
    boxes::ftyp(&mut b, b"isom", 0x200, &[b"isom", b"iso2", b"avc1", b"mp41"]);
    let moov = b.open(b"moov");
    boxes::mvhd(&mut b, time, plan.duration_90k());
    let trak = b.open(b"trak");
    boxes::tkhd(&mut b, time, plan.duration_90k(), &plan.entries()[0]);
    boxes::edts(&mut b, plan.duration_90k(), plan.skip_90k());
    boxes::mdia(&mut b, time, plan.media_duration_90k(), plan.entries(), |b| {
        // stts: (count, delta) runs.
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for s in samples {
            match runs.last_mut() {
                Some((n, d)) if *d == s.duration_90k => *n += 1,
                _ => runs.push((1, s.duration_90k)),
            }
        }
        let o = b.open_full(b"stts", 0, 0);
        b.u32(runs.len() as u32); // ≤ MAX_SAMPLES
        for (n, d) in runs {
            b.u32(n);
            b.u32(d);
        }
        b.close(o);

        let o = b.open_full(b"stss", 0, 0);
        let keys: Vec<u32> = (1u32..).zip(samples).filter(|(_, s)| s.keyframe).map(|(n, _)| n).collect();
        b.u32(keys.len() as u32);
        for k in keys {
            b.u32(k);
        }
        b.close(o);

        let o = b.open_full(b"stsz", 0, 0);
        b.u32(0); // sample_size: sizes vary
        b.u32(samples.len() as u32);
        for s in samples {
            b.u32(s.size);
        }
        b.close(o);

        // Chunks: one per run of samples from one segment.
        let mut chunks: Vec<(usize, u32, u32)> = Vec::new(); // (first sample, count, entry)
        for (i, s) in samples.iter().enumerate() {
            match chunks.last_mut() {
                Some((first, n, _)) if samples[*first].segment == s.segment => *n += 1,
                _ => chunks.push((i, 1, s.entry)),
            }
        }
        let o = b.open_full(b"stsc", 0, 0);
        let mut stsc: Vec<(u32, u32, u32)> = Vec::new(); // (first chunk, per chunk, entry)
        for (c, &(_, n, e)) in (1u32..).zip(&chunks) {
            if stsc.last().is_none_or(|&(_, ln, le)| (ln, le) != (n, e + 1)) {
                stsc.push((c, n, e + 1));
            }
        }
        b.u32(stsc.len() as u32);
        for (c, n, e) in stsc {
            b.u32(c);
            b.u32(n);
            b.u32(e);
        }
        b.close(o);

        let o = b.open_full(if co64 { b"co64" } else { b"stco" }, 0, 0);
        b.u32(chunks.len() as u32);
        for &(first, _, _) in &chunks {
            let off = mdat_payload_start + positions[first];
            if co64 {
                b.u64(off);
            } else {
                b.u32(off as u32); // the caller picks co64 when any offset passes u32
            }
        }
        b.close(o);
    });
    b.close(trak);
    b.close(moov);
    b.into_vec()
}

/// FNV-1a, 128-bit: a stable hash (unlike `std`'s) of everything the file's bytes depend on.
/// Integers go in a 64-bit word at a time (then the high half is folded down): a 1 h plan
/// hashes ~650,000 words, which byte at a time took ~25 ms of the time to first byte.
struct Fnv(u128);

impl Fnv {
    fn new() -> Self {
        Self(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u128::from(x);
            self.0 = self.0.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
    }
    fn u64(&mut self, v: u64) {
        self.0 ^= u128::from(v);
        self.0 = self.0.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        self.0 ^= self.0 >> 64;
    }
}

fn etag(plan: &Plan) -> String {
    let mut h = Fnv::new();
    h.u64(u64::from(FORMAT_VERSION));
    let r = plan.range();
    h.u64(r.start as u64);
    h.u64(r.end as u64);
    h.u64(plan.skip_90k());
    for s in plan.segments() {
        h.u64(s.start_us as u64);
        h.bytes(s.data.as_os_str().as_encoded_bytes());
        h.u64(0xff);
    }
    for e in plan.entries() {
        h.bytes(e.sps());
        h.bytes(e.pps());
        h.u64(0xfe);
    }
    for s in plan.samples() {
        h.u64(u64::from(s.segment));
        h.u64(u64::from(s.entry));
        h.u64(s.offset);
        h.u64(u64::from(s.len) | u64::from(s.size) << 32);
        h.u64(s.pts_us as u64);
        h.u64(u64::from(s.duration_90k) | u64::from(s.keyframe) << 32);
    }
    format!("vigil-mp4-{FORMAT_VERSION}-{:032x}", h.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::dump::dump;
    use crate::history::plan::tests::segment;
    use crate::history::plan::{MemSource, SegmentInput};

    const T0: i64 = 1_795_305_600_000_000;

    fn golden_input() -> (Vec<SegmentInput>, MemSource) {
        let mut mem = MemSource::default();
        let segs = vec![segment("cam", T0, 2, 5, &mut mem), segment("cam", T0 + 333_334, 1, 5, &mut mem)];
        (segs, mem)
    }

    fn whole(f: &Mp4File, mem: &MemSource) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(f.write_range(0..f.len(), mem, &mut out).unwrap(), f.len());
        out
    }

    /// The golden test: a pinned dump and digest of a small synthetic file. If this fails
    /// because the output changed on purpose, bump FORMAT_VERSION and re-pin (run with
    /// `VIGIL_BLESS=1` to rewrite the dump).
    #[test]
    fn golden() {
        let (segs, mem) = golden_input();
        let plan = Plan::build(&segs, T0 + 100_000..T0 + 480_000, &mem).unwrap();
        let f = Mp4File::new(plan).unwrap();
        let bytes = whole(&f, &mem);
        let text = dump(&bytes);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/history/testdata/golden.mp4.txt");
        if std::env::var_os("VIGIL_BLESS").is_some() {
            std::fs::write(path, &text).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap_or_default();
        assert!(text == want, "dump changed; got:\n{text}");
        let mut h = Fnv::new();
        h.bytes(&bytes);
        assert_eq!(
            (bytes.len(), format!("{:032x}", h.0), f.etag()),
            (1417, "88b0fc53f9c0d2b12873b6e362d6e538".to_owned(), "vigil-mp4-1-f36c3db45f51dbe40fb2c77b4c760fa9")
        );
    }

    #[test]
    fn every_range_matches_the_whole_file() {
        let (segs, mem) = golden_input();
        let f = Mp4File::new(Plan::build(&segs, T0..T0 + 1_000_000, &mem).unwrap()).unwrap();
        let all = whole(&f, &mem);
        let len = f.len();
        for a in (0..len).step_by(7) {
            for b in (a..=len).step_by(53).chain([len]) {
                let mut out = Vec::new();
                f.write_range(a..b, &mem, &mut out).unwrap();
                assert_eq!(out, &all[a as usize..b as usize], "{a}..{b}");
            }
        }
        assert!(matches!(f.read_range(5..len + 1, &mem), Err(MuxError::RangeNotSatisfiable { .. })));
        // A changed file is an error in the stream, not a wrong byte or a panic.
        let mut changed = mem.clone();
        for d in changed.0.values_mut() {
            d[40] = 0;
            d[41] = 0;
            d[42] = 1;
        }
        let r: Result<Vec<Bytes>, _> = f.read_range(0..len, &changed).unwrap().collect();
        assert!(matches!(r, Err(MuxError::Data { .. })), "{r:?}");
    }

    #[test]
    fn co64_when_offsets_pass_4_gib() {
        let (segs, mem) = golden_input();
        let plan = Plan::build(&segs, T0..T0 + 1_000_000, &mem).unwrap();
        let f = Mp4File::with_options(plan.clone(), true).unwrap();
        let text = dump(&whole(&f, &mem));
        assert!(text.contains("co64") && !text.contains("stco"), "{text}");
        // Same samples, different bytes: the etag covers inputs; the layout is a function
        // of them, so the two never meet in one deployment.
        let plain = Mp4File::new(plan).unwrap();
        assert_eq!(f.len(), plain.len() + 8);
    }
}
