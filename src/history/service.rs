//! The history service: keeps the index in step with the segment files.
//!
//! - **Recorder**: turns [`SegmentEvent`]s from the capture supervisors into rows (open on
//!   create, closed after the writer synced), off the recording path.
//! - **Recovery** (at start, and when a camera's writer dies): open rows are finalised from
//!   the files: a torn tail is truncated to the last complete `.idx` record and the segment
//!   closed at its real end; files newer than a camera's newest row (created while the
//!   index was not listening) are registered. Work is proportional to the open rows and the
//!   newest day, never to the archive.
//! - **Retention**: per camera bytes/age limits and a free-disk floor, checked when a
//!   segment closes and every minute; deletion goes through the `garbage` table.
//! - **Thumbnails**: a closed segment is queued for its thumbnail ([`super::thumbnail`]); one
//!   worker makes them. A thumbnail file is written only while its row exists, under the
//!   deletion lock that also covers moving rows to `garbage`, so none outlives its segment.

use super::index::{ClosedInfo, Index, IndexError, Recording};
use super::retention::{Policy, plan};
use super::snapshot::SnapshotError;
use super::thumbnail::{self, Thumbnails};
use crate::config::CameraConfig;
use crate::segment::event::SegmentEvent;
use crate::segment::idx::{RECORD_LEN, decode_all, is_plausible};
use crate::segment::lease::Leases;
use crate::segment::path::{SegmentFiles, list_day};
use crate::segment::writer::sync_dir;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// How often retention runs even without a segment closing.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// The history service. Cheap to clone.
#[derive(Clone)]
pub struct History {
    index: Index,
    data_dir: PathBuf,
    /// The cameras and their retention settings (the registry's, once [`History::following`]).
    cameras: crate::registry::Watch,
    leases: Leases,
    min_free_bytes: u64,
    thumbnails: Thumbnails,
    /// Held while recording rows leave the index (to `garbage`, or deleted) and while a
    /// thumbnail is written after checking that its row exists.
    deletion: Arc<tokio::sync::Mutex<()>>,
    /// Bounds the JPEGs (thumbnails, snapshots) being made at once ([`thumbnail::MAX_MAKING`]).
    making: Arc<tokio::sync::Semaphore>,
}

/// What recovery did (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Open rows closed from their files.
    pub closed: usize,
    /// Of those, segments whose torn tail was truncated.
    pub truncated: usize,
    /// Files found without a row and registered.
    pub registered: usize,
    /// Empty segments removed.
    pub removed: usize,
}

