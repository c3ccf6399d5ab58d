//! The hub: one per camera. It owns the camera's tail reader, packetizes each access unit
//! into RTP payloads once (RFC 6184 via `rtc`'s H.264 payloader) and shares the result
//! with every viewer through a bounded broadcast ring (`bytes::Bytes`, no per-viewer copies).
//!
//! A slow viewer falls behind in the ring and is told how far (`Lagged`); it then goes on
//! from the newest frame and waits for the next keyframe, so it never slows the others nor
//! grows memory. (A viewer whose own connection falls behind does the same: `backlog.rs`.) New viewers get the
//! GOP cache first, so their first frame is the current keyframe.

use super::gop::GopCache;
use crate::segment::annexb::{find_capture_time, nal_type, nal_units};
use crate::segment::tail::Tail;
use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::packetizer::Payloader;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// RTP payload size: leaves room for the RTP header, SRTP tag and TURN/IPv6 overhead.
pub const RTP_MTU: usize = 1150;
/// Frames the broadcast ring holds: a viewer more than this far behind skips ahead.
pub const RING_FRAMES: usize = 90;
/// The GOP cache bound (a 10 s GOP at 30 fps).
pub const MAX_GOP_FRAMES: usize = 300;
/// Footage older than this is never shown as live: an AU whose capture time is further
/// behind the server's clock is not published (the last GOP of an old segment read at start,
/// a tail catching up after a stall), and a GOP cache with no new frame for this long is
/// dropped rather than shown to a new viewer (a camera that went offline). It allows for
/// pipeline latency and a WHIP publisher's clock skew (at most `ingest::clock::MAX_SR_SKEW`).
pub const STALE_AFTER_US: i64 = 2_000_000;

/// One access unit, packetized once, shared by all viewers.
#[derive(Debug)]
pub struct Frame {
    /// Capture time, µs since the epoch.
    pub pts_us: i64,
    /// RTP timestamp (90 kHz) derived from `pts_us`.
    pub rtp_ts: u32,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// RTP payloads in order; the last one carries the marker bit.
    pub payloads: Vec<Bytes>,
    /// AU size in bytes.
    pub bytes: usize,
}

/// The 90 kHz RTP clock from a µs wall-clock time (wrapping, as RTP timestamps do).
pub fn rtp_timestamp(pts_us: i64) -> u32 {
    (pts_us.wrapping_mul(9) / 100) as u32
}

struct Fanout {
    gop: GopCache,
    tx: broadcast::Sender<Arc<Frame>>,
}

/// A camera's live fan-out. See the module docs.
pub struct Hub {
    camera: String,
    fanout: Mutex<Fanout>,
    viewers: AtomicUsize,
    /// When the last frame was published (server clock, µs since the epoch).
    last_frame_wall_us: AtomicI64,
    profile_idc: AtomicU8,
}

impl Hub {
    /// A hub for `camera` (not yet reading; see [`Hub::run`]).
    pub fn new(camera: impl Into<String>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(RING_FRAMES);
        Arc::new(Self {
            camera: camera.into(),
            fanout: Mutex::new(Fanout { gop: GopCache::new(MAX_GOP_FRAMES), tx }),
            viewers: AtomicUsize::new(0),
            last_frame_wall_us: AtomicI64::new(0),
            profile_idc: AtomicU8::new(0),
        })
    }

