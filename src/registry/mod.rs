//! The camera registry: the set of cameras and their settings, as live data.
//!
//! Cameras come from two places: the `[[cameras]]` tables of vigil.toml (loaded at start and
//! again on `SIGHUP`, marked `defined_in = "config"`) and the API (`POST /api/cameras`,
//! `defined_in = "api"`, kept in the database so they survive restarts). Both end up as rows
//! of the `camera` table ([`store`]); the registry is the only reader of vigil.toml's
//! cameras. A camera defined in the file keeps its settings there: through the API only
//! `enabled`, `record`, `title` and `group` can change on it (kept in the row's overrides,
//! applied on top of the file, so they survive a restart too).
//!
//! Every change produces a new immutable [`CameraSet`], published on a `watch` channel:
//! whoever runs cameras (the server's runtime, which starts capture children, hubs and WHIP
//! writers) subscribes and reconciles what runs with what the set says. A change is also an
//! event on the [`crate::events::Bus`] (`camera_added`, `camera_changed`, `camera_removed`).
//!
//! Changes are atomic: a change is checked in full, written to the database, and only then
//! published; a failed one leaves the registry, the database and the running cameras as
//! they were. Changes are serialised (one at a time).
//!
//! Owns: the camera settings, their checks (beyond [`CameraConfig::check`]: unique names, one
//! camera per V4L2 device), their JSON form in the API ([`json`]), their rows ([`store`]), the
//! `/api/cameras` routes ([`api`]).
//! Must not touch: capture processes, hubs, segments (it says what should run; the runtime
//! makes it so), the recordings index (deleting a camera's recordings is the API's call into
//! history).

pub mod api;
pub mod json;
pub mod store;

use crate::config::{CameraConfig, FieldError};
use crate::events::{Bus, EventKind};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use store::{Row, Store, StoreError};
use tokio::sync::watch;

/// Where a camera is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefinedIn {
    /// A `[[cameras]]` table of vigil.toml.
    Config,
    /// Added through the API; lives in the database.
    Api,
}

impl DefinedIn {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            DefinedIn::Config => "config",
            DefinedIn::Api => "api",
        }
    }
}

/// One camera: its settings and where they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    /// The effective settings (for a file camera: the file plus the API's overrides).
    pub config: CameraConfig,
    /// Where it is defined.
    pub defined_in: DefinedIn,
    /// Order on pages (then by name).
    pub position: i64,
}

impl Camera {
    /// The name.
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// The cameras at one moment, ordered by position then name. Immutable; a change makes a new one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CameraSet {
    cameras: Vec<Camera>,
}

impl CameraSet {
    /// A set of these cameras, as if defined in the configuration file (tests, tools).
    pub fn from_configs(configs: Vec<CameraConfig>) -> Self {
        Self::new(
            configs
                .into_iter()
                .enumerate()
                .map(|(i, config)| Camera { config, defined_in: DefinedIn::Config, position: i as i64 })
                .collect(),
        )
    }

    fn new(mut cameras: Vec<Camera>) -> Self {
        cameras.sort_by(|a, b| a.position.cmp(&b.position).then_with(|| a.config.name.cmp(&b.config.name)));
        Self { cameras }
    }

    /// The camera named `name`.
    pub fn get(&self, name: &str) -> Option<&Camera> {
        self.cameras.iter().find(|c| c.config.name == name)
    }

    /// Every camera, in page order.
    pub fn iter(&self) -> impl Iterator<Item = &Camera> {
        self.cameras.iter()
    }

    /// The settings of every camera, in page order.
    pub fn configs(&self) -> Vec<CameraConfig> {
        self.cameras.iter().map(|c| c.config.clone()).collect()
    }

    /// How many cameras.
    pub fn len(&self) -> usize {
        self.cameras.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.cameras.is_empty()
    }
}

/// The receiving end of the registry's changes.
pub type Watch = watch::Receiver<Arc<CameraSet>>;

