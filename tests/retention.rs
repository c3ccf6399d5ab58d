//! Retention by bytes: a camera with a budget of a few segments keeps deleting its oldest
//! recordings, stays within budget + one segment, never leaves a hole in the middle, and
//! removes the files from disk. A segment that an export is still reading is not deleted
//! under it: a slow download of the oldest recordings completes in full and plays, and the
//! segment goes once the download is done. Every segment gets a thumbnail (`.jpg`), and no
//! thumbnail outlives its segment.
//!
//! Sizes: the slow export must be larger than what the server can have read ahead of the
//! reader, or it is done with its segments (and rightly lets them go) long before the download
//! ends. Ahead of a paused reader sit the kernel's socket buffer (about 4 MB on loopback,
//! `net.ipv4.tcp_wmem`), the response body's queue (4 chunks of up to 1 MiB) and the chunk
//! being written: about 9 MB. So the camera records noise (`videotestsrc pattern=snow`, which
//! x264 cannot compress below its bitrate) at 20 Mbit/s, ~5 MB per 2 s segment (~7.5 MB when
//! a segment runs on to the keyframe at 3 s), under a 24 MB budget: the closed segments kept,
//! which the export covers, always hold more than 16 MB.

mod common;
mod history_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Server, serial, wait_for};
use history_support::{
    FPS, FRAME_MS, Listing, SlowDownload, decode_errors, keep_artifact, probe, recordings, segment_files,
    thumbnail_files,
};

const CAMERA: &str = "gate";

/// Three to five segments (see above).
const BUDGET: i64 = 24_000_000;

const CONFIG: &str = r#"
[server]
min_free_bytes = 0

[[cameras]]
name = "gate"
source = "pipeline:videotestsrc is-live=true pattern=snow ! video/x-raw,width=640,height=360,framerate=30/1"
width = 640
height = 360
fps = 30
bitrate_kbps = 20000
keyframe_interval_s = 1.0
segment_seconds = 2
encoder = "x264"
retain_bytes = 24000000
"#;

/// Thumbnails on disk whose segment (`.h264`) is gone.
fn orphan_thumbnails(data_dir: &std::path::Path) -> Vec<PathBuf> {
    thumbnail_files(data_dir, CAMERA)
        .into_iter()
        .map(|(_, p)| p)
        .filter(|p| !p.with_extension("h264").exists())
        .collect()
}

