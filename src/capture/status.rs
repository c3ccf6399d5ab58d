//! A camera's capture state as the supervisor sees it, shared with the HTTP API.

use serde::Serialize;
use std::sync::Mutex;
use std::time::Instant;

/// Where a camera's capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraState {
    /// The capture process is starting and has produced no frame yet.
    Starting,
    /// Frames are being written.
    Running,
    /// The capture ended and will be restarted after a backoff.
    Restarting,
    /// Repeated failures without any frame; still retried, at the maximum backoff.
    Failed,
    /// A WHIP camera with no publisher connected.
    Offline,
    /// Switched off (`enabled = false`): nothing runs.
    Stopped,
}

impl CameraState {
    /// The state's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CameraState::Starting => "starting",
            CameraState::Running => "running",
            CameraState::Restarting => "restarting",
            CameraState::Failed => "failed",
            CameraState::Offline => "offline",
            CameraState::Stopped => "stopped",
        }
    }
}

/// A snapshot of [`CameraStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct StatusSnapshot {
    /// State.
    pub state: CameraState,
    /// Why the last capture ended, if it did.
    pub last_error: Option<String>,
    /// Milliseconds since the last frame was written (None before the first).
    pub last_frame_age_ms: Option<u64>,
    /// Frames per second over the last report interval.
    #[serde(rename = "video_fps")]
    pub fps: f64,
    /// Kilobits per second over the last report interval.
    #[serde(rename = "video_kbps")]
    pub bitrate_kbps: f64,
    /// Picture width (0 until known).
    #[serde(rename = "video_width")]
    pub width: u32,
    /// Picture height.
    #[serde(rename = "video_height")]
    pub height: u32,
    /// Capture restarts since the server started.
    pub restarts: u64,
    /// How motion is analysed (`picture`, `decode`, `keyframes`, `off`); None until the
    /// capture has said, and for sources nothing analyses.
    pub motion_path: Option<String>,
}

#[derive(Debug)]
struct Inner {
    state: CameraState,
    last_error: Option<String>,
    last_frame_at: Option<Instant>,
    last_pts_us: i64,
    fps: f64,
    kbps: f64,
    width: u32,
    height: u32,
    restarts: u64,
    motion_path: Option<String>,
}

/// Shared, updated by the supervisor, read by the API. With [`CameraStatus::publishing`],
/// every change of state is also a `camera_state` event on the bus.
#[derive(Debug)]
pub struct CameraStatus(Mutex<Inner>, Option<(crate::events::Bus, String)>);

impl Default for CameraStatus {
    fn default() -> Self {
        Self::new(None)
    }
}

impl CameraStatus {
    /// A status that publishes its state changes for `camera` on `bus`.
    pub fn publishing(camera: &str, bus: crate::events::Bus) -> Self {
        Self::new(Some((bus, camera.to_owned())))
    }

    fn new(events: Option<(crate::events::Bus, String)>) -> Self {
        Self(
            Mutex::new(Inner {
                state: CameraState::Starting,
                last_error: None,
                last_frame_at: None,
                last_pts_us: 0,
                fps: 0.0,
                kbps: 0.0,
                width: 0,
                height: 0,
                restarts: 0,
                motion_path: None,
            }),
            events,
        )
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the state; `error` replaces the last error when given.
    pub fn set_state(&self, state: CameraState, error: Option<String>) {
        let mut g = self.lock();
        if g.state != state
            && let Some((bus, camera)) = &self.1
        {
            let reason =
                if state == CameraState::Running { None } else { error.clone().or_else(|| g.last_error.clone()) };
            bus.publish(Some(camera), crate::events::EventKind::CameraState { state: state.as_str().into(), reason });
        }
        g.state = state;
        if error.is_some() {
            g.last_error = error;
        }
        if state != CameraState::Running {
            g.fps = 0.0;
            g.kbps = 0.0;
        }
    }

    /// Records one restart.
    pub fn record_restart(&self) {
        self.lock().restarts += 1;
    }

    /// Updates stream figures from a progress report.
    pub fn set_stream(&self, last_pts_us: i64, fps: f64, kbps: f64, width: u32, height: u32) {
        let mut g = self.lock();
        if last_pts_us != g.last_pts_us && last_pts_us != 0 {
            g.last_pts_us = last_pts_us;
            g.last_frame_at = Some(Instant::now());
        }
        g.fps = fps;
        g.kbps = kbps;
        if width != 0 {
            g.width = width;
            g.height = height;
        }
    }

    /// Records how the capture analyses motion.
    pub fn set_motion_path(&self, path: &str) {
        let mut g = self.lock();
        if g.motion_path.as_deref() != Some(path) {
            g.motion_path = Some(path.to_owned());
        }
    }

    /// A copy for the API.
    pub fn snapshot(&self) -> StatusSnapshot {
        let g = self.lock();
        StatusSnapshot {
            state: g.state,
            last_error: g.last_error.clone(),
            last_frame_age_ms: g.last_frame_at.map(|t| t.elapsed().as_millis() as u64),
            fps: (g.fps * 10.0).round() / 10.0,
            bitrate_kbps: (g.kbps * 10.0).round() / 10.0,
            width: g.width,
            height: g.height,
            restarts: g.restarts,
            motion_path: g.motion_path.clone(),
        }
    }
}

/// Turns running totals into rates between reports.
#[derive(Debug, Default)]
pub struct RateMeter {
    last: Option<(Instant, u64, u64)>,
}

impl RateMeter {
    /// Feeds totals; returns (frames/s, kbit/s) since the previous call.
    pub fn update(&mut self, frames: u64, bytes: u64) -> (f64, f64) {
        let now = Instant::now();
        let out = match self.last {
            Some((t, f, b)) if now > t && frames >= f && bytes >= b => {
                let dt = (now - t).as_secs_f64();
                ((frames - f) as f64 / dt, (bytes - b) as f64 * 8.0 / 1000.0 / dt)
            }
            _ => (0.0, 0.0),
        };
        self.last = Some((now, frames, bytes));
        out
    }
}
