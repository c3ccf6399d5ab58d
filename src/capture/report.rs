//! The line protocol from a capture child to its supervisor: one JSON object per line on the
//! child's stdout. Logs go to stderr; stdout carries only these.

use serde::{Deserialize, Serialize};

/// One message from `vigil capture` to `vigil serve`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Sent every 500 ms: running totals since the child started.
    Progress {
        /// Access units written.
        frames: u64,
        /// Bytes written.
        bytes: u64,
        /// Capture time of the last AU written (µs since the epoch), 0 before the first.
        last_pts_us: i64,
        /// Negotiated picture width (0 until known).
        width: u32,
        /// Negotiated picture height.
        height: u32,
    },
    /// A segment was opened.
    SegmentOpened {
        /// Its start (µs since the epoch).
        start_us: i64,
        /// Path of the `.h264`.
        path: String,
    },
    /// A segment was closed and synced.
    SegmentClosed {
        /// Its start.
        start_us: i64,
        /// Capture time of its last AU.
        last_pts_us: i64,
        /// AUs in it.
        frames: u64,
        /// Bytes of `.h264`.
        bytes: u64,
        /// Path of the `.h264`.
        path: String,
    },
    /// Motion was confirmed: an activity range opened (times are capture times).
    ActivityStarted {
        /// First confirmed motion (µs since the epoch).
        start_us: i64,
        /// Its score (largest moving blob, as a fraction of the picture).
        peak: f32,
    },
    /// The open activity range closed after the camera's merge gap of stillness, or because
    /// the capture is ending.
    ActivityEnded {
        /// The range's start.
        start_us: i64,
        /// Its last motion.
        end_us: i64,
        /// Its highest score.
        peak: f32,
        /// When that was.
        peak_us: i64,
    },
    /// The motion level of one second: the largest moving blob seen in it, as a fraction of
    /// the picture (0 when nothing moved).
    MotionLevel {
        /// Start of the second (µs since the epoch, a multiple of 1 000 000).
        second_us: i64,
        /// 0-1.
        level: f32,
    },
    /// How motion is analysed, sent when the child knows (once the source's video is linked)
    /// and whenever it changes.
    MotionPath {
        /// One of [`crate::activity::path::Path`]'s names: `picture`, `decode`, `keyframes`, `off`.
        path: String,
    },
    /// The pipeline failed; the child exits after sending this.
    Error {
        /// One line: what went wrong.
        message: String,
    },
}

impl Report {
    /// Serialises as one line (with the trailing newline).
    pub fn to_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }

    /// Parses one line; `None` for anything that is not a report (the supervisor ignores it).
    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line.trim()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Report::Progress { frames: 3, bytes: 10, last_pts_us: 5, width: 1280, height: 720 };
        assert_eq!(Report::parse(&r.to_line()), Some(r));
        assert_eq!(Report::parse("garbage"), None);
    }
}
