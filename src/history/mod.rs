//! Recorded history: the index of what the segment store holds, its upkeep, and playback
//! and export of it without transcoding.
//!
//! Index and upkeep (docs/history.md):
//! - [`index`]: every SQL statement (SQLite or PostgreSQL through sqlx `Any`); [`cache`]: the
//!   in-memory copy of each camera's segment times that listings read.
//! - [`service`]: segment events → rows, crash recovery, retention and garbage collection.
//! - [`retention`]: the sans-IO retention planner.
//! - [`activity`]: activity ranges and motion levels from the capture side → rows and
//!   `activity_start`/`activity_end` events; [`activity_api`]: their routes.
//! - [`api`]: the HTTP routes (recordings, `video.mp4`, `snapshot.jpg`, `thumbnail.jpg`);
//!   [`time`]: times in requests, bounded; [`listing`]: runs and the listing JSON;
//!   [`snapshot`]: JPEGs; [`thumbnail`]: one per segment, made when it closes.
//! - [`synth`]: a synthetic archive (copies of one real segment) for benchmarks.
//!
//! Muxing: builds MP4 files and fMP4 (MSE) segments on the fly from `.h264` + `.idx`
//! (Moonfire-style: an immutable file of slices served per byte range, a format version in
//! the ETag, a golden test and a text view of the box tree).
//! - [`plan`]: which AUs of which segments make up a time range; sizes, durations, edit.
//! - [`mp4`]: the progressive `.mp4` (moov first, HTTP Range).
//! - [`fmp4`]: init segments and one media fragment per GOP for MSE.
//! - [`h264`]: SPS parsing, `avcC`, Annex-B → length-prefixed samples.
//! - [`boxes`]: the ISO BMFF box writer; [`dump`]: the box tree as text.
//!
//! The muxers above must not touch: the segment writer or tail (they read segments through
//! [`plan::ByteSource`] and `.idx` records only), capture, live, HTTP routing (handlers call
//! them from a blocking thread; reads are synchronous `pread`s), the index database (callers
//! hand them the segments of a range).
//!
//! Typical use from a handler:
//! ```no_run
//! # fn f(files: &[vigil::segment::path::SegmentFiles], start_us: i64, end_us: i64) -> Result<(), vigil::history::MuxError> {
//! use vigil::history::{mp4::Mp4File, plan::{FileSource, Plan, load_segment}};
//! let segments = files.iter().map(load_segment).collect::<Result<Vec<_>, _>>()?;
//! let source = FileSource::new();
//! let file = Mp4File::new(Plan::build(&segments, start_us..end_us, &source)?)?;
//! let (len, etag) = (file.len(), file.etag().to_owned());
//! for chunk in file.read_range(0..len.min(1 << 20), &source)? {
//!     let _bytes = chunk?; // send
//! }
//! # Ok(()) }
//! ```
//!
//! Specs: ISO/IEC 14496-12 (ISO BMFF), ISO/IEC 14496-15 (AVC in ISO BMFF), ITU-T H.264.

pub mod activity;
pub mod activity_api;
pub mod api;
pub mod boxes;
pub mod cache;
pub mod dump;
pub mod error;
pub mod fmp4;
pub mod h264;
pub mod index;
pub mod listing;
pub mod mp4;
pub mod plan;
pub mod retention;
pub mod service;
pub mod snapshot;
pub mod synth;
pub mod thumbnail;
pub mod time;

pub use error::MuxError;

// Nothing in history may be called by capture or live: data flows capture → segment →
// {live, history} → http.
