//! The capture supervisor (in `vigil serve`): keeps one `vigil capture` child per camera
//! running. A child that exits, fails, or produces no access unit for [`STALL_TIMEOUT`] is
//! restarted with exponential backoff; one that ignores SIGTERM is killed after
//! [`TERM_GRACE`]. The camera's state is published in a [`CameraStatus`].
//!
//! The child gets its settings from here, as the first line of its standard input (it never
//! reads vigil.toml): the supervisor follows a `watch` of the camera's settings and, when they
//! change, stops the child and starts one with the new settings at once (no backoff).
//!
//! A camera with `record = false` (privacy mode) captures into `<data_dir>/.live/<camera>/`
//! with short segments; its segment events do not reach the index. Each segment there is
//! deleted as soon as a newer one opens (the live tail holds open files, so a segment it is
//! still reading stays readable), and the whole folder is emptied when the child ends.

use super::report::Report;
use super::status::{CameraState, CameraStatus};
use crate::config::CameraConfig;
use crate::segment::event::SegmentEvent;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
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

/// Segments of a privacy-mode camera (`record = false`) are this long at most: what live
/// viewing keeps on disk.
pub const LIVE_ONLY_SEGMENT_SECONDS: f64 = 2.0;

/// The folder under the data directory where privacy-mode cameras write.
pub const LIVE_ONLY_DIR: &str = ".live";

/// Where a camera's capture writes: its recordings folder, or for `record = false` the
/// live-only folder. The hub tails the same folder.
pub fn capture_dir(data_dir: &std::path::Path, cam: &CameraConfig) -> PathBuf {
    if cam.record { data_dir.join(&cam.name) } else { data_dir.join(LIVE_ONLY_DIR).join(&cam.name) }
}

/// How to start a capture child.
#[derive(Debug, Clone)]
pub struct ChildCommand {
    /// The `vigil` executable.
    pub exe: PathBuf,
    /// The data directory.
    pub data_dir: PathBuf,
}

impl ChildCommand {
    /// The settings the child is given, and the data directory it writes under.
    fn child_settings(&self, cam: &CameraConfig) -> (CameraConfig, PathBuf) {
        let mut c = cam.clone();
        if cam.record {
            (c, self.data_dir.clone())
        } else {
            c.segment_seconds = c.segment_seconds.min(LIVE_ONLY_SEGMENT_SECONDS);
            (c, self.data_dir.join(LIVE_ONLY_DIR))
        }
    }

    /// Starts the child for `cam`, its settings written as the first line of its stdin.
    /// The returned stdin stays open for commands.
    pub async fn spawn(&self, cam: &CameraConfig) -> std::io::Result<(Child, tokio::process::ChildStdin)> {
        let (settings, data_dir) = self.child_settings(cam);
        let mut c = Command::new(&self.exe);
        c.arg("capture").arg("--camera").arg(&cam.name).arg("--settings-stdin").arg("--data-dir").arg(data_dir);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        let mut child = c.spawn()?;
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("capture process has no stdin"))?;
        let mut line = serde_json::to_string(&settings).map_err(std::io::Error::other)?;
        line.push('\n');
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await?;
        Ok((child, stdin))
    }
}

/// Supervises one camera until `shutdown` fires or the settings channel closes, restarting
/// the child whenever its settings change. Never returns early on a child failure.
pub async fn supervise(
    mut settings: tokio::sync::watch::Receiver<Arc<CameraConfig>>,
    cmd: ChildCommand,
    status: Arc<CameraStatus>,
    events: EventSink,
    activity: crate::activity::Sink,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() || settings.has_changed().is_err() {
            return;
        }
        let cam = settings.borrow_and_update().clone();
        let camera = cam.name.clone();
        // Privacy mode: segment events go to the live-only janitor, not the index.
        let live_only = !cam.record;
        let live_dir = capture_dir(&cmd.data_dir, &cam);
        let sink = if live_only { live_only_sink(live_dir.clone()) } else { events.clone() };
        status.set_state(CameraState::Starting, None);
        let started = Instant::now();
        let outcome = match cmd.spawn(&cam).await {
            Ok((child, stdin)) => {
                let out = Outputs { segments: &sink, activity: &activity };
                run_child(&camera, child, stdin, &status, out, &mut shutdown, &mut settings).await
            }
            Err(e) => ChildOutcome::Failed(format!("cannot start capture process: {e}"), false),
        };
        // A child that died mid-range never reported its end.
        send_activity(&activity, crate::activity::Update::Stopped { camera: camera.clone() });
        drop(sink);
        if live_only {
            clear_live_only(&live_dir);
        } else {
            send(&events, SegmentEvent::WriterGone { camera: camera.clone() });
        }
        let (reason, produced) = match outcome {
            ChildOutcome::Shutdown => return,
            ChildOutcome::Restart => {
                tracing::info!(camera, "capture settings changed; restarting the capture");
                backoff = BACKOFF_MIN;
                failures = 0;
                continue;
            }
            ChildOutcome::Failed(reason, produced) => (crate::config::mask_secrets(&reason), produced),
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
            changed = settings.changed() => {
                if changed.is_err() {
                    return;
                }
                backoff = BACKOFF_MIN;
                failures = 0;
                continue;
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum ChildOutcome {
    Shutdown,
    /// The settings changed (or were dropped: then the next loop returns).
    Restart,
    /// Why it ended, and whether it produced frames before.
    Failed(String, bool),
}

/// Deletes every segment in a privacy-mode camera's live folder except `keep`.
fn prune_live_only(dir: &std::path::Path, keep: Option<&std::path::Path>) {
    let Ok(segs) = crate::segment::path::list_segments(dir) else { return };
    for s in segs {
        if Some(s.data.as_path()) != keep {
            let _ = std::fs::remove_file(&s.data);
            let _ = std::fs::remove_file(&s.idx);
        }
    }
}

/// A sink for the segment events of a privacy-mode camera writing in `dir`: each newly opened
/// segment makes every older one go. The task ends when every sender is dropped.
pub fn live_only_sink(dir: PathBuf) -> EventSink {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<SegmentEvent>();
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let SegmentEvent::Opened { data, .. } = e {
                let dir = dir.clone();
                let _ = tokio::task::spawn_blocking(move || prune_live_only(&dir, Some(&data))).await;
            }
        }
    });
    Some(tx)
}

