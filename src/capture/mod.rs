//! Capture: turns a camera (test pattern, V4L2, libcamera, RTSP, file, any GStreamer
//! description) into segment files, in a supervised child process.
//!
//! Owns: GStreamer pipelines (`pipeline.rs`), the `vigil capture` child (`child.rs`), the
//! line protocol between child and server (`report.rs`), and the supervisor that restarts
//! children (`supervisor.rs`, `status.rs`). Writes through `segment::writer`.
//! Must not touch: viewers, WebRTC, HTTP. Nothing here reads segments back.

pub mod child;
pub mod feed;
pub mod pipeline;
pub mod report;
pub mod status;
pub mod supervisor;
