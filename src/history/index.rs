//! The recordings index: every SQL statement vigil runs, in one place (Moonfire's `raw.rs`).
//!
//! SQLite (`<data_dir>/vigil.db`, WAL) by default, PostgreSQL when `database_url` says so,
//! through sqlx's `Any` driver; the statements use only `$N` parameters and portable SQL so
//! they run unchanged on both. Schema: `migrations/{sqlite,postgres}/`.
//!
//! The database is the source of truth; files are subordinate. Recording never waits on the
//! index: rows are written by the history service from capture events, off the capture path.
//!
//! Listings ([`Index::listing`]) are served from a [`ListingCache`] that this type keeps in
//! step with every change it makes to the `recording` table (so one vigil process must be
//! the only writer of an index).

use super::cache::{ListingCache, SegmentTimes};
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyPoolOptions, AnyRow};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Errors from the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A statement or connection failed.
    #[error("index database: {0}")]
    Db(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("index migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The URL names an unsupported database.
    #[error("unsupported database_url {0:?}: expected sqlite:... or postgres://...")]
    Unsupported(String),
}

/// One recording (segment) row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recording {
    /// Row id.
    pub id: i64,
    /// Camera name.
    pub camera: String,
    /// `.h264` path relative to the data directory.
    pub path: String,
    /// First AU capture time (µs).
    pub start_us: i64,
    /// Just past the last AU (µs).
    pub end_us: i64,
    /// `.h264` bytes.
    pub bytes: i64,
    /// Access units.
    pub frames: i64,
    /// `open` or `closed`.
    pub state: String,
}

/// What a closed segment looks like.
#[derive(Debug, Clone, Default)]
pub struct ClosedInfo {
    /// Just past the last AU (µs).
    pub end_us: i64,
    /// `.h264` bytes.
    pub bytes: i64,
    /// Access units.
    pub frames: i64,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Picture width.
    pub width: i64,
    /// Picture height.
    pub height: i64,
    /// SPS of the first keyframe.
    pub sps: Option<Vec<u8>>,
    /// PPS of the first keyframe.
    pub pps: Option<Vec<u8>>,
}

/// Which SQL dialect the pool speaks (only DDL differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// The index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    pool: AnyPool,
    backend: Backend,
    /// Changes are applied after they commit; held while a camera is loaded into it.
    cache: Arc<tokio::sync::Mutex<ListingCache>>,
}

/// The columns [`recording`] reads, as a literal so queries stay `&'static str`.
macro_rules! select_recording {
    () => {
        "select r.id, c.name, r.path, r.start_us, r.end_us, r.bytes, r.frames, r.state \
         from recording r join camera c on c.id = r.camera_id"
    };
}

fn recording(row: &AnyRow) -> Result<Recording, sqlx::Error> {
    Ok(Recording {
        id: row.try_get(0)?,
        camera: row.try_get(1)?,
        path: row.try_get(2)?,
        start_us: row.try_get(3)?,
        end_us: row.try_get(4)?,
        bytes: row.try_get(5)?,
        frames: row.try_get(6)?,
        state: row.try_get(7)?,
    })
}

