//! The camera API (docs/cameras.md, docs/api.md):
//!
//! ```text
//! GET    /api/cameras                          every camera the caller may see, settings + state
//! POST   /api/cameras                          add (admin) → 201; 400 names the field, 409 a taken name/device
//! GET    /api/cameras/{name}                   one camera
//! PATCH  /api/cameras/{name}                   JSON merge patch (admin) → 200; 409 for file settings
//! DELETE /api/cameras/{name}[?recordings=delete]  remove (admin) → 200; recordings kept unless asked
//! POST   /api/cameras/probe                    test a source (admin) → {"ok",codec,width,height,fps,snapshot}
//! GET    /api/cameras/probe/{id}/snapshot.jpg  the probe's JPEG (admin, for 10 minutes)
//! GET    /api/cameras/{name}/latest.jpg        the last known good picture of a camera
//! GET    /api/devices                          local V4L2 / libcamera cameras and their formats (admin)
//! ```
//!
//! Settings are shown with secrets masked; callers that are not admins see only name, title,
//! group, enabled, record and the state. The routes that change things are admin-only in
//! [`crate::auth::guard`]; handlers check again so a misrouted request fails closed.

use super::json::public_settings;
use super::{Camera, Registry, RegistryError};
use crate::auth::Access;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Names that would collide with routes under `/api/cameras/`.
pub const RESERVED_NAMES: &[&str] = &["probe"];

/// What a probe is asked to try.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// A camera source (`test`, `v4l2:/dev/video0`, `rtsp://...`, `file:...`, `pipeline:...`).
    pub source: String,
    /// Size and rate for raw sources.
    pub width: Option<u32>,
    /// Height.
    pub height: Option<u32>,
    /// Frames per second.
    pub fps: Option<u32>,
}

/// What a probe found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProbeResult {
    /// Whether the source produced a picture.
    pub ok: bool,
    /// RFC 6381 codec of what would be recorded (`avc1.42c01f`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// Picture size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Picture height.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Frames per second measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// URL of a JPEG of the first picture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Why not, in one line (secrets masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ProbeResult {
    /// A failed probe.
    pub fn failed(error: impl Into<String>) -> Self {
        Self { ok: false, codec: None, width: None, height: None, fps: None, snapshot: None, error: Some(error.into()) }
    }
}

/// What the API needs from whoever runs cameras (the server's runtime).
#[async_trait::async_trait]
pub trait CameraRuntime: Send + Sync {
    /// The state fields of a camera (`state`, `last_error`, `video_*`, `viewers`, ...).
    fn state(&self, name: &str) -> Map<String, Value>;
    /// Tries a source: starts a capture of it, waits for a picture (at most ~15 s).
    async fn probe(&self, req: ProbeRequest) -> ProbeResult;
    /// The JPEG a probe made.
    fn probe_snapshot(&self, id: &str) -> Option<Bytes>;
    /// The last known good picture of a camera.
    fn latest_jpeg(&self, name: &str) -> Option<Bytes>;
    /// Local cameras (V4L2, libcamera) with their formats.
    async fn devices(&self) -> Value;
    /// Deletes every recording of a camera (after it was removed).
    async fn delete_recordings(&self, name: &str) -> Result<usize, String>;
}

struct Api {
    registry: Arc<Registry>,
    runtime: Arc<dyn CameraRuntime>,
}

/// The routes.
pub fn router<S: Clone + Send + Sync + 'static>(registry: Arc<Registry>, runtime: Arc<dyn CameraRuntime>) -> Router<S> {
    Router::new()
        .route("/api/cameras", get(list).post(create))
        .route("/api/cameras/probe", post(probe))
        .route("/api/cameras/probe/{id}/snapshot.jpg", get(probe_snapshot))
        .route("/api/cameras/{name}", get(one).patch(patch).delete(delete))
        .route("/api/cameras/{name}/latest.jpg", get(latest_jpeg))
        .route("/api/devices", get(devices))
        .with_state(Arc::new(Api { registry, runtime }))
}

fn text(status: StatusCode, msg: &str) -> Response {
    crate::http::plain_error(status, msg)
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = match &self {
            RegistryError::Field(_) | RegistryError::Body(_) => StatusCode::BAD_REQUEST,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Conflict(_) => StatusCode::CONFLICT,
            RegistryError::Store(e) => {
                tracing::error!(error = %e, "camera registry");
                return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error (see server log)");
            }
        };
        text(status, &self.to_string())
    }
}

type Caller = Option<axum::Extension<Access>>;

fn is_admin(c: &Caller) -> bool {
    c.as_ref().is_none_or(|a| a.is_admin())
}

fn may_see(c: &Caller, name: &str) -> bool {
    c.as_ref().is_none_or(|a| a.may_see(name))
}

fn forbidden() -> Response {
    text(StatusCode::FORBIDDEN, "admin role required")
}

impl Api {
    fn json_of(&self, cam: &Camera, admin: bool) -> Value {
        let mut obj = public_settings(&cam.config, admin);
        obj.insert("defined_in".into(), Value::String(cam.defined_in.as_str().into()));
        obj.extend(self.runtime.state(cam.name()));
        // Just added (the runtime has not picked it up yet): it is about to start, or not.
        if !obj.contains_key("state") {
            let state = if cam.config.enabled { "starting" } else { "stopped" };
            obj.insert("state".into(), Value::String(state.into()));
            obj.insert("last_error".into(), Value::Null);
        }
        Value::Object(obj)
    }
}

