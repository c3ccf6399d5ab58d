//! The plan: which access units of which segments make up the video of a time range, with
//! their sizes as AVC samples, their durations and their sample entries. Both the
//! progressive MP4 ([`super::mp4`]) and the fMP4 fragments ([`super::fmp4`]) are views of one
//! [`Plan`].
//!
//! Sans-IO except through [`ByteSource`]: planning reads the first keyframe AU of each segment
//! (for its SPS/PPS, and to check the segment keeps the contract), never the whole range.
//!
//! # Runs
//! Segments that follow each other within [`RUN_GAP_US`] (the end of one, estimated as its
//! last AU plus one frame, to the start of the next) form a continuous *run*; the listing API
//! reports the same runs. A plan never decodes across a run boundary: a start that falls in
//! a gap, or early in a run, begins at the run's first keyframe, never at a keyframe of the
//! run before it.
//!
//! # Timing
//! Sample times are the `.idx` capture times rounded to 90 kHz; a sample lasts until the next
//! one. A run boundary (a capture restart, a gap between recordings) or a jump of more than
//! [`MAX_FRAME_GAP_US`] inside a segment is squeezed to one frame duration, so an export
//! across a gap plays straight through it rather than freezing on one picture. The last
//! sample lasts until the next AU after the range when there is one in the same run, else as
//! long as the sample before it.
//!
//! # Sizes
//! Samples keep every NAL unit, start codes replaced by 4-byte lengths. For an AU that keeps
//! the segment contract (docs/segment-format.md: 4-byte start codes, no trailing zero bytes)
//! that is exactly its Annex-B length, so sizes come from the `.idx` alone. A segment whose
//! first keyframe breaks the contract (an external writer with 3-byte start codes) is scanned:
//! every AU of it in the range is read once while planning (cost: the whole range's bytes).
//! An AU that breaks the contract inside a contract segment is caught when it is served
//! ([`MuxError::Data`]).

use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::error::MuxError;
use super::h264::{ParamSets, annexb_to_avc, avc_size};
use crate::segment::idx::{self, Record};
use crate::segment::path::SegmentFiles;

/// A jump between two AUs longer than this is a gap, not a long frame.
pub const MAX_FRAME_GAP_US: i64 = 5_000_000;

/// Two segments closer than this (end of one to start of the next) are one continuous run.
pub const RUN_GAP_US: i64 = 250_000;

/// The largest AU accepted (the tail reader's limit too).
pub use crate::segment::idx::MAX_AU_LEN;

/// The most samples one plan may hold: 2^22 ≈ 38 h at 30 fps. Bounds memory (≈ 40 bytes a
/// sample) and the `moov` size (≈ 12 bytes a sample).
pub const MAX_SAMPLES: usize = 1 << 22;

/// Duration given to a lone sample with nothing to measure against: 1/30 s.
const DEFAULT_DURATION_90K: u32 = 3000;

/// Reads bytes of segment data files. Implemented over real files by [`FileSource`] and over
/// memory by [`MemSource`]; HTTP handlers call it from a blocking thread.
pub trait ByteSource {
    /// Fills `buf` from `path` at `offset`, or fails.
    fn read_exact_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl<T: ByteSource + ?Sized> ByteSource for &T {
    fn read_exact_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_exact_at(path, offset, buf)
    }
}

impl<T: ByteSource + ?Sized> ByteSource for Arc<T> {
    fn read_exact_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        (**self).read_exact_at(path, offset, buf)
    }
}

/// Segment files read with positioned reads (`pread`). Each file is opened on first use and
/// kept open, so a segment unlinked by retention after that stays readable through this
/// source. Use one per request (or per cached plan): handles are not closed until it drops.
#[derive(Debug, Default)]
pub struct FileSource {
    open: Mutex<HashMap<PathBuf, Arc<File>>>,
}

impl FileSource {
    /// A source with nothing open yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn file(&self, path: &Path) -> std::io::Result<Arc<File>> {
        // A poisoned lock only means another reader panicked; the map is still consistent.
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = open.get(path) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(path)?);
        open.insert(path.to_owned(), f.clone());
        Ok(f)
    }
}

