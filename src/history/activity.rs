//! Activity in the index: the ranges and per-second motion levels the capture side decided
//! ([`crate::activity::Update`]), stored in the `activity` and `motion_level` tables
//! (`migrations/*/0003_activity.sql`), read back for the API, and announced on the event
//! bus (`activity_start`, `activity_end`) once stored.
//!
//! Levels are kept compactly: one row per camera and minute, 60 bytes, written at most every
//! [`LEVEL_FLUSH`] per camera (and when the minute or the source ends), so a day of one
//! camera is 1 440 rows.

use super::index::{Index, IndexError};
use crate::activity::Update;
use crate::events::{Bus, EventKind};
use sqlx::Row;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a camera's current minute of levels is written.
pub const LEVEL_FLUSH: Duration = Duration::from_secs(5);
/// A second with no analysis.
pub const NO_LEVEL: u8 = 255;
const MINUTE_US: i64 = 60_000_000;

/// One activity range as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivityRange {
    /// First confirmed motion (µs).
    pub start_us: i64,
    /// Last motion; `None` while open.
    pub end_us: Option<i64>,
    /// Highest score.
    pub peak: f64,
    /// When it was.
    pub peak_us: i64,
}

/// A level (0-1) as its stored byte.
pub fn level_byte(level: f32) -> u8 {
    if level.is_nan() { 0 } else { (level.clamp(0.0, 1.0) * 250.0).ceil() as u8 }
}

