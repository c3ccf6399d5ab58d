//! The segment writer of one WHIP camera: a plain thread (file I/O and fsync must not stall
//! the async runtime) that owns the camera's [`SegmentWriter`] for the server's lifetime, so
//! publishers come and go without two writers ever touching the camera's folder.
//!
//! It does for a publisher what `vigil capture` does for a camera: normalise each AU
//! (AUD, capture-time SEI, SPS/PPS before IDRs), write it, report segment open/close to the
//! history index and stream figures to the camera status. A publisher ending closes the
//! segment (fsync of both files and the folder) right away. With motion on, each AU written
//! also goes to the publisher session's analysis child ([`super::analysis`]).

use crate::capture::status::{CameraState, CameraStatus, RateMeter};
use crate::capture::supervisor::EventSink;
use crate::segment::annexb::AuNormalizer;
use crate::segment::event::SegmentEvent;
use crate::segment::writer::{ClosedSegment, SegmentWriter};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// AUs queued for the writer at most (about 4 s at 30 fps); a publisher that outruns the
/// disk loses AUs (and waits for a keyframe) instead of growing memory.
pub const QUEUE: usize = 128;
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// What the writer thread is told.
#[derive(Debug)]
pub enum Command {
    /// One Annex-B access unit and its capture time.
    Au {
        /// The AU (any start codes; it is normalised here).
        data: Vec<u8>,
        /// Capture time, µs since the epoch.
        capture_us: i64,
    },
    /// The publisher is gone: close the current segment.
    EndOfStream {
        /// Why (for the camera status).
        reason: String,
    },
    /// The server is stopping: close the segment and end the thread.
    Stop,
}

/// A handle to the writer thread. Dropping every handle stops the thread (closing the segment).
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Command>,
    /// Set to true by the thread when it has closed its segment and ended.
    done: tokio::sync::watch::Receiver<bool>,
}

/// Why a command was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The writer is behind by [`QUEUE`] AUs.
    #[error("segment writer is behind; AU dropped")]
    Full,
    /// The writer thread ended (a disk error); see the log and the camera status.
    #[error("segment writer stopped")]
    Stopped,
}

impl Recorder {
    /// Starts the writer thread for `camera`, writing under `camera_dir`.
    pub fn spawn(
        camera: String,
        camera_dir: PathBuf,
        segment_seconds: f64,
        events: EventSink,
        status: Arc<CameraStatus>,
        motion: Option<super::analysis::Spec>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(QUEUE);
        let (done_tx, done) = tokio::sync::watch::channel(false);
        if motion.is_none() {
            status.set_motion_path(crate::activity::path::Path::Off.as_str());
        }
        std::thread::Builder::new().name(format!("whip-writer-{camera}")).spawn(move || {
            let mut w = Writer::new(camera, camera_dir, segment_seconds, events, status);
            w.motion = motion;
            w.run(rx);
            let _ = done_tx.send(true);
        })?;
        Ok(Self { tx, done })
    }

    /// Asks the thread to close the segment and end, waiting for room in the queue.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }

    /// Asks the thread to close the segment and end, and waits (at most 10 s) until it has.
    pub async fn stop_and_wait(&self) {
        let tx = self.tx.clone();
        // `send` blocks while the queue is full: off the async threads.
        let _ = tokio::task::spawn_blocking(move || tx.send(Command::Stop)).await;
        let mut done = self.done.clone();
        if tokio::time::timeout(Duration::from_secs(10), done.wait_for(|d| *d)).await.is_err() {
            tracing::warn!("WHIP segment writer did not stop within 10 s");
        }
    }

    /// Queues a command without blocking.
    pub fn send(&self, cmd: Command) -> Result<(), SendError> {
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Full,
            TrySendError::Disconnected(_) => SendError::Stopped,
        })
    }
}

struct Writer {
    camera: String,
    writer: SegmentWriter,
    normalizer: AuNormalizer,
    events: EventSink,
    status: Arc<CameraStatus>,
    rate: RateMeter,
    frames: u64,
    bytes: u64,
    last_pts_us: i64,
    size: (u32, u32),
    last_report: Instant,
    failed: bool,
    motion: Option<super::analysis::Spec>,
    /// This publisher session's analysis; `Err` after it could not start (not retried until
    /// the next session).
    analysis: Option<Result<super::analysis::Analysis, ()>>,
}