impl ByteSource for FileSource {
    fn read_exact_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file(path)?.read_exact_at(buf, offset)
    }
}

/// Data files held in memory (tests, fuzzing, callers that already have the bytes).
#[derive(Debug, Default, Clone)]
pub struct MemSource(pub HashMap<PathBuf, Vec<u8>>);

impl ByteSource for MemSource {
    fn read_exact_at(&self, path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let data = self.0.get(path).ok_or(std::io::ErrorKind::NotFound)?;
        let start = usize::try_from(offset).map_err(|_| std::io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| data.get(start..end))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// One segment as the planner sees it: its data file and its index records.
#[derive(Debug, Clone)]
pub struct SegmentInput {
    /// Wall-clock start (µs since the epoch): the file stem.
    pub start_us: i64,
    /// The `.h264` file.
    pub data: PathBuf,
    /// Its `.idx` records, in file order.
    pub records: Vec<Record>,
}

/// Reads a segment's `.idx` (and the length of its `.h264`), keeping records up to the first
/// implausible one, as tail readers do: a torn or growing tail is not an error.
pub fn load_segment(files: &SegmentFiles) -> Result<SegmentInput, MuxError> {
    let io = |path: &Path, source| MuxError::Io { path: path.to_owned(), offset: 0, len: 0, source };
    let raw = std::fs::read(&files.idx).map_err(|e| io(&files.idx, e))?;
    let data_len = std::fs::metadata(&files.data).map_err(|e| io(&files.data, e))?.len();
    let mut records = idx::decode_all(&raw);
    let good = idx::plausible_prefix(&records, data_len);
    if good < records.len() {
        tracing::warn!(path = %files.idx.display(), record = good, "ignoring index records from the first implausible one");
        records.truncate(good);
    }
    Ok(SegmentInput { start_us: files.start_us, data: files.data.clone(), records })
}

impl SegmentInput {
    /// Just past the last AU: its time plus the segment's mean frame interval (as the index
    /// records a closed segment's end); `None` without records.
    pub fn end_us(&self) -> Option<i64> {
        let (first, last) = (self.records.first()?, self.records.last()?);
        let n = self.records.len() as i64;
        let frame = if n > 1 { last.pts_us.saturating_sub(first.pts_us) / (n - 1) } else { 33_333 };
        Some(last.pts_us.saturating_add(frame.max(1)))
    }

    /// Whether `next` (a later segment) starts a new run: more than [`RUN_GAP_US`] after
    /// this one ends.
    pub fn run_breaks_before(&self, next: &SegmentInput) -> bool {
        match (self.end_us(), next.records.first()) {
            (Some(end), Some(r)) => r.pts_us.saturating_sub(end) > RUN_GAP_US,
            _ => true,
        }
    }
}

/// One sample (= one access unit) of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Index into [`Plan::segments`].
    pub segment: u32,
    /// Index into [`Plan::entries`]: the SPS/PPS it decodes with.
    pub entry: u32,
    /// The AU's offset in the `.h264`.
    pub offset: u64,
    /// The AU's Annex-B length.
    pub len: u32,
    /// Its size as a length-prefixed AVC sample.
    pub size: u32,
    /// Capture time, µs since the epoch.
    pub pts_us: i64,
    /// Decode time relative to the plan's first sample, 90 kHz.
    pub time_90k: u64,
    /// Duration, 90 kHz (≥ 1).
    pub duration_90k: u32,
    /// Whether it is an IDR.
    pub keyframe: bool,
}

/// A segment that contributes samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSegment {
    /// Wall-clock start (µs since the epoch).
    pub start_us: i64,
    /// The `.h264` file.
    pub data: PathBuf,
}

/// The immutable description of the video of a time range. Build with [`Plan::build`].
#[derive(Debug, Clone)]
pub struct Plan {
    segments: Vec<PlanSegment>,
    entries: Vec<ParamSets>,
    samples: Vec<Sample>,
    start_us: i64,
    end_us: i64,
    skip_90k: u64,
}

