//! `vigil capture`: runs one camera's GStreamer pipeline and writes its segments.
//!
//! Runs as a child process of `vigil serve` (see `supervisor.rs`) so a pipeline that hangs
//! in a driver can be killed without touching the server. It reports progress as JSON lines
//! on stdout ([`Report`]) and exits on pipeline error or end of stream (a looped `file:`
//! source seeks back instead). SIGTERM/SIGINT close the open segment cleanly.

use super::pipeline::{
    DECODEBIN_CAPS, SINK_CAPS, TEST_OVERLAYS, encode_chain, source_description, test_scene, to_encoder_format,
};
use super::report::Report;
use crate::config::{CameraConfig, Source};
use crate::segment::annexb::AuNormalizer;
use crate::segment::writer::SegmentWriter;
use anyhow::{Context, anyhow};
use gst::prelude::*;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Default)]
struct Totals {
    frames: u64,
    bytes: u64,
    last_pts_us: i64,
    width: u32,
    height: u32,
}

struct Recorder {
    normalizer: AuNormalizer,
    motion: Option<super::motion::Shared>,
    writer: SegmentWriter,
    totals: Totals,
    failed: Option<String>,
}

fn emit(r: &Report) {
    let mut out = std::io::stdout().lock();
    let ok = out.write_all(r.to_line().as_bytes()).and_then(|_| out.flush());
    if ok.is_err() {
        // The supervisor is gone (it died or was killed): nobody restarts or watches us,
        // so stop instead of recording as an orphan. Segments are synced at most 1 s ago.
        SUPERVISOR_GONE.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

static SUPERVISOR_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

/// Reads the camera's settings, one JSON object on one line, as `vigil serve` sends them on
/// the child's standard input (the rest of the input is left for commands).
pub fn read_settings(input: &mut impl std::io::BufRead) -> anyhow::Result<CameraConfig> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the camera settings from standard input")?;
    let cam: CameraConfig =
        serde_json::from_str(line.trim()).context("the camera settings on standard input do not parse")?;
    cam.check().map_err(|e| anyhow!("camera settings: {e}"))?;
    Ok(cam)
}

/// Runs the capture for `cam` until error, end of stream, or a termination signal. A
/// failure is also reported to the supervisor as a [`Report::Error`] line.
pub async fn run(cam: CameraConfig, data_dir: &Path) -> anyhow::Result<()> {
    let r = run_inner(cam, data_dir).await;
    if let Err(e) = &r
        && !REPORTED.load(std::sync::atomic::Ordering::Relaxed)
    {
        emit(&Report::Error { message: format!("{e:#}") });
    }
    r
}

static REPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

async fn run_inner(cam: CameraConfig, data_dir: &Path) -> anyhow::Result<()> {
    gst::init().context("initialising GStreamer")?;
    let source = cam.parsed_source().map_err(|e| anyhow!(e))?;
    if source == Source::Whip {
        anyhow::bail!("camera {:?} is fed by WHIP publishers, not captured", cam.name);
    }
    let camera_dir = data_dir.join(&cam.name);
    std::fs::create_dir_all(&camera_dir).with_context(|| format!("creating {}", camera_dir.display()))?;

    let motion = cam.motion.then(|| super::motion::Motion::new(&cam, emit));
    let recorder = Arc::new(Mutex::new(Recorder {
        normalizer: AuNormalizer::new(),
        motion: motion.clone(),
        writer: SegmentWriter::new(&camera_dir, cam.segment_seconds),
        totals: Totals::default(),
        failed: None,
    }));
    let (pipeline, appsink) = build_pipeline(&cam, &source, motion.clone())?;
    install_sink(&appsink, recorder.clone());

    let bus = pipeline.bus().context("pipeline has no bus")?;
    pipeline.set_state(gst::State::Playing).context("starting the pipeline")?;
    tracing::info!(camera = %cam.name, source = %cam.masked_source(), "capture started");

    // Progress reports every 500 ms.
    let rep = recorder.clone();
    let reporter = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let r = {
                let g = rep.lock().unwrap_or_else(|p| p.into_inner());
                let t = &g.totals;
                Report::Progress {
                    frames: t.frames,
                    bytes: t.bytes,
                    last_pts_us: t.last_pts_us,
                    width: t.width,
                    height: t.height,
                }
            };
            emit(&r);
            if SUPERVISOR_GONE.load(std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!("supervisor gone (stdout closed); stopping capture");
                return;
            }
        }
    });

    let looped = matches!(source, Source::File(_));
    let pipeline_for_bus = pipeline.clone();
    let bus_task = tokio::task::spawn_blocking(move || -> Result<(), String> {
        loop {
            let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
                continue;
            };
            use gst::MessageView;
            match msg.view() {
                MessageView::Eos(..) if looped => {
                    if let Err(e) = pipeline_for_bus
                        .seek_simple(gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT, gst::ClockTime::ZERO)
                    {
                        return Err(format!("looping file: seek failed: {e}"));
                    }
                }
                MessageView::Eos(..) => return Err("end of stream".into()),
                MessageView::Error(e) => {
                    let src = e.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                    let dbg = e.debug().map(|d| d.to_string()).unwrap_or_default();
                    return Err(format!("{src}: {} ({})", e.error(), dbg.lines().next().unwrap_or("")));
                }
                MessageView::Warning(w) => {
                    tracing::warn!(warning = %w.error(), "pipeline warning");
                }
                _ => {}
            }
        }
    });

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome: Result<(), String> = tokio::select! {
        r = bus_task => r.unwrap_or_else(|e| Err(format!("bus thread: {e}"))),
        _ = reporter => Ok(()),
        _ = sigterm.recv() => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(m) = &motion {
        m.lock().unwrap_or_else(|p| p.into_inner()).finish();
    }
    let mut g = recorder.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(closed) = g.writer.finish()? {
        emit(&Report::SegmentClosed {
            start_us: closed.files.start_us,
            last_pts_us: closed.last_pts_us,
            frames: closed.frames,
            bytes: closed.bytes,
            path: closed.files.data.display().to_string(),
        });
    }
    let t = &g.totals;
    emit(&Report::Progress {
        frames: t.frames,
        bytes: t.bytes,
        last_pts_us: t.last_pts_us,
        width: t.width,
        height: t.height,
    });
    let failure = g.failed.take().or(outcome.err());
    match failure {
        Some(message) => {
            emit(&Report::Error { message: message.clone() });
            REPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
            Err(anyhow!(message))
        }
        None => {
            tracing::info!(camera = %cam.name, "capture stopped");
            Ok(())
        }
    }
}

