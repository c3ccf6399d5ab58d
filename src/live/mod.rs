//! Live: from the newest segment of each camera to WHEP viewers over WebRTC.
//!
//! Owns: the per-camera [`hub::Hub`] (tail reader → packetize once → bounded fan-out with a
//! GOP cache), viewer sessions on webrtc-rs (`session.rs`, with `backlog.rs` bounding how
//! far behind a viewer's connection may fall) and the WHEP backend that the `signaling` crate
//! calls (`whep.rs`). Reads segments through `segment::tail` only.
//! Must not touch: capture processes, the history index, HTTP routing.
//!
//! Specs: RFC 6184 (H.264 RTP payload), RFC 3550 (RTP), WHEP (draft-ietf-wish-whep).

pub mod backlog;
pub mod gop;
pub mod hub;
pub mod session;
pub mod whep;