/// Capture time in µs → 90 kHz ticks, rounded to nearest.
pub fn to_90k(us: i64) -> i128 {
    (i128::from(us) * 9 + 50).div_euclid(100)
}

/// A cursor position in the concatenated records.
#[derive(Clone, Copy)]
struct Pos<'a> {
    seg: usize,
    rec: &'a Record,
}

impl Plan {
    /// Plans the video of `[start_us, end_us)` from `segments` (oldest first, not
    /// overlapping): from the keyframe at or before `start_us` (with an edit that skips to
    /// `start_us`) to the last AU before `end_us`. Reads the first keyframe AU of each segment
    /// used through `source`.
    pub fn build(segments: &[SegmentInput], range: Range<i64>, source: &impl ByteSource) -> Result<Plan, MuxError> {
        let (start_us, end_us) = (range.start, range.end);
        if start_us >= end_us {
            return Err(MuxError::EmptyRange { start_us, end_us });
        }
        let segs: Vec<&SegmentInput> = segments.iter().filter(|s| !s.records.is_empty()).collect();
        validate(&segs)?;

        // The last segment whose first AU is at or before the start holds the keyframe to
        // start from (segments begin with one); walk back if it does not.
        let mut first = segs.partition_point(|s| s.records[0].pts_us <= start_us).saturating_sub(1);
        while first > 0 && !segs[first].records.iter().take_while(|r| r.pts_us <= start_us).any(|r| r.is_keyframe()) {
            first -= 1;
        }

        // The AUs from there up to the end, and the first one past the end.
        let mut flat: Vec<Pos> = Vec::new();
        let mut next: Option<Pos> = None;
        'outer: for (seg, s) in segs.iter().enumerate().skip(first) {
            for rec in &s.records {
                if rec.pts_us >= end_us {
                    next = Some(Pos { seg, rec });
                    break 'outer;
                }
                if flat.len() >= MAX_SAMPLES * 2 {
                    return Err(MuxError::TooLarge("more samples than one file may hold"));
                }
                flat.push(Pos { seg, rec });
            }
        }
        // A gap between two AUs: a run boundary between their segments, or a long jump.
        let breaks = |a: &Pos, b: &Pos| {
            if a.seg != b.seg && segs[a.seg].run_breaks_before(segs[b.seg]) {
                return true;
            }
            b.rec.pts_us.saturating_sub(a.rec.pts_us) > MAX_FRAME_GAP_US
        };

        // F: the first AU shown; K: the keyframe decoding starts from.
        let f = flat.partition_point(|p| p.rec.pts_us < start_us);
        if f == flat.len() {
            return Err(MuxError::NoSamples);
        }
        // Never decode across a gap to reach the start: the first keyframe of the run that
        // holds F (F itself when the start falls in a gap) is as far back as K may go.
        let run_start = (1..=f).rev().find(|&j| breaks(&flat[j - 1], &flat[j])).unwrap_or(0);
        let k = match flat[run_start..=f].iter().rposition(|p| p.rec.is_keyframe() && p.rec.pts_us <= start_us) {
            Some(k) => run_start + k,
            None => f + flat[f..].iter().position(|p| p.rec.is_keyframe()).ok_or(MuxError::NoSamples)?,
        };
        let chosen = &flat[k..];
        if chosen.len() > MAX_SAMPLES {
            return Err(MuxError::TooLarge("more samples than one file may hold"));
        }

        // Durations from the differences of rounded 90 kHz times (so they add up exactly to
        // the span), with gaps squeezed.
        let mut durations: Vec<u32> = Vec::with_capacity(chosen.len());
        for (i, p) in chosen.iter().enumerate() {
            let following = chosen.get(i + 1).or(next.as_ref());
            let d = match following {
                Some(n) if !breaks(p, n) => {
                    // Bounded by MAX_FRAME_GAP_US (5 s = 450,000 ticks): fits in u32.
                    u32::try_from(to_90k(n.rec.pts_us) - to_90k(p.rec.pts_us)).unwrap_or(u32::MAX)
                }
                _ => durations.last().copied().unwrap_or(DEFAULT_DURATION_90K),
            };
            durations.push(d.max(1));
        }