fn hardware_encoder_available() -> bool {
    gst::ElementFactory::find("v4l2h264enc").is_some()
}

/// The raw-video part of a pipeline: the encoder chain, with the motion branch beside it on a
/// `tee` when motion is analysed.
fn raw_chain(cam: &CameraConfig, hw: bool, pace: bool, motion: bool) -> String {
    let enc = encode_chain(cam, hw, pace);
    if motion {
        format!("{} ! tee name=vigil_raw ! {enc}  vigil_raw. ! {}", to_encoder_format(cam), super::motion::branch(cam))
    } else {
        enc
    }
}

fn build_pipeline(
    cam: &CameraConfig,
    source: &Source,
    motion: Option<super::motion::Shared>,
) -> anyhow::Result<(gst::Pipeline, gst_app::AppSink)> {
    let src = source_description(cam, source);
    let hw = hardware_encoder_available();
    let pace = matches!(source, Source::File(_));
    let tail = format!("capsfilter name=vigil_out caps=\"{SINK_CAPS}\" ! appsink name=vigil_sink");
    let desc = match source {
        Source::Test | Source::Libcamera => {
            // The encoder chain ends the tee's first branch; the tail follows it. The test
            // pattern's clocks are drawn after the tee: motion sees the scene only.
            let enc = encode_chain(cam, hw, false);
            let (scene, overlays) = match source {
                Source::Test => (test_scene(cam), format!("{TEST_OVERLAYS} ! ")),
                _ => (src, String::new()),
            };
            match motion {
                Some(_) => format!(
                    "{scene} ! {} ! tee name=vigil_raw ! {overlays}{enc} ! {tail}  vigil_raw. ! {}",
                    to_encoder_format(cam),
                    super::motion::branch(cam)
                ),
                None => format!("{scene} ! {overlays}{enc} ! {tail}"),
            }
        }
        _ => format!("{src} ! decodebin name=vigil_dec caps=\"{DECODEBIN_CAPS}\"  {tail}"),
    };
    tracing::debug!(pipeline = %desc, "building pipeline");
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("invalid pipeline: {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("pipeline description did not produce a pipeline"))?;
    let appsink = pipeline
        .by_name("vigil_sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .context("no app sink in pipeline")?;
    if let Some(m) = &motion
        && super::motion::attach(pipeline.upcast_ref(), m.clone(), capture_time_us)
    {
        m.lock().unwrap_or_else(|p| p.into_inner()).set_path(crate::activity::path::Path::Picture);
    }
    if motion.is_none() {
        emit(&Report::MotionPath { path: crate::activity::path::Path::Off.as_str().to_owned() });
    }
    if let Some(dec) = pipeline.by_name("vigil_dec") {
        let out = pipeline.by_name("vigil_out").context("no output capsfilter")?;
        let cam = cam.clone();
        let pipeline_weak = pipeline.downgrade();
        let linked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        dec.connect_pad_added(move |_, pad| {
            let Some(pipeline) = pipeline_weak.upgrade() else { return };
            let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
            let name = caps.structure(0).map(|s| s.name().to_string()).unwrap_or_default();
            let first_video = (name == "video/x-h264" || name == "video/x-raw")
                && !linked.swap(true, std::sync::atomic::Ordering::SeqCst);
            let branch = if !first_video {
                "fakesink sync=false async=false".to_string()
            } else if name == "video/x-h264" {
                let pace_part = if pace { "identity sync=true ! " } else { "" };
                let parse = format!("{pace_part}queue ! h264parse config-interval=-1");
                match motion {
                    // The recording branch is the bin's unlinked source pad.
                    Some(_) => {
                        format!("{parse} ! tee name=vigil_au ! queue  vigil_au. ! {}", super::motion::decode_branch())
                    }
                    None => parse,
                }
            } else {
                raw_chain(&cam, hw, pace, motion.is_some())
            };
            let bin = match gst::parse::bin_from_description(&branch, true) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "building branch");
                    return;
                }
            };
            if let Some(m) = &motion
                && first_video
            {
                super::motion::attach(bin.upcast_ref(), m.clone(), capture_time_us);
                let gate = Arc::new(super::motion::Gate::default());
                let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
                if super::motion::attach_gate(bin.upcast_ref(), gate.clone()) {
                    g.pass_through(gate);
                } else {
                    g.set_path(crate::activity::path::Path::Picture);
                }
            }
            if pipeline.add(&bin).is_err() {
                return;
            }
            let _ = bin.sync_state_with_parent();
            if let Some(sink) = bin.static_pad("sink")
                && let Err(e) = pad.link(&sink)
            {
                tracing::error!(error = ?e, caps = %caps, "linking decoded pad");
            }
            if first_video && let Err(e) = bin.link(&out) {
                tracing::error!(error = %e, "linking branch to sink");
            }
        });
    }
    Ok((pipeline, appsink))
}

