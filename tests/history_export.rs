//! Recorded history through the HTTP API of a running `vigil serve`: a 640x360 30 fps test
//! pattern recorded in 2 s segments is listed (segments, one continuous run), and a range that
//! crosses segment boundaries and starts mid-GOP is exported as one MP4 that ffprobe and ffmpeg
//! accept with the requested duration and frame count. Byte ranges, the ETag and the error
//! statuses are what a browser or a download tool would see.

mod common;
mod history_support;

use std::time::Duration;

use common::{Server, http, serial, wait_for};
use history_support::{FPS, FRAME_MS, Listing, config, decode_errors, get, keep_artifact, probe, recordings};

const CAMERA: &str = "yard";

/// A one-line plain-text reason: non-empty, no line break inside.
fn assert_one_line(what: &str, body: &str) {
    let line = body.strip_suffix('\n').unwrap_or(body);
    assert!(!line.trim().is_empty() && !line.contains('\n'), "{what}: expected a one-line reason, got {body:?}");
}

#[test]
fn recorded_segments_are_listed_and_export_as_playable_mp4() {
    let _serial = serial();
    let server = Server::start(&config(CAMERA, 2, ""));
    server.wait_running(CAMERA);
    let port = server.port();

    // ~8 s of recording: at least three closed 2 s segments, all in one run.
    let mut listing: Option<Listing> = None;
    wait_for(Duration::from_secs(40), ">= 3 closed segments", || {
        let l = recordings(port, CAMERA, None);
        let enough = l.closed().len() >= 3;
        listing = Some(l);
        enough.then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; last listing: {:?}", listing.as_ref().map(|l| &l.json)));
    let l = listing.unwrap();
    assert_eq!(l.runs.len(), 1, "one continuous run: {}", l.json);
    let closed = l.closed();
    for s in &closed {
        assert!(
            s.end_ms > s.start_ms && s.bytes > 0 && s.frames > 0,
            "closed segment with content: {s:?} in {}",
            l.json
        );
        // A segment ends at the first keyframe at or after 2 s (keyframe every 1 s).
        let len = s.end_ms - s.start_ms;
        assert!((1_900..=3_200).contains(&len), "2 s segment lasts {len} ms: {}", l.json);
    }
    for w in l.segments.windows(2) {
        assert!((w[1].start_ms - w[0].end_ms).abs() <= 100, "segments follow each other without a gap: {}", l.json);
    }
    let (run_start, run_end) = l.runs[0];
    assert!(run_start <= closed[0].start_ms && run_end >= closed[2].end_ms, "the run covers the segments: {}", l.json);

    // Export from 1.5 s into the first segment (mid-GOP: keyframes every second) to 0.7 s
    // into the third, across two segment boundaries. (A segment ends at the first keyframe
    // at or after 2 s, so it lasts 2 or 3 s.)
    let start = closed[0].start_ms + 1_500;
    let end = closed[1].end_ms + 700;
    assert!(end <= closed[2].end_ms && end > closed[1].end_ms, "the range spans three closed segments: {}", l.json);
    let path = format!("/api/cameras/{CAMERA}/video.mp4?start={start}&end={end}");
    let full = get(port, &path, &[]);
    assert_eq!(full.status, 200, "GET {path}: {}", full.text());
    assert_eq!(full.header("content-type"), Some("video/mp4"), "GET {path}");
    assert_eq!(full.content_length(), Some(full.body.len() as u64), "GET {path}: Content-Length vs body");
    let len = full.body.len();
    assert!(len > 100_000, "GET {path}: only {len} bytes for {} ms", end - start);
    // Progressive playback: the moov box comes before the media data.
    let moov = full.body.windows(4).position(|w| w == b"moov");
    let mdat = full.body.windows(4).position(|w| w == b"mdat");
    assert!(matches!((moov, mdat), (Some(m), Some(d)) if m < d), "moov first: moov at {moov:?}, mdat at {mdat:?}");

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("export.mp4");
    std::fs::write(&file, &full.body).unwrap();
    keep_artifact(&file, "history-export.mp4");
    let p = probe(&file);
    let want_s = (end - start) as f64 / 1000.0;
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 640, 360), "{p:?}");
    assert!(
        (p.duration_s - want_s).abs() <= FRAME_MS / 1000.0 + 1e-3,
        "duration {} s, requested {want_s} s (± 1 frame): {p:?}",
        p.duration_s
    );
    let want_frames = p.duration_s * FPS;
    assert!(
        (p.frames as f64 - want_frames).abs() <= 1.0 + 1e-6,
        "{} frames for {} s at 30 fps (± 1): {p:?}",
        p.frames,
        p.duration_s
    );
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg decode of the export: {errors}");

    // Byte ranges: exactly the same bytes as that slice of the full download.
    let n = len as u64;
    for (a, b) in [(0, 99), (1000, 50_999), (n / 3, n / 2), (n - 1, n - 1)] {
        let range = format!("bytes={a}-{b}");
        let r = get(port, &path, &[("Range", &range)]);
        assert_eq!(r.status, 206, "GET {path} Range: {range}: {}", r.text());
        assert_eq!(r.header("content-range"), Some(format!("bytes {a}-{b}/{n}").as_str()), "Range: {range}");
        assert_eq!(r.content_length(), Some(b - a + 1), "Range: {range}");
        assert!(
            r.body == full.body[a as usize..=b as usize],
            "Range: {range}: {} bytes differ from the full download's slice",
            r.body.len()
        );
    }
    let tail = get(port, &path, &[("Range", "bytes=-500")]);
    assert_eq!(tail.status, 206, "suffix range: {}", tail.text());
    assert_eq!(tail.header("content-range"), Some(format!("bytes {}-{}/{n}", n - 500, n - 1).as_str()));
    assert!(tail.body == full.body[len - 500..], "suffix range bytes");
    let open = get(port, &path, &[("Range", &format!("bytes={}-", n - 1234))]);
    assert_eq!(open.status, 206, "open-ended range: {}", open.text());
    assert!(open.body == full.body[len - 1234..], "open-ended range bytes");

    // The ETag is stable: same range, same file.
    let etag = full.header("etag").unwrap_or_else(|| panic!("GET {path}: no ETag in {:?}", full.headers)).to_owned();
    let again = get(port, &path, &[]);
    assert_eq!(again.status, 200);
    assert_eq!(again.header("etag"), Some(etag.as_str()), "ETag is stable");
    assert!(again.body == full.body, "the same range gives the same bytes");
    assert!(
        get(port, &path, &[("Range", "bytes=0-9")]).header("etag") == Some(etag.as_str()),
        "a range response carries the same ETag"
    );

    // Bad inputs: a status and a one-line reason.
    let first = closed[0].start_ms;
    let cases: Vec<(String, Option<&str>, u16)> = vec![
        (format!("/api/cameras/nosuchcam/video.mp4?start={start}&end={end}"), None, 404),
        (format!("/api/cameras/nosuchcam/recordings?start={start}&end={end}"), None, 404),
        (format!("/api/cameras/{CAMERA}/video.mp4?start=yesterday&end={end}"), None, 400),
        (format!("/api/cameras/{CAMERA}/recordings?start=yesterday&end={end}"), None, 400),
        (format!("/api/cameras/{CAMERA}/video.mp4?start={end}&end={start}"), None, 400),
        (format!("/api/cameras/{CAMERA}/video.mp4?start={start}&end={start}"), None, 400),
        (format!("/api/cameras/{CAMERA}/video.mp4?start={}&end={}", first - 7_200_000, first - 3_600_000), None, 404),
        (path.clone(), Some("bytes=999999999-"), 416),
    ];
    for (p, range, want) in cases {
        let headers: Vec<(&str, &str)> = range.map(|r| ("Range", r)).into_iter().collect();
        let r = http("GET", &server.url(&p), &headers, None).unwrap();
        assert_eq!(r.status, want, "GET {p} {headers:?}: {:?}", r.body);
        assert_one_line(&format!("GET {p} {headers:?}"), &r.body);
        if want == 416 {
            assert_eq!(r.header("content-range"), Some(format!("bytes */{n}").as_str()), "416 names the length");
        }
    }
}