        // Segments and sample entries; sizes (contract or scanned).
        let mut plan_segments: Vec<PlanSegment> = Vec::new();
        let mut entries: Vec<ParamSets> = Vec::new();
        let mut samples: Vec<Sample> = Vec::with_capacity(chosen.len());
        let mut time = 0u64;
        let mut i = 0;
        while i < chosen.len() {
            let seg = chosen[i].seg;
            let run_end = i + chosen[i..].iter().position(|p| p.seg != seg).unwrap_or(chosen.len() - i);
            let run = &chosen[i..run_end];
            let input = segs[seg];
            let seg_index = plan_segments.len() as u32; // ≤ samples ≤ MAX_SAMPLES
            plan_segments.push(PlanSegment { start_us: input.start_us, data: input.data.clone() });

            // The segment's first keyframe in the run gives its sample entry and shows
            // whether it keeps the contract.
            let mut scan = false;
            let entry = match run.iter().find(|p| p.rec.is_keyframe()) {
                Some(key) => {
                    let au = read_au(source, &input.data, key.rec)?;
                    let params = ParamSets::from_annexb(&au)
                        .ok_or_else(|| data_err(&input.data, key.rec, "keyframe without SPS and PPS".into()))?
                        .map_err(|e| data_err(&input.data, key.rec, e.to_string()))?;
                    scan = avc_size(&au) != u64::from(key.rec.len);
                    match entries.iter().position(|e| *e == params) {
                        Some(e) => e,
                        None => {
                            entries.push(params);
                            entries.len() - 1
                        }
                    }
                }
                // No keyframe: continues the stream before it (k was a keyframe, so there is
                // an entry already).
                None => entries.len().saturating_sub(1),
            } as u32;
            if scan {
                tracing::debug!(path = %input.data.display(), "segment breaks the 4-byte start code contract: scanning it");
            }
            for (j, p) in run.iter().enumerate() {
                let size = if scan {
                    let au = read_au(source, &input.data, p.rec)?;
                    u32::try_from(avc_size(&au)).map_err(|_| data_err(&input.data, p.rec, "AU too large".into()))?
                } else {
                    p.rec.len
                };
                let duration_90k = durations[i + j];
                samples.push(Sample {
                    segment: seg_index,
                    entry,
                    offset: p.rec.offset,
                    len: p.rec.len,
                    size,
                    pts_us: p.rec.pts_us,
                    time_90k: time,
                    duration_90k,
                    keyframe: p.rec.is_keyframe(),
                });
                time += u64::from(duration_90k);
            }
            i = run_end;
        }

