//! Snapshots: the picture at a moment, as a JPEG, decoded from the recorded GOP that holds
//! it (keyframe at or before the time, then every frame up to it). GStreamer does the
//! decoding and encoding (`avdec_h264`, `jpegenc`); this runs on a blocking thread.

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
    decode_last_to_jpeg(data)
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

fn decode_last_to_jpeg(aus: Vec<Vec<u8>>) -> Result<Vec<u8>, SnapshotError> {
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
    encode_jpeg(&sample)
}

fn encode_jpeg(sample: &gst::Sample) -> Result<Vec<u8>, SnapshotError> {
    let err = |e: &dyn std::fmt::Display| SnapshotError::Decode(e.to_string());
    let caps = sample.caps().ok_or_else(|| SnapshotError::Decode("decoded frame has no caps".into()))?;
    let (pipeline, src, sink) =
        app_pipeline("appsrc name=src ! videoconvert ! jpegenc quality=85 ! appsink name=jpg sync=false", "jpg")?;
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
}