impl Writer {
    fn new(
        camera: String,
        camera_dir: PathBuf,
        segment_seconds: f64,
        events: EventSink,
        status: Arc<CameraStatus>,
    ) -> Self {
        Self {
            writer: SegmentWriter::new(camera_dir, segment_seconds),
            camera,
            normalizer: AuNormalizer::new(),
            events,
            status,
            rate: RateMeter::default(),
            frames: 0,
            bytes: 0,
            last_pts_us: 0,
            size: (0, 0),
            last_report: Instant::now(),
            failed: false,
            motion: None,
            analysis: None,
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Au { data, capture_us } => self.write(&data, capture_us),
                Command::EndOfStream { reason } => {
                    self.close();
                    self.end_analysis();
                    self.normalizer = AuNormalizer::new();
                    self.status.set_state(CameraState::Offline, Some(reason));
                }
                Command::Stop => break,
            }
        }
        self.close();
        self.end_analysis();
    }

    /// Hands a written AU to the session's analysis, starting it at the session's first.
    fn analyse(&mut self, au: &[u8], capture_us: i64) {
        let Some(spec) = &self.motion else { return };
        let analysis = self.analysis.get_or_insert_with(|| {
            super::analysis::Analysis::start(spec, self.status.clone()).map_err(|e| {
                tracing::error!(camera = %self.camera, error = %e, "starting motion analysis");
            })
        });
        if let Ok(a) = analysis {
            a.push(au, capture_us);
        }
    }

    fn end_analysis(&mut self) {
        if let Some(Ok(a)) = self.analysis.take() {
            a.finish();
        }
    }

    fn write(&mut self, au: &[u8], capture_us: i64) {
        if self.failed {
            return;
        }
        let au = self.normalizer.normalize(au, capture_us);
        if !au.has_picture {
            return;
        }
        if au.keyframe {
            // Browsers change resolution with the bandwidth estimate: read it at every IDR.
            self.size = self
                .normalizer
                .sps()
                .and_then(|s| crate::history::h264::parse_sps(s).ok())
                .map_or((0, 0), |i| (u32::from(i.width), u32::from(i.height)));
        }
        match self.writer.push(&au.data, capture_us, au.keyframe) {
            Ok(o) => {
                if let Some(c) = o.closed {
                    self.closed(c);
                }
                if let Some(f) = o.opened {
                    self.send(SegmentEvent::Opened { camera: self.camera.clone(), start_us: f.start_us, data: f.data });
                }
                if o.written {
                    self.analyse(&au.data, capture_us);
                    if self.frames == 0 {
                        self.status.set_state(CameraState::Running, None);
                    }
                    self.frames += 1;
                    self.bytes += au.data.len() as u64;
                    self.last_pts_us = capture_us;
                }
            }
            Err(e) => {
                tracing::error!(camera = %self.camera, error = %e, "writing segment");
                self.status.set_state(CameraState::Failed, Some(format!("writing segment: {e}")));
                self.failed = true;
                // The index finalises whatever was left open.
                self.send(SegmentEvent::WriterGone { camera: self.camera.clone() });
            }
        }
        if self.last_report.elapsed() >= REPORT_EVERY {
            self.last_report = Instant::now();
            let (fps, kbps) = self.rate.update(self.frames, self.bytes);
            self.status.set_stream(self.last_pts_us, fps, kbps, self.size.0, self.size.1);
        }
    }

    fn close(&mut self) {
        match self.writer.finish() {
            Ok(Some(c)) => self.closed(c),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(camera = %self.camera, error = %e, "closing segment");
                self.send(SegmentEvent::WriterGone { camera: self.camera.clone() });
            }
        }
        self.failed = false;
        self.size = (0, 0);
    }

    fn closed(&self, c: ClosedSegment) {
        self.send(SegmentEvent::Closed {
            camera: self.camera.clone(),
            start_us: c.files.start_us,
            last_pts_us: c.last_pts_us,
            frames: c.frames,
            bytes: c.bytes,
            data: c.files.data,
        });
    }

    fn send(&self, e: SegmentEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(e);
        }
    }
}
