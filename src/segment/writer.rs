//! The segment writer: appends normalised access units to `<start>.h264` and their records
//! to `<start>.idx`, rotates at the first keyframe after the target duration, and keeps
//! what it wrote durable (fdatasync about once a second, fsync of files and directory on
//! close).
//!
//! One writer per camera, in the capture process. It never reads back what it wrote and
//! knows nothing of viewers or the index database.

use super::idx::{FLAG_KEYFRAME, Record};
use super::path::SegmentFiles;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors from writing segments, with the path involved.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An I/O operation on a segment file or directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io { op, path: path.to_owned(), source }
}

/// A segment that was closed (both files and the directory synced).
#[derive(Debug, Clone)]
pub struct ClosedSegment {
    /// Its files.
    pub files: SegmentFiles,
    /// Capture time of the last AU.
    pub last_pts_us: i64,
    /// Number of access units.
    pub frames: u64,
    /// Bytes of `.h264`.
    pub bytes: u64,
}

/// What one [`SegmentWriter::push`] did.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// The AU was written (false while waiting for the first keyframe).
    pub written: bool,
    /// A segment was closed before this AU opened the next one.
    pub closed: Option<ClosedSegment>,
    /// A new segment was opened with this AU.
    pub opened: Option<SegmentFiles>,
}

struct OpenSegment {
    files: SegmentFiles,
    data: File,
    idx: File,
    len: u64,
    frames: u64,
    last_pts_us: i64,
    last_sync_us: i64,
}

/// How early a keyframe may come and still close a segment that is due.
const ROTATION_SLACK_US: i64 = 20_000;

/// Writes one camera's segments. See the module docs.
pub struct SegmentWriter {
    camera_dir: PathBuf,
    segment_us: i64,
    sync_every_us: i64,
    open: Option<OpenSegment>,
}

impl SegmentWriter {
    /// A writer for `camera_dir` rotating after `segment_seconds`.
    pub fn new(camera_dir: impl Into<PathBuf>, segment_seconds: f64) -> Self {
        Self {
            camera_dir: camera_dir.into(),
            segment_us: (segment_seconds * 1e6) as i64,
            sync_every_us: 1_000_000,
            open: None,
        }
    }

    /// The currently open segment, if any.
    pub fn current(&self) -> Option<&SegmentFiles> {
        self.open.as_ref().map(|o| &o.files)
    }

    /// Appends one normalised access unit (docs/segment-format.md) captured at `pts_us`.
    /// AUs before the first keyframe are dropped: a segment starts with an IDR. A keyframe
    /// at or after the target duration closes the current segment and opens the next.
    /// Time that runs backwards (a clock step) also starts a new segment at the next
    /// keyframe, so segments of one camera never overlap.
    pub fn push(&mut self, au: &[u8], pts_us: i64, keyframe: bool) -> Result<PushOutcome, WriteError> {
        let mut out = PushOutcome::default();
        if let Some(open) = &self.open {
            // 20 ms of slack: a keyframe due at exactly N s often lands a microsecond short
            // after rounding, which would stretch the segment by a whole GOP.
            let due = pts_us - open.files.start_us >= self.segment_us - ROTATION_SLACK_US;
            let went_back = pts_us <= open.last_pts_us;
            if went_back && !keyframe {
                // Drop until a keyframe lets us start a consistent segment.
                return Ok(out);
            }
            if keyframe && (due || went_back) {
                out.closed = Some(self.close()?);
            }
        }
        if self.open.is_none() {
            if !keyframe {
                return Ok(out);
            }
            let start = match &out.closed {
                Some(c) if pts_us <= c.last_pts_us => c.last_pts_us + 1,
                _ => pts_us,
            };
            let files = SegmentFiles::new(&self.camera_dir, start);
            self.open = Some(open_segment(files.clone())?);
            out.opened = Some(files);
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(out);
        };
        let rec = Record {
            offset: open.len,
            len: au.len() as u32,
            // Strictly increasing within a segment, and never before its start.
            pts_us: pts_us.max(open.last_pts_us.saturating_add(1)),
            flags: if keyframe { FLAG_KEYFRAME } else { 0 },
        };
        open.data.write_all(au).map_err(io("write", &open.files.data))?;
        open.idx.write_all(&rec.encode()).map_err(io("write", &open.files.idx))?;
        open.len += au.len() as u64;
        open.frames += 1;
        open.last_pts_us = rec.pts_us;
        if pts_us - open.last_sync_us >= self.sync_every_us {
            open.data.sync_data().map_err(io("fdatasync", &open.files.data))?;
            open.idx.sync_data().map_err(io("fdatasync", &open.files.idx))?;
            open.last_sync_us = pts_us;
        }
        out.written = true;
        Ok(out)
    }