/// Now, µs since the epoch.
pub fn now_us_pub() -> i64 {
    now_us()
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

impl History {
    /// The service over `index` for `cameras`.
    pub fn new(
        index: Index,
        data_dir: PathBuf,
        cameras: Vec<CameraConfig>,
        leases: Leases,
        min_free_bytes: u64,
    ) -> Self {
        Self {
            index,
            data_dir,
            cameras: tokio::sync::watch::channel(Arc::new(crate::registry::CameraSet::from_configs(cameras))).1,
            leases,
            min_free_bytes,
            thumbnails: Thumbnails::new(),
            deletion: Arc::default(),
            making: Arc::new(tokio::sync::Semaphore::new(thumbnail::MAX_MAKING)),
        }
    }

    /// The same service following the registry's cameras (retention settings, recovery)
    /// instead of a fixed list.
    pub fn following(mut self, cameras: crate::registry::Watch) -> Self {
        self.cameras = cameras;
        self
    }

    /// The cameras now.
    fn cameras(&self) -> Vec<CameraConfig> {
        self.cameras.borrow().configs()
    }

    /// Whether `camera` is configured now.
    pub fn is_configured(&self, camera: &str) -> bool {
        self.cameras.borrow().get(camera).is_some()
    }

    /// Deletes every recording of `camera` (a camera being removed with
    /// `?recordings=delete`): rows go to `garbage`, then files are unlinked. Returns how many.
    pub async fn delete_camera_recordings(&self, camera: &str) -> Result<usize, IndexError> {
        let mut total = 0;
        loop {
            let recs = self.index.oldest_closed(camera, 1000).await?;
            if recs.is_empty() {
                break;
            }
            let ids: Vec<i64> = recs.iter().map(|r| r.id).collect();
            {
                let _deleting = self.deletion.lock().await;
                self.index.move_to_garbage(&ids).await?;
            }
            total += ids.len();
        }
        self.collect_garbage().await?;
        super::activity::delete_camera(&self.index, camera).await?;
        Ok(total)
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The segment leases.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.data_dir).unwrap_or(p).to_string_lossy().into_owned()
    }

    /// Absolute files of an index row.
    pub fn files(&self, r: &Recording) -> SegmentFiles {
        let data = self.data_dir.join(&r.path);
        SegmentFiles { start_us: r.start_us, idx: data.with_extension("idx"), data }
    }

    /// Runs recovery for every camera (call before capture starts).
    pub async fn recover_all(&self) -> Result<RecoveryReport, IndexError> {
        self.collect_garbage().await?;
        let mut rep = RecoveryReport::default();
        for r in self.index.open_recordings().await? {
            self.finalize(&r.camera, &self.files(&r), &mut rep).await?;
        }
        for cam in &self.cameras() {
            self.register_unindexed(&cam.name, &mut rep).await?;
        }
        Ok(rep)
    }

    /// Recovery for one camera whose writer is gone.
    pub async fn recover_camera(&self, camera: &str) -> Result<RecoveryReport, IndexError> {
        let mut rep = RecoveryReport::default();
        for r in self.index.open_recordings().await?.into_iter().filter(|r| r.camera == camera) {
            self.finalize(camera, &self.files(&r), &mut rep).await?;
        }
        self.register_unindexed(camera, &mut rep).await?;
        Ok(rep)
    }

    /// Registers segments newer than the camera's newest row (only the newest day
    /// directories are looked at).
    async fn register_unindexed(&self, camera: &str, rep: &mut RecoveryReport) -> Result<(), IndexError> {
        let newest = self.index.newest_start(camera).await?.unwrap_or(i64::MIN);
        let cam_dir = self.data_dir.join(camera);
        let mut days: Vec<PathBuf> = match std::fs::read_dir(&cam_dir) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect(),
            Err(_) => return Ok(()),
        };
        days.sort();
        let newest_day = crate::segment::path::day_name(newest.max(0));
        for day in days.iter().rev() {
            let name = day.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if newest != i64::MIN && name < newest_day.as_str() {
                break;
            }
            for seg in list_day(day).unwrap_or_default() {
                if seg.start_us > newest {
                    self.finalize(camera, &seg, rep).await?;
                    rep.registered += 1;
                }
            }
        }
        Ok(())
    }

    /// Closes a segment from its files: truncate a torn tail, then record its real end.
    async fn finalize(&self, camera: &str, seg: &SegmentFiles, rep: &mut RecoveryReport) -> Result<(), IndexError> {
        let rel = self.rel(&seg.data);
        let seg2 = seg.clone();
        let scanned = match tokio::task::spawn_blocking(move || scan_and_truncate(&seg2)).await {
            Ok(r) => r,
            // Cancelled (the runtime is shutting down): leave the row open for the next start.
            Err(_) => return Ok(()),
        };
        match scanned {
            Ok(Some((info, truncated))) => {
                let cam_id = self.index.camera_id(camera).await?;
                self.index.close(cam_id, &rel, seg.start_us, &info).await?;
                rep.closed += 1;
                if truncated {
                    rep.truncated += 1;
                    tracing::warn!(camera, segment = %rel, frames = info.frames, "recovered torn segment");
                }
            }
            Ok(None) if idx_len(&seg.idx) >= RECORD_LEN as u64 => {
                // Records exist but none is plausible: never delete what might be video.
                tracing::error!(camera, segment = %rel, "segment index is unreadable; left for inspection");
            }
            Ok(None) => {
                // Not one complete AU record: nothing to keep.
                let _ = std::fs::remove_file(&seg.data);
                let _ = std::fs::remove_file(&seg.idx);
                let _deleting = self.deletion.lock().await;
                let _ = std::fs::remove_file(thumbnail::path_of(&seg.data));
                let _ = sync_dir(seg.dir());
                self.index.delete_recording(&rel).await?;
                rep.removed += 1;
            }
            Err(e) => tracing::error!(camera, segment = %rel, error = %e, "cannot recover segment"),
        }
        Ok(())
    }

    /// Applies a segment event to the index.
    pub async fn apply(&self, e: SegmentEvent) -> Result<(), IndexError> {
        match e {
            SegmentEvent::Opened { camera, start_us, data } => {
                let id = self.index.camera_id(&camera).await?;
                self.index.insert_open(id, &self.rel(&data), start_us).await?;
            }
            SegmentEvent::Closed { camera, start_us, last_pts_us, frames, bytes, data } => {
                let seg = SegmentFiles { start_us, idx: data.with_extension("idx"), data: data.clone() };
                let seg2 = seg.clone();
                let params = tokio::task::spawn_blocking(move || first_keyframe_params(&seg2)).await.ok().flatten();
                let frame_us = if frames > 1 { (last_pts_us - start_us) / (frames as i64 - 1) } else { 33_333 };
                let mut info = ClosedInfo {
                    end_us: last_pts_us + frame_us.max(1),
                    bytes: bytes as i64,
                    frames: frames as i64,
                    ..Default::default()
                };
                if let Some(p) = params {
                    info.codec = p.info().codec();
                    info.width = i64::from(p.info().width);
                    info.height = i64::from(p.info().height);
                    info.sps = Some(p.sps().to_vec());
                    info.pps = Some(p.pps().to_vec());
                }
                let id = self.index.camera_id(&camera).await?;
                self.index.close(id, &self.rel(&data), start_us, &info).await?;
                if !self.thumbnails.queue(seg) {
                    tracing::debug!(camera, segment = %self.rel(&data), "thumbnail queue full: made on demand");
                }
                self.enforce_retention().await?;
            }
            SegmentEvent::WriterGone { camera } => {
                let rep = self.recover_camera(&camera).await?;
                if rep != RecoveryReport::default() {
                    tracing::info!(camera, ?rep, "recovered after capture ended");
                }
            }
        }
        Ok(())
    }

    /// Consumes segment events and runs retention every minute, until the sender closes.
    /// Starts the thumbnail worker on first call.
    pub async fn run(self, mut events: mpsc::UnboundedReceiver<SegmentEvent>) {
        if let Some(jobs) = self.thumbnails.take_receiver() {
            tokio::spawn(self.clone().thumbnail_worker(jobs));
        }
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(e) => {
                        if let Err(err) = self.apply(e).await {
                            tracing::error!(error = %err, "updating the index");
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Err(err) = self.enforce_retention().await {
                        tracing::error!(error = %err, "retention");
                    }
                }
            }
        }
    }

    /// Deletes what the cameras' limits and the disk floor say must go.
    pub async fn enforce_retention(&self) -> Result<usize, IndexError> {
        let need_free = free_bytes(&self.data_dir).map_or(0, |free| self.min_free_bytes.saturating_sub(free));
        let mut deleted = 0;
        let now = now_us();
        let cameras = self.cameras();
        for cam in &cameras {
            if cam.retain_bytes.is_none() && cam.retain_days.is_none() && need_free == 0 {
                continue;
            }
            let (total, _) = self.index.usage(&cam.name).await?;
            let recs = self.index.oldest_closed(&cam.name, 1000).await?;
            let policy = Policy {
                max_bytes: cam.retain_bytes,
                max_age_us: cam.retain_days.map(|d| (d * 86_400e6) as i64),
                // The floor is shared; each camera frees its share, oldest first.
                free_bytes: need_free.div_ceil(cameras.len().max(1) as u64),
            };
            let ids = plan(&recs, total.max(0) as u64, &policy, now, |r| self.leases.is_leased(&self.files(r).data));
            if ids.is_empty() {
                continue;
            }
            {
                let _deleting = self.deletion.lock().await;
                self.index.move_to_garbage(&ids).await?;
            }
            deleted += ids.len();
            tracing::info!(camera = %cam.name, segments = ids.len(), "retention deleted oldest recordings");
        }
        if deleted > 0 {
            self.collect_garbage().await?;
        }
        Ok(deleted)
    }

    /// Unlinks the files of garbage rows (`.h264`, `.idx`, `.jpg`), syncs their
    /// directories, then drops the rows.
    pub async fn collect_garbage(&self) -> Result<(), IndexError> {
        for rel in self.index.garbage().await? {
            let data = self.data_dir.join(&rel);
            let idx = data.with_extension("idx");
            let thumb = thumbnail::path_of(&data);
            for p in [&data, &idx, &thumb] {
                if let Err(e) = std::fs::remove_file(p)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %p.display(), error = %e, "unlinking recording");
                }
            }
            if let Some(dir) = data.parent() {
                let _ = sync_dir(dir);
                // An emptied day directory goes too.
                if std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false) {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            self.index.forget_garbage(&rel).await?;
        }
        Ok(())
    }
}