/// Empties a privacy-mode camera's live folder.
pub fn clear_live_only(dir: &std::path::Path) {
    prune_live_only(dir, None);
    let _ = std::fs::remove_dir_all(dir);
}

/// Where a child's reports go.
#[derive(Clone, Copy)]
struct Outputs<'a> {
    segments: &'a EventSink,
    activity: &'a crate::activity::Sink,
}

/// Sends `u` where activity goes (nowhere when nobody listens: capture goes on regardless).
pub fn send_activity(sink: &crate::activity::Sink, u: crate::activity::Update) {
    if let Some(tx) = sink {
        let _ = tx.send(u);
    }
}

/// The activity update an activity report of `camera`'s analysis stands for.
pub fn activity_update(camera: &str, r: &Report) -> Option<crate::activity::Update> {
    use crate::activity::Update;
    let camera = camera.to_owned();
    Some(match *r {
        Report::ActivityStarted { start_us, peak } => Update::Started { camera, start_us, peak },
        Report::ActivityEnded { start_us, end_us, peak, peak_us } => {
            Update::Ended { camera, start_us, end_us, peak, peak_us }
        }
        Report::MotionLevel { second_us, level } => Update::Level { camera, second_us, level },
        _ => return None,
    })
}

/// Relays an activity report of `camera`'s child; false for any other report.
fn relay_activity(camera: &str, r: &Report, sink: &crate::activity::Sink) -> bool {
    let Some(u) = activity_update(camera, r) else { return false };
    send_activity(sink, u);
    true
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
    stdin: tokio::process::ChildStdin,
    status: &CameraStatus,
    out: Outputs<'_>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    settings: &mut tokio::sync::watch::Receiver<Arc<CameraConfig>>,
) -> ChildOutcome {
    let events = out.segments;
    // Kept open for the child's lifetime: commands go here; its end tells the child nothing.
    let _stdin = stdin;
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
                    Some(Report::MotionPath { path }) => {
                        tracing::info!(camera, path, "motion analysis path");
                        status.set_motion_path(&path);
                    }
                    Some(r) if relay_activity(camera, &r, out.activity) => {}
                    Some(_) => {}
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
            changed = settings.changed() => {
                stop_child(&mut child).await;
                drain_closed(camera, &mut lines, out).await;
                // A dropped settings channel means the camera is gone: stop for good.
                return if changed.is_ok() { ChildOutcome::Restart } else { ChildOutcome::Shutdown };
            }
            _ = shutdown.changed() => {
                stop_child(&mut child).await;
                drain_closed(camera, &mut lines, out).await;
                return ChildOutcome::Shutdown;
            }
        }
    }
}

/// After SIGTERM the child closes its segment (and its activity range) and reports it: forward
/// those last reports so the index records them now, not at the next start.
async fn drain_closed(
    camera: &str,
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    out: Outputs<'_>,
) {
    let drain = async {
        while let Ok(Some(line)) = lines.next_line().await {
            let Some(r) = Report::parse(&line) else { continue };
            if relay_activity(camera, &r, out.activity) {
                continue;
            }
            if let Report::SegmentClosed { start_us, last_pts_us, frames, bytes, path } = r {
                send(
                    out.segments,
                    SegmentEvent::Closed {
                        camera: camera.to_owned(),
                        start_us,
                        last_pts_us,
                        frames,
                        bytes,
                        data: path.into(),
                    },
                );
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Stops a capture child: SIGTERM, then SIGKILL after [`TERM_GRACE`].
pub async fn stop(child: &mut Child) {
    stop_child(child).await;
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