/// Why a change was refused. Each maps to one HTTP status in [`api`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A value is wrong (400); names the field.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The request body is not a camera object (400): not JSON, an unknown key, a wrong type.
    #[error("{0}")]
    Body(String),
    /// No such camera (404).
    #[error("unknown camera {0:?}")]
    NotFound(String),
    /// The change conflicts with what exists (409): a taken name, a device in use, a
    /// setting of a camera defined in vigil.toml.
    #[error("{0}")]
    Conflict(String),
    /// The database failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Keys that can change on a camera defined in vigil.toml.
pub const RUNTIME_KEYS: &[&str] = &["enabled", "record", "title", "group"];

/// The registry. See the module docs.
pub struct Registry {
    store: Store,
    bus: Bus,
    tx: watch::Sender<Arc<CameraSet>>,
    /// Serialises changes: each is read-check-write-publish with nothing in between.
    change: tokio::sync::Mutex<()>,
    /// The file the `config` cameras come from (for messages).
    config_path: Option<PathBuf>,
}

impl Registry {
    /// Loads the registry from the database and applies the file's cameras (`file`: the
    /// `[[cameras]]` of vigil.toml, already validated as a whole).
    pub async fn open(
        store: Store,
        bus: Bus,
        file: &[CameraConfig],
        config_path: Option<PathBuf>,
    ) -> Result<Arc<Self>, RegistryError> {
        let (tx, _) = watch::channel(Arc::new(CameraSet::default()));
        let reg = Arc::new(Self { store, bus, tx, change: tokio::sync::Mutex::new(()), config_path });
        reg.apply_file(file, false).await?;
        Ok(reg)
    }

    /// The cameras now.
    pub fn snapshot(&self) -> Arc<CameraSet> {
        self.tx.borrow().clone()
    }

    /// A receiver of every new set (it starts marked as seen: call `changed()` to wait).
    pub fn watch(&self) -> Watch {
        self.tx.subscribe()
    }

    /// The config file's name for messages.
    fn file_name(&self) -> String {
        self.config_path.as_ref().map_or_else(|| "the built-in configuration".into(), |p| p.display().to_string())
    }

    /// Re-reads vigil.toml's cameras (SIGHUP): adds, changes and removes `config` cameras to
    /// match `file`. API cameras are untouched, unless the file now defines one of the same
    /// name: then the file wins (and a warning says so).
    pub async fn reload_file(&self, file: &[CameraConfig]) -> Result<(), RegistryError> {
        self.apply_file(file, true).await
    }

    async fn apply_file(&self, file: &[CameraConfig], announce: bool) -> Result<(), RegistryError> {
        let _one = self.change.lock().await;
        let rows = self.store.load().await?;
        let before = self.tx.borrow().clone();
        // Rows the file no longer defines stop being cameras.
        for r in rows.iter().filter(|r| r.defined_in == Some(DefinedIn::Config)) {
            if !file.iter().any(|c| c.name == r.name) {
                self.store.unconfigure(&r.name).await?;
            }
        }
        for (i, c) in file.iter().enumerate() {
            let row = rows.iter().find(|r| r.name == c.name);
            if row.is_some_and(|r| r.defined_in == Some(DefinedIn::Api)) {
                tracing::warn!(camera = %c.name, file = %self.file_name(), "a camera added through the API is now defined in the configuration file, which wins");
            }
            self.store.put_config(c, i as i64).await?;
        }
        let set = Arc::new(CameraSet::new(self.store.load().await?.into_iter().filter_map(Row::into_camera).collect()));
        self.publish(&before, set, announce);
        Ok(())
    }

    /// Publishes `set` and, when `announce`, one event per camera that changed from `before`.
    fn publish(&self, before: &CameraSet, set: Arc<CameraSet>, announce: bool) {
        if announce {
            for c in set.iter() {
                match before.get(c.name()) {
                    None => {
                        self.bus.publish(Some(c.name()), EventKind::CameraAdded);
                    }
                    Some(old) if old != c => {
                        let fields = json::changed_keys(&old.config, &c.config);
                        self.bus.publish(Some(c.name()), EventKind::CameraChanged { fields });
                    }
                    Some(_) => {}
                }
            }
            for c in before.iter().filter(|c| set.get(c.name()).is_none()) {
                self.bus.publish(Some(c.name()), EventKind::CameraRemoved);
            }
        }
        self.tx.send_replace(set);
    }

