//! vigil: a camera server.
//!
//! # Data flow
//! ```text
//! camera ──► capture (child process, GStreamer) ──┐
//! WHIP publisher ──► ingest (webrtc-rs, in-process) ┴► segment files (.h264 + .idx)
//!                                                      │ tail (inotify)
//!                                                      ▼
//!                                         live::Hub (packetize once, GOP cache)
//!                                                      │ bounded fan-out
//!                                                      ▼
//!                                   WHEP viewers (webrtc-rs) ◄── http (axum, signaling)
//! ```
//! Data flows one way: capture → segment → live → http. Nothing downstream calls upstream;
//! the capture side can be any process that writes the segment format
//! (docs/segment-format.md).
//!
//! # Layout
//! - [`config`]: the TOML file.
//! - [`capture`]: pipelines, the capture child, the supervisor; the per-camera feed
//!   (keyframe requests up, WHIP audio down).
//! - [`ingest`]: WHIP publishers as cameras (depacketize, clock, segment writer).
//! - [`segment`]: the on-disk format: Annex-B, `.idx`, writer, tail reader.
//! - [`live`]: hubs, viewer sessions, the WHEP backend; [`media`]: the signaling backend
//!   that routes WHEP to live and WHIP to ingest.
//! - [`webrtc`]: peer connections, UDP ports, ICE restart and the RTCP tap, shared by live
//!   and ingest (which never reach into each other).
//! - [`http`]: the router; [`limits`]: request limits and the plain-HTTP listener;
//!   [`server`]: `vigil serve`; [`procfs`]: process gauges for leak checks.
//! - [`tls`]: HTTPS certificates (self-signed, files, ACME) and their renewal.
//! - [`auth`]: users, API tokens, sessions, shared links; the guard in front of the router.
//!
//! # Time
//! Every access unit carries its capture wall-clock time (µs since the Unix epoch, UTC) in
//! the `.idx` and in an SEI. RTP timestamps are derived from it (90 kHz), never from arrival.
//!
//! # Panics
//! A panic is a bug. No input (SDP, HTTP, segment bytes, config) may cause one; parsers of
//! untrusted bytes are tested with hostile input.
#![forbid(unsafe_code)]

pub mod activity;
pub mod auth;
pub mod capture;
pub mod config;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod history;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod live;
pub mod media;
pub mod procfs;
pub mod registry;
pub mod segment;
pub mod server;
pub mod tls;
pub mod webrtc;
