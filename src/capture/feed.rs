//! What flows between a camera's source and its live viewers outside the segment files:
//! keyframe requests going up (a viewer joined with an empty GOP cache, or sent a PLI) and,
//! for WHIP cameras, the publisher's Opus audio coming down (relayed live, not recorded).
//!
//! One [`CameraFeed`] per camera, created by the server and shared by the source (WHIP
//! ingest today; a capture child could answer keyframe requests the same way) and the
//! live viewers. Neither side waits for the other: requests coalesce, audio is a lossy ring.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Notify, broadcast};

/// Opus packets the audio ring holds (20 ms each: 2 s).
pub const AUDIO_RING: usize = 100;

/// One Opus RTP payload from the publisher.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    /// The Opus payload.
    pub payload: Bytes,
    /// The publisher's RTP timestamp (48 kHz).
    pub rtp_ts: u32,
    /// The publisher's marker bit.
    pub marker: bool,
}

/// See the module docs.
pub struct CameraFeed {
    keyframe: Notify,
    audio: broadcast::Sender<AudioPacket>,
    fed_by_publisher: AtomicBool,
}

impl Default for CameraFeed {
    fn default() -> Self {
        Self {
            keyframe: Notify::new(),
            audio: broadcast::channel(AUDIO_RING).0,
            fed_by_publisher: AtomicBool::new(false),
        }
    }
}

impl CameraFeed {
    /// Asks the source for a keyframe soon (coalesced: many requests, one keyframe).
    pub fn request_keyframe(&self) {
        self.keyframe.notify_one();
    }

    /// Resolves at the next keyframe request.
    pub async fn keyframe_requested(&self) {
        self.keyframe.notified().await;
    }

    /// Sends one audio packet to every listening viewer (none listening is fine).
    pub fn publish_audio(&self, p: AudioPacket) {
        let _ = self.audio.send(p);
    }

    /// Audio packets from now on.
    pub fn subscribe_audio(&self) -> broadcast::Receiver<AudioPacket> {
        self.audio.subscribe()
    }

    /// Whether a WHIP publisher feeds this camera (it may carry audio, and it may be offline
    /// for a while without anything being wrong).
    pub fn fed_by_publisher(&self) -> bool {
        self.fed_by_publisher.load(Ordering::Relaxed)
    }

    /// Marks the camera as fed by a WHIP publisher.
    pub fn set_fed_by_publisher(&self, v: bool) {
        self.fed_by_publisher.store(v, Ordering::Relaxed);
    }
}
