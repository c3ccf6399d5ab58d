//! Activity: what moved, and when. The detectors that turn pictures ([`picture`]) and access
//! unit sizes ([`bitstream`]) into a motion score, and the tracker that turns scores into
//! activity ranges ([`ranges`]): open at the first confirmed motion, closed after a gap of
//! stillness, with the moment and score of peak motion.
//!
//! Owns: the analysis and the range rules. Must not touch: capture pipelines (they hand this
//! room small grey pictures and sizes), the index and the HTTP API (they store and serve what
//! this room decides), and the event bus (its callers publish).
//!
//! Runs on the capture/ingest side, never in the HTTP path.

pub mod bitstream;
pub mod path;
pub mod picture;
pub mod ranges;

/// What the capture side decided about one camera, on its way to the index and the event bus
/// (the capture supervisor relays its child's reports; history stores them and publishes).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// An activity range opened.
    Started {
        /// Camera name.
        camera: String,
        /// First confirmed motion (capture time, µs since the epoch).
        start_us: i64,
        /// Its score.
        peak: f32,
    },
    /// The open range closed.
    Ended {
        /// Camera name.
        camera: String,
        /// The range's start.
        start_us: i64,
        /// Its last motion.
        end_us: i64,
        /// Highest score.
        peak: f32,
        /// When that was.
        peak_us: i64,
    },
    /// One second's motion level (0-1).
    Level {
        /// Camera name.
        camera: String,
        /// Start of the second (µs, a multiple of 1 000 000).
        second_us: i64,
        /// The largest moving blob seen in it, as a fraction of the picture.
        level: f32,
    },
    /// The analysis of this camera stopped without closing its range (the capture process
    /// died): an open range ends at the last motion level seen.
    Stopped {
        /// Camera name.
        camera: String,
    },
}

/// Where the capture side sends [`Update`]s; `None` drops them.
pub type Sink = Option<tokio::sync::mpsc::UnboundedSender<Update>>;