impl Index {
    /// Opens (creating if needed) and migrates the index. `url` is a `postgres://` URL, or
    /// `None` for SQLite at `<data_dir>/vigil.db`.
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self, IndexError> {
        sqlx::any::install_default_drivers();
        let (url, backend) = match url {
            None => (format!("sqlite://{}?mode=rwc", data_dir.join("vigil.db").display()), Backend::Sqlite),
            Some(u) if u.starts_with("sqlite:") => (u.to_owned(), Backend::Sqlite),
            Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                (u.to_owned(), Backend::Postgres)
            }
            Some(u) => return Err(IndexError::Unsupported(u.to_owned())),
        };
        let opts = AnyPoolOptions::new().max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        let opts = if backend == Backend::Sqlite {
            opts.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL: readers never block the writer; NORMAL sync is durable across
                    // crashes of the process (not power loss of the last transaction).
                    sqlx::query("pragma journal_mode = wal").execute(&mut *conn).await?;
                    sqlx::query("pragma synchronous = normal").execute(&mut *conn).await?;
                    sqlx::query("pragma foreign_keys = on").execute(&mut *conn).await?;
                    sqlx::query("pragma busy_timeout = 5000").execute(&mut *conn).await?;
                    Ok(())
                })
            })
        } else {
            opts
        };
        let pool = opts.acquire_timeout(Duration::from_secs(10)).connect(&url).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&pool).await?,
        }
        Ok(Self { pool, backend, cache: Arc::default() })
    }

    /// The dialect in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The id of a camera, inserting it on first use.
    pub async fn camera_id(&self, name: &str) -> Result<i64, IndexError> {
        sqlx::query("insert into camera (name) values ($1) on conflict (name) do nothing")
            .bind(name)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query("select id from camera where name = $1").bind(name).fetch_one(&self.pool).await?;
        let id = row.try_get(0)?;
        self.cache.lock().await.set_id(name, id);
        Ok(id)
    }

    /// Inserts an open recording (its segment was just created). Idempotent on `path`.
    pub async fn insert_open(&self, camera_id: i64, path: &str, start_us: i64) -> Result<(), IndexError> {
        sqlx::query(
            "insert into recording (camera_id, path, start_us, end_us, state) values ($1, $2, $3, $3, 'open') \
             on conflict (path) do nothing",
        )
        .bind(camera_id)
        .bind(path)
        .bind(start_us)
        .execute(&self.pool)
        .await?;
        self.cache.lock().await.opened(camera_id, start_us);
        Ok(())
    }

    /// Marks a recording closed with its final figures (inserting it if it was never
    /// opened, e.g. the server was down when it started).
    pub async fn close(&self, camera_id: i64, path: &str, start_us: i64, c: &ClosedInfo) -> Result<(), IndexError> {
        self.insert_open(camera_id, path, start_us).await?;
        sqlx::query(
            "update recording set end_us = $2, bytes = $3, frames = $4, codec = $5, width = $6, height = $7, \
             sps = $8, pps = $9, state = 'closed' where path = $1",
        )
        .bind(path)
        .bind(c.end_us.max(start_us))
        .bind(c.bytes)
        .bind(c.frames)
        .bind(&c.codec)
        .bind(c.width)
        .bind(c.height)
        .bind(c.sps.clone())
        .bind(c.pps.clone())
        .execute(&self.pool)
        .await?;
        let seg =
            SegmentTimes { start_us, end_us: c.end_us.max(start_us), bytes: c.bytes, frames: c.frames, open: false };
        self.cache.lock().await.closed(camera_id, seg);
        Ok(())
    }

    /// Recordings still open (recovery looks at these only).
    pub async fn open_recordings(&self) -> Result<Vec<Recording>, IndexError> {
        let q = concat!(select_recording!(), " where r.state = 'open' order by r.start_us");
        let rows = sqlx::query(q).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(recording).collect::<Result<_, _>>()?)
    }

    /// A camera's recordings overlapping `[start_us, end_us)`, oldest first. Open
    /// recordings are included (their `end_us` is a lower bound). Segments never overlap, so
    /// of those starting before `start_us` only the latest can hold it: the scan starts there
    /// (an index range, not the camera's whole history).
    pub async fn recordings(&self, camera: &str, start_us: i64, end_us: i64) -> Result<Vec<Recording>, IndexError> {
        let q = concat!(
            select_recording!(),
            " where c.name = $1 and r.start_us < $3 and (r.end_us > $2 or r.state = 'open') \
             and r.start_us >= coalesce((select max(p.start_us) from recording p \
             where p.camera_id = c.id and p.start_us <= $2), $2) order by r.start_us"
        );
        let rows = sqlx::query(q).bind(camera).bind(start_us).bind(end_us).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(recording).collect::<Result<_, _>>()?)
    }

    /// The camera's recording that starts at or before `t_us` (the latest such), if any: the
    /// one holding `t_us` unless it ended before (a gap). One index probe.
    pub async fn recording_at(&self, camera: &str, t_us: i64) -> Result<Option<Recording>, IndexError> {
        let q =
            concat!(select_recording!(), " where c.name = $1 and r.start_us <= $2 order by r.start_us desc limit 1");
        let row = sqlx::query(q).bind(camera).bind(t_us).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(recording).transpose()?)
    }

    /// Whether a recording row exists for `path` (not deleted, not in `garbage`).
    pub async fn recording_exists(&self, path: &str) -> Result<bool, IndexError> {
        let row =
            sqlx::query("select count(*) from recording where path = $1").bind(path).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    /// A camera's closed recordings, oldest first, at most `limit` (retention).
    pub async fn oldest_closed(&self, camera: &str, limit: i64) -> Result<Vec<Recording>, IndexError> {
        let q = concat!(select_recording!(), " where c.name = $1 and r.state = 'closed' order by r.start_us limit $2");
        let rows = sqlx::query(q).bind(camera).bind(limit).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(recording).collect::<Result<_, _>>()?)
    }

    /// Total bytes and count of a camera's recordings.
    pub async fn usage(&self, camera: &str) -> Result<(i64, i64), IndexError> {
        let row = sqlx::query(
            "select cast(coalesce(sum(r.bytes), 0) as bigint), count(r.id) from recording r \
             join camera c on c.id = r.camera_id where c.name = $1",
        )
        .bind(camera)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// The newest recording start of a camera (recovery scans only files after it).
    pub async fn newest_start(&self, camera: &str) -> Result<Option<i64>, IndexError> {
        let row = sqlx::query(
            "select max(r.start_us) from recording r join camera c on c.id = r.camera_id where c.name = $1",
        )
        .bind(camera)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?)
    }

    /// A camera's segments overlapping `[start_us, end_us)`, oldest first, open ones included
    /// (as [`Index::recordings`], without paths): from memory, the camera's rows loaded on its
    /// first listing. Empty for a camera never recorded.
    pub async fn listing(&self, camera: &str, start_us: i64, end_us: i64) -> Result<Vec<SegmentTimes>, IndexError> {
        let mut cache = self.cache.lock().await;
        let id = match cache.id(camera) {
            Some(id) => id,
            None => {
                let row = sqlx::query("select id from camera where name = $1")
                    .bind(camera)
                    .fetch_optional(&self.pool)
                    .await?;
                let Some(id) = row.map(|r| r.try_get::<i64, _>(0)).transpose()? else {
                    return Ok(Vec::new());
                };
                cache.set_id(camera, id);
                id
            }
        };
        if !cache.is_loaded(id) {
            let rows = sqlx::query(
                "select start_us, end_us, bytes, frames, state from recording where camera_id = $1 order by start_us",
            )
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
            let segs = rows
                .iter()
                .map(|r| {
                    Ok(SegmentTimes {
                        start_us: r.try_get(0)?,
                        end_us: r.try_get(1)?,
                        bytes: r.try_get(2)?,
                        frames: r.try_get(3)?,
                        open: r.try_get::<String, _>(4)? == "open",
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            cache.load(id, segs);
        }
        Ok(cache.overlapping(id, start_us, end_us).unwrap_or_default())
    }

    /// Moves recordings to `garbage` in one transaction (step 1 of a deletion).
    pub async fn move_to_garbage(&self, ids: &[i64]) -> Result<(), IndexError> {
        let mut tx = self.pool.begin().await?;
        let mut gone = Vec::with_capacity(ids.len());
        for id in ids {
            let row = sqlx::query("select camera_id, start_us from recording where id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(r) = row {
                gone.push((r.try_get::<i64, _>(0)?, r.try_get::<i64, _>(1)?));
            }
            sqlx::query("insert into garbage (path, camera_id) select path, camera_id from recording where id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("delete from recording where id = $1").bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let mut cache = self.cache.lock().await;
        for (camera_id, start_us) in gone {
            cache.removed(camera_id, start_us);
        }
        Ok(())
    }

    /// Paths awaiting unlink.
    pub async fn garbage(&self) -> Result<Vec<String>, IndexError> {
        let rows = sqlx::query("select path from garbage order by path").fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
    }

    /// Drops a garbage row once its files are gone (step 3 of a deletion).
    pub async fn forget_garbage(&self, path: &str) -> Result<(), IndexError> {
        sqlx::query("delete from garbage where path = $1").bind(path).execute(&self.pool).await?;
        Ok(())
    }

    /// Removes a recording row outright (an empty segment found by recovery).
    pub async fn delete_recording(&self, path: &str) -> Result<(), IndexError> {
        let row = sqlx::query("select camera_id, start_us from recording where path = $1")
            .bind(path)
            .fetch_optional(&self.pool)
            .await?;
        sqlx::query("delete from recording where path = $1").bind(path).execute(&self.pool).await?;
        if let Some(r) = row {
            self.cache.lock().await.removed(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(())
    }

    /// The pool, for tests that inspect rows directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemas_have_the_same_columns() {
        // Column names in order: the first word of each column line of a `create table`,
        // and the column of each `alter table ... add column`.
        let cols = |sql: &str| -> Vec<String> {
            sql.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("--") && !l.is_empty())
                .filter(|l| !l.starts_with("create") && !l.starts_with("check") && !l.starts_with(')'))
                .filter_map(|l| match l.split_once(" add column ") {
                    Some((_, rest)) => rest.split_whitespace().next().map(str::to_owned),
                    None => l.split_whitespace().next().map(str::to_owned),
                })
                .collect()
        };
        let pairs = [
            (
                include_str!("../../migrations/sqlite/0001_initial.sql"),
                include_str!("../../migrations/postgres/0001_initial.sql"),
            ),
            (
                include_str!("../../migrations/sqlite/0002_camera_registry.sql"),
                include_str!("../../migrations/postgres/0002_camera_registry.sql"),
            ),
            (
                include_str!("../../migrations/sqlite/0003_activity.sql"),
                include_str!("../../migrations/postgres/0003_activity.sql"),
            ),
        ];
        for (sqlite, postgres) in pairs {
            assert_eq!(cols(sqlite), cols(postgres));
        }
        assert!(cols(pairs[0].0).contains(&"start_us".to_owned()));
        assert!(cols(pairs[1].0).contains(&"defined_in".to_owned()));
        // Every migration directory entry is covered above.
        let n = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite")).unwrap().count();
        assert_eq!(n, pairs.len(), "a migration is missing from this test");
    }

    #[tokio::test]
    async fn open_close_list_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(None, dir.path()).await.unwrap();
        let cam = ix.camera_id("front").await.unwrap();
        assert_eq!(ix.camera_id("front").await.unwrap(), cam);
        ix.insert_open(cam, "front/d/1.h264", 1_000).await.unwrap();
        ix.insert_open(cam, "front/d/1.h264", 1_000).await.unwrap(); // idempotent
        assert_eq!(ix.open_recordings().await.unwrap().len(), 1);
        let info =
            ClosedInfo { end_us: 2_000, bytes: 10, frames: 3, codec: "avc1.42c01f".into(), ..Default::default() };
        ix.close(cam, "front/d/1.h264", 1_000, &info).await.unwrap();
        ix.close(cam, "front/d/2.h264", 2_000, &ClosedInfo { end_us: 3_000, bytes: 5, ..Default::default() })
            .await
            .unwrap();
        assert!(ix.open_recordings().await.unwrap().is_empty());
        let all = ix.recordings("front", 0, i64::MAX).await.unwrap();
        assert_eq!(all.iter().map(|r| r.start_us).collect::<Vec<_>>(), vec![1_000, 2_000]);
        assert_eq!(ix.recordings("front", 2_000, 2_500).await.unwrap().len(), 1);
        assert_eq!(ix.recordings("front", 1_500, 2_500).await.unwrap().len(), 2);
        // The listing (from memory once loaded) follows every change.
        let starts = |v: Vec<SegmentTimes>| v.iter().map(|s| (s.start_us, s.end_us, s.open)).collect::<Vec<_>>();
        assert_eq!(
            starts(ix.listing("front", 0, i64::MAX).await.unwrap()),
            vec![(1_000, 2_000, false), (2_000, 3_000, false)]
        );
        assert!(ix.listing("nobody", 0, i64::MAX).await.unwrap().is_empty());
        ix.insert_open(cam, "front/d/4.h264", 4_000).await.unwrap();
        assert_eq!(starts(ix.listing("front", 5_000, 6_000).await.unwrap()), vec![(4_000, 4_000, true)]);
        ix.close(cam, "front/d/4.h264", 4_000, &ClosedInfo { end_us: 4_500, ..Default::default() }).await.unwrap();
        assert!(ix.listing("front", 5_000, 6_000).await.unwrap().is_empty());
        ix.delete_recording("front/d/4.h264").await.unwrap();
        assert_eq!(ix.listing("front", 0, i64::MAX).await.unwrap().len(), 2);
        assert_eq!(ix.usage("front").await.unwrap(), (15, 2));
        assert_eq!(ix.newest_start("front").await.unwrap(), Some(2_000));
        assert_eq!(ix.newest_start("other").await.unwrap(), None);
        assert_eq!(ix.recording_at("front", 1_500).await.unwrap().map(|r| r.start_us), Some(1_000));
        assert_eq!(ix.recording_at("front", 9_000).await.unwrap().map(|r| r.start_us), Some(2_000));
        assert_eq!(ix.recording_at("front", 999).await.unwrap(), None);
        assert!(ix.recording_exists("front/d/1.h264").await.unwrap());
        ix.move_to_garbage(&[all[0].id]).await.unwrap();
        assert!(!ix.recording_exists("front/d/1.h264").await.unwrap());
        assert_eq!(starts(ix.listing("front", 0, i64::MAX).await.unwrap()), vec![(2_000, 3_000, false)]);
        assert_eq!(ix.garbage().await.unwrap(), vec!["front/d/1.h264".to_owned()]);
        assert_eq!(ix.usage("front").await.unwrap(), (5, 1));
        ix.forget_garbage("front/d/1.h264").await.unwrap();
        assert!(ix.garbage().await.unwrap().is_empty());
    }
}
