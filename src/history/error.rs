//! The one error type of the muxers ([`MuxError`]), with enough context (file, offset) to find
//! the offending bytes. Each variant's doc names the HTTP status a handler should answer with.

use std::path::PathBuf;

/// Why an MP4 / fMP4 could not be planned or served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// Reading a segment's data or index failed (500; 404 if the file is gone and the index
    /// should be asked again).
    #[error("reading {path} at byte {offset} ({len} bytes): {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Where the read started.
        offset: u64,
        /// How many bytes were wanted.
        len: u64,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the output failed (the client went away; nothing to answer).
    #[error("writing the output: {0}")]
    Output(#[source] std::io::Error),
    /// A `.idx` record is not plausible: out of order, overlapping, too large (500).
    #[error("{path}: record {record}: {reason}")]
    Index {
        /// The segment's data file.
        path: PathBuf,
        /// The record's number in the segment.
        record: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bytes of an access unit are not what the index and the segment contract promise:
    /// a keyframe without SPS/PPS, an unparsable SPS, or an AU whose length-prefixed form is
    /// not the size planned (the file changed or breaks the contract) (500).
    #[error("{path} at byte {offset}: {reason}")]
    Data {
        /// The segment's data file.
        path: PathBuf,
        /// The AU's offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// `start >= end` (400).
    #[error("empty time range {start_us}..{end_us}")]
    EmptyRange {
        /// Requested start, µs since the epoch.
        start_us: i64,
        /// Requested end, µs since the epoch.
        end_us: i64,
    },
    /// Nothing was recorded in the range, or no keyframe to start from (404).
    #[error("no recorded video to play in the requested range")]
    NoSamples,
    /// The range holds more samples or bytes than one file may (413 / 400: ask for less).
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// A byte range outside the file (416).
    #[error("byte range {start}..{end} is not within the file's {len} bytes")]
    RangeNotSatisfiable {
        /// First byte wanted.
        start: u64,
        /// One past the last byte wanted.
        end: u64,
        /// The file's length.
        len: u64,
    },
}
