//! The segment store: the on-disk format that is the contract between capture and
//! everything downstream (docs/segment-format.md).
//!
//! Owns: Annex-B/AU/SEI parsing (`annexb.rs`), the `.idx` record (`idx.rs`), file layout
//! (`path.rs`), the writer (`writer.rs`) and the tail reader (`tail.rs`).
//! Must not touch: GStreamer, WebRTC, HTTP, the index database.

pub mod annexb;
pub mod event;
pub mod idx;
pub mod lease;
pub mod path;
pub mod tail;
pub mod writer;
