//! Thumbnails: one small JPEG per segment, of its first keyframe scaled to at most
//! [`MAX_WIDTH`] pixels wide, stored beside the segment as `<start_us>.jpg` (docs/history.md).
//!
//! - **When**: a segment closes → the history service queues it ([`Thumbnails::queue`]); one
//!   background worker ([`super::service::History`] runs it) makes the files one at a time.
//!   The queue is bounded and never waited on: indexing and recording do not slow down, and a
//!   burst that fills it only drops jobs.
//! - **On demand**: the HTTP API makes a missing thumbnail (a segment closed before
//!   thumbnails existed, a crash, a dropped job) when it is asked for, and keeps it.
//! - **Files are subordinate to the index**: a thumbnail is written only while its recording
//!   row exists, under the lock under which retention moves rows to `garbage` and unlinks
//!   their files, so one made while its segment is deleted is never left behind; deletion
//!   (retention, crash recovery, the `garbage` table at start) unlinks `.jpg` with the
//!   segment. Writes are not synced: a torn file (crash mid-write) is not a complete JPEG
//!   ([`read_valid`]) and is made again.
//!
//! This module owns the file name, the queue and the making (GStreamer, through
//! [`super::snapshot`]). It must not touch the index or delete anything: the service does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::plan::load_segment;
use super::snapshot::{SnapshotError, decode_last_to_jpeg};
use crate::history::MuxError;
use crate::segment::path::SegmentFiles;

/// Thumbnails are at most this wide (aspect kept, never scaled up).
pub const MAX_WIDTH: u32 = 320;

/// Jobs the queue holds before new ones are dropped (made on demand instead).
pub const QUEUE_LEN: usize = 64;

/// JPEGs made at once (thumbnails, from the worker and on demand, and `snapshot.jpg`): each is
/// a GStreamer decode on a blocking thread, so a burst of requests must not start many.
pub const MAX_MAKING: usize = 2;

/// How long a request waits for one of the [`MAX_MAKING`] slots before it gets 503.
pub const REQUEST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Part of every thumbnail ETag; bump when the bytes made for a segment change.
pub const FORMAT_VERSION: u32 = 1;

/// The thumbnail file of a segment: `<start_us>.jpg` beside its `.h264`.
pub fn path_of(data: &Path) -> PathBuf {
    data.with_extension("jpg")
}

/// Decodes the segment's first keyframe and encodes it as a JPEG at most [`MAX_WIDTH`] wide.
/// Blocking (GStreamer): call from a blocking thread.
pub fn make(files: &SegmentFiles) -> Result<Vec<u8>, SnapshotError> {
    use std::os::unix::fs::FileExt;
    let seg = load_segment(files).map_err(|e| match e {
        MuxError::Io { path, source, .. } => SnapshotError::Io(path.display().to_string(), source),
        other => SnapshotError::Decode(other.to_string()),
    })?;
    let key = seg.records.iter().find(|r| r.is_keyframe()).ok_or(SnapshotError::NoFrame)?;
    let io = |e| SnapshotError::Io(seg.data.display().to_string(), e);
    let mut au = vec![0u8; key.len as usize]; // load_segment bounded len by MAX_AU_LEN
    std::fs::File::open(&seg.data).map_err(io)?.read_exact_at(&mut au, key.offset).map_err(io)?;
    decode_last_to_jpeg(vec![au], Some(MAX_WIDTH))
}

/// Whether `b` is a complete JPEG (SOI first, EOI last): what a torn write is not.
pub fn is_complete_jpeg(b: &[u8]) -> bool {
    b.len() >= 4 && b.starts_with(&[0xff, 0xd8]) && b.ends_with(&[0xff, 0xd9])
}

/// The thumbnail at `path` when it exists and is complete.
pub fn read_valid(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok().filter(|b| is_complete_jpeg(b))
}

/// The strong entity tag of a thumbnail (without quotes): the format version and a 64-bit
/// FNV-1a hash of the bytes.
pub fn etag(jpeg: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in jpeg {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("vigil-thumb-{FORMAT_VERSION}-{h:016x}")
}

/// The queue of segments whose thumbnail is to be made. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Thumbnails {
    tx: mpsc::Sender<SegmentFiles>,
    rx: Arc<Mutex<Option<mpsc::Receiver<SegmentFiles>>>>,
}

impl Default for Thumbnails {
    fn default() -> Self {
        Self::new()
    }
}

impl Thumbnails {
    /// An empty queue of [`QUEUE_LEN`] jobs.
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        Self { tx, rx: Arc::new(Mutex::new(Some(rx))) }
    }

    /// Queues a segment without waiting; `false` when the queue is full (or no worker will
    /// ever run): the thumbnail is then made on demand.
    pub fn queue(&self, files: SegmentFiles) -> bool {
        self.tx.try_send(files).is_ok()
    }

    /// The receiving end, for the one worker (`None` once taken).
    pub fn take_receiver(&self) -> Option<mpsc::Receiver<SegmentFiles>> {
        // A poisoned lock only means a panic elsewhere; the Option is still consistent.
        self.rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_validity_and_etags() {
        assert_eq!(path_of(Path::new("/d/cam/2026-11-22/17.h264")), PathBuf::from("/d/cam/2026-11-22/17.jpg"));
        assert!(is_complete_jpeg(&[0xff, 0xd8, 0, 0xff, 0xd9]));
        assert!(!is_complete_jpeg(&[0xff, 0xd8, 0, 0]), "torn");
        assert!(!is_complete_jpeg(&[]));
        assert_eq!(etag(b"abc"), etag(b"abc"));
        assert_ne!(etag(b"abc"), etag(b"abd"));
        assert!(etag(b"").starts_with("vigil-thumb-1-"));
    }

    #[test]
    fn a_full_queue_drops_instead_of_waiting() {
        let t = Thumbnails::new();
        let seg = |i| SegmentFiles { start_us: i, data: PathBuf::from(format!("/x/{i}.h264")), idx: PathBuf::new() };
        for i in 0..QUEUE_LEN as i64 {
            assert!(t.queue(seg(i)));
        }
        assert!(!t.queue(seg(-1)), "full: dropped, not blocked");
        let mut rx = t.take_receiver().unwrap();
        assert!(t.take_receiver().is_none());
        assert_eq!(rx.try_recv().unwrap().start_us, 0);
        assert!(t.queue(seg(99)));
    }
}
