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
pub mod picture;
pub mod ranges;
