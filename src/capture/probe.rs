//! Probing a source before it becomes a camera ("Test" on the /cameras page): a real capture
//! child, started exactly as the supervisor would start it, writing into a scratch folder
//! for a couple of seconds. What it wrote (the first segment) is handed back for the caller
//! to look at (picture size, codec, a JPEG); what it reported (errors: an RTSP camera's 401,
//! a missing device) becomes the one-line reason.

use super::report::Report;
use super::supervisor::ChildCommand;
use crate::config::{CameraConfig, mask_secrets};
use crate::segment::path::{SegmentFiles, list_segments};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

/// Longest wait for a first picture.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(14);
/// How long frames are counted after the first one (for the frame rate).
const MEASURE: Duration = Duration::from_millis(1500);

/// What the child wrote: the segment, in `dir` (delete `dir` when done).
#[derive(Debug)]
pub struct Probed {
    /// The scratch folder.
    pub dir: PathBuf,
    /// The first segment written.
    pub segment: SegmentFiles,
}

/// Runs a capture child for `cam` (its name and data folder are replaced) in `scratch`
/// until it has written frames for [`MEASURE`] or failed. The error is one line, secrets
/// masked.
pub async fn probe(exe: &Path, cam: &CameraConfig, scratch: PathBuf) -> Result<Probed, String> {
    let mut cam = cam.clone();
    cam.name = "probe".into();
    cam.record = true;
    cam.enabled = true;
    std::fs::create_dir_all(&scratch).map_err(|e| format!("creating a scratch folder: {e}"))?;
    let cmd = ChildCommand { exe: exe.to_owned(), data_dir: scratch.clone() };
    let r = run(&cmd, &cam).await;
    match r {
        Ok(()) => {
            match list_segments(&scratch.join(&cam.name)).ok().and_then(|mut v| (!v.is_empty()).then(|| v.remove(0))) {
                Some(segment) => Ok(Probed { dir: scratch, segment }),
                None => {
                    let _ = std::fs::remove_dir_all(&scratch);
                    Err("the source produced no picture".into())
                }
            }
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            Err(mask_secrets(&e))
        }
    }
}

async fn run(cmd: &ChildCommand, cam: &CameraConfig) -> Result<(), String> {
    let (mut child, _stdin) = cmd.spawn(cam).await.map_err(|e| format!("cannot start a capture process: {e}"))?;
    let stdout = child.stdout.take().ok_or("capture process has no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let deadline = tokio::time::Instant::now() + PROBE_TIMEOUT;
    let mut first_frame: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let outcome = loop {
        let until = match first_frame {
            Some(t) => tokio::time::Instant::from_std(t + MEASURE).min(deadline),
            None => deadline,
        };
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => match Report::parse(&line) {
                    Some(Report::Progress { frames, .. }) if frames > 0 && first_frame.is_none() => {
                        first_frame = Some(Instant::now());
                    }
                    Some(Report::Error { message }) => last_error = Some(message),
                    _ => {}
                },
                _ => break Err(last_error.take().unwrap_or_else(|| "the capture process ended without a picture".into())),
            },
            _ = tokio::time::sleep_until(until) => {
                break match first_frame {
                    Some(_) => Ok(()),
                    None => Err(last_error.take().unwrap_or_else(|| format!("no picture within {} s", PROBE_TIMEOUT.as_secs()))),
                };
            }
        }
    };
    super::supervisor::stop(&mut child).await;
    outcome
}

/// The local cameras GStreamer's device monitor finds (V4L2, libcamera), with their formats:
/// `[{"name","source","formats":["video/x-raw, format=YUY2, width=640, ..."]}]`.
pub fn devices() -> serde_json::Value {
    use gst::prelude::*;
    if gst::init().is_err() {
        return serde_json::Value::Array(Vec::new());
    }
    let monitor = gst::DeviceMonitor::new();
    monitor.add_filter(Some("Video/Source"), None);
    let mut out = Vec::new();
    for d in monitor.devices() {
        let props = d.properties();
        let get = |k: &str| props.as_ref().and_then(|p| p.get::<String>(k).ok());
        let class = d.device_class().to_string();
        let source = match (get("api.v4l2.path").or_else(|| get("device.path")), get("device.api")) {
            (Some(path), _) => format!("v4l2:{path}"),
            (None, Some(api)) if api.contains("libcamera") => "libcamera".to_owned(),
            _ if class.contains("libcamera") || d.name().to_lowercase().contains("libcamera") => "libcamera".into(),
            _ => continue,
        };
        let formats: Vec<String> =
            d.caps().map(|c| c.iter().take(64).map(|s| s.to_string()).collect()).unwrap_or_default();
        out.push(serde_json::json!({ "name": d.display_name().to_string(), "source": source, "formats": formats }));
    }
    serde_json::Value::Array(out)
}