    /// The camera name.
    pub fn camera(&self) -> &str {
        &self.camera
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Fanout> {
        self.fanout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached GOP and a receiver for what follows it, taken atomically so nothing is
    /// missed or repeated in between.
    /// A GOP with no new frame for [`STALE_AFTER_US`] is dropped instead: the viewer waits
    /// for the next keyframe rather than seeing a frozen picture as live.
    pub fn subscribe(&self) -> (Vec<Arc<Frame>>, broadcast::Receiver<Arc<Frame>>) {
        let mut g = self.lock();
        if now_us() - self.last_frame_wall_us.load(Ordering::Relaxed) > STALE_AFTER_US {
            g.gop.clear();
        }
        (g.gop.snapshot(), g.tx.subscribe())
    }

    /// Whether frames are arriving: a keyframe is cached and the last frame came within
    /// `max_age_ms` (only frames captured within [`STALE_AFTER_US`] are published at all).
    pub fn is_live(&self, max_age_ms: i64) -> bool {
        let last = self.last_frame_wall_us.load(Ordering::Relaxed);
        last != 0 && now_us() - last <= max_age_ms * 1000 && self.lock().gop.keyframe().is_some()
    }

    /// `profile_idc` of the stream's SPS (66 baseline, 77 main, 100 high), 0 until seen.
    pub fn profile_idc(&self) -> u8 {
        self.profile_idc.load(Ordering::Relaxed)
    }

    /// Viewers currently attached.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Counts a viewer in; the guard counts it out when dropped.
    pub fn viewer_guard(self: &Arc<Self>) -> ViewerGuard {
        let n = self.viewers.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("vigil_viewers", "camera" => self.camera.clone()).set(n as f64);
        ViewerGuard(self.clone())
    }

    /// Publishes one frame to the GOP cache and all viewers.
    pub fn publish(&self, frame: Arc<Frame>) {
        self.last_frame_wall_us.store(now_us(), Ordering::Relaxed);
        let mut g = self.lock();
        g.gop.push(frame.clone());
        // No receivers is fine: nobody is watching.
        let _ = g.tx.send(frame);
    }

    /// Reads the camera's segments forever, publishing each AU.
    pub async fn run(self: Arc<Self>, camera_dir: PathBuf) {
        let mut tail = Tail::live(camera_dir);
        let mut payloader = H264Payloader::default();
        let latency = metrics::histogram!("vigil_au_latency_seconds", "camera" => self.camera.clone());
        let frames_in = metrics::counter!("vigil_frames_read_total", "camera" => self.camera.clone());
        let stale = metrics::counter!("vigil_live_stale_frames_total", "camera" => self.camera.clone());
        let mut skipping = false;
        let mut last_segment = 0i64;
        loop {
            let au = tail.next().await;
            if au.segment_start_us != last_segment {
                last_segment = au.segment_start_us;
                tracing::debug!(camera = %self.camera, segment = au.segment_start_us, "live tail on new segment");
            }
            if au.keyframe
                && let Some(sps) = nal_units(&au.data).find(|n| nal_type(n) == 7)
                && let Some(&p) = sps.get(1)
            {
                self.profile_idc.store(p, Ordering::Relaxed);
            }
            let capture_us = find_capture_time(&au.data).unwrap_or(au.pts_us);
            let age_us = now_us() - capture_us;
            frames_in.increment(1);
            if age_us > STALE_AFTER_US {
                // Old footage is history, not live.
                stale.increment(1);
                if !skipping {
                    tracing::debug!(camera = %self.camera, age_ms = age_us / 1000, "not showing old footage as live");
                    skipping = true;
                }
                continue;
            }
            skipping = false;
            latency.record(age_us.max(0) as f64 / 1e6);
            let payloads = match payloader.payload(RTP_MTU, &au.data) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(camera = %self.camera, error = %e, "packetizing AU");
                    continue;
                }
            };
            self.publish(Arc::new(Frame {
                pts_us: au.pts_us,
                rtp_ts: rtp_timestamp(au.pts_us),
                keyframe: au.keyframe,
                bytes: au.data.len(),
                payloads,
            }));
        }
    }
}

/// Keeps a viewer counted while alive.
pub struct ViewerGuard(Arc<Hub>);

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        let n = self.0.viewers.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!("vigil_viewers", "camera" => self.0.camera.clone()).set(n as f64);
    }
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_clock_is_90khz() {
        assert_eq!(rtp_timestamp(1_000_000), 90_000);
        assert_eq!(rtp_timestamp(1_000_000 + 33_333), 90_000 + 2_999);
        // Wraps rather than panics for real wall-clock times.
        let t = 1_795_305_600_000_000i64;
        assert_eq!(rtp_timestamp(t + 1_000_000).wrapping_sub(rtp_timestamp(t)), 90_000);
    }

    #[tokio::test]
    async fn slow_viewer_lags_without_blocking_publish() {
        let hub = Hub::new("t");
        let (gop, mut rx) = hub.subscribe();
        assert!(gop.is_empty());
        // tokio rounds the ring up to a power of two; 4x is over it whatever the rounding.
        for i in 0..(4 * RING_FRAMES as i64) {
            hub.publish(Arc::new(Frame { pts_us: i, rtp_ts: 0, keyframe: i % 30 == 0, payloads: vec![], bytes: 0 }));
        }
        assert!(matches!(rx.recv().await, Err(broadcast::error::RecvError::Lagged(n)) if n > 0));
        let (gop, _) = hub.subscribe();
        assert_eq!(gop.first().map(|f| f.pts_us), Some((4 * RING_FRAMES as i64 - 1) / 30 * 30));
    }

    #[test]
    fn a_gop_with_no_new_frame_is_not_handed_to_new_viewers() {
        let hub = Hub::new("c");
        let key = Arc::new(Frame { pts_us: now_us(), rtp_ts: 0, keyframe: true, payloads: vec![], bytes: 0 });
        hub.publish(key);
        assert_eq!(hub.subscribe().0.len(), 1, "a fresh GOP starts a new viewer at once");
        assert!(hub.is_live(5_000));
        // The source went quiet (a WHIP publisher left, a capture died) 3 s ago.
        hub.last_frame_wall_us.store(now_us() - 3_000_000, Ordering::Relaxed);
        assert!(hub.subscribe().0.is_empty(), "a frozen GOP is not shown as live");
        assert!(!hub.is_live(5_000), "and the camera no longer reads as live");
    }
}
