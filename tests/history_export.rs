//! Recorded history through the HTTP API of a running `vigil serve`: a 640x360 30 fps test
//! pattern recorded in 2 s segments is listed (segments, one continuous run), and a range that
//! crosses segment boundaries and starts mid-GOP is exported as one MP4 that ffprobe and ffmpeg
//! accept with the requested duration and frame count. Byte ranges, the ETag and the error
//! statuses are what a browser or a download tool would see. Each closed segment gets a
//! thumbnail file without anyone asking, served by time as a 320x180 JPEG (made again when
//! its file is gone), with cache headers; a time with no recording is a 404.

mod common;
mod history_support;

use std::time::Duration;

use common::{Server, http, serial, wait_for};
use history_support::{
    FPS, FRAME_MS, Listing, config, decode_errors, get, keep_artifact, probe, probe_image, recordings, segment_files,
    thumbnail_files,
};

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
    // Revalidation (RFC 9110 §13.1.2): the tag alone, in a list, weak, or `*`: 304 with the tag.
    for inm in [etag.clone(), format!("\"other\", {etag}"), format!("W/{etag}"), "*".to_owned()] {
        let r = get(port, &path, &[("If-None-Match", &inm)]);
        assert_eq!(r.status, 304, "If-None-Match: {inm}");
        assert!(r.body.is_empty(), "a 304 has no body");
        assert_eq!(r.header("etag"), Some(etag.as_str()), "a 304 carries the ETag (If-None-Match: {inm})");
    }
    assert_eq!(get(port, &path, &[("If-None-Match", "\"other\"")]).status, 200, "another tag: the file");

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

    thumbnails(&server, &l);
}

/// Thumbnails of the closed segments in `l`: made in the background when each segment
/// closed, served by time, made again on demand when the file is gone.
fn thumbnails(server: &Server, l: &Listing) {
    let port = server.port();
    let data_dir = server.data_dir();
    let closed = l.closed();
    // The worker made one beside each closed segment (nobody has asked for one yet).
    let mut on_disk = Vec::new();
    wait_for(Duration::from_secs(20), "a .jpg beside each closed segment", || {
        on_disk = thumbnail_files(&data_dir, CAMERA);
        closed.iter().all(|s| on_disk.iter().any(|(us, _)| us / 1000 == s.start_ms)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: thumbnails {on_disk:?}, segments {:?}", segment_files(&data_dir, CAMERA)));
    let file_of = |start_ms: i64| {
        thumbnail_files(&data_dir, CAMERA).into_iter().find(|(us, _)| us / 1000 == start_ms).map(|(_, p)| p)
    };

    let seg = closed[1];
    let path = format!("/api/cameras/{CAMERA}/thumbnail.jpg?t={}", seg.start_ms + 700);
    let r = get(port, &path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"), "GET {path}");
    let cache = r.header("cache-control").unwrap_or_default();
    assert!(cache.contains("immutable") && cache.contains("max-age="), "GET {path}: Cache-Control {cache:?}");
    let etag = r.header("etag").unwrap_or_else(|| panic!("GET {path}: no ETag in {:?}", r.headers)).to_owned();
    let kept = file_of(seg.start_ms).expect("the segment's .jpg");
    assert!(r.body == std::fs::read(&kept).unwrap(), "GET {path}: the body is the segment's {}", kept.display());
    let tmp = tempfile::tempdir().unwrap();
    let jpg = tmp.path().join("thumb.jpg");
    std::fs::write(&jpg, &r.body).unwrap();
    keep_artifact(&jpg, "history-thumbnail.jpg");
    assert_eq!(probe_image(&jpg), ("mjpeg".to_owned(), 320, 180), "GET {path}: a 640x360 picture scaled to 320 wide");

    // Revalidation: 304 with the same tag. RFC 3339 times name the same thumbnail.
    let r304 = get(port, &path, &[("If-None-Match", &etag)]);
    assert_eq!(r304.status, 304, "GET {path} If-None-Match: {}", r304.text());
    assert!(r304.body.is_empty() && r304.header("etag") == Some(etag.as_str()), "304: {:?}", r304.headers);
    let secs = (seg.start_ms + 700).div_euclid(1000);
    let rfc = format!("{}.{:03}Z", rfc3339_seconds(secs), (seg.start_ms + 700).rem_euclid(1000));
    let by_rfc = get(port, &format!("/api/cameras/{CAMERA}/thumbnail.jpg?t={rfc}"), &[]);
    assert_eq!((by_rfc.status, by_rfc.header("etag")), (200, Some(etag.as_str())), "t={rfc}: {}", by_rfc.text());

    // A thumbnail whose file is gone is made again, the same, and kept.
    std::fs::remove_file(&kept).unwrap();
    let again = get(port, &path, &[]);
    assert_eq!(again.status, 200, "GET {path} after deleting {}: {}", kept.display(), again.text());
    assert!(again.body == r.body, "made again: the same picture");
    assert!(kept.exists(), "made again and kept as {}", kept.display());

    // No recording at that time, unknown camera, no or bad time: a status and one line.
    let before = closed[0].start_ms - 3_600_000;
    for (p, want) in [
        (format!("/api/cameras/{CAMERA}/thumbnail.jpg?t={before}"), 404),
        (format!("/api/cameras/nosuchcam/thumbnail.jpg?t={}", seg.start_ms), 404),
        (format!("/api/cameras/{CAMERA}/thumbnail.jpg"), 400),
        (format!("/api/cameras/{CAMERA}/thumbnail.jpg?t=yesterday"), 400),
    ] {
        let r = http("GET", &server.url(&p), &[], None).unwrap();
        assert_eq!(r.status, want, "GET {p}: {:?}", r.body);
        assert_one_line(&format!("GET {p}"), &r.body);
    }
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SS` (UTC).
fn rfc3339_seconds(secs: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
