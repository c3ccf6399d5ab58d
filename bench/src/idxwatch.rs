//! Optional (`--data-dir`): watches the camera's segment `.idx` files with inotify and notes the
//! wall-clock moment each access unit's record lands on disk. A viewer that receives the AU
//! then knows how long the server took from "AU readable in the segment" to "last RTP packet
//! at the viewer" — the server-added delay, without the capture/encoder time that the SEI
//! capture timestamp includes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use inotify::{Inotify, WatchDescriptor, WatchMask};

const RECORD: u64 = 24;

/// pts_micros (capture time, as in the SEI) → when its `.idx` record was seen, µs since epoch.
#[derive(Default)]
pub struct IdxTimes {
    seen: Mutex<HashMap<u64, u64>>,
}

impl IdxTimes {
    pub fn get(&self, pts: u64) -> Option<u64> {
        self.seen.lock().ok()?.get(&pts).copied()
    }
    pub fn len(&self) -> usize {
        self.seen.lock().map(|m| m.len()).unwrap_or(0)
    }
    /// Access units recorded with capture times in `[from, to)` µs, and how many frames are
    /// missing between them (gaps longer than 1.5 frame intervals): the source's own gaps,
    /// which every viewer also sees.
    pub fn source_gaps(&self, from: u64, to: u64, interval_us: u64) -> (usize, u64) {
        let Ok(m) = self.seen.lock() else { return (0, 0) };
        let mut pts: Vec<u64> = m.keys().copied().filter(|p| (from..to).contains(p)).collect();
        pts.sort_unstable();
        let gaps = pts
            .windows(2)
            .filter(|w| w[1] > w[0] + interval_us * 3 / 2)
            .map(|w| ((w[1] - w[0] + interval_us / 2) / interval_us).saturating_sub(1))
            .sum();
        (pts.len(), gaps)
    }
}

/// Starts the watcher thread for `<data_dir>/<camera>`.
pub fn start(data_dir: &Path, camera: &str) -> Result<Arc<IdxTimes>> {
    let cam_dir = data_dir.join(camera);
    let mut inotify = Inotify::init().context("inotify init")?;
    let mut dirs: HashMap<WatchDescriptor, PathBuf> = HashMap::new();
    let cam_wd = inotify
        .watches()
        .add(&cam_dir, WatchMask::CREATE | WatchMask::ONLYDIR)
        .with_context(|| format!("watch {}", cam_dir.display()))?;
    let mut files: HashMap<PathBuf, (File, u64)> = HashMap::new();
    // Watch every existing day directory; skip what is already in the existing .idx files.
    for entry in std::fs::read_dir(&cam_dir)?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            let wd = inotify.watches().add(&p, WatchMask::MODIFY | WatchMask::CREATE)?;
            for f in std::fs::read_dir(&p)?.flatten() {
                let fp = f.path();
                if fp.extension().is_some_and(|e| e == "idx")
                    && let Ok(file) = File::open(&fp)
                {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    files.insert(fp, (file, len - len % RECORD));
                }
            }
            dirs.insert(wd, p);
        }
    }
    let times = Arc::new(IdxTimes::default());
    let t = times.clone();
    std::thread::Builder::new().name("idxwatch".into()).spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok(events) = inotify.read_events_blocking(&mut buf) else { return };
            let now = crate::now_us();
            let mut touched: Vec<PathBuf> = Vec::new();
            let mut new_dirs: Vec<PathBuf> = Vec::new();
            for ev in events {
                let Some(name) = ev.name else { continue };
                if ev.wd == cam_wd {
                    new_dirs.push(cam_dir.join(name));
                } else if let Some(dir) = dirs.get(&ev.wd) {
                    let p = dir.join(name);
                    if p.extension().is_some_and(|e| e == "idx") && !touched.contains(&p) {
                        touched.push(p);
                    }
                }
            }
            for d in new_dirs {
                if let Ok(wd) = inotify.watches().add(&d, WatchMask::MODIFY | WatchMask::CREATE) {
                    dirs.insert(wd, d);
                }
            }
            for p in touched {
                if !files.contains_key(&p) {
                    let Ok(f) = File::open(&p) else { continue };
                    files.insert(p.clone(), (f, 0));
                }
                let Some((f, off)) = files.get_mut(&p) else { continue };
                let Ok(len) = f.metadata().map(|m| m.len()) else { continue };
                let end = len - len % RECORD;
                if end <= *off || f.seek(SeekFrom::Start(*off)).is_err() {
                    continue;
                }
                let mut data = vec![0u8; (end - *off) as usize];
                if f.read_exact(&mut data).is_err() {
                    continue;
                }
                *off = end;
                if let Ok(mut m) = t.seen.lock() {
                    for rec in data.chunks_exact(RECORD as usize) {
                        let pts = i64::from_le_bytes(rec[12..20].try_into().unwrap_or_default());
                        m.insert(pts as u64, now);
                    }
                }
            }
        }
    })?;
    Ok(times)
}