impl History {
    /// The thumbnail of a segment: the kept file when there is a complete one, else made now
    /// (and kept if the segment is still indexed), at most [`thumbnail::MAX_MAKING`] at once;
    /// waits for a slot at most `wait` (`None`: as long as it takes).
    pub async fn thumbnail(&self, files: &SegmentFiles, wait: Option<Duration>) -> Result<Vec<u8>, SnapshotError> {
        let path = thumbnail::path_of(&files.data);
        let kept = || async { tokio::fs::read(&path).await.ok().filter(|b| thumbnail::is_complete_jpeg(b)) };
        if let Some(b) = kept().await {
            return Ok(b);
        }
        let making = self.decode_slot(wait).await?;
        // Made by another request while this one waited?
        if let Some(b) = kept().await {
            return Ok(b);
        }
        let f2 = files.clone();
        let jpeg = tokio::task::spawn_blocking(move || {
            // The slot goes with the decode, even if the request that asked for it goes away.
            let _making = making;
            thumbnail::make(&f2)
        })
        .await
        .map_err(|e| SnapshotError::Decode(e.to_string()))??;
        self.keep_thumbnail(files, &jpeg).await;
        Ok(jpeg)
    }

    /// One of the [`thumbnail::MAX_MAKING`] places for making a JPEG, waiting at most `wait`
    /// (then [`SnapshotError::Busy`]); held until the returned permit drops.
    pub async fn decode_slot(
        &self,
        wait: Option<Duration>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, SnapshotError> {
        let acquire = self.making.clone().acquire_owned();
        match wait {
            None => acquire.await.map_err(|e| SnapshotError::Decode(e.to_string())),
            Some(w) => match tokio::time::timeout(w, acquire).await {
                Ok(p) => p.map_err(|e| SnapshotError::Decode(e.to_string())),
                Err(_) => Err(SnapshotError::Busy),
            },
        }
    }

    /// Writes a segment's thumbnail if its recording row still exists (under the deletion
    /// lock, so retention cannot slip in between); whether it was written.
    pub async fn keep_thumbnail(&self, files: &SegmentFiles, jpeg: &[u8]) -> bool {
        let rel = self.rel(&files.data);
        let _deleting = self.deletion.lock().await;
        match self.index.recording_exists(&rel).await {
            Ok(true) => match tokio::fs::write(thumbnail::path_of(&files.data), jpeg).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(segment = %rel, error = %e, "writing thumbnail");
                    false
                }
            },
            Ok(false) => {
                tracing::debug!(segment = %rel, "segment deleted meanwhile: thumbnail not kept");
                false
            }
            Err(e) => {
                tracing::warn!(segment = %rel, error = %e, "checking the index before writing a thumbnail");
                false
            }
        }
    }

    /// The one thumbnail worker: makes queued thumbnails one at a time until the queue closes.
    async fn thumbnail_worker(self, mut jobs: mpsc::Receiver<SegmentFiles>) {
        while let Some(seg) = jobs.recv().await {
            match self.thumbnail(&seg, None).await {
                Ok(_) => {}
                // Deleted before its turn came.
                Err(SnapshotError::Io(_, e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::debug!(segment = %self.rel(&seg.data), "segment gone before its thumbnail was made");
                }
                Err(e) => tracing::warn!(segment = %self.rel(&seg.data), error = %e, "making thumbnail"),
            }
        }
    }
}

