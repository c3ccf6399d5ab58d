//! Export without transcoding: record real segments with `vigil capture` (a 5 s test pattern,
//! 2 s segments), build MP4 and fMP4 from them, and check with independent tools (ffprobe,
//! ffmpeg) what a user would get: H.264 640x360, the frames of the range, its duration,
//! a clean decode, and byte ranges that match the whole file.

use std::path::{Path, PathBuf};
use std::process::Command;

use vigil::history::mp4::Mp4File;
use vigil::history::plan::{FileSource, Plan, SegmentInput, load_segment};
use vigil::segment::path::list_segments;

const FPS: f64 = 30.0;

const CONFIG: &str = r#"
[[cameras]]
name = "test"
source = "pipeline:videotestsrc is-live=true num-buffers=150 ! video/x-raw,width=640,height=360,framerate=30/1"
width = 640
height = 360
fps = 30
bitrate_kbps = 500
keyframe_interval_s = 1.0
segment_seconds = 2
encoder = "x264"
"#;

/// Runs the real capture path until the pipeline's end of stream; returns the segments.
fn record(dir: &Path) -> Vec<SegmentInput> {
    let config = dir.join("vigil.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let data = dir.join("data");
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["capture", "--camera", "test", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run vigil capture");
    // The capture exits (non-zero: "end of stream") when the test source runs out.
    let files = list_segments(&data.join("test")).unwrap();
    assert!(
        files.len() >= 3,
        "expected >= 3 segments of 2 s from 5 s of video, got {}; capture stderr:\n{}",
        files.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    files.iter().map(|f| load_segment(f).unwrap()).collect()
}

fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-count_frames", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Decodes every frame; any decoder complaint fails.
fn decode_clean(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffmpeg decode of {}: {stderr}", path.display());
}

struct Probe {
    codec: String,
    width: u64,
    height: u64,
    frames: i64,
    duration_s: f64,
}

fn probe(path: &Path) -> Probe {
    let j = ffprobe(path);
    let s = &j["streams"][0];
    let num = |v: &serde_json::Value| -> f64 {
        v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a number: {v} in {j}"))
    };
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
        frames: num(&s["nb_read_frames"]) as i64,
        duration_s: num(&j["format"]["duration"]),
    }
}

/// Frames recorded in [start, end).
fn frames_in(segs: &[SegmentInput], start: i64, end: i64) -> i64 {
    segs.iter().flat_map(|s| &s.records).filter(|r| (start..end).contains(&r.pts_us)).count() as i64
}

fn write_mp4(file: &Mp4File, path: &Path) {
    let mut out = std::fs::File::create(path).unwrap();
    let n = file.write_range(0..file.len(), FileSource::new(), &mut out).unwrap();
    assert_eq!(n, file.len());
}

fn check(p: &Probe, frames: i64, duration_s: f64, what: &str) {
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 640, 360), "{what}");
    assert!((p.frames - frames).abs() <= 1, "{what}: {} frames, expected {frames} ± 1", p.frames);
    assert!(
        (p.duration_s - duration_s).abs() <= 1.0 / FPS + 1e-3,
        "{what}: duration {} s, expected {duration_s} s ± 1 frame",
        p.duration_s
    );
}

#[test]
fn export_mp4_and_fmp4_from_recorded_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let segs = record(tmp.path());
    let first = segs[0].records[0].pts_us;
    let last = segs.last().unwrap().records.last().unwrap().pts_us;
    let source = FileSource::new();

    // 1. Everything: from the first AU to past the last.
    let all = Mp4File::new(Plan::build(&segs, first..last + 1, &source).unwrap()).unwrap();
    let all_path = tmp.path().join("all.mp4");
    write_mp4(&all, &all_path);
    let frames = frames_in(&segs, first, last + 1);
    let p = probe(&all_path);
    check(&p, frames, frames as f64 / FPS, "whole recording");
    decode_clean(&all_path);

    // 2. A sub-range across segments starting mid-GOP (0.5 s into the second GOP) and
    //    ending 0.7 s into the second segment: the edit list hides the frames before the
    //    start. (Rotation happens at a keyframe, so the first segment lasts 2 or 3 s.)
    let start = first + 1_500_000;
    let end = (segs[1].records[0].pts_us + 700_000).min(last);
    let sub = Mp4File::new(Plan::build(&segs, start..end, &source).unwrap()).unwrap();
    assert!(sub.plan().skip_90k() > 0, "starts mid-GOP");
    assert!(sub.plan().segments().len() >= 2, "spans segments");
    let sub_path = tmp.path().join("sub.mp4");
    write_mp4(&sub, &sub_path);
    let p = probe(&sub_path);
    check(&p, frames_in(&segs, start, end), (end - start) as f64 / 1e6, "mid-GOP sub-range");
    decode_clean(&sub_path);
    assert!(sub.etag() != all.etag());
    assert_eq!(
        sub.etag(),
        Mp4File::new(Plan::build(&segs, start..end, &source).unwrap()).unwrap().etag(),
        "same inputs, same etag"
    );

    // 3. Range reads equal the same bytes of the whole file.
    let whole = std::fs::read(&sub_path).unwrap();
    let len = sub.len();
    for (a, b) in [(0, 100), (0, len), (5, 4000), (len / 3, len / 2), (len - 1, len), (700, 700), (1000, len)] {
        let mut got = Vec::new();
        sub.write_range(a..b, &source, &mut got).unwrap();
        assert_eq!(got, &whole[a as usize..b as usize], "range {a}..{b}");
    }

    // 4. fMP4: the init segment and one fragment per GOP, concatenated, is a valid stream.
    let plan = Plan::build(&segs, start..end, &source).unwrap();
    let mut fmp4 = plan.init_segment(0).unwrap().to_vec();
    for (i, gop) in plan.gops().into_iter().enumerate() {
        fmp4.extend_from_slice(&plan.fragment(gop, i as u32 + 1, None, &source).unwrap());
    }
    let frag_path: PathBuf = tmp.path().join("frag.mp4");
    std::fs::write(&frag_path, &fmp4).unwrap();
    let p = probe(&frag_path);
    let n = plan.samples().len() as i64;
    check(&p, n, plan.media_duration_90k() as f64 / 90_000.0, "fMP4 stream");
    decode_clean(&frag_path);

    // Keep the files for a person to look at when asked to.
    if let Some(dir) = std::env::var_os("VIGIL_TEST_ARTIFACTS") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (f, name) in [(&all_path, "export-all.mp4"), (&sub_path, "export-sub.mp4"), (&frag_path, "export-fmp4.mp4")]
        {
            std::fs::copy(f, dir.join(name)).unwrap();
        }
        std::fs::write(dir.join("export-sub.mp4.txt"), vigil::history::dump::dump(&whole)).unwrap();
    }
}