/// Waits (10 s) until no thumbnail is left without its segment (deletion unlinks the
/// `.h264` a moment before the `.jpg`).
fn assert_no_orphan_thumbnails(data_dir: &std::path::Path, when: &str) {
    let mut orphans = Vec::new();
    wait_for(Duration::from_secs(10), "no thumbnail without its segment", || {
        orphans = orphan_thumbnails(data_dir);
        orphans.is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{when}: {e}: {orphans:?}"));
}

fn closed_bytes(l: &Listing) -> i64 {
    l.segments.iter().map(|s| s.bytes).sum()
}

/// The `.h264` and `.idx` files of the segment listed as starting at `start_ms`.
fn files_of(data_dir: &std::path::Path, start_ms: i64) -> Vec<PathBuf> {
    segment_files(data_dir, CAMERA)
        .into_iter()
        .filter(|(us, _)| us / 1000 == start_ms)
        .flat_map(|(_, p)| [p.with_extension("idx"), p])
        .collect()
}

#[test]
fn oldest_segments_go_first_within_budget_but_not_under_a_reader() {
    let _serial = serial();
    assert!(CONFIG.contains(&format!("retain_bytes = {BUDGET}\n")));
    let server = Server::start(CONFIG);
    server.wait_running(CAMERA);
    let port = server.port();
    let data_dir = server.data_dir();

    // 1. ~15 s of recording (about seven segments) under the budget, watched twice a second.
    let began = Instant::now();
    let mut seen: BTreeMap<i64, history_support::Seg> = BTreeMap::new();
    let mut files_seen: BTreeMap<i64, Vec<PathBuf>> = BTreeMap::new();
    let mut biggest = 0i64;
    let mut first_start = i64::MIN;
    let mut deleted: Vec<i64> = Vec::new();
    loop {
        let l = recordings(port, CAMERA, None);
        let closed = l.closed();
        for s in &closed {
            seen.insert(s.start_ms, (*s).clone());
            biggest = biggest.max(s.bytes);
        }
        for (us, p) in segment_files(&data_dir, CAMERA) {
            files_seen.entry(us / 1000).or_insert_with(|| vec![p.with_extension("idx"), p.with_extension("jpg"), p]);
        }
        let total = closed_bytes(&l);
        assert!(
            total <= BUDGET + biggest,
            "{total} bytes listed, budget {BUDGET} + one segment ({biggest}): {}",
            l.json
        );
        assert!(l.runs.len() <= 1, "no gap in what is kept: {}", l.json);
        if let Some(first) = l.segments.first() {
            assert!(first.start_ms >= first_start, "the earliest recording moved back from {first_start}: {}", l.json);
            first_start = first.start_ms;
            // Everything seen from the earliest kept segment on is still there: deletion
            // takes the oldest, never one in the middle.
            for s in seen.keys().filter(|&&s| s >= first.start_ms) {
                assert!(
                    l.segments.iter().any(|x| x.start_ms == *s),
                    "segment starting at {s} vanished while older ones remain: {}",
                    l.json
                );
            }
            deleted = seen.keys().copied().filter(|&s| s < first.start_ms).collect();
        }
        if began.elapsed() >= Duration::from_secs(15) && deleted.len() >= 2 {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "after 60 s retention deleted {} segments (of {} seen, biggest {biggest} bytes): {}",
            deleted.len(),
            seen.len(),
            l.json
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The deleted segments' files are gone from disk, and no file is left without a row.
    wait_for(Duration::from_secs(10), "deleted files to be unlinked", || {
        deleted.iter().flat_map(|s| files_seen.get(s).into_iter().flatten()).all(|p| !p.exists()).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: still on disk: {:?}",
            deleted
                .iter()
                .flat_map(|s| files_seen.get(s).into_iter().flatten())
                .filter(|p| p.exists())
                .collect::<Vec<_>>()
        )
    });
    let mut orphans = Vec::new();
    wait_for(Duration::from_secs(10), "every file on disk listed", || {
        let l = recordings(port, CAMERA, None);
        orphans = segment_files(&data_dir, CAMERA)
            .into_iter()
            .filter(|(us, _)| !l.segments.iter().any(|s| s.start_ms == us / 1000))
            .collect();
        orphans.is_empty().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: files without a recording: {orphans:?}"));
    // Thumbnails: made for the kept segments, none left for the deleted ones.
    assert_no_orphan_thumbnails(&data_dir, "after retention deleted segments");
    wait_for(Duration::from_secs(20), "thumbnails of the kept closed segments", || {
        let kept = recordings(port, CAMERA, None);
        let thumbs = thumbnail_files(&data_dir, CAMERA);
        kept.closed().iter().all(|s| thumbs.iter().any(|(us, _)| us / 1000 == s.start_ms)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", thumbnail_files(&data_dir, CAMERA)));

    // 2. A slow export of the oldest recordings: the download starts, then the reader pauses
    //    (taking a few KB now and then) while retention would delete the oldest segment.
    //    Retention may delete the oldest segment between the listing and the request: then
    //    the export would not cover it, so list again once the download has started (the
    //    export holds its segments from the moment it answers) and retry if it moved.
    let mut attempt = 0;
    let (mut dl, l, oldest, newest, start, end, path) = loop {
        attempt += 1;
        let l = recordings(port, CAMERA, None);
        let closed = l.closed();
        assert!(closed.len() >= 2, "closed segments to export: {}", l.json);
        let oldest = closed[0].clone();
        let newest = closed[closed.len() - 1].clone();
        let (start, end) = (oldest.start_ms, newest.end_ms);
        let path = format!("/api/cameras/{CAMERA}/video.mp4?start={start}&end={end}");
        let dl = SlowDownload::start(port, &path);
        assert_eq!(dl.status, 200, "GET {path}: {:?}", dl.headers);
        let after = recordings(port, CAMERA, None);
        if after.segments.first().map(|s| s.start_ms) == Some(oldest.start_ms) {
            break (dl, after, oldest, newest, start, end, path);
        }
        assert!(attempt < 5, "the oldest segment keeps moving: {}", after.json);
    };
    assert!(dl.len > 12_000_000, "GET {path}: an export much larger than the server can read ahead ({} bytes)", dl.len);
    dl.read_some(4096);

    let mut last = l;
    wait_for(Duration::from_secs(40), "retention to want the oldest segment gone", || {
        dl.read_some(2048);
        let l = recordings(port, CAMERA, None);
        let first = l.segments.first().cloned();
        // Without the reader, the oldest would be gone by now: the rest is over budget.
        let over = closed_bytes(&l) - oldest.bytes > BUDGET;
        let newer = l.closed().iter().filter(|s| s.start_ms > newest.start_ms).count();
        last = l;
        assert_eq!(
            first.as_ref().map(|s| s.start_ms),
            Some(oldest.start_ms),
            "the segment being exported was deleted under the reader ({} of {} bytes read): {}",
            dl.body.len(),
            dl.len,
            last.json
        );
        let on_disk = files_of(&data_dir, oldest.start_ms);
        assert!(
            on_disk.len() == 2 && on_disk.iter().all(|p| p.exists()),
            "the files of the segment being exported are on disk: {on_disk:?}"
        );
        (over && newer >= 2).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; last listing: {}", last.json));

    // The download completes in full and plays.
    dl.finish(16 * 1024);
    assert_eq!(dl.body.len() as u64, dl.len, "GET {path}: body vs Content-Length");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("slow-export.mp4");
    std::fs::write(&file, &dl.body).unwrap();
    keep_artifact(&file, "retention-slow-export.mp4");
    let p = probe(&file);
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 640, 360), "{p:?}");
    let want_s = (end - start) as f64 / 1000.0;
    assert!(
        (p.duration_s - want_s).abs() <= FRAME_MS / 1000.0 + 2e-3,
        "duration {} s, requested {want_s} s: {p:?}",
        p.duration_s
    );
    assert!((p.frames as f64 - p.duration_s * FPS).abs() <= 1.0 + 1e-6, "frame count vs duration at 30 fps: {p:?}");
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg decode of the slow export: {errors}");
    drop(dl);

    // Once the reader is done, the oldest segment goes (at the next segment close).
    wait_for(Duration::from_secs(30), "the exported oldest segment to be deleted", || {
        let l = recordings(port, CAMERA, None);
        let gone = !l.segments.iter().any(|s| s.start_ms == oldest.start_ms);
        last = l;
        (gone && files_of(&data_dir, oldest.start_ms).is_empty()).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; last listing: {}", last.json));
    assert!(
        closed_bytes(&last) <= BUDGET + biggest.max(newest.bytes),
        "back within budget + one segment: {}",
        last.json
    );
    assert_no_orphan_thumbnails(&data_dir, "after the exported segment was deleted");
}