fn idx_len(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

/// Scans a segment's index, truncates both files after the last complete, plausible record
/// if needed, and returns its figures; `None` if it holds no complete AU.
fn scan_and_truncate(seg: &SegmentFiles) -> std::io::Result<Option<(ClosedInfo, bool)>> {
    let idx_bytes = match std::fs::read(&seg.idx) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    let data_len = std::fs::metadata(&seg.data).map(|m| m.len()).unwrap_or(0);
    let recs = decode_all(&idx_bytes);
    let mut good = 0;
    for (i, r) in recs.iter().enumerate() {
        if !is_plausible(r, i.checked_sub(1).map(|j| &recs[j]), data_len) {
            break;
        }
        good = i + 1;
    }
    let keep_idx = (good * RECORD_LEN) as u64;
    let keep_data = if good == 0 { 0 } else { recs[good - 1].end() };
    let truncated = keep_idx != idx_bytes.len() as u64 || keep_data != data_len;
    if truncated && good > 0 {
        for (path, len) in [(&seg.idx, keep_idx), (&seg.data, keep_data)] {
            let f = std::fs::OpenOptions::new().write(true).open(path)?;
            f.set_len(len)?;
            f.sync_all()?;
        }
        let _ = sync_dir(seg.dir());
    }
    if good == 0 {
        return Ok(None);
    }
    let recs = &recs[..good];
    let mut info = ClosedInfo {
        end_us: crate::segment::idx::estimated_end_us(recs).unwrap_or(0),
        bytes: keep_data as i64,
        frames: good as i64,
        ..Default::default()
    };
    if let Some(p) = first_keyframe_params(seg) {
        info.codec = p.info().codec();
        info.width = i64::from(p.info().width);
        info.height = i64::from(p.info().height);
        info.sps = Some(p.sps().to_vec());
        info.pps = Some(p.pps().to_vec());
    }
    Ok(Some((info, truncated)))
}

/// SPS/PPS of a segment's first AU (a keyframe by contract).
pub(crate) fn first_keyframe_params(seg: &SegmentFiles) -> Option<super::h264::ParamSets> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; RECORD_LEN];
    std::fs::File::open(&seg.idx).ok()?.read_exact_at(&mut head, 0).ok()?;
    let rec = crate::segment::idx::Record::decode(&head);
    if rec.len > 8 << 20 {
        return None;
    }
    let mut au = vec![0u8; rec.len as usize];
    std::fs::File::open(&seg.data).ok()?.read_exact_at(&mut au, rec.offset).ok()?;
    super::h264::ParamSets::from_annexb(&au)?.ok()
}

