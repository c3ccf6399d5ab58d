//! Kill -9 mid-segment: the server and its capture child are SIGKILLed together while a 60 s
//! segment is being written, a torn tail is added to both files (a partial `.idx` record, a
//! partial access unit), and a new server starts on the same data directory. What a user
//! gets: the segment is closed at its last complete access unit (byte-exact files), at most
//! about a second before the kill is missing, it exports as a playable MP4 with every frame,
//! and no recording is left open but the new capture's. Its thumbnail, never made (the
//! writer never closed it), is made when asked for and kept; the gap between the kill and the
//! new capture has none.

mod common;
mod history_support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Server, serial, wait_for};
use history_support::{
    FPS, FRAME_MS, Restarted, config, decode_errors, get, keep_artifact, now_ms, probe, probe_image, read_idx,
    recordings, segment_files,
};

const CAMERA: &str = "porch";

/// Whether process `pid` is gone (or a zombie nobody has reaped yet).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f =
        std::fs::OpenOptions::new().append(true).open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(bytes).unwrap();
}

/// `select count(*) …` on the server's SQLite index, read directly (WAL: a second reader is
/// fine while the server runs).
fn db_count(db: &Path, sql: &'static str) -> i64 {
    let url = format!("sqlite://{}?mode=ro", db.display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
        let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        pool.close().await;
        n
    })
}

