//! Pictures the runtime makes from segment files: the last known good picture of a camera
//! (its newest keyframe, from the folder its capture writes) and what a probe found (codec,
//! size, frame rate and a JPEG of its first keyframe). Blocking: call from a blocking thread.

use crate::history::h264::ParamSets;
use crate::history::plan::{SegmentInput, load_segment};
use crate::history::snapshot::decode_last_to_jpeg;
use crate::segment::path::{SegmentFiles, newest_segment};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The widest picture kept as a camera's latest (pages show it as a card or poster).
pub const LATEST_MAX_WIDTH: u32 = 1280;

fn read_au(seg: &SegmentInput, offset: u64, len: u32) -> Result<Vec<u8>, String> {
    if len > 16 << 20 {
        return Err("access unit too large".into());
    }
    let f = std::fs::File::open(&seg.data).map_err(|e| format!("opening {}: {e}", seg.data.display()))?;
    let mut b = vec![0u8; len as usize];
    f.read_exact_at(&mut b, offset).map_err(|e| format!("reading {}: {e}", seg.data.display()))?;
    Ok(b)
}

/// A JPEG of the newest keyframe in a camera's folder.
pub fn newest_keyframe_jpeg(camera_dir: &Path) -> Result<Vec<u8>, String> {
    let files = newest_segment(camera_dir).map_err(|e| e.to_string())?.ok_or("no segment yet")?;
    let seg = load_segment(&files).map_err(|e| e.to_string())?;
    let key = seg.records.iter().rev().find(|r| r.is_keyframe()).ok_or("no keyframe yet")?;
    let au = read_au(&seg, key.offset, key.len)?;
    decode_last_to_jpeg(vec![au], Some(LATEST_MAX_WIDTH)).map_err(|e| e.to_string())
}

/// What a probe's segment shows.
#[derive(Debug)]
pub struct ProbePicture {
    /// RFC 6381 codec string.
    pub codec: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second over what was written (None with fewer than two frames).
    pub fps: Option<f64>,
    /// JPEG of the first keyframe.
    pub jpeg: Vec<u8>,
}

/// Looks at the segment a probe wrote.
pub fn probe_picture(files: &SegmentFiles) -> Result<ProbePicture, String> {
    let seg = load_segment(files).map_err(|e| e.to_string())?;
    let key = seg.records.iter().find(|r| r.is_keyframe()).ok_or("the source produced no keyframe")?;
    let au = read_au(&seg, key.offset, key.len)?;
    let params = ParamSets::from_annexb(&au)
        .ok_or("the keyframe carries no SPS/PPS")?
        .map_err(|e| format!("the stream's SPS does not parse: {e}"))?;
    let info = params.info();
    let fps = match (seg.records.first(), seg.records.last()) {
        (Some(a), Some(b)) if seg.records.len() >= 2 && b.pts_us > a.pts_us => {
            let v = (seg.records.len() - 1) as f64 / ((b.pts_us - a.pts_us) as f64 / 1e6);
            Some((v * 10.0).round() / 10.0)
        }
        _ => None,
    };
    let jpeg = decode_last_to_jpeg(vec![au], None).map_err(|e| e.to_string())?;
    Ok(ProbePicture { codec: info.codec(), width: u32::from(info.width), height: u32::from(info.height), fps, jpeg })
}
