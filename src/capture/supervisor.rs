//! The capture supervisor (in `vigil serve`): keeps one `vigil capture` child per camera
//! running. A child that exits, fails, or produces no access unit for [`STALL_TIMEOUT`] is
//! restarted with exponential backoff; one that ignores SIGTERM is killed after
//! [`TERM_GRACE`]. The camera's state is published in a [`CameraStatus`].

use super::report::Report;
use super::status::{CameraState, CameraStatus};
use crate::segment::event::SegmentEvent;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// No new AU for this long after the first one: the child is hung.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed from start to the first AU (RTSP connects, encoders warm up).
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a child gets to exit after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// After this many consecutive failures without a frame, the state reads `failed`
/// (restarts continue at the maximum backoff).
const FAILED_AFTER: u32 = 5;

/// Where segment events go (the history index); `None` drops them.
pub type EventSink = Option<tokio::sync::mpsc::UnboundedSender<SegmentEvent>>;

/// How to start a capture child.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The `vigil` executable.
    pub exe: PathBuf,
    /// The config file the server was started with, if any.
    pub config: Option<PathBuf>,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl ChildCommand {
    fn command(&self, camera: &str) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("capture").arg("--camera").arg(camera).arg("--data-dir").arg(&self.data_dir);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        c
    }
}

/// Supervises one camera until `shutdown` fires. Never returns early on a child failure.
pub async fn supervise(
    camera: String,
    cmd: ChildCommand,
    status: Arc<CameraStatus>,
    events: EventSink,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        status.set_state(CameraState::Starting, None);
        let started = Instant::now();
        let outcome = match cmd.command(&camera).spawn() {
            Ok(child) => run_child(&camera, child, &status, &events, &mut shutdown).await,
            Err(e) => ChildOutcome::Failed(format!("cannot start capture process: {e}"), false),
        };
        send(&events, SegmentEvent::WriterGone { camera: camera.clone() });
        let (reason, produced) = match outcome {
            ChildOutcome::Shutdown => return,
            ChildOutcome::Failed(reason, produced) => (reason, produced),
        };
        status.record_restart();
        metrics::counter!("vigil_capture_restarts_total", "camera" => camera.clone()).increment(1);
        if produced || started.elapsed() >= HEALTHY_RUN {
            backoff = BACKOFF_MIN;
            failures = 0;
        } else {
            failures += 1;
        }
        let state = if failures >= FAILED_AFTER { CameraState::Failed } else { CameraState::Restarting };
        tracing::warn!(camera, %reason, retry_in_ms = backoff.as_millis() as u64, "capture ended; restarting");
        status.set_state(state, Some(reason));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum ChildOutcome {
    Shutdown,
    /// Why it ended, and whether it produced frames before.
    Failed(String, bool),
}

fn send(events: &EventSink, e: SegmentEvent) {
    if let Some(tx) = events {
        // A closed receiver means nobody indexes; recording goes on regardless.
        let _ = tx.send(e);
    }
}

async fn run_child(
    camera: &str,
    mut child: Child,
    status: &CameraStatus,
    events: &EventSink,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> ChildOutcome {
    let Some(stdout) = child.stdout.take() else {
        return ChildOutcome::Failed("capture process has no stdout".into(), false);
    };
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut last_frames = 0u64;
    let mut last_progress = Instant::now();
    let mut produced = false;
    let mut last_error: Option<String> = None;
    let mut rate = super::status::RateMeter::default();
    loop {
        let limit = if produced { STALL_TIMEOUT } else { START_TIMEOUT };
        let deadline = tokio::time::Instant::from_std(last_progress + limit);
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => match Report::parse(&line) {
                    Some(Report::Progress { frames, bytes, last_pts_us, width, height }) => {
                        if frames > last_frames {
                            last_frames = frames;
                            last_progress = Instant::now();
                            if !produced {
                                produced = true;
                                tracing::info!(camera, width, height, "capture running");
                            }
                            status.set_state(CameraState::Running, None);
                        }
                        let (fps, kbps) = rate.update(frames, bytes);
                        status.set_stream(last_pts_us, fps, kbps, width, height);
                    }
                    Some(Report::Error { message }) => last_error = Some(message),
                    Some(Report::SegmentOpened { start_us, path }) => {
                        send(events, SegmentEvent::Opened { camera: camera.to_owned(), start_us, data: path.into() });
                    }
                    Some(Report::SegmentClosed { start_us, last_pts_us, frames, bytes, path }) => {
                        send(events, SegmentEvent::Closed {
                            camera: camera.to_owned(),
                            start_us,
                            last_pts_us,
                            frames,
                            bytes,
                            data: path.into(),
                        });
                    }
                    None => tracing::debug!(camera, %line, "unrecognised line from capture"),
                },
                Ok(None) | Err(_) => {
                    // stdout closed: the child is exiting.
                    let code = match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                        Ok(Ok(s)) => s.to_string(),
                        _ => {
                            let _ = child.kill().await;
                            "killed after closing stdout".into()
                        }
                    };
                    let reason = last_error.unwrap_or_else(|| format!("capture process exited ({code})"));
                    return ChildOutcome::Failed(reason, produced);
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let what = if produced { "no frames for 5 s" } else { "no first frame within 15 s" };
                stop_child(&mut child).await;
                return ChildOutcome::Failed(format!("capture hung ({what}); killed"), produced);
            }
            _ = shutdown.changed() => {
                stop_child(&mut child).await;
                // The child closed its segment on SIGTERM: forward that last report so the
                // index records the segment as closed now, not at the next start.
                let drain = async {
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(Report::SegmentClosed { start_us, last_pts_us, frames, bytes, path }) = Report::parse(&line) {
                            send(events, SegmentEvent::Closed { camera: camera.to_owned(), start_us, last_pts_us, frames, bytes, data: path.into() });
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
                return ChildOutcome::Shutdown;
            }
        }
    }
}

/// SIGTERM, then SIGKILL after [`TERM_GRACE`].
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        // Negative or zero pids would signal a group; `id()` is the child's own pid.
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill_term(pid);
        }
    }
    if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
        tracing::warn!("capture process ignored SIGTERM; killing");
        let _ = child.kill().await;
    }
}

fn kill_term(pid: i32) -> std::io::Result<()> {
    // std has no SIGTERM; `kill(1)` keeps this crate free of unsafe code.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|_| ())
}
