//! Motion detection end to end, on a source vigil encodes: a raw-video file played at its
//! frame rate through a `pipeline:` camera (so vigil's encoder and the motion branch before
//! it run as for a V4L2 or Pi camera). The file is a still scene with sensor noise for 8 s,
//! a square crossing it from 8 s to 14 s, stillness, then from 18 s to 30 s a slow brightness
//! ramp (a dawn). The truth is known frame by frame; the server must find one range, within
//! 1 s of it, announce it on `GET /api/events`, and draw no motion for noise or the ramp.
//!
//! * `motion_is_one_range_and_noise_and_dawn_are_none`: the ranges API, the levels API, the
//!   SSE events and the peak thumbnail.
//! * `pass_through_constant_bitrate_motion_is_found_by_decoding`: the same scene encoded at a
//!   constant bitrate (x264 with filler: P-frame sizes flat through the motion, checked with
//!   ffprobe) as an MPEG-TS file, passed through without re-encoding; the camera is on the
//!   `decode` path and the same range, and only it, is found.
//! * `whip_constant_bitrate_motion_is_found`: the scene sent by a WHIP publisher (webrtcbin,
//!   x264 at a constant bitrate with filler) after 6 s more of stillness: the server's
//!   analysis child decodes it; one range within 1 s of when the publisher sent the motion,
//!   no range for noise or the ramp, recorded P-frame sizes flat (ffprobe).
//! * `the_test_pattern_is_recorded_in_colour_with_motion_on`: the motion branch's grey
//!   pictures do not turn the recording grey (the tee's formats are pinned).
//! * `motion_settings_out_of_range_are_refused_naming_the_field`: 400s from the camera API and
//!   the levels API, the old settings kept.

mod common;

use common::publisher::{PublishOptions, Publisher};
use common::{Server, get_bytes, http, read_until_within, serial, subscribe, wait_for};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const W: usize = 320;
const H: usize = 180;
const FPS: usize = 10;
/// Frames of the file (30 s).
const FRAMES: usize = 300;
/// The square crosses during these frames (8 s to 14 s).
const MOTION: std::ops::Range<usize> = 80..140;
/// The brightness ramp (18 s to 30 s).
const RAMP_FROM: usize = 180;

/// Writes the raw I420 file: a still scene (gradient and blocks) with ±4 levels of noise per
/// pixel and frame, the square during [`MOTION`], a +40 level ramp from [`RAMP_FROM`].
fn write_scene(path: &Path) {
    write_scene_after(path, 0);
}

/// [`write_scene`] after `lead` more frames of the still scene.
fn write_scene_after(path: &Path, lead: usize) {
    let mut seed = 0x2545_f491u32;
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        (seed % 9) as i32 - 4
    };
    let mut out = Vec::with_capacity(W * H * 3 / 2 * (lead + FRAMES));
    for g in 0..lead + FRAMES {
        let f = g.saturating_sub(lead);
        let lift = if f >= RAMP_FROM { ((f - RAMP_FROM) * 40 / (FRAMES - RAMP_FROM)) as i32 } else { 0 };
        let square = MOTION.contains(&f).then(|| (f - MOTION.start) * (W - 40) / MOTION.len());
        for y in 0..H {
            for x in 0..W {
                let mut v = 70 + (x * 60 / W) as i32 + if (x / 40 + y / 45) % 2 == 0 { 20 } else { 0 };
                if let Some(x0) = square
                    && (x0..x0 + 40).contains(&x)
                    && (70..110).contains(&y)
                {
                    v = 225;
                }
                out.push((v + lift + noise()).clamp(0, 255) as u8);
            }
        }
        out.extend(std::iter::repeat_n(128u8, W * H / 2)); // chroma: grey
    }
    std::fs::write(path, out).unwrap();
}

fn config(scene: &Path) -> String {
    config_with(&format!(
        "pipeline:filesrc location={} ! rawvideoparse width={W} height={H} format=i420 framerate={FPS}/1 ! identity sync=true",
        scene.display()
    ))
}

fn config_with(source: &str) -> String {
    format!(
        r#"
[[cameras]]
name = "yard"
source = "{source}"
width = {W}
height = {H}
fps = {FPS}
bitrate_kbps = 400
segment_seconds = 10
"#
    )
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let r = http("GET", &server.url(path), &[], None).unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)))
}

