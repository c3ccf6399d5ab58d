//! The tail reader: follows the newest segment of one camera as it grows, across rotation,
//! and yields whole access units with their capture time.
//!
//! Wake-ups come from inotify on the camera and day directories (the capture process is a
//! separate process, so there is no in-process signal); if inotify is unavailable it polls
//! every 5 ms. A record it can read names bytes that are already there (the writer appends
//! the `.idx` record after the AU), so it never sees a partial AU. A torn or implausible
//! record (a crashed writer) ends that segment for the reader: it moves to the next one.
//!
//! Reads are `pread`s of bytes that were just written, served from the page cache; they are
//! done inline on the async task (microseconds) rather than through a thread pool.

use super::idx::{RECORD_LEN, Record, is_plausible};
use super::path::{SegmentFiles, newest_segment};
use bytes::Bytes;
use futures_util::StreamExt;
use inotify::{EventStream, Inotify, WatchMask};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Largest AU a reader accepts; bigger records are treated as corrupt.
const MAX_AU_LEN: u32 = 32 << 20;
/// Poll interval when inotify is unavailable.
const POLL_FALLBACK: Duration = Duration::from_millis(5);
/// Safety poll when inotify is running (a missed event costs at most this).
const POLL_WITH_INOTIFY: Duration = Duration::from_millis(250);

/// One access unit read back from a segment.
#[derive(Debug, Clone)]
pub struct TailAu {
    /// Annex-B bytes as written (AUD, SEI, [SPS, PPS,] slices).
    pub data: Bytes,
    /// Capture wall-clock time, µs since the epoch.
    pub pts_us: i64,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// Start of the segment it came from.
    pub segment_start_us: i64,
}

struct Cursor {
    files: SegmentFiles,
    data: File,
    idx: File,
    next_record: u64,
    prev: Option<Record>,
    /// No more records will come (torn, corrupt, or a newer segment exists and this one is
    /// drained).
    dead: bool,
}

/// Follows the newest segment of a camera. See the module docs.
pub struct Tail {
    camera_dir: PathBuf,
    cursor: Option<Cursor>,
    events: Option<EventStream<[u8; 4096]>>,
    watched_day: Option<PathBuf>,
    last_scan: Instant,
    created_since_scan: bool,
}

impl Tail {
    /// A reader that starts at the last keyframe of the newest segment (so a hub can fill
    /// its GOP cache at once), or at the first segment to appear.
    pub fn live(camera_dir: impl Into<PathBuf>) -> Self {
        let camera_dir = camera_dir.into();
        let events = match Inotify::init() {
            Ok(ino) => ino.into_event_stream([0u8; 4096]).ok(),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; polling every 5 ms");
                None
            }
        };
        let mut t = Self {
            camera_dir,
            cursor: None,
            events,
            watched_day: None,
            last_scan: Instant::now(),
            created_since_scan: true,
        };
        t.watch(&t.camera_dir.clone());
        t
    }

    fn watch(&mut self, dir: &Path) {
        if let Some(ev) = &self.events {
            let mask = WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO;
            if let Err(e) = ev.watches().add(dir, mask)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(dir = %dir.display(), error = %e, "inotify watch");
            }
        }
    }

    /// Waits for and returns the next access unit.
    pub async fn next(&mut self) -> TailAu {
        loop {
            if let Some(au) = self.try_next() {
                return au;
            }
            self.wait().await;
        }
    }

    /// Returns the next access unit if one is ready, without waiting.
    pub fn try_next(&mut self) -> Option<TailAu> {
        if let Some(c) = self.cursor.as_mut()
            && let Some(au) = read_next(c)
        {
            return Some(au);
        }
        self.maybe_switch();
        let c = self.cursor.as_mut()?;
        read_next(c)
    }

    /// Looks for a newer segment when the current one has nothing to read.
    fn maybe_switch(&mut self) {
        let due = self.created_since_scan
            || self.events.is_none()
            || self.last_scan.elapsed() >= POLL_WITH_INOTIFY
            || self.cursor.as_ref().is_none_or(|c| c.dead);
        if !due {
            return;
        }
        self.last_scan = Instant::now();
        self.created_since_scan = false;
        let newest = match newest_segment(&self.camera_dir) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(dir = %self.camera_dir.display(), error = %e, "scanning segments");
                return;
            }
        };
        if let Some(day) = newest.data.parent()
            && self.watched_day.as_deref() != Some(day)
        {
            let day = day.to_owned();
            self.watch(&day);
            self.watched_day = Some(day);
        }
        let first = self.cursor.is_none();
        if let Some(c) = &self.cursor {
            if c.files.start_us >= newest.start_us {
                return;
            }
            // The writer closes a segment before it creates the next, so the current one is
            // complete once a newer one exists: drain it first.
            if !c.dead {
                if let Some(c) = self.cursor.as_mut() {
                    c.dead = true;
                }
                return;
            }
        }
        match open_cursor(newest, first) {
            Ok(c) => self.cursor = Some(c),
            Err(e) => tracing::debug!(error = %e, "opening segment"),
        }
    }

    async fn wait(&mut self) {
        match self.events.as_mut() {
            Some(ev) => {
                let timeout = tokio::time::sleep(POLL_WITH_INOTIFY);
                tokio::select! {
                    e = ev.next() => match e {
                        Some(Ok(e)) => {
                            if e.mask.intersects(inotify::EventMask::CREATE | inotify::EventMask::MOVED_TO) {
                                self.created_since_scan = true;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "inotify read failed; polling instead");
                            self.events = None;
                        }
                        None => self.events = None,
                    },
                    _ = timeout => {}
                }
            }
            None => tokio::time::sleep(POLL_FALLBACK).await,
        }
    }
}

