//! Segment lifecycle events, from whoever writes segments (the capture supervisor relays
//! its child's reports) to whoever indexes them (history). Defined here, with the format,
//! so that neither side needs to know the other.

use std::path::PathBuf;

/// Something happened to a camera's segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEvent {
    /// A segment was created (its first AU is written).
    Opened {
        /// Camera name.
        camera: String,
        /// Start (µs since the epoch) = file stem.
        start_us: i64,
        /// The `.h264` path.
        data: PathBuf,
    },
    /// A segment was closed: both files and the directory are synced.
    Closed {
        /// Camera name.
        camera: String,
        /// Start.
        start_us: i64,
        /// Capture time of its last AU.
        last_pts_us: i64,
        /// AUs in it.
        frames: u64,
        /// Bytes of `.h264`.
        bytes: u64,
        /// The `.h264` path.
        data: PathBuf,
    },
    /// The writer of this camera's segments is gone (the capture process exited or was
    /// killed): a segment it left open is final and may have a torn tail.
    WriterGone {
        /// Camera name.
        camera: String,
    },
}