/// Capture time (ms) of the file's first frame: the start of the camera's first segment.
fn first_frame_ms(server: &Server) -> i64 {
    wait_for(Duration::from_secs(20), "the first segment", || {
        let (_, v) = get_json(server, "/api/cameras/yard/recordings?segments=true&start=0");
        v["segments"][0]["start_ms"].as_i64()
    })
    .unwrap()
}

/// The SSE events of `kind` in `text`, as JSON.
fn events(text: &str, kind: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter(|e| e.lines().any(|l| l == format!("event: {kind}")))
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}

#[test]
fn motion_is_one_range_and_noise_and_dawn_are_none() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.yuv");
    write_scene(&scene);
    let server = Server::start(&config(&scene));
    one_range_no_noise_no_dawn(&server);
    assert_eq!(server.camera("yard")["motion_path"], "picture", "raw frames, before vigil's encoder");
}

/// Encodes the raw scene at a constant bitrate into MPEG-TS; returns the P-frame sizes.
fn encode_cbr(raw: &Path, ts: &Path) -> Vec<(usize, u64)> {
    let size = format!("{W}x{H}");
    let out = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", &size, "-r"])
        .arg(FPS.to_string())
        .arg("-i")
        .arg(raw)
        .args(["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "baseline", "-g", "20", "-bf", "0"])
        .args(["-b:v", "300k", "-minrate", "300k", "-maxrate", "300k", "-bufsize", "30k"])
        .args(["-x264-params", "nal-hrd=cbr:force-cfr=1", "-muxrate", "400k", "-f", "mpegts"])
        .arg(ts)
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    p_frame_sizes(&["-select_streams", "v:0"], ts)
}

/// The P-frames of `file` as (packet number, size), by ffprobe with `input` options.
fn p_frame_sizes(input: &[&str], file: &Path) -> Vec<(usize, u64)> {
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(input)
        .args(["-show_entries", "packet=size,flags", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .filter_map(|(i, l)| {
            let (size, flags) = l.split_once(',')?;
            let size = size.parse().ok()?;
            (!flags.contains('K')).then_some((i, size))
        })
        .collect()
}

#[test]
fn pass_through_constant_bitrate_motion_is_found_by_decoding() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (raw, ts) = (dir.path().join("scene.yuv"), dir.path().join("scene.ts"));
    write_scene(&raw);
    let sizes = encode_cbr(&raw, &ts);
    // The premise: the P-frames carry no sign of the motion.
    let mean = |frames: &mut dyn Iterator<Item = u64>| {
        let v: Vec<u64> = frames.collect();
        v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
    };
    let moving = mean(&mut sizes.iter().filter(|(i, _)| MOTION.contains(i)).map(|(_, s)| *s));
    let still = mean(&mut sizes.iter().filter(|(i, _)| (20..MOTION.start).contains(i)).map(|(_, s)| *s));
    assert!(sizes.len() > 250 && moving < still * 1.3, "constant bitrate: P-frames {moving} moving vs {still} still");

    let server = Server::start(&config_with(&format!("file:{}", ts.display())));
    one_range_no_noise_no_dawn(&server);
    assert_eq!(server.camera("yard")["motion_path"], "decode", "every frame decoded at constant bitrate");
}

#[test]
fn whip_constant_bitrate_motion_is_found() {
    const LEAD: usize = 60; // 6 s: the publisher connects while the scene is still
    const TOKEN: &str = "yard-publisher-token-0123";
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("scene.yuv");
    write_scene_after(&raw, LEAD);
    let server = Server::start(&format!(
        "[[cameras]]\nname = \"yard\"\nsource = \"whip\"\npublish_token = \"{TOKEN}\"\nsegment_seconds = 10\n"
    ));
    let (mut sse, head) = subscribe(server.port(), "?types=activity_start,activity_end&camera=yard");
    let opts = PublishOptions {
        width: W as u32,
        height: H as u32,
        fps: FPS as u32,
        key_int: 10,
        video: Some(format!(
            "filesrc location={} ! rawvideoparse width={W} height={H} format=i420 framerate={FPS}/1 ! identity sync=true",
            raw.display()
        )),
        cbr_kbps: Some(300),
        ..Default::default()
    };
    let publisher = Publisher::new(&opts).expect("publisher");
    // Frame f of the file is sent at about running time f / FPS (the truth is measured on
    // the recording below).
    let zero_ms = publisher.running_zero_ms();
    let publishing = publisher.publish(&server.base(), "yard", TOKEN).expect("publish");
    let frame_ms = |f: usize| zero_ms + ((LEAD + f) * 1000 / FPS) as i64;

    let text = read_until_within(&mut sse, head, Duration::from_secs(50), |t| t.contains("event: activity_end"));
    let text = String::from_utf8_lossy(&text).into_owned();
    let ended = events(&text, "activity_end");
    assert_eq!((events(&text, "activity_start").len(), ended.len()), (1, 1), "{text}\n{}", server.log());
    let (s_ms, e_ms) = (ended[0]["start_ms"].as_i64().unwrap(), ended[0]["end_ms"].as_i64().unwrap());
    assert_eq!(server.camera("yard")["motion_path"], "decode", "every frame decoded at constant bitrate");

    // The ramp plays out (the file ends 30 s after the lead); then nothing else was a range.
    std::thread::sleep(Duration::from_millis((frame_ms(FRAMES) + 500 - now_ms()).max(0) as u64));
    assert_eq!(publishing.delete().expect("DELETE"), 200);
    let (_, v) = get_json(&server, &format!("/api/cameras/yard/activity?start={zero_ms}&end={}", frame_ms(FRAMES)));
    assert_eq!(v["ranges"].as_array().map(Vec::len), Some(1), "noise and the dawn ramp made no range: {v}");

    // The truth: the capture times of the recorded frames that show the square.
    let (truth_start, truth_end) = recorded_square_ms(&server);
    assert!((s_ms - truth_start).abs() <= 1000, "start {s_ms} vs truth {truth_start}");
    assert!((e_ms - truth_end).abs() <= 1000, "end {e_ms} vs truth {truth_end}");

    // The premise: what the server recorded has no P-frame large enough for the bitstream
    // score (2x its baseline) to see the motion: the rate control caps them.
    let mut sizes = recorded_p_frame_sizes(&server.data_dir().join("yard"));
    sizes.sort_unstable();
    let (median, max) = (sizes.get(sizes.len() / 2).copied().unwrap_or(0), sizes.last().copied().unwrap_or(0));
    assert!(
        sizes.len() > 200 && max * 4 <= median * 5,
        "constant bitrate: P-frames up to {max} bytes, median {median}"
    );
}

/// When the recording of camera `yard` shows the square: the capture time of its first frame
/// with it and of the first frame after (frames decoded by ffmpeg; the square is the only
/// thing brighter than 205 in rows 70-110; frame times from the segment listing).
fn recorded_square_ms(server: &Server) -> (i64, i64) {
    let segments = wait_for(Duration::from_secs(10), "every segment closed", || {
        let (_, v) = get_json(server, "/api/cameras/yard/recordings?segments=true&start=0");
        let segs = v["segments"].as_array().cloned().unwrap_or_default();
        segs.iter().all(|s| s["open"] == false).then_some(segs)
    })
    .unwrap();
    let mut files = recorded_segments(&server.data_dir().join("yard"));
    files.sort();
    assert_eq!(files.len(), segments.len(), "one file per listed segment: {files:?}");
    let mut shown = Vec::new();
    for (file, seg) in files.iter().zip(&segments) {
        let out = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-f", "h264", "-i"])
            .arg(file)
            .args(["-vf", &format!("crop={W}:40:0:70,signalstats,metadata=print:key=lavfi.signalstats.YMAX:file=-")])
            .args(["-fps_mode", "passthrough", "-f", "null", "-"])
            .output()
            .expect("ffmpeg runs");
        let ymax: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("lavfi.signalstats.YMAX=")?.trim().parse().ok())
            .collect();
        let (start, end, frames) = (seg["start_ms"].as_i64().unwrap(), seg["end_ms"].as_i64().unwrap(), ymax.len());
        let step = (end - start) as f64 / (frames.max(2) - 1) as f64;
        shown.extend(
            ymax.iter().enumerate().filter(|(_, y)| **y > 205.0).map(|(j, _)| start + (j as f64 * step) as i64),
        );
    }
    let (first, last) = (*shown.first().expect("the square is in the recording"), *shown.last().unwrap());
    (first, last + (1000 / FPS) as i64)
}

fn recorded_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let entries = |d: &Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default()
    };
    entries(dir)
        .into_iter()
        .filter(|p| p.is_dir())
        .flat_map(|d| entries(&d))
        .filter(|p| p.extension().is_some_and(|x| x == "h264"))
        .collect()
}