#[test]
fn kill9_mid_segment_loses_at_most_a_second_and_recovers_byte_exact() {
    let _serial = serial();
    let cfg = config(CAMERA, 60, "");
    let mut server = Server::start(&cfg);
    server.wait_running(CAMERA);
    let data_dir = server.data_dir();

    // ~6 s into a 60 s segment.
    let (start_us, h264) = wait_for(Duration::from_secs(40), "6 s of video in the open segment", || {
        let files = segment_files(&data_dir, CAMERA);
        let (us, p) = files.last()?.clone();
        (read_idx(&p.with_extension("idx")).len() >= 180).then_some((us, p))
    })
    .unwrap_or_else(|e| panic!("{e}; files: {:?}", segment_files(&data_dir, CAMERA)));
    let idx = h264.with_extension("idx");
    assert_eq!(segment_files(&data_dir, CAMERA).len(), 1, "one segment so far (60 s segments)");
    let before = recordings(server.port(), CAMERA, None);
    assert!(before.segments.len() == 1 && before.segments[0].open, "one open segment before the kill: {}", before.json);

    // SIGKILL the server and the capture child with one kill(1).
    let server_pid = server.pid().expect("server pid");
    let children = server.processes_using_data_dir();
    assert!(!children.is_empty(), "no capture child found using {}", data_dir.display());
    let kill_ms = now_ms();
    let status = Command::new("kill")
        .arg("-KILL")
        .arg(server_pid.to_string())
        .args(children.iter().map(u32::to_string))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -KILL {server_pid} {children:?}");
    server.kill9(); // reaps it
    wait_for(Duration::from_secs(10), "the capture child to die", || {
        children.iter().all(|&p| is_dead(p)).then_some(())
    })
    .unwrap();

    // What the writer left, then a torn tail on top: a partial record and a partial AU.
    let idx_before = std::fs::read(&idx).unwrap();
    let h264_before = std::fs::read(&h264).unwrap();
    let recs_before = read_idx(&idx);
    let last_before = *recs_before.last().expect("records before the kill");
    assert!(
        last_before.offset + u64::from(last_before.len) <= h264_before.len() as u64,
        "the writer appends an .idx record after its AU"
    );
    append(&idx, &[0xee; 13]);
    let mut junk = vec![0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x41];
    junk.extend(std::iter::repeat_n(0x5a, 3000));
    append(&h264, &junk);

    // A new server on the same data directory.
    let restarted = Restarted::start(server.dir(), &data_dir, &cfg);
    restarted.wait_running(CAMERA);
    let port = restarted.port();

    // The old segment is closed; the only open one is the new capture's.
    let seg_start_ms = start_us / 1000;
    let mut last_json = serde_json::Value::Null;
    let listing = wait_for(Duration::from_secs(30), "the new capture's open segment", || {
        let l = recordings(port, CAMERA, None);
        last_json = l.json.clone();
        (l.open().len() == 1 && l.open()[0].start_ms > seg_start_ms).then_some(l)
    })
    .unwrap_or_else(|e| panic!("{e}; last listing: {last_json}"));
    let old = listing
        .segments
        .iter()
        .find(|s| s.start_ms == seg_start_ms)
        .unwrap_or_else(|| panic!("the pre-kill segment is listed: {}", listing.json))
        .clone();
    assert!(!old.open, "the pre-kill segment is closed: {}", listing.json);
    assert_eq!(listing.open().len(), 1, "no open segment but the new capture's: {}", listing.json);
    assert!(
        listing.open()[0].start_ms >= old.end_ms,
        "the new segment starts after the old one ends: {}",
        listing.json
    );

    // At most ~1 s of video before the kill is missing (and none after it is invented).
    let lost_ms = kill_ms - old.end_ms;
    assert!(
        (-100..=1_500).contains(&lost_ms),
        "the recovered segment ends {lost_ms} ms before the kill \
         (kill at {kill_ms}, segment {old:?})"
    );

    // Byte-exact recovery: whole records only, and the data ends with the last AU.
    let idx_after = std::fs::read(&idx).unwrap();
    let h264_after = std::fs::read(&h264).unwrap();
    assert_eq!(idx_after.len() % 24, 0, ".idx is {} bytes: not whole 24-byte records", idx_after.len());
    let recs = read_idx(&idx);
    let last = *recs.last().expect("recovered records");
    let data_end = last.offset + u64::from(last.len);
    assert_eq!(h264_after.len() as u64, data_end, ".h264 length vs the end of the last .idx record {last:?}");
    assert_eq!(recs.len(), recs_before.len(), "every complete record the writer left is kept");
    assert!(idx_after[..] == idx_before[..idx_after.len()], "the recovered .idx is a prefix of what was written");
    assert!(h264_after[..] == h264_before[..h264_after.len()], "the recovered .h264 is a prefix of what was written");
    assert!(recs[0].keyframe, "the segment starts with a keyframe");
    assert_eq!(old.frames, recs.len() as i64, "listing frames vs .idx records");
    assert_eq!(old.bytes as u64, data_end, "listing bytes vs .h264 length");
    assert!(
        (last.pts_us / 1000) < old.end_ms && old.end_ms - last.pts_us / 1000 <= 100,
        "the segment ends one frame after its last AU ({last:?}): {old:?}"
    );

    // The index agrees: one open row (the new capture's), nothing waiting to be deleted.
    let db = data_dir.join("vigil.db");
    assert_eq!(db_count(&db, "select count(*) from recording where state = 'open'"), 1, "open rows in vigil.db");
    assert_eq!(db_count(&db, "select count(*) from recording where state = 'closed'"), 1, "closed rows in vigil.db");
    assert_eq!(db_count(&db, "select count(*) from garbage"), 0, "garbage rows");

    // Thumbnails: the recovered segment has none yet; asked for, it is made and kept.
    let thumb = h264.with_extension("jpg");
    assert!(!thumb.exists(), "no thumbnail for a segment its writer never closed: {}", thumb.display());
    let path = format!("/api/cameras/{CAMERA}/thumbnail.jpg?t={}", old.start_ms + 1_000);
    let r = get(port, &path, &[]);
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/jpeg")), "GET {path}: {}", r.text());
    assert!(thumb.exists() && std::fs::read(&thumb).unwrap() == r.body, "kept as {}", thumb.display());
    assert_eq!(probe_image(&thumb), ("mjpeg".to_owned(), 320, 180), "{}", thumb.display());
    let new_start = listing.open()[0].start_ms;
    assert!(new_start - old.end_ms >= 2, "a gap between the old segment and the new capture: {}", listing.json);
    let gap = (old.end_ms + new_start) / 2;
    let path = format!("/api/cameras/{CAMERA}/thumbnail.jpg?t={gap}");
    let r = get(port, &path, &[]);
    assert_eq!(r.status, 404, "GET {path} (in the gap {}..{new_start}): {}", old.end_ms, r.text());

    // The torn segment plays up to its last complete AU.
    let path = format!("/api/cameras/{CAMERA}/video.mp4?start={}&end={}", old.start_ms, old.end_ms);
    let r = get(port, &path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("recovered.mp4");
    std::fs::write(&file, &r.body).unwrap();
    keep_artifact(&file, "crash-recovered.mp4");
    let p = probe(&file);
    assert_eq!((p.codec.as_str(), p.width, p.height), ("h264", 640, 360), "{p:?}");
    assert!((p.frames - old.frames).abs() <= 1, "{} frames played, {} recorded: {p:?}", p.frames, old.frames);
    let want_s = (old.end_ms - old.start_ms) as f64 / 1000.0;
    assert!(
        (p.duration_s - want_s).abs() <= FRAME_MS / 1000.0 + 2e-3,
        "duration {} s vs the segment's {want_s} s: {p:?}",
        p.duration_s
    );
    assert!((p.frames as f64 - p.duration_s * FPS).abs() <= 1.0 + 1e-6, "frame count vs duration at 30 fps: {p:?}");
    let errors = decode_errors(&file);
    assert!(errors.is_empty(), "ffmpeg decode of the recovered segment: {errors}");

    drop(restarted); // before `server`, whose drop removes the data directory
}
