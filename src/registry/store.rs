//! The registry's rows: every SQL statement about camera settings (the `camera` table's
//! registry columns, migrations/*/0002_camera_registry.sql). Portable SQL with `$N`
//! parameters, run through the index's pool on SQLite or PostgreSQL alike.

use super::{Camera, DefinedIn};
use crate::config::CameraConfig;
use serde_json::{Map, Value};
use sqlx::AnyPool;
use sqlx::Row as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The statement failed.
    #[error("camera registry database: {0}")]
    Db(#[from] sqlx::Error),
    /// A stored settings object no longer parses (written by a newer vigil?).
    #[error("camera {name:?}: stored settings do not parse: {message}")]
    Corrupt {
        /// The camera.
        name: String,
        /// Why.
        message: String,
    },
}

/// One `camera` row as the registry sees it.
#[derive(Debug, Clone)]
pub struct Row {
    /// Name.
    pub name: String,
    /// Who defines it; `None`: not configured (recordings kept).
    pub defined_in: Option<DefinedIn>,
    /// The settings, when configured.
    pub settings: Option<CameraConfig>,
    /// For file cameras: the API's overrides.
    pub overrides: Map<String, Value>,
    /// Page order.
    pub position: i64,
}

impl Row {
    /// The camera this row configures, overrides applied; `None` when not configured.
    pub fn into_camera(self) -> Option<Camera> {
        let defined_in = self.defined_in?;
        let mut config = self.settings?;
        if defined_in == DefinedIn::Config && !self.overrides.is_empty() {
            config = apply_overrides(&config, &self.overrides);
        }
        Some(Camera { config, defined_in, position: self.position })
    }
}

/// `cfg` with the runtime keys of `overrides` set (a key that no longer parses is ignored).
fn apply_overrides(cfg: &CameraConfig, overrides: &Map<String, Value>) -> CameraConfig {
    let Ok(Value::Object(mut obj)) = serde_json::to_value(cfg) else { return cfg.clone() };
    for (k, v) in overrides {
        if super::RUNTIME_KEYS.contains(&k.as_str()) {
            obj.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(Value::Object(obj)).unwrap_or_else(|_| cfg.clone())
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0)
}

fn to_text(cfg: &CameraConfig) -> String {
    // Plain data: serialising cannot fail.
    serde_json::to_string(cfg).unwrap_or_else(|_| "{}".into())
}

/// The registry's statements over a pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

impl Store {
    /// Statements over `pool` (migrated by [`crate::history::index::Index::open`]).
    pub fn new(pool: AnyPool) -> Self {
        Self { pool }
    }

    /// Every camera row.
    pub async fn load(&self) -> Result<Vec<Row>, StoreError> {
        let rows =
            sqlx::query("select name, defined_in, settings, overrides, position from camera order by position, name")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let name: String = r.try_get(0)?;
            let defined_in = match r.try_get::<Option<String>, _>(1)?.as_deref() {
                Some("config") => Some(DefinedIn::Config),
                Some("api") => Some(DefinedIn::Api),
                _ => None,
            };
            let settings = match r.try_get::<Option<String>, _>(2)? {
                Some(t) => Some(
                    serde_json::from_str::<CameraConfig>(&t)
                        .map_err(|e| StoreError::Corrupt { name: name.clone(), message: e.to_string() })?,
                ),
                None => None,
            };
            let overrides = match r.try_get::<Option<String>, _>(3)? {
                Some(t) => serde_json::from_str(&t).unwrap_or_default(),
                None => Map::new(),
            };
            out.push(Row { name, defined_in, settings, overrides, position: r.try_get(4)? });
        }
        Ok(out)
    }

    /// Whether `name` is a configured camera.
    pub async fn exists_configured(&self, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("select count(*) from camera where name = $1 and defined_in is not null")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(r.try_get::<i64, _>(0)? > 0)
    }

    /// Inserts or updates a camera defined in vigil.toml (its overrides are kept).
    pub async fn put_config(&self, cfg: &CameraConfig, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "insert into camera (name, defined_in, settings, position, updated_us) values ($1, 'config', $2, $3, $4) \
             on conflict (name) do update set defined_in = 'config', settings = excluded.settings, \
             position = excluded.position, updated_us = excluded.updated_us, \
             overrides = case when camera.defined_in = 'config' then camera.overrides else null end",
        )
        .bind(&cfg.name)
        .bind(to_text(cfg))
        .bind(position)
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Inserts a camera added through the API (a row left by a deleted camera of the same
    /// name is reused, so its recordings are this camera's history).
    pub async fn put_api(&self, cfg: &CameraConfig, position: i64) -> Result<(), StoreError> {
        sqlx::query(
            "insert into camera (name, defined_in, settings, position, updated_us) values ($1, 'api', $2, $3, $4) \
             on conflict (name) do update set defined_in = 'api', settings = excluded.settings, overrides = null, \
             position = excluded.position, updated_us = excluded.updated_us",
        )
        .bind(&cfg.name)
        .bind(to_text(cfg))
        .bind(position)
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces an API camera's settings.
    pub async fn update_api(&self, cfg: &CameraConfig) -> Result<(), StoreError> {
        sqlx::query("update camera set settings = $2, updated_us = $3 where name = $1 and defined_in = 'api'")
            .bind(&cfg.name)
            .bind(to_text(cfg))
            .bind(now_us())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Merges `overrides` into a file camera's overrides.
    pub async fn set_overrides(&self, name: &str, overrides: &Map<String, Value>) -> Result<(), StoreError> {
        let cur =
            sqlx::query("select overrides from camera where name = $1").bind(name).fetch_optional(&self.pool).await?;
        let mut all: Map<String, Value> = match cur {
            Some(r) => {
                r.try_get::<Option<String>, _>(0)?.and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
            }
            None => Map::new(),
        };
        all.extend(overrides.clone());
        sqlx::query("update camera set overrides = $2, updated_us = $3 where name = $1")
            .bind(name)
            .bind(Value::Object(all).to_string())
            .bind(now_us())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a camera as no longer configured (the row stays for its recordings).
    pub async fn unconfigure(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query(
            "update camera set defined_in = null, settings = null, overrides = null, updated_us = $2 where name = $1",
        )
        .bind(name)
        .bind(now_us())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
