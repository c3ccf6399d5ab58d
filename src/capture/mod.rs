//! Capture: turns a camera (test pattern, V4L2, libcamera, RTSP, file, any GStreamer
//! description) into segment files, in a supervised child process.
//!
//! Owns: GStreamer pipelines (`pipeline.rs`), the `vigil capture` child (`child.rs`), the
//! line protocol between child and server (`report.rs`), and the supervisor that restarts
//! children (`supervisor.rs`, `status.rs`), and probing a source before it becomes a camera
//! (`probe.rs`: a capture child in a scratch folder; the local device list), and the
//! child's motion branch (`motion.rs`: grey pictures from before the encoder into
//! [`crate::activity`], its verdicts reported to the supervisor), and the `vigil analyse`
//! child (`analyse.rs`: the same analysis for H.264 the server ingests itself). Writes through
//! `segment::writer`. Camera settings come from the registry, handed to each child on its
//! standard input; nothing here reads vigil.toml.
//! Must not touch: viewers, WebRTC, HTTP. Nothing here reads segments back.

pub mod analyse;
pub mod child;
pub mod feed;
pub mod motion;
pub mod pipeline;
pub mod probe;
pub mod report;
pub mod status;
pub mod supervisor;
