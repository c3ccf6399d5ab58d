//! A synthetic archive for benchmarks (`vigil synth-archive`, hidden): one real recorded
//! segment repeated under `count` consecutive start times, so that a month of one-minute
//! segments can be listed, exported and seeked on one machine in a few minutes of setup.
//!
//! - Each copy is a real segment as the writer would leave it: `<start_us>.h264` (a hard link
//!   to the source, or a full copy for the newest `real_copies`, so that an export of the
//!   newest hour reads distinct bytes) and its own `.idx` (the source's records with capture
//!   times moved to the copy's start), in the right day directory.
//! - Rows go in through the real index code ([`Index::close`]), file before row as the
//!   history service does; copies follow each other without a gap (one run), each lasting
//!   the source's duration.
//! - Unlike the writer, nothing is fsynced (a benchmark fixture, not footage), and the camera
//!   directory must hold no segment yet: nothing is overwritten.
//!
//! Must not be used on a data directory with real recordings; `vigil serve` treats the copies
//! as recordings (retention included).

use std::path::{Path, PathBuf};

use super::index::{ClosedInfo, Index, IndexError};
use super::plan::load_segment;
use crate::segment::idx::Record;
use crate::segment::path::{SegmentFiles, list_segments, valid_camera_name};

/// Why an archive could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// Bad options or source.
    #[error("{0}")]
    Invalid(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The index refused a row.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// What to make.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// The server's data directory.
    pub data_dir: PathBuf,
    /// `database_url`, or `None` for SQLite in the data directory.
    pub database_url: Option<String>,
    /// Camera name (its directory must hold no segment).
    pub camera: String,
    /// A real recorded `.h264`, its `.idx` beside it; on the data directory's filesystem.
    pub source: PathBuf,
    /// Number of segments.
    pub count: usize,
    /// The archive ends at or before this time (µs since the epoch).
    pub end_us: i64,
    /// The newest this many segments are full copies, not hard links.
    pub real_copies: usize,
}

/// What was made.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SynthReport {
    /// Segments (rows and file pairs) made.
    pub segments: usize,
    /// Start of the first segment (µs).
    pub start_us: i64,
    /// End of the last segment (µs).
    pub end_us: i64,
    /// Duration of each segment (µs).
    pub segment_us: i64,
    /// Bytes of `.h264` data the archive lists.
    pub listed_bytes: u64,
    /// Bytes of `.h264` data written as full copies.
    pub copied_bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_owned(), source }
}

/// Makes the archive (see the module doc).
pub async fn synthesize(o: &SynthOptions) -> Result<SynthReport, SynthError> {
    let bad = |m: String| Err(SynthError::Invalid(m));
    if !valid_camera_name(&o.camera) {
        return bad(format!("bad camera name {:?}", o.camera));
    }
    if o.count == 0 {
        return bad("count must be at least 1".into());
    }
    let start_src: i64 = match o.source.extension().and_then(|e| e.to_str()) {
        Some("h264") => o.source.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()),
        _ => None,
    }
    .ok_or_else(|| SynthError::Invalid(format!("{}: not a <start_us>.h264 segment", o.source.display())))?;
    let src = SegmentFiles { start_us: start_src, data: o.source.clone(), idx: o.source.with_extension("idx") };
    let input = load_segment(&src).map_err(|e| SynthError::Invalid(e.to_string()))?;
    let bytes = std::fs::metadata(&src.data).map_err(io(&src.data))?.len();
    let (Some(first), Some(last), Some(end)) = (input.records.first(), input.records.last(), input.end_us()) else {
        return bad(format!("{}: no complete access unit", src.idx.display()));
    };
    if !first.is_keyframe() || last.end() != bytes {
        return bad(format!("{}: does not start with a keyframe or its index does not cover it", src.data.display()));
    }
    let segment_us = end - first.pts_us;
    if segment_us < 1_000_000 {
        return bad("the source segment lasts less than a second".into());
    }
    let params = super::service::first_keyframe_params(&src)
        .ok_or_else(|| SynthError::Invalid(format!("{}: no SPS/PPS in the first AU", src.data.display())))?;
    let camera_dir = o.data_dir.join(&o.camera);
    if !list_segments(&camera_dir).map_err(io(&camera_dir))?.is_empty() {
        return bad(format!("{} already holds segments", camera_dir.display()));
    }

    let span = segment_us.checked_mul(o.count as i64).ok_or_else(|| SynthError::Invalid("count too large".into()))?;
    let start_us = o.end_us - span;
    let index = Index::open(o.database_url.as_deref(), &o.data_dir).await?;
    let cam = index.camera_id(&o.camera).await?;
    let mut rep = SynthReport { start_us, end_us: start_us + span, segment_us, ..Default::default() };
    let mut idx_bytes = Vec::with_capacity(input.records.len() * crate::segment::idx::RECORD_LEN);
    for i in 0..o.count {
        let seg_start = start_us + i as i64 * segment_us;
        let files = SegmentFiles::new(&camera_dir, seg_start);
        std::fs::create_dir_all(files.dir()).map_err(io(files.dir()))?;
        if i + o.real_copies >= o.count {
            std::fs::copy(&src.data, &files.data).map_err(io(&files.data))?;
            rep.copied_bytes += bytes;
        } else {
            std::fs::hard_link(&src.data, &files.data).map_err(io(&files.data))?;
        }
        let shift = seg_start - first.pts_us;
        idx_bytes.clear();
        for r in &input.records {
            idx_bytes.extend_from_slice(&Record { pts_us: r.pts_us + shift, ..*r }.encode());
        }
        std::fs::write(&files.idx, &idx_bytes).map_err(io(&files.idx))?;
        let info = ClosedInfo {
            end_us: seg_start + segment_us,
            bytes: bytes as i64,
            frames: input.records.len() as i64,
            codec: params.info().codec(),
            width: i64::from(params.info().width),
            height: i64::from(params.info().height),
            sps: Some(params.sps().to_vec()),
            pps: Some(params.pps().to_vec()),
        };
        let rel = files.data.strip_prefix(&o.data_dir).unwrap_or(&files.data).to_string_lossy().into_owned();
        index.close(cam, &rel, seg_start, &info).await?;
        rep.segments += 1;
        rep.listed_bytes += bytes;
        if rep.segments.is_multiple_of(5000) {
            tracing::info!(segments = rep.segments, of = o.count, "synthesizing");
        }
    }
    Ok(rep)
}
