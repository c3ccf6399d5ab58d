//! WHIP ingest: cameras with `source = "whip"` are fed by a WHIP (RFC 9725) publisher (OBS,
//! GStreamer, a browser, a phone) instead of a capture process.
//!
//! Owns: publisher sessions (`publisher.rs`, webrtc-rs receive-only peer connections), RTP →
//! access units (`depacketize.rs`), RTP → capture time (`clock.rs`) and one segment writer
//! thread per WHIP camera (`recorder.rs`), and the WHIP side of the signaling backend
//! (`whip.rs`: tokens, one publisher per camera), and each publisher's motion analysis
//! (`analysis.rs`: a `vigil analyse` child fed the AUs written). What it writes is a
//! camera's segments like any other, so recording, history and live viewing (tail → hub)
//! need nothing special.
//! Opus audio from the publisher goes to live viewers through the camera's
//! [`crate::capture::feed::CameraFeed`]; it is not recorded (see docs/whip.md).
//! Must not touch: the history index (it only sends segment events), HTTP routing.

pub mod analysis;
pub mod clock;
pub mod depacketize;
pub mod publisher;
pub mod recorder;
pub mod whip;