/// Free bytes on the filesystem holding `dir` (`df`, to stay free of unsafe code); `None`
/// when it cannot be read.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("df").arg("-B1").arg("--output=avail").arg(dir).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().nth(1)?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = b"\xff\xd8 not really a picture \xff\xd9";

    #[tokio::test]
    async fn no_thumbnail_outlives_its_segment_even_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let ix = Index::open(None, &data_dir).await.unwrap();
        let h = History::new(ix.clone(), data_dir.clone(), Vec::new(), Leases::new(), 0);
        let cam = ix.camera_id("c").await.unwrap();
        let segs =
            [SegmentFiles::new(&data_dir.join("c"), 1_000_000), SegmentFiles::new(&data_dir.join("c"), 2_000_000)];
        for f in &segs {
            std::fs::create_dir_all(f.dir()).unwrap();
            std::fs::write(&f.data, b"x").unwrap();
            std::fs::write(&f.idx, b"").unwrap();
            let info = ClosedInfo { end_us: f.start_us + 1, bytes: 1, frames: 1, ..Default::default() };
            ix.close(cam, &h.rel(&f.data), f.start_us, &info).await.unwrap();
            assert!(h.keep_thumbnail(f, JPEG).await, "written while the row exists");
        }
        let [a, b] = &segs;
        // Retention's first step for `a`, then the process dies before unlinking anything.
        let recs = ix.recordings("c", 0, i64::MAX).await.unwrap();
        ix.move_to_garbage(&[recs[0].id]).await.unwrap();
        // A thumbnail finished after that is not written (nothing would ever delete it).
        std::fs::remove_file(thumbnail::path_of(&a.data)).unwrap();
        assert!(!h.keep_thumbnail(a, JPEG).await);
        assert!(!thumbnail::path_of(&a.data).exists());
        std::fs::write(thumbnail::path_of(&a.data), JPEG).unwrap(); // as written before the move
        // The next start finishes the deletion: every file of `a` goes, `b` stays whole.
        let restarted = History::new(ix.clone(), data_dir.clone(), Vec::new(), Leases::new(), 0);
        restarted.recover_all().await.unwrap();
        for p in [&a.data, &a.idx, &thumbnail::path_of(&a.data)] {
            assert!(!p.exists(), "{} left behind", p.display());
        }
        for p in [&b.data, &b.idx, &thumbnail::path_of(&b.data)] {
            assert!(p.exists(), "{} deleted", p.display());
        }
        assert!(ix.garbage().await.unwrap().is_empty());
        assert_eq!(restarted.thumbnail(b, None).await.unwrap(), JPEG, "the kept file is served");
    }

    #[tokio::test]
    async fn jpeg_decodes_are_bounded_and_a_request_waits_only_so_long() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(None, dir.path()).await.unwrap();
        let h = History::new(ix, dir.path().to_path_buf(), Vec::new(), Leases::new(), 0);
        let held: Vec<_> = futures_util::future::join_all((0..thumbnail::MAX_MAKING).map(|_| h.decode_slot(None)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let busy = h.decode_slot(Some(Duration::from_millis(20))).await;
        assert!(matches!(busy, Err(SnapshotError::Busy)), "a slot beyond MAX_MAKING was handed out");
        drop(held);
        assert!(h.decode_slot(Some(Duration::from_millis(20))).await.is_ok(), "slots come back when dropped");
    }
}
