//! `vigil analyse`: motion detection for H.264 that the server receives itself (a WHIP
//! publisher), in a child process like `vigil capture`, so decoding never runs in the server
//! and a decoder crash costs one camera's analysis, not the server.
//!
//! Input (stdin): the camera's settings as one JSON line, then access units as
//! [`write_frame`] frames. Output (stdout): [`Report`] lines (`motion_path`,
//! `activity_started`, `activity_ended`, `motion_level`), as from a capture child. The end of
//! the input closes the open range and ends the process.

use super::motion::{Gate, Motion};
use super::report::Report;
use crate::config::CameraConfig;
use anyhow::{Context, anyhow};
use gst::prelude::*;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

/// Frame header: AU length (u32), capture time (i64 µs), sequence number (u32), little-endian.
const HEADER: usize = 16;
/// Larger AUs are refused (the input is not from vigil).
const MAX_AU: usize = 16 << 20;

/// Writes one access unit captured at `capture_us` as a frame; `seq` counts frames (a gap
/// tells the child that frames were dropped on the way).
pub fn write_frame(out: &mut impl Write, au: &[u8], capture_us: i64, seq: u32) -> std::io::Result<()> {
    let mut h = [0u8; HEADER];
    h[..4].copy_from_slice(&(au.len() as u32).to_le_bytes());
    h[4..12].copy_from_slice(&capture_us.to_le_bytes());
    h[12..].copy_from_slice(&seq.to_le_bytes());
    out.write_all(&h)?;
    out.write_all(au)
}

/// Reads one frame: `None` at the end of the input.
fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> anyhow::Result<Option<(i64, u32)>> {
    let mut h = [0u8; HEADER];
    match input.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context("reading a frame header"),
    }
    let len = u32::from_le_bytes(h[..4].try_into().unwrap_or_default()) as usize;
    anyhow::ensure!(len <= MAX_AU, "frame of {len} bytes: not an access unit");
    let capture_us = i64::from_le_bytes(h[4..12].try_into().unwrap_or_default());
    let seq = u32::from_le_bytes(h[12..].try_into().unwrap_or_default());
    buf.resize(len, 0);
    input.read_exact(buf).context("reading a frame")?;
    Ok(Some((capture_us, seq)))
}

fn emit(r: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(r.to_line().as_bytes()).and_then(|_| out.flush());
}

/// Capture time of the first frame: buffer times are offsets from it.
static BASE_US: AtomicI64 = AtomicI64::new(0);

fn capture_time(_: &gst_app::AppSink, _: &gst::Sample, buffer: &gst::BufferRef) -> i64 {
    BASE_US.load(Ordering::Relaxed) + buffer.pts().map_or(0, |t| t.useconds() as i64)
}

/// Analyses the frames on `input` for `cam` until the input ends.
pub fn run(cam: &CameraConfig, input: &mut impl Read) -> anyhow::Result<()> {
    gst::init().context("initialising GStreamer")?;
    let desc = format!(
        "appsrc name=vigil_in is-live=true format=time caps=video/x-h264,stream-format=byte-stream,alignment=au ! \
         h264parse ! {}",
        super::motion::decode_branch()
    );
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("invalid pipeline: {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let src =
        pipeline.by_name("vigil_in").and_then(|e| e.downcast::<gst_app::AppSrc>().ok()).context("no app source")?;
    let motion = Motion::new(cam, emit);
    let gate = Arc::new(Gate::default());
    super::motion::attach(pipeline.upcast_ref(), motion.clone(), capture_time);
    anyhow::ensure!(super::motion::attach_gate(pipeline.upcast_ref(), gate.clone()), "no decoder in {desc}");
    motion.lock().unwrap_or_else(|p| p.into_inner()).pass_through(gate.clone());
    pipeline.set_state(gst::State::Playing).context("starting the pipeline")?;
    tracing::info!(camera = %cam.name, "analysis started");

    let base = OnceLock::new();
    let mut buf = Vec::new();
    let mut next_seq = None;
    let result = loop {
        let (capture_us, seq) = match read_frame(input, &mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if next_seq.is_some_and(|n| n != seq) {
            gate.dropped();
        }
        next_seq = Some(seq.wrapping_add(1));
        let base_us = *base.get_or_init(|| {
            BASE_US.store(capture_us, Ordering::Relaxed);
            capture_us
        });
        let keyframe = crate::segment::annexb::is_keyframe(&buf);
        motion.lock().unwrap_or_else(|p| p.into_inner()).access_unit(buf.len(), keyframe, capture_us);
        let Some(offset_us) = capture_us.checked_sub(base_us).filter(|o| *o >= 0) else { continue };
        // The frame's bytes become the buffer (the next frame reads into a new one).
        let mut buffer = gst::Buffer::from_mut_slice(std::mem::take(&mut buf));
        if let Some(b) = buffer.get_mut() {
            b.set_pts(gst::ClockTime::from_useconds(offset_us as u64));
            if !keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if src.push_buffer(buffer).is_err() {
            break Err(anyhow!("the analysis pipeline stopped"));
        }
    };
    let _ = src.end_of_stream();
    // Let the decoder drain what it holds (at most a second) before the range closes.
    if let Some(bus) = pipeline.bus() {
        let _ =
            bus.timed_pop_filtered(gst::ClockTime::from_seconds(1), &[gst::MessageType::Eos, gst::MessageType::Error]);
    }
    let _ = pipeline.set_state(gst::State::Null);
    motion.lock().unwrap_or_else(|p| p.into_inner()).finish();
    tracing::info!(camera = %cam.name, "analysis stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"\0\0\0\x01\x65abc", 1_700_000_000_000_000, 7).unwrap();
        write_frame(&mut wire, b"", -5, 8).unwrap();
        let mut input = wire.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Some((1_700_000_000_000_000, 7)));
        assert_eq!(buf, b"\0\0\0\x01\x65abc");
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Some((-5, 8)));
        assert_eq!(read_frame(&mut input, &mut buf).unwrap(), None);
        let huge = [0xffu8; HEADER];
        assert!(read_frame(&mut huge.as_slice(), &mut buf).is_err());
        let cut = &wire[..HEADER + 2];
        assert!(read_frame(&mut &cut[..], &mut buf).is_err(), "a frame cut short is an error");
    }
}