    /// Closes the open segment, if any: fsync both files and the directory.
    pub fn finish(&mut self) -> Result<Option<ClosedSegment>, WriteError> {
        if self.open.is_none() {
            return Ok(None);
        }
        self.close().map(Some)
    }

    fn close(&mut self) -> Result<ClosedSegment, WriteError> {
        let Some(open) = self.open.take() else {
            unreachable!("close() is only called with a segment open");
        };
        open.data.sync_all().map_err(io("fsync", &open.files.data))?;
        open.idx.sync_all().map_err(io("fsync", &open.files.idx))?;
        sync_dir(open.files.dir())?;
        Ok(ClosedSegment { last_pts_us: open.last_pts_us, frames: open.frames, bytes: open.len, files: open.files })
    }
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "closing segment on drop");
        }
    }
}

fn open_segment(files: SegmentFiles) -> Result<OpenSegment, WriteError> {
    let files_start = files.start_us;
    let dir = files.dir().to_owned();
    let new_dir = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
    if new_dir && let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    let opts = {
        let mut o = OpenOptions::new();
        o.create_new(true).append(true);
        o
    };
    let data = opts.open(&files.data).map_err(io("create", &files.data))?;
    let idx = opts.open(&files.idx).map_err(io("create", &files.idx))?;
    // Make the new names durable before any record refers to them.
    sync_dir(&dir)?;
    Ok(OpenSegment {
        files,
        data,
        idx,
        len: 0,
        frames: 0,
        last_pts_us: files_start.saturating_sub(1),
        last_sync_us: files_start,
    })
}

/// fsyncs a directory so entries created in it survive a crash.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::idx::decode_all;
    use crate::segment::path::list_segments;

    fn au(n: u8, key: bool) -> Vec<u8> {
        vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }, n, n, n]
    }

    #[test]
    fn rotates_at_first_keyframe_after_duration() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(dir.path(), 2.0);
        let t0 = 1_700_000_000_000_000i64;
        // A P frame before any keyframe is dropped.
        assert!(!w.push(&au(0, false), t0 - 10, false).unwrap().written);
        let mut closed = Vec::new();
        for i in 0..100i64 {
            let key = i % 30 == 0;
            let o = w.push(&au(i as u8, key), t0 + i * 33_333, key).unwrap();
            assert!(o.written);
            closed.extend(o.closed);
        }
        w.finish().unwrap();
        // Keyframes at 0, 1 s, 2 s (1.99998 s after rounding), 3 s: the one at ~2 s rotates.
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].frames, 60);
        let segs = list_segments(dir.path()).unwrap();
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[1].start_us, t0 + 60 * 33_333);
        let recs = decode_all(&std::fs::read(&segs[1].idx).unwrap());
        assert_eq!(recs.len(), 40);
        assert!(recs[0].is_keyframe());
        let data = std::fs::read(&segs[1].data).unwrap();
        for r in &recs {
            assert_eq!(&data[r.offset as usize..r.end() as usize], &au(60 + (r.offset / 8) as u8, r.is_keyframe())[..]);
        }
    }

    #[test]
    fn time_going_back_starts_a_new_segment_without_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(dir.path(), 60.0);
        let t0 = 1_700_000_000_000_000i64;
        w.push(&au(1, true), t0, true).unwrap();
        w.push(&au(2, false), t0 + 1000, false).unwrap();
        // Clock steps back: P frames dropped until a keyframe, which opens a new segment.
        assert!(!w.push(&au(3, false), t0 - 5000, false).unwrap().written);
        let o = w.push(&au(4, true), t0 - 4000, true).unwrap();
        assert!(o.closed.is_some());
        assert_eq!(o.opened.unwrap().start_us, t0 + 1001);
    }
}
