//! Snapshots: the picture at a moment, as a JPEG, decoded from the recorded GOP that holds
//! it (keyframe at or before the time, then every frame up to it), optionally scaled down
//! (thumbnails, [`super::thumbnail`]). GStreamer does the decoding, scaling and encoding
//! (`avdec_h264`, `videoscale`, `jpegenc`); this runs on a blocking thread.

use super::plan::SegmentInput;
use gst::prelude::*;
use std::os::unix::fs::FileExt;

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Nothing recorded at that time.
    #[error("no recorded frame at that time")]
    NoFrame,
    /// Reading the segment failed.
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    /// Decoding or encoding failed.
    #[error("decoding: {0}")]
    Decode(String),
    /// Every decode slot stayed busy for as long as a request waits.
    #[error("busy making other pictures; try again")]
    Busy,
}

/// The access units to decode for the frame at `t_us` (or the latest): from the keyframe at
/// or before it through the last AU at or before it, as (offset, len) in `seg.data`.
pub fn gop_for(seg: &SegmentInput, t_us: Option<i64>) -> Option<Vec<(u64, u32)>> {
    let recs = &seg.records;
    let last = match t_us {
        Some(t) => recs.iter().rposition(|r| r.pts_us <= t)?,
        None => recs.len().checked_sub(1)?,
    };
    let key = recs[..=last].iter().rposition(|r| r.is_keyframe())?;
    Some(recs[key..=last].iter().map(|r| (r.offset, r.len)).collect())
}

/// Decodes `aus` (Annex-B access units read from `seg`) and encodes the last picture as JPEG.
pub fn snapshot_jpeg(seg: &SegmentInput, aus: &[(u64, u32)]) -> Result<Vec<u8>, SnapshotError> {
    let file = std::fs::File::open(&seg.data).map_err(|e| SnapshotError::Io(seg.data.display().to_string(), e))?;
    let mut data = Vec::with_capacity(aus.len());
    for &(off, len) in aus {
        if len > 16 << 20 {
            return Err(SnapshotError::NoFrame);
        }
        let mut b = vec![0u8; len as usize];
        file.read_exact_at(&mut b, off).map_err(|e| SnapshotError::Io(seg.data.display().to_string(), e))?;
        data.push(b);
    }
    decode_last_to_jpeg(data, None)
}

/// Parses `desc` and returns the pipeline with its app source `src` and app sink `sink`.
fn app_pipeline(desc: &str, sink: &str) -> Result<(gst::Pipeline, gst_app::AppSrc, gst_app::AppSink), SnapshotError> {
    let pipeline = gst::parse::launch(desc)
        .map_err(|e| SnapshotError::Decode(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| SnapshotError::Decode("not a pipeline".into()))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| SnapshotError::Decode("no appsrc".into()))?;
    let sink = pipeline
        .by_name(sink)
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| SnapshotError::Decode("no appsink".into()))?;
    Ok((pipeline, src, sink))
}

/// Decodes `aus` (Annex-B access units, the first a keyframe) and encodes the last picture
/// as JPEG, at most `max_width` pixels wide when given (aspect kept, square pixels, even
/// height; never scaled up).
pub fn decode_last_to_jpeg(aus: Vec<Vec<u8>>, max_width: Option<u32>) -> Result<Vec<u8>, SnapshotError> {
    let err = |e: &dyn std::fmt::Display| SnapshotError::Decode(e.to_string());
    gst::init().map_err(|e| err(&e))?;
    let n = aus.len();
    // Decode every AU but encode only the last picture: `jpegenc` sees one frame.
    let (pipeline, src, sink) = app_pipeline(
        "appsrc name=src format=time caps=video/x-h264,stream-format=byte-stream,alignment=au ! \
         h264parse ! avdec_h264 ! videoconvert ! appsink name=raw sync=false",
        "raw",
    )?;
    sink.set_property("max-buffers", 0u32);
    pipeline.set_state(gst::State::Playing).map_err(|e| err(&e))?;
    for (i, au) in aus.into_iter().enumerate() {
        let mut buf = gst::Buffer::from_mut_slice(au);
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_mseconds(i as u64 * 33));
        }
        src.push_buffer(buf).map_err(|e| err(&e))?;
    }
    let _ = src.end_of_stream();
    let mut last: Option<gst::Sample> = None;
    let mut got = 0;
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
        got += 1;
        last = Some(s);
        if got == n {
            break;
        }
    }
    let _ = pipeline.set_state(gst::State::Null);
    let sample = last.ok_or(SnapshotError::NoFrame)?;
    encode_jpeg(&sample, max_width)
}