fn open_cursor(files: SegmentFiles, from_last_keyframe: bool) -> std::io::Result<Cursor> {
    let data = File::open(&files.data)?;
    let idx = File::open(&files.idx)?;
    let mut next_record = 0;
    let mut prev = None;
    if from_last_keyframe {
        let buf = std::fs::read(&files.idx)?;
        let recs = super::idx::decode_all(&buf);
        if let Some(i) = recs.iter().rposition(|r| r.is_keyframe()) {
            next_record = i as u64;
            prev = i.checked_sub(1).map(|j| recs[j]);
        }
    }
    Ok(Cursor { files, data, idx, next_record, prev, dead: false })
}

fn read_next(c: &mut Cursor) -> Option<TailAu> {
    let mut buf = [0u8; RECORD_LEN];
    let at = c.next_record * RECORD_LEN as u64;
    match c.idx.read_at(&mut buf, at) {
        Ok(n) if n == RECORD_LEN => {}
        Ok(n) if n > 0 => {
            // Partial record: either the writer is mid-append (retry) or torn (dead once
            // a newer segment exists; `maybe_switch` decides).
            let mut rest = [0u8; RECORD_LEN];
            match c.idx.read_at(&mut rest[..RECORD_LEN - n], at + n as u64) {
                Ok(m) if m == RECORD_LEN - n => {
                    buf[n..].copy_from_slice(&rest[..m]);
                }
                _ => return None,
            }
        }
        _ => return None,
    }
    let rec = Record::decode(&buf);
    let data_len = c.data.metadata().map(|m| m.len()).unwrap_or(0);
    if rec.len > MAX_AU_LEN || !is_plausible(&rec, c.prev.as_ref(), data_len) {
        if rec.end() > data_len && rec.len <= MAX_AU_LEN && c.prev.as_ref().is_none_or(|p| rec.offset >= p.end()) {
            // Not written yet would contradict the append order; treat as torn only once a
            // newer segment shows up.
            return None;
        }
        tracing::warn!(segment = %c.files.data.display(), record = c.next_record, "implausible index record; skipping rest of segment");
        c.dead = true;
        return None;
    }
    let mut data = vec![0u8; rec.len as usize];
    if c.data.read_exact_at(&mut data, rec.offset).is_err() {
        return None;
    }
    c.next_record += 1;
    c.prev = Some(rec);
    Some(TailAu {
        data: Bytes::from(data),
        pts_us: rec.pts_us,
        keyframe: rec.is_keyframe(),
        segment_start_us: c.files.start_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::writer::SegmentWriter;
    use std::io::Write;

    fn au(n: u32, key: bool) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, if key { 0x65 } else { 0x41 }];
        v.extend_from_slice(&n.to_be_bytes());
        v
    }

    #[tokio::test]
    async fn follows_rotation_and_starts_at_last_keyframe() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SegmentWriter::new(dir.path(), 1.0);
        let t0 = 1_700_000_000_000_000i64;
        for i in 0..45u32 {
            let key = i % 15 == 0;
            w.push(&au(i, key), t0 + i64::from(i) * 33_333, key).unwrap();
        }
        let mut tail = Tail::live(dir.path());
        // The newest segment started at frame 30 (1 s); its last keyframe is frame 30.
        let first = tail.next().await;
        assert!(first.keyframe);
        assert_eq!(&first.data[5..], &30u32.to_be_bytes());
        for i in 31..45u32 {
            assert_eq!(&tail.next().await.data[5..], &i.to_be_bytes());
        }
        // Writes that happen while the reader waits (including a rotation) are seen.
        let writer = std::thread::spawn(move || {
            for i in 45..120u32 {
                std::thread::sleep(Duration::from_millis(2));
                let key = i % 15 == 0;
                w.push(&au(i, key), t0 + i64::from(i) * 33_333, key).unwrap();
            }
            w.finish().unwrap();
        });
        for i in 45..120u32 {
            let a = tokio::time::timeout(Duration::from_secs(5), tail.next()).await.expect("tail stalled");
            assert_eq!(&a.data[5..], &i.to_be_bytes(), "frame {i}");
        }
        writer.join().unwrap();
        assert!(tail.try_next().is_none());
    }

    #[tokio::test]
    async fn torn_tail_moves_on_to_the_next_segment() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_700_000_000_000_000i64;
        let mut w = SegmentWriter::new(dir.path(), 60.0);
        w.push(&au(1, true), t0, true).unwrap();
        w.push(&au(2, false), t0 + 33_333, false).unwrap();
        let torn = w.current().unwrap().clone();
        drop(w);
        // A crash left half a record and half an AU behind.
        std::fs::OpenOptions::new().append(true).open(&torn.idx).unwrap().write_all(&[7; 10]).unwrap();
        std::fs::OpenOptions::new().append(true).open(&torn.data).unwrap().write_all(&[0, 0, 0, 1, 0x41]).unwrap();
        let mut tail = Tail::live(dir.path());
        assert_eq!(&tail.next().await.data[5..], &1u32.to_be_bytes());
        assert_eq!(&tail.next().await.data[5..], &2u32.to_be_bytes());
        // A restarted capture writes a new segment; the reader gets there.
        let mut w = SegmentWriter::new(dir.path(), 60.0);
        w.push(&au(3, true), t0 + 1_000_000, true).unwrap();
        let a = tokio::time::timeout(Duration::from_secs(5), tail.next()).await.expect("stuck on torn segment");
        assert_eq!(&a.data[5..], &3u32.to_be_bytes());
    }
}