        // The edit: skip from K to the requested start, never past the first AU shown.
        let skip_90k = if k <= f {
            let wanted = to_90k(start_us) - to_90k(samples[0].pts_us);
            let limit = i128::from(samples[f - k].time_90k);
            u64::try_from(wanted.clamp(0, limit)).unwrap_or(0)
        } else {
            0
        };
        Ok(Plan { segments: plan_segments, entries, samples, start_us, end_us, skip_90k })
    }

    /// The segments used, in order.
    pub fn segments(&self) -> &[PlanSegment] {
        &self.segments
    }

    /// The distinct SPS/PPS pairs (sample entries), in order of first use.
    pub fn entries(&self) -> &[ParamSets] {
        &self.entries
    }

    /// The samples, decode order = presentation order (no B-frames).
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The requested range, µs since the epoch.
    pub fn range(&self) -> Range<i64> {
        self.start_us..self.end_us
    }

    /// Media time (90 kHz) before the requested start that is decoded but not shown (the
    /// edit list's `media_time`).
    pub fn skip_90k(&self) -> u64 {
        self.skip_90k
    }

    /// Total media duration (90 kHz), from the starting keyframe.
    pub fn media_duration_90k(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.time_90k + u64::from(s.duration_90k))
    }

    /// Duration shown (90 kHz): the media duration less the skipped part.
    pub fn duration_90k(&self) -> u64 {
        self.media_duration_90k() - self.skip_90k
    }

    /// The samples grouped into GOPs (each starts at a keyframe, or at the plan's start):
    /// the natural unit of one fMP4 fragment. A GOP never spans two sample entries.
    pub fn gops(&self) -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let mut start = 0;
        for (i, s) in self.samples.iter().enumerate().skip(1) {
            if s.keyframe || s.entry != self.samples[i - 1].entry {
                out.push(start..i);
                start = i;
            }
        }
        if start < self.samples.len() {
            out.push(start..self.samples.len());
        }
        out
    }

    /// Reads `samples` (consecutive indices) as length-prefixed AVC data, each checked against
    /// its planned size. Reads contiguous AUs of a segment with one call.
    pub fn read_samples(
        &self,
        samples: Range<usize>,
        source: &impl ByteSource,
        out: &mut Vec<u8>,
    ) -> Result<(), MuxError> {
        let all = self.samples.get(samples).unwrap_or_default();
        let mut raw = Vec::new();
        let mut i = 0;
        while i < all.len() {
            let first = &all[i];
            let mut j = i + 1;
            let mut end = first.offset + u64::from(first.len);
            while j < all.len()
                && all[j].segment == first.segment
                && all[j].offset == end
                && end - first.offset < BATCH_BYTES
            {
                end += u64::from(all[j].len);
                j += 1;
            }
            let path = &self.segments[first.segment as usize].data;
            raw.resize((end - first.offset) as usize, 0); // ≤ BATCH_BYTES + MAX_AU_LEN
            source.read_exact_at(path, first.offset, &mut raw).map_err(|e| MuxError::Io {
                path: path.clone(),
                offset: first.offset,
                len: end - first.offset,
                source: e,
            })?;
            let mut at = 0usize;
            for s in &all[i..j] {
                let au = &raw[at..at + s.len as usize];
                at += s.len as usize;
                let got = annexb_to_avc(au, out);
                if got != u64::from(s.size) {
                    return Err(MuxError::Data {
                        path: path.clone(),
                        offset: s.offset,
                        reason: format!("AU converts to {got} bytes, {} planned (file changed?)", s.size),
                    });
                }
            }
            i = j;
        }
        Ok(())
    }
}

/// Source bytes read with one call when serving contiguous AUs.
pub(crate) const BATCH_BYTES: u64 = 1 << 20;

fn data_err(path: &Path, rec: &Record, reason: String) -> MuxError {
    MuxError::Data { path: path.to_owned(), offset: rec.offset, reason }
}

fn read_au(source: &impl ByteSource, path: &Path, rec: &Record) -> Result<Vec<u8>, MuxError> {
    let mut buf = vec![0u8; rec.len as usize]; // validate() bounded len by MAX_AU_LEN
    source.read_exact_at(path, rec.offset, &mut buf).map_err(|e| MuxError::Io {
        path: path.to_owned(),
        offset: rec.offset,
        len: u64::from(rec.len),
        source: e,
    })?;
    Ok(buf)
}

/// Rejects records a hostile or broken `.idx` could hold: empty or huge AUs, overlapping or
/// backwards AUs, time running backwards within or across segments.
fn validate(segs: &[&SegmentInput]) -> Result<(), MuxError> {
    let mut prev_pts: Option<i64> = None;
    for s in segs {
        let err = |record, reason| MuxError::Index { path: s.data.clone(), record, reason };
        let mut prev: Option<&Record> = None;
        for (i, r) in s.records.iter().enumerate() {
            if r.len == 0 || r.len > MAX_AU_LEN {
                return Err(err(i, "AU length is zero or too large"));
            }
            if r.offset.checked_add(u64::from(r.len)).is_none() {
                return Err(err(i, "AU offset overflows"));
            }
            if prev.is_some_and(|p| r.offset < p.end()) {
                return Err(err(i, "AU overlaps the one before it"));
            }
            if prev_pts.is_some_and(|p| r.pts_us < p) {
                return Err(err(i, "time runs backwards (or segments overlap)"));
            }
            prev = Some(r);
            prev_pts = Some(r.pts_us);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
pub(crate) mod tests;