/// The size a `width` × `height` picture with pixel aspect `par` is shown at when scaled to
/// at most `max_width` wide with square pixels: (width, height), both even and ≥ 2.
pub fn scaled_size(width: u32, height: u32, par: (u32, u32), max_width: u32) -> (u32, u32) {
    let (pn, pd) = (u128::from(par.0.max(1)), u128::from(par.1.max(1)));
    // Display width in square pixels.
    let shown_w = (u128::from(width.max(1)) * pn / pd).max(1);
    let w = shown_w.min(u128::from(max_width.max(2)));
    let h = (u128::from(height.max(1)) * w + shown_w / 2) / shown_w;
    let even = |v: u128| (v.clamp(2, 16_384) / 2 * 2) as u32;
    (even(w), even(h))
}

fn encode_jpeg(sample: &gst::Sample, max_width: Option<u32>) -> Result<Vec<u8>, SnapshotError> {
    let err = |e: &dyn std::fmt::Display| SnapshotError::Decode(e.to_string());
    let caps = sample.caps().ok_or_else(|| SnapshotError::Decode("decoded frame has no caps".into()))?;
    let scale = match max_width {
        None => String::new(),
        Some(max) => {
            let s = caps.structure(0).ok_or_else(|| SnapshotError::Decode("decoded frame has empty caps".into()))?;
            let dim = |k: &str| s.get::<i32>(k).ok().and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
            let (w, h) =
                dim("width").zip(dim("height")).ok_or_else(|| SnapshotError::Decode("no frame size".into()))?;
            let par = s
                .get::<gst::Fraction>("pixel-aspect-ratio")
                .ok()
                .and_then(|f| Some((u32::try_from(f.numer()).ok()?, u32::try_from(f.denom()).ok()?)))
                .unwrap_or((1, 1));
            let (tw, th) = scaled_size(w, h, par, max);
            format!("videoscale ! video/x-raw,width={tw},height={th},pixel-aspect-ratio=1/1 ! ")
        }
    };
    let (pipeline, src, sink) = app_pipeline(
        &format!("appsrc name=src ! videoconvert ! {scale}jpegenc quality=85 ! appsink name=jpg sync=false"),
        "jpg",
    )?;
    src.set_caps(Some(&caps.to_owned()));
    src.set_property("format", gst::Format::Time);
    pipeline.set_state(gst::State::Playing).map_err(|e| err(&e))?;
    let buffer = sample.buffer_owned().ok_or_else(|| SnapshotError::Decode("empty sample".into()))?;
    src.push_buffer(buffer).map_err(|e| err(&e))?;
    let _ = src.end_of_stream();
    let out = sink.try_pull_sample(gst::ClockTime::from_seconds(5));
    let _ = pipeline.set_state(gst::State::Null);
    let out = out.ok_or_else(|| SnapshotError::Decode("jpegenc produced nothing".into()))?;
    let buf = out.buffer().ok_or_else(|| SnapshotError::Decode("empty JPEG".into()))?;
    let map = buf.map_readable().map_err(|e| err(&e))?;
    Ok(map.as_slice().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::idx::Record;

    #[test]
    fn gop_selection() {
        let recs: Vec<Record> = (0..10)
            .map(|i| Record { offset: i * 10, len: 10, pts_us: i as i64 * 100, flags: u32::from(i % 4 == 0) })
            .collect();
        let seg = SegmentInput { start_us: 0, data: "x".into(), records: recs };
        // t = 650 → frame 6; keyframe 4.
        assert_eq!(gop_for(&seg, Some(650)).unwrap(), vec![(40, 10), (50, 10), (60, 10)]);
        // Latest: frame 9, keyframe 8.
        assert_eq!(gop_for(&seg, None).unwrap(), vec![(80, 10), (90, 10)]);
        assert!(gop_for(&seg, Some(-1)).is_none());
    }

    #[test]
    fn thumbnail_sizes() {
        assert_eq!(scaled_size(1280, 720, (1, 1), 320), (320, 180));
        assert_eq!(scaled_size(640, 360, (1, 1), 320), (320, 180));
        assert_eq!(scaled_size(640, 480, (1, 1), 320), (320, 240));
        // Never scaled up; odd sizes made even.
        assert_eq!(scaled_size(176, 144, (1, 1), 320), (176, 144));
        assert_eq!(scaled_size(1920, 1080, (1, 1), 321), (320, 180));
        // Anamorphic 720x576 at 16:11 shows as 1047x576.
        assert_eq!(scaled_size(720, 576, (16, 11), 320), (320, 176));
        // Hostile sizes do not panic.
        let _ = scaled_size(0, 0, (0, 0), 0);
        let _ = scaled_size(u32::MAX, u32::MAX, (u32::MAX, 1), u32::MAX);
    }
}
