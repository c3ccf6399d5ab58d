//! WebRTC plumbing shared by live viewing (WHEP, `live/`) and ingest (WHIP, `ingest/`): peer
//! connections with vigil's network settings ([`peer`]), UDP port hand-out and session ids
//! ([`net`]), one UDP port (and one ICE-TCP port) shared by every connection
//! ([`mux`], [`tcp`], [`runtime`]), ICE restart
//! ([`ice`]), and the interceptor that hands inbound RTCP to the application ([`rtcp_tap`]).
//!
//! Owns: how a peer connection is built and reached. Must not touch: media (what a viewer
//! is sent, what a publisher's stream becomes) and cameras; `live/` and `ingest/` use this
//! room and never each other.
//!
//! Within this room, `webrtc::...` paths name the webrtc-rs crate, not this module.

pub mod ice;
pub mod mux;
pub mod net;
pub mod peer;
pub mod rtcp_tap;
pub mod runtime;
pub mod tcp;