/// The P-frame sizes of every recorded segment under `dir` (its day folders; ffprobe on the
/// raw H.264).
fn recorded_p_frame_sizes(dir: &Path) -> Vec<u64> {
    let mut files = recorded_segments(dir);
    files.sort();
    files.iter().flat_map(|f| p_frame_sizes(&["-f", "h264"], f)).map(|(_, size)| size).collect()
}

/// The scene's checks: one range within 1 s of the truth, announced, with a thumbnail; no
/// motion for noise or the dawn ramp.
fn one_range_no_noise_no_dawn(server: &Server) {
    let (mut sse, head) = subscribe(server.port(), "?types=activity_start,activity_end&camera=yard");
    let t0 = first_frame_ms(server);
    let (truth_start, truth_end) = (t0 + (MOTION.start * 1000 / FPS) as i64, t0 + (MOTION.end * 1000 / FPS) as i64);

    // The range closes 5 s (the merge gap) after the square left: by 19 s of the file.
    let text = read_until_within(&mut sse, head, Duration::from_secs(40), |t| t.contains("event: activity_end"));
    let text = String::from_utf8_lossy(&text).into_owned();
    let started = events(&text, "activity_start");
    let ended = events(&text, "activity_end");
    assert_eq!((started.len(), ended.len()), (1, 1), "one range announced:\n{text}\n{}", server.log());
    let (s_ms, e_ms) = (ended[0]["start_ms"].as_i64().unwrap(), ended[0]["end_ms"].as_i64().unwrap());
    assert_eq!(started[0]["start_ms"].as_i64(), Some(s_ms));
    assert_eq!(ended[0]["camera"], "yard");
    assert!((s_ms - truth_start).abs() <= 1000, "start {s_ms} vs truth {truth_start}");
    assert!((e_ms - truth_end).abs() <= 1000, "end {e_ms} vs truth {truth_end}");

    // The whole file has played (the ramp included); the pipeline then ends and restarts.
    std::thread::sleep(Duration::from_millis((t0 + 31_000 - now_ms()).max(0) as u64));
    let (status, v) = get_json(server, &format!("/api/cameras/yard/activity?start={t0}&end={}", t0 + 30_000));
    assert_eq!(status, 200, "{v}");
    let ranges = v["ranges"].as_array().unwrap();
    assert_eq!(ranges.len(), 1, "noise and the dawn ramp made no range: {v}");
    let r = &ranges[0];
    assert_eq!((r["start_ms"].as_i64(), r["end_ms"].as_i64()), (Some(s_ms), Some(e_ms)));
    assert!(r["peak"].as_f64().unwrap() > 0.01, "{r}");
    let peak_ms = r["peak_ms"].as_i64().unwrap();
    assert!((s_ms..=e_ms).contains(&peak_ms), "{r}");
    let thumb = http("GET", &server.url(r["thumbnail"].as_str().unwrap()), &[], None).unwrap();
    assert_eq!((thumb.status, thumb.header("content-type")), (200, Some("image/jpeg")), "{}", thumb.body);

    // Levels are stored every 5 s: wait for the file's last seconds (a looping file goes on).
    let levels = wait_for(Duration::from_secs(15), "the levels of the whole file", || {
        let (status, v) =
            get_json(server, &format!("/api/cameras/yard/activity/levels?start={t0}&end={}&step=1s", t0 + 30_000));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["step_ms"], 1000);
        let levels: Vec<Option<f64>> = v["levels"].as_array().unwrap().iter().map(Value::as_f64).collect();
        (levels.len() >= 30 && levels[28].is_some()).then_some(levels)
    })
    .unwrap();
    // Second k of the levels covers file time [k - offset, k + 1 - offset), offset < 1 s.
    let still: Vec<usize> = (1..7).chain(16..29).collect();
    assert!(still.iter().all(|&k| levels[k].unwrap_or(0.0) == 0.0), "no motion while still or in the ramp: {levels:?}");
    let analysed = still.iter().filter(|&&k| levels[k].is_some()).count();
    assert!(analysed + 2 >= still.len(), "the still seconds were analysed: {levels:?}");
    assert!((9..13).all(|k| levels[k].unwrap_or(0.0) > 0.01), "motion while the square crosses: {levels:?}");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn the_test_pattern_is_recorded_in_colour_with_motion_on() {
    let _serial = serial();
    let server = Server::start_default();
    server.wait_running("test");
    assert_eq!(server.camera("test")["motion_path"], "picture");
    let jpeg = wait_for(Duration::from_secs(20), "a picture of the test camera", || {
        let (status, body) = get_bytes(&server.url("/api/cameras/test/latest.jpg")).ok()?;
        (status == 200).then_some(body)
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latest.jpg");
    std::fs::write(&path, &jpeg).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-vf", "signalstats,metadata=print:file=-", "-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let stats = String::from_utf8_lossy(&out.stdout);
    let stat = |key: &str| -> f64 {
        stats.lines().find_map(|l| l.strip_prefix(&format!("lavfi.signalstats.{key}="))?.trim().parse().ok()).unwrap()
    };
    // SMPTE bars: blue and red chroma far from grey (128) both ways.
    assert!(
        stat("UMAX") - stat("UMIN") > 100.0 && stat("VMAX") - stat("VMIN") > 100.0,
        "colour in the picture: {stats}"
    );
}

#[test]
fn motion_settings_out_of_range_are_refused_naming_the_field() {
    let _serial = serial();
    let server = Server::start_default();
    let post = |body: Value| {
        let r =
            http("POST", &server.url("/api/cameras"), &[("Content-Type", "application/json")], Some(&body.to_string()))
                .unwrap();
        (r.status, r.body)
    };
    let (status, text) =
        post(json!({"name": "front", "width": 320, "height": 240, "fps": 10, "motion_sensitivity": 0}));
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("motion_sensitivity"), "{text}");
    let (status, text) = post(json!({"name": "front", "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 300}));
    assert_eq!(status, 201, "{text}");
    let patch = |body: Value| {
        let r = http(
            "PATCH",
            &server.url("/api/cameras/front"),
            &[("Content-Type", "application/merge-patch+json")],
            Some(&body.to_string()),
        )
        .unwrap();
        (r.status, r.body)
    };
    for (body, field) in [
        (json!({"motion_sensitivity": 0}), "motion_sensitivity"),
        (json!({"motion_sensitivity": 101}), "motion_sensitivity"),
        (json!({"motion_min_area": 0}), "motion_min_area"),
        (json!({"motion_min_area": 1.5}), "motion_min_area"),
        (json!({"motion_masks": [[[0.1, 0.1], [0.5, 0.1]]]}), "motion_masks"),
        (json!({"motion_masks": [[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]]]}), "motion_masks"),
        (json!({"motion_masks": "everywhere"}), "motion_masks"),
        (json!({"activity_merge_gap": "2h"}), "activity_merge_gap"),
    ] {
        let (status, text) = patch(body.clone());
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(field), "{body}: the reason names {field}: {text}");
    }
    let cam = server.camera("front");
    assert_eq!((cam["motion"].as_bool(), cam["motion_sensitivity"].as_u64()), (Some(true), Some(50)), "{cam}");
    let (status, text) = patch(json!({"motion_sensitivity": 80, "motion_masks": [[[0, 0], [0.5, 0], [0.5, 0.5]]]}));
    assert_eq!(status, 200, "{text}");
    assert_eq!(server.camera("front")["motion_sensitivity"], 80);

    for (q, word) in [("step=500ms", "step"), ("step=1s&start=0&end=86400000", "step"), ("start=yesterday", "start")] {
        let r = http("GET", &server.url(&format!("/api/cameras/front/activity/levels?{q}")), &[], None).unwrap();
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(r.body.contains(word), "{q}: {}", r.body);
    }
    let r = http("GET", &server.url("/api/cameras/nobody/activity"), &[], None).unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
}
