//! Motion analysis of one WHIP publisher: a `vigil analyse` child (see
//! [`crate::capture::analyse`]) per publisher session, fed the access units the segment
//! writer has just written, its reports relayed like a capture child's (activity to the
//! history service, the analysis path to the camera status).
//!
//! Never holds back recording: frames go to the child through a bounded queue and are dropped
//! (the child sees the gap and waits for a keyframe) when it falls behind. A child that dies
//! costs the rest of the session's analysis, not the recording; the next publisher gets a
//! new one.

use crate::activity::{Sink, Update};
use crate::capture::report::Report;
use crate::capture::status::CameraStatus;
use crate::capture::supervisor::{activity_update, send_activity};
use crate::config::CameraConfig;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

/// Frames queued for the child at most (about 2 s at 30 fps).
const QUEUE: usize = 64;
/// How long a child may take to finish after its input ends.
const FINISH_GRACE: Duration = Duration::from_secs(3);

/// What a WHIP camera's analysis needs: the camera's settings, the server's executable, where
/// activity goes.
#[derive(Clone)]
pub struct Spec {
    /// The camera (motion settings included).
    pub camera: CameraConfig,
    /// The `vigil` executable.
    pub exe: PathBuf,
    /// The history service's activity channel.
    pub activity: Sink,
}

/// A running analysis child.
pub struct Analysis {
    child: Child,
    frames: Option<SyncSender<(Vec<u8>, i64)>>,
    reader: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

impl Analysis {
    /// Starts the child for one publisher session.
    pub fn start(spec: &Spec, status: Arc<CameraStatus>) -> std::io::Result<Self> {
        let name = spec.camera.name.clone();
        let mut child = Command::new(&spec.exe)
            .arg("analyse")
            .arg("--camera")
            .arg(&name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut stdin = child.stdin.take().ok_or_else(|| std::io::Error::other("analysis child has no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("analysis child has no stdout"))?;
        let mut line = serde_json::to_string(&spec.camera).map_err(std::io::Error::other)?;
        line.push('\n');
        stdin.write_all(line.as_bytes())?;

        let (tx, rx) = sync_channel::<(Vec<u8>, i64)>(QUEUE);
        let camera = name.clone();
        std::thread::Builder::new().name(format!("analyse-in-{name}")).spawn(move || {
            let mut out = std::io::BufWriter::new(stdin);
            let mut seq = 0u32;
            while let Ok((au, capture_us)) = rx.recv() {
                let sent = crate::capture::analyse::write_frame(&mut out, &au, capture_us, seq);
                // Flush when nothing else is waiting: one write per AU burst, no added delay.
                if sent.is_err() || out.flush().is_err() {
                    tracing::warn!(camera, "motion analysis child stopped reading");
                    return;
                }
                seq = seq.wrapping_add(1);
            }
        })?;
        let activity = spec.activity.clone();
        let reader = std::thread::Builder::new().name(format!("analyse-out-{name}")).spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match Report::parse(&line) {
                    Some(Report::MotionPath { path }) => status.set_motion_path(&path),
                    Some(r) => {
                        if let Some(u) = activity_update(&name, &r) {
                            send_activity(&activity, u);
                        }
                    }
                    None => tracing::debug!(camera = %name, %line, "unrecognised line from analysis"),
                }
            }
            // Whatever range the child did not close (it died) ends at its last motion.
            send_activity(&activity, Update::Stopped { camera: name });
        })?;
        Ok(Self { child, frames: Some(tx), reader: Some(reader), dropped: 0 })
    }

    /// Queues one access unit written at `capture_us`; dropped when the child is behind.
    pub fn push(&mut self, au: &[u8], capture_us: i64) {
        let Some(tx) = &self.frames else { return };
        match tx.try_send((au.to_vec(), capture_us)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    tracing::warn!(dropped = self.dropped, "motion analysis is behind; frames dropped");
                }
            }
            Err(TrySendError::Disconnected(_)) => self.frames = None,
        }
    }

    /// Ends the input: the child closes its open range, reports it and exits (killed after
    /// [`FINISH_GRACE`]); returns once its last report is relayed.
    pub fn finish(mut self) {
        self.frames.take();
        let deadline = Instant::now() + FINISH_GRACE;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            tracing::warn!("motion analysis child did not finish; killing it");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Analysis {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