fn install_sink(appsink: &gst_app::AppSink, recorder: Arc<Mutex<Recorder>>) {
    appsink.set_property("sync", false);
    appsink.set_property("max-buffers", 60u32);
    appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let capture_us = capture_time_us(sink, &sample, buffer);
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut g = recorder.lock().unwrap_or_else(|p| p.into_inner());
                if g.totals.width == 0
                    && let Some(s) = sample.caps().and_then(|c| c.structure(0))
                {
                    g.totals.width = s.get::<i32>("width").unwrap_or(0).max(0) as u32;
                    g.totals.height = s.get::<i32>("height").unwrap_or(0).max(0) as u32;
                }
                let au = g.normalizer.normalize(map.as_slice(), capture_us);
                if !au.has_picture {
                    return Ok(gst::FlowSuccess::Ok);
                }
                if let Some(m) = &g.motion {
                    m.lock().unwrap_or_else(|p| p.into_inner()).access_unit(au.data.len(), au.keyframe, capture_us);
                }
                match g.writer.push(&au.data, capture_us, au.keyframe) {
                    Ok(o) => {
                        if let Some(c) = o.closed {
                            emit(&Report::SegmentClosed {
                                start_us: c.files.start_us,
                                last_pts_us: c.last_pts_us,
                                frames: c.frames,
                                bytes: c.bytes,
                                path: c.files.data.display().to_string(),
                            });
                        }
                        if let Some(f) = o.opened {
                            emit(&Report::SegmentOpened { start_us: f.start_us, path: f.data.display().to_string() });
                        }
                        if o.written {
                            g.totals.frames += 1;
                            g.totals.bytes += au.data.len() as u64;
                            g.totals.last_pts_us = capture_us;
                        }
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "writing segment");
                        g.failed = Some(format!("writing segment: {e}"));
                        Err(gst::FlowError::Error)
                    }
                }
            })
            .build(),
    );
}

/// Wall-clock capture time of a buffer: now minus how long ago (in pipeline running time)
/// the buffer was captured. Falls back to "now" when the buffer has no timestamp.
fn capture_time_us(sink: &gst_app::AppSink, sample: &gst::Sample, buffer: &gst::BufferRef) -> i64 {
    let now = now_us();
    let (Some(pts), Some(clock), Some(base)) = (buffer.pts(), sink.clock(), sink.base_time()) else {
        return now;
    };
    let running =
        sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>()).and_then(|s| s.to_running_time(pts));
    let Some(running) = running else { return now };
    let now_running = clock.time().saturating_sub(base);
    let age_us = now_running.saturating_sub(running).useconds() as i64;
    now - age_us.min(10_000_000)
}