fn json(status: StatusCode, v: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn list(State(api): State<Arc<Api>>, caller: Caller) -> Response {
    let admin = is_admin(&caller);
    let set = api.registry.snapshot();
    let list: Vec<Value> = set.iter().filter(|c| may_see(&caller, c.name())).map(|c| api.json_of(c, admin)).collect();
    json(StatusCode::OK, &Value::Array(list))
}

/// Parses a JSON body, or says why not in one line.
fn body_json(body: &Bytes) -> Result<Value, RegistryError> {
    serde_json::from_slice(body).map_err(|e| RegistryError::Body(format!("body is not JSON: {e}")))
}

async fn create(State(api): State<Arc<Api>>, caller: Caller, body: Bytes) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if let Some(n) = v.get("name").and_then(Value::as_str)
        && RESERVED_NAMES.contains(&n)
    {
        return RegistryError::Body(format!("name: {n:?} is reserved")).into_response();
    }
    match api.registry.create(&v).await {
        Ok(cam) => {
            tracing::info!(camera = %cam.name(), source = %cam.config.masked_source(), "camera added");
            json(StatusCode::CREATED, &api.json_of(&cam, true))
        }
        Err(e) => e.into_response(),
    }
}

async fn one(State(api): State<Arc<Api>>, caller: Caller, Path(name): Path<String>) -> Response {
    if !may_see(&caller, &name) {
        return text(StatusCode::FORBIDDEN, "not allowed for this camera");
    }
    match api.registry.snapshot().get(&name) {
        Some(c) => json(StatusCode::OK, &api.json_of(c, is_admin(&caller))),
        None => RegistryError::NotFound(name).into_response(),
    }
}

async fn patch(State(api): State<Arc<Api>>, caller: Caller, Path(name): Path<String>, body: Bytes) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    let v = match body_json(&body) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    match api.registry.patch(&name, &v).await {
        Ok(cam) => {
            tracing::info!(camera = %name, keys = ?v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), "camera changed");
            json(StatusCode::OK, &api.json_of(&cam, true))
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    recordings: Option<String>,
}

async fn delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    let Ok(Query(q)) = q else {
        return text(StatusCode::BAD_REQUEST, "unknown query parameter: expected recordings=delete or recordings=keep");
    };
    let delete_recordings = match q.recordings.as_deref() {
        None | Some("keep") => false,
        Some("delete") => true,
        Some(other) => {
            let shown: String = other.chars().take(20).collect();
            return text(StatusCode::BAD_REQUEST, &format!("recordings: {shown:?}: expected delete or keep"));
        }
    };
    let cam = match api.registry.delete(&name).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut out = Map::new();
    out.insert("name".into(), Value::String(name.clone()));
    out.insert("deleted".into(), Value::Bool(true));
    if delete_recordings {
        match api.runtime.delete_recordings(&name).await {
            Ok(n) => {
                out.insert("recordings_deleted".into(), Value::from(n));
            }
            Err(e) => {
                tracing::error!(camera = %name, error = %e, "deleting a removed camera's recordings");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "camera removed, but deleting its recordings failed (see server log)",
                );
            }
        }
    }
    tracing::info!(camera = %cam.name(), recordings_deleted = delete_recordings, "camera removed");
    json(StatusCode::OK, &Value::Object(out))
}

async fn probe(State(api): State<Arc<Api>>, caller: Caller, body: Bytes) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    let req: ProbeRequest = match serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body)) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            return text(StatusCode::BAD_REQUEST, &format!("{path}: {}", e.into_inner()));
        }
    };
    // Check the source as a camera would be checked, so a probe says what a save would.
    let mut cam = crate::config::CameraConfig::test_pattern("probe");
    cam.source = req.source.clone();
    cam.width = req.width.unwrap_or(cam.width);
    cam.height = req.height.unwrap_or(cam.height);
    cam.fps = req.fps.unwrap_or(cam.fps);
    if cam.is_whip() {
        return text(
            StatusCode::BAD_REQUEST,
            "source: a WHIP camera has no source to probe (its publisher connects to it)",
        );
    }
    if let Err(e) = cam.check() {
        return text(StatusCode::BAD_REQUEST, &e.to_string());
    }
    let r = api.runtime.probe(req).await;
    json(StatusCode::OK, &serde_json::to_value(&r).unwrap_or(Value::Null))
}

fn jpeg(b: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "image/jpeg"), (header::CACHE_CONTROL, "no-store")], b).into_response()
}

async fn probe_snapshot(State(api): State<Arc<Api>>, caller: Caller, Path(id): Path<String>) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    match api.runtime.probe_snapshot(&id) {
        Some(b) => jpeg(b),
        None => text(StatusCode::NOT_FOUND, "no such probe snapshot (they are kept 10 minutes)"),
    }
}

async fn latest_jpeg(State(api): State<Arc<Api>>, caller: Caller, Path(name): Path<String>) -> Response {
    if !may_see(&caller, &name) {
        return text(StatusCode::FORBIDDEN, "not allowed for this camera");
    }
    if api.registry.snapshot().get(&name).is_none() {
        return RegistryError::NotFound(name).into_response();
    }
    match api.runtime.latest_jpeg(&name) {
        Some(b) => jpeg(b),
        None => text(StatusCode::NOT_FOUND, "no picture of this camera yet"),
    }
}

async fn devices(State(api): State<Arc<Api>>, caller: Caller) -> Response {
    if !is_admin(&caller) {
        return forbidden();
    }
    json(StatusCode::OK, &api.runtime.devices().await)
}