/// Ranges of `camera` overlapping `[start_us, end_us)`, oldest first, at most `limit`.
pub async fn ranges(
    index: &Index,
    camera: &str,
    start_us: i64,
    end_us: i64,
    limit: i64,
) -> Result<Vec<ActivityRange>, IndexError> {
    let rows = sqlx::query(
        "select a.start_us, a.end_us, a.peak, a.peak_us from activity a join camera c on c.id = a.camera_id \
         where c.name = $1 and a.start_us < $3 and (a.end_us is null or a.end_us >= $2) \
         order by a.start_us limit $4",
    )
    .bind(camera)
    .bind(start_us)
    .bind(end_us)
    .bind(limit)
    .fetch_all(index.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ActivityRange {
                start_us: r.try_get(0)?,
                end_us: r.try_get(1)?,
                peak: r.try_get(2)?,
                peak_us: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(IndexError::from)
}

/// The highest level of each `step_us` step from `start_us` (a multiple of 1 s) to `end_us`:
/// `None` where no second of the step was analysed.
pub async fn levels(
    index: &Index,
    camera: &str,
    start_us: i64,
    end_us: i64,
    step_us: i64,
) -> Result<Vec<Option<f32>>, IndexError> {
    let steps = ((end_us - start_us).max(0) + step_us - 1) / step_us.max(1);
    let mut out: Vec<Option<u8>> = vec![None; steps as usize];
    let rows = sqlx::query(
        "select l.minute_us, l.levels from motion_level l join camera c on c.id = l.camera_id \
         where c.name = $1 and l.minute_us > $2 and l.minute_us < $3 order by l.minute_us",
    )
    .bind(camera)
    .bind(start_us - MINUTE_US)
    .bind(end_us)
    .fetch_all(index.pool())
    .await?;
    for r in rows {
        let minute_us: i64 = r.try_get(0)?;
        let bytes: Vec<u8> = r.try_get(1)?;
        for (i, &b) in bytes.iter().enumerate().take(60) {
            let t = minute_us + i as i64 * 1_000_000;
            if b == NO_LEVEL || t < start_us || t >= end_us {
                continue;
            }
            let slot = &mut out[((t - start_us) / step_us) as usize];
            *slot = Some(slot.map_or(b, |s| s.max(b)));
        }
    }
    Ok(out.into_iter().map(|b| b.map(|b| f32::from(b) / 250.0)).collect())
}

/// Closes ranges a previous process left open (it died before their end): each ends at its
/// peak, the last moment known to have moved. Returns how many.
pub async fn close_abandoned(index: &Index) -> Result<u64, IndexError> {
    let r = sqlx::query("update activity set end_us = peak_us where end_us is null").execute(index.pool()).await?;
    Ok(r.rows_affected())
}

/// Deletes a camera's ranges and levels (its recordings are being deleted).
pub async fn delete_camera(index: &Index, camera: &str) -> Result<(), IndexError> {
    for sql in [
        "delete from activity where camera_id in (select id from camera where name = $1)",
        "delete from motion_level where camera_id in (select id from camera where name = $1)",
    ] {
        sqlx::query(sql).bind(camera).execute(index.pool()).await?;
    }
    Ok(())
}

/// One camera's minute of levels being filled.
struct Minute {
    camera_id: i64,
    minute_us: i64,
    levels: Vec<u8>,
    dirty: bool,
    flushed: Instant,
}

/// Stores updates and announces ranges, until the sender closes.
pub async fn run(index: Index, bus: Bus, mut updates: mpsc::UnboundedReceiver<Update>) {
    let mut w = Writer { index, bus, minutes: HashMap::new(), last_motion: HashMap::new() };
    match close_abandoned(&w.index).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(ranges = n, "closed activity ranges left open by the previous run"),
        Err(e) => tracing::error!(error = %e, "closing abandoned activity ranges"),
    }
    while let Some(u) = updates.recv().await {
        if let Err(e) = w.apply(u).await {
            tracing::error!(error = %e, "storing activity");
        }
    }
    let cameras: Vec<String> = w.minutes.keys().cloned().collect();
    for c in cameras {
        if let Err(e) = w.flush(&c).await {
            tracing::error!(error = %e, "storing motion levels");
        }
    }
}

struct Writer {
    index: Index,
    bus: Bus,
    minutes: HashMap<String, Minute>,
    /// The last second each camera moved in (closes a range whose end was never reported).
    last_motion: HashMap<String, i64>,
}

impl Writer {
    async fn apply(&mut self, u: Update) -> Result<(), IndexError> {
        match u {
            Update::Started { camera, start_us, peak } => {
                let id = self.index.camera_id(&camera).await?;
                sqlx::query(
                    "insert into activity (camera_id, start_us, end_us, peak, peak_us) values ($1, $2, null, $3, $2) \
                     on conflict (camera_id, start_us) do nothing",
                )
                .bind(id)
                .bind(start_us)
                .bind(f64::from(peak))
                .execute(self.index.pool())
                .await?;
                self.last_motion.insert(camera.clone(), start_us);
                self.bus.publish(Some(&camera), EventKind::activity_start(start_us, f64::from(peak)));
            }
            Update::Ended { camera, start_us, end_us, peak, peak_us } => {
                self.end(&camera, start_us, end_us.max(start_us), f64::from(peak), peak_us).await?;
            }
            Update::Level { camera, second_us, level } => self.level(&camera, second_us, level).await?,
            Update::Stopped { camera } => {
                self.flush(&camera).await?;
                self.minutes.remove(&camera);
                let open = sqlx::query(
                    "select a.start_us, a.peak, a.peak_us from activity a join camera c on c.id = a.camera_id \
                     where c.name = $1 and a.end_us is null",
                )
                .bind(&camera)
                .fetch_all(self.index.pool())
                .await?;
                for r in open {
                    let (start_us, peak, peak_us): (i64, f64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                    let last = self.last_motion.get(&camera).copied().unwrap_or(peak_us);
                    self.end(&camera, start_us, last.max(peak_us).max(start_us), peak, peak_us).await?;
                }
            }
        }
        Ok(())
    }

    async fn end(
        &mut self,
        camera: &str,
        start_us: i64,
        end_us: i64,
        peak: f64,
        peak_us: i64,
    ) -> Result<(), IndexError> {
        let id = self.index.camera_id(camera).await?;
        sqlx::query(
            "insert into activity (camera_id, start_us, end_us, peak, peak_us) values ($1, $2, $3, $4, $5) \
             on conflict (camera_id, start_us) do update set end_us = excluded.end_us, peak = excluded.peak, \
             peak_us = excluded.peak_us",
        )
        .bind(id)
        .bind(start_us)
        .bind(end_us)
        .bind(peak)
        .bind(peak_us)
        .execute(self.index.pool())
        .await?;
        self.bus.publish(Some(camera), EventKind::activity_end(start_us, end_us, peak, peak_us));
        Ok(())
    }

    async fn level(&mut self, camera: &str, second_us: i64, level: f32) -> Result<(), IndexError> {
        let minute_us = second_us.div_euclid(MINUTE_US) * MINUTE_US;
        if self.minutes.get(camera).is_some_and(|m| m.minute_us != minute_us) {
            self.flush(camera).await?;
            self.minutes.remove(camera);
        }
        if !self.minutes.contains_key(camera) {
            let camera_id = self.index.camera_id(camera).await?;
            // A restart within the minute continues its row instead of blanking it.
            let levels = sqlx::query("select levels from motion_level where camera_id = $1 and minute_us = $2")
                .bind(camera_id)
                .bind(minute_us)
                .fetch_optional(self.index.pool())
                .await?
                .map(|r| r.try_get::<Vec<u8>, _>(0))
                .transpose()?
                .filter(|l| l.len() == 60)
                .unwrap_or_else(|| vec![NO_LEVEL; 60]);
            let m = Minute { camera_id, minute_us, levels, dirty: false, flushed: Instant::now() };
            self.minutes.insert(camera.to_owned(), m);
        }
        let byte = level_byte(level);
        if byte > 0 {
            self.last_motion.insert(camera.to_owned(), second_us);
        }
        let flush = match self.minutes.get_mut(camera) {
            Some(m) => {
                let slot = ((second_us - minute_us) / 1_000_000) as usize;
                m.levels[slot] = byte;
                m.dirty = true;
                m.flushed.elapsed() >= LEVEL_FLUSH
            }
            None => false,
        };
        if flush {
            self.flush(camera).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, camera: &str) -> Result<(), IndexError> {
        let Some(m) = self.minutes.get_mut(camera) else { return Ok(()) };
        if !m.dirty {
            return Ok(());
        }
        sqlx::query(
            "insert into motion_level (camera_id, minute_us, levels) values ($1, $2, $3) \
             on conflict (camera_id, minute_us) do update set levels = excluded.levels",
        )
        .bind(m.camera_id)
        .bind(m.minute_us)
        .bind(m.levels.clone())
        .execute(self.index.pool())
        .await?;
        m.dirty = false;
        m.flushed = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[tokio::test]
    async fn ranges_and_levels_are_stored_announced_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(None, dir.path()).await.unwrap();
        let bus = Bus::new();
        let mut sub = bus.subscribe();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(ix.clone(), bus.clone(), rx));
        let cam = || "front".to_owned();
        let t0 = 1_800_000_000 * S; // a whole minute
        for s in 0..90 {
            let level = if (10..20).contains(&s) { 0.04 } else { 0.0 };
            tx.send(Update::Level { camera: cam(), second_us: t0 + s * S, level }).unwrap();
        }
        tx.send(Update::Started { camera: cam(), start_us: t0 + 10 * S, peak: 0.01 }).unwrap();
        tx.send(Update::Ended {
            camera: cam(),
            start_us: t0 + 10 * S,
            end_us: t0 + 19 * S,
            peak: 0.04,
            peak_us: t0 + 15 * S,
        })
        .unwrap();
        // A range whose end was never reported: the child died.
        tx.send(Update::Started { camera: cam(), start_us: t0 + 70 * S, peak: 0.02 }).unwrap();
        tx.send(Update::Level { camera: cam(), second_us: t0 + 72 * S, level: 0.3 }).unwrap();
        tx.send(Update::Stopped { camera: cam() }).unwrap();
        drop(tx);
        task.await.unwrap();

        let all = ranges(&ix, "front", 0, i64::MAX, 100).await.unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!((all[0].start_us, all[0].end_us, all[0].peak_us), (t0 + 10 * S, Some(t0 + 19 * S), t0 + 15 * S));
        assert!((all[0].peak - 0.04).abs() < 1e-6);
        assert_eq!(all[1].end_us, Some(t0 + 72 * S), "closed at its last motion");
        assert!(ranges(&ix, "front", t0 + 30 * S, t0 + 60 * S, 100).await.unwrap().is_empty());
        assert!(ranges(&ix, "back", 0, i64::MAX, 100).await.unwrap().is_empty());

        let per10 = levels(&ix, "front", t0, t0 + 100 * S, 10 * S).await.unwrap();
        assert_eq!(per10.len(), 10);
        assert_eq!(per10[0], Some(0.0));
        assert!(per10[1].unwrap() >= 0.04, "{per10:?}");
        assert!(per10[7].unwrap() >= 0.3, "{per10:?}");
        assert_eq!(per10[9], None, "never analysed");
        // Steps that do not start on a minute.
        let mid = levels(&ix, "front", t0 + 15 * S, t0 + 17 * S, S).await.unwrap();
        assert_eq!(mid.len(), 2);
        assert!(mid.iter().all(|l| l.unwrap() >= 0.04));

        let mut kinds = Vec::new();
        while let Ok(e) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await {
            if let crate::events::Received::Event(e) = e {
                kinds.push(e.kind.name());
            }
        }
        assert_eq!(kinds, ["activity_start", "activity_end", "activity_start", "activity_end"]);

        // A range a crash left open is closed at the next start.
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(Update::Started { camera: cam(), start_us: t0 + 200 * S, peak: 0.02 }).unwrap();
        drop(tx);
        run(ix.clone(), bus.clone(), rx).await;
        assert_eq!(close_abandoned(&ix).await.unwrap(), 1);
        delete_camera(&ix, "front").await.unwrap();
        assert!(ranges(&ix, "front", 0, i64::MAX, 100).await.unwrap().is_empty());
        assert!(levels(&ix, "front", t0, t0 + 60 * S, 60 * S).await.unwrap()[0].is_none());
    }
}