    /// Checks a camera against the others: unique name, one camera per V4L2 device.
    fn check_against(set: &CameraSet, cam: &CameraConfig, replacing: Option<&str>) -> Result<(), RegistryError> {
        if replacing.is_none() && set.get(&cam.name).is_some() {
            return Err(RegistryError::Conflict(format!("a camera named {:?} exists", cam.name)));
        }
        if let Some(dev) = cam.v4l2_device()
            && let Some(other) =
                set.iter().find(|c| Some(c.name()) != replacing && c.config.v4l2_device().as_deref() == Some(&dev))
        {
            return Err(RegistryError::Conflict(format!("source: {dev} is already used by camera {:?}", other.name())));
        }
        Ok(())
    }

    /// Adds a camera from an API body (a JSON object of camera keys).
    pub async fn create(&self, body: &serde_json::Value) -> Result<Camera, RegistryError> {
        let cam = json::parse_new(body)?;
        cam.check()?;
        let _one = self.change.lock().await;
        let before = self.snapshot();
        Self::check_against(&before, &cam, None)?;
        if self.store.exists_configured(&cam.name).await? {
            return Err(RegistryError::Conflict(format!("a camera named {:?} exists", cam.name)));
        }
        let position = before.iter().map(|c| c.position + 1).max().unwrap_or(0);
        self.store.put_api(&cam, position).await?;
        let mut cameras: Vec<Camera> = before.iter().cloned().collect();
        let added = Camera { config: cam, defined_in: DefinedIn::Api, position };
        cameras.push(added.clone());
        self.publish(&before, Arc::new(CameraSet::new(cameras)), true);
        Ok(added)
    }

    /// Applies a JSON merge patch (RFC 7396) to a camera. On a camera defined in vigil.toml
    /// only [`RUNTIME_KEYS`] may change.
    pub async fn patch(&self, name: &str, patch: &serde_json::Value) -> Result<Camera, RegistryError> {
        let _one = self.change.lock().await;
        let before = self.snapshot();
        let cur = before.get(name).ok_or_else(|| RegistryError::NotFound(name.to_owned()))?.clone();
        let obj = patch.as_object().ok_or_else(|| RegistryError::Body("body must be a JSON object".into()))?;
        if cur.defined_in == DefinedIn::Config
            && let Some(k) = obj.keys().find(|k| !RUNTIME_KEYS.contains(&k.as_str()))
        {
            // An unknown key is still a 400, whatever defines the camera.
            json::check_keys(obj)?;
            return Err(RegistryError::Conflict(format!(
                "{k}: camera {name:?} is defined in {}; change it there (only {} can change here)",
                self.file_name(),
                RUNTIME_KEYS.join(", ")
            )));
        }
        let next = json::merge(&cur.config, obj)?;
        next.check()?;
        Self::check_against(&before, &next, Some(name))?;
        match cur.defined_in {
            DefinedIn::Api => self.store.update_api(&next).await?,
            DefinedIn::Config => self.store.set_overrides(name, &json::overrides_of(obj, &next)).await?,
        }
        let updated = Camera { config: next, ..cur };
        let cameras = before.iter().map(|c| if c.name() == name { updated.clone() } else { c.clone() }).collect();
        self.publish(&before, Arc::new(CameraSet::new(cameras)), true);
        Ok(updated)
    }

    /// Removes a camera added through the API (a file camera: 409). Its recordings stay in
    /// the index; deleting them is the caller's business.
    pub async fn delete(&self, name: &str) -> Result<Camera, RegistryError> {
        let _one = self.change.lock().await;
        let before = self.snapshot();
        let cur = before.get(name).ok_or_else(|| RegistryError::NotFound(name.to_owned()))?.clone();
        if cur.defined_in == DefinedIn::Config {
            return Err(RegistryError::Conflict(format!(
                "camera {name:?} is defined in {}; remove it there and reload (SIGHUP)",
                self.file_name()
            )));
        }
        self.store.unconfigure(name).await?;
        let cameras = before.iter().filter(|c| c.name() != name).cloned().collect();
        self.publish(&before, Arc::new(CameraSet::new(cameras)), true);
        Ok(cur)
    }
}

#[cfg(test)]
mod tests;
