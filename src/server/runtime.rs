//! The camera runtime: makes what runs match the registry.
//!
//! For each camera in the registry's current [`CameraSet`] it keeps a [`CameraStatus`], a
//! [`CameraFeed`], a live [`Hub`] tailing the camera's folder, and its source: a capture
//! supervisor (one `vigil capture` child) or, for `source = "whip"`, a segment writer waiting
//! for publishers. Each new set is reconciled against what runs:
//!
//! | change | what happens |
//! | --- | --- |
//! | camera added | status, feed, hub and source start; viewers can join at once |
//! | capture settings changed | the supervisor restarts its child with the new settings (viewers keep their session; the hub reads the new picture) |
//! | `record` changed | the capture restarts writing into the other folder; the hub follows it |
//! | `enabled = false` | the source stops, the state reads `stopped`, viewers are ended and WHEP answers 503 |
//! | title, group, retention | nothing restarts |
//! | camera removed | everything of it stops; its viewers are ended |
//!
//! It also keeps the last known good picture of each running camera (a JPEG of its newest
//! keyframe, every [`LATEST_EVERY`], on disk under `<data_dir>/.snapshots/`), and answers the
//! camera API's probes and device list.

use crate::capture::feed::CameraFeed;
use crate::capture::status::{CameraState, CameraStatus};
use crate::capture::supervisor::{ChildCommand, EventSink, capture_dir, live_only_sink, supervise};
use crate::config::CameraConfig;
use crate::events::Bus;
use crate::history::service::History;
use crate::ingest::recorder::Recorder;
use crate::ingest::whip::{Ingest, WhipCamera};
use crate::live::hub::Hub;
use crate::live::whep::Live;
use crate::registry::api::{CameraRuntime, ProbeRequest, ProbeResult};
use crate::registry::{CameraSet, Watch};
use axum::body::Bytes;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How often the last known good picture of a running camera is renewed.
pub const LATEST_EVERY: Duration = Duration::from_secs(30);
/// How long a probe's JPEG is kept.
const PROBE_KEEP: Duration = Duration::from_secs(600);
/// The folder of last known good pictures.
pub const SNAPSHOT_DIR: &str = ".snapshots";

enum Source {
    /// Switched off.
    Off,
    /// A capture child under a supervisor; its settings follow the sender.
    Capture { settings: tokio::sync::watch::Sender<Arc<CameraConfig>>, task: tokio::task::JoinHandle<()> },
    /// A WHIP camera (its writer thread; publishers come through [`Ingest`]).
    Whip,
}

struct Running {
    applied: CameraConfig,
    status: Arc<CameraStatus>,
    feed: Arc<CameraFeed>,
    hub: Arc<Hub>,
    hub_task: tokio::task::JoinHandle<()>,
    hub_dir: PathBuf,
    source: Source,
}

/// What the camera's source depends on (title, group and retention changes restart nothing).
fn source_view(c: &CameraConfig) -> CameraConfig {
    let mut c = c.clone();
    c.title = None;
    c.group = None;
    c.retain_bytes = None;
    c.retain_days = None;
    c
}

/// See the module docs.
pub struct Runtime {
    data_dir: PathBuf,
    child: ChildCommand,
    /// Where segment events go; emptied at shutdown so the index sees the channel close.
    segment_events: Mutex<EventSink>,
    /// Where activity from capture children goes; emptied at shutdown like `segment_events`.
    activity: Mutex<crate::activity::Sink>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    live: Arc<Live>,
    ingest: Arc<Ingest>,
    history: Arc<History>,
    bus: Bus,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    /// The statuses, for the API's synchronous reads.
    statuses: RwLock<HashMap<String, Arc<CameraStatus>>>,
    probes: Mutex<HashMap<String, (Instant, Bytes)>>,
    latest: Mutex<HashMap<String, (Instant, Bytes)>>,
}

/// What the runtime is built from.
pub struct RuntimeParts {
    /// The data directory.
    pub data_dir: PathBuf,
    /// How to start capture children.
    pub child: ChildCommand,
    /// Where segment events go (the history service).
    pub segment_events: EventSink,
    /// Where activity from capture children goes (the history service).
    pub activity: crate::activity::Sink,
    /// Server shutdown.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Live viewing.
    pub live: Arc<Live>,
    /// WHIP publishers.
    pub ingest: Arc<Ingest>,
    /// History (deleting a removed camera's recordings).
    pub history: Arc<History>,
    /// The event bus.
    pub bus: Bus,
}

impl Runtime {
    /// A runtime with nothing running yet; [`Runtime::run`] starts what the registry says.
    pub fn new(p: RuntimeParts) -> Arc<Self> {
        // Leftovers of a previous run: live-only footage must not outlive the process.
        let _ = std::fs::remove_dir_all(p.data_dir.join(crate::capture::supervisor::LIVE_ONLY_DIR));
        let _ = std::fs::remove_dir_all(p.data_dir.join(".probe"));
        Arc::new(Self {
            data_dir: p.data_dir,
            child: p.child,
            segment_events: Mutex::new(p.segment_events),
            activity: Mutex::new(p.activity),
            shutdown: p.shutdown,
            live: p.live,
            ingest: p.ingest,
            history: p.history,
            bus: p.bus,
            running: tokio::sync::Mutex::default(),
            statuses: RwLock::default(),
            probes: Mutex::default(),
            latest: Mutex::default(),
        })
    }

    /// Applies every set the registry publishes until the server shuts down; then stops every
    /// camera (capture children get their SIGTERM grace, WHIP writers close their segments).
    pub async fn run(self: Arc<Self>, mut registry: Watch) {
        let pictures = tokio::spawn(self.clone().latest_pictures());
        let mut shutdown = self.shutdown.clone();
        loop {
            let set = registry.borrow_and_update().clone();
            self.reconcile(&set).await;
            tokio::select! {
                r = registry.changed() => if r.is_err() { break },
                _ = shutdown.wait_for(|v| *v) => break,
            }
        }
        pictures.abort();
        self.reconcile(&CameraSet::default()).await;
    }

    fn sink(&self) -> EventSink {
        self.segment_events.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Drops the runtime's sender of segment events (after [`Runtime::run`] ended), so the
    /// history service sees the channel close once the last writer is done.
    pub fn close_segment_events(&self) {
        self.segment_events.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.activity.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The status of a running camera.
    pub fn status(&self, name: &str) -> Option<Arc<CameraStatus>> {
        self.statuses.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// The statuses of every running camera.
    pub fn statuses(&self) -> Vec<(String, Arc<CameraStatus>)> {
        let map = self.statuses.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    async fn reconcile(&self, set: &CameraSet) {
        let mut running = self.running.lock().await;
        let gone: Vec<String> = running.keys().filter(|n| set.get(n).is_none()).cloned().collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                self.stop_source(&name, r.source).await;
                r.hub_task.abort();
                self.live.remove_camera(&name).await;
                self.statuses.write().unwrap_or_else(|p| p.into_inner()).remove(&name);
                self.latest.lock().unwrap_or_else(|p| p.into_inner()).remove(&name);
                tracing::info!(camera = %name, "camera stopped (removed)");
            }
        }
        for cam in set.iter().map(|c| &c.config) {
            match running.get_mut(&cam.name) {
                None => {
                    let r = self.start(cam).await;
                    running.insert(cam.name.clone(), r);
                }
                Some(r) => self.update(r, cam).await,
            }
        }
        self.ingest.set_all(set.iter().map(|c| c.name().to_owned()).collect());
    }

    async fn start(&self, cam: &CameraConfig) -> Running {
        let status = Arc::new(CameraStatus::publishing(&cam.name, self.bus.clone()));
        self.statuses.write().unwrap_or_else(|p| p.into_inner()).insert(cam.name.clone(), status.clone());
        let feed = Arc::new(CameraFeed::default());
        let hub = Hub::new(&cam.name);
        let hub_dir = capture_dir(&self.data_dir, cam);
        let hub_task = tokio::spawn(hub.clone().run(hub_dir.clone()));
        self.live.add_camera(hub.clone(), feed.clone());
        let source = self.start_source(cam, &status, &feed).await;
        Running { applied: cam.clone(), status, feed, hub, hub_task, hub_dir, source }
    }

    async fn update(&self, r: &mut Running, cam: &CameraConfig) {
        if *cam == r.applied {
            return;
        }
        let before = std::mem::replace(&mut r.applied, cam.clone());
        let dir = capture_dir(&self.data_dir, cam);
        if dir != r.hub_dir {
            // record toggled: follow the capture into the other folder.
            r.hub_task.abort();
            r.hub_task = tokio::spawn(r.hub.clone().run(dir.clone()));
            r.hub_dir = dir;
        }
        if source_view(&before) == source_view(cam) {
            return;
        }
        let same_kind = before.is_whip() == cam.is_whip();
        match &r.source {
            Source::Capture { settings, .. } if same_kind && cam.enabled && before.enabled => {
                // The supervisor restarts its child at once with these.
                settings.send_replace(Arc::new(cam.clone()));
            }
            _ => {
                let old = std::mem::replace(&mut r.source, Source::Off);
                self.stop_source(&cam.name, old).await;
                r.source = self.start_source(cam, &r.status, &r.feed).await;
            }
        }
    }

    async fn start_source(&self, cam: &CameraConfig, status: &Arc<CameraStatus>, feed: &Arc<CameraFeed>) -> Source {
        if !cam.enabled {
            status.set_state(CameraState::Stopped, None);
            self.live.set_unavailable(&cam.name, Some("is switched off (enabled = false)".into())).await;
            return Source::Off;
        }
        self.live.set_unavailable(&cam.name, None).await;
        let dir = capture_dir(&self.data_dir, cam);
        if let (true, Some(token)) = (cam.is_whip(), &cam.publish_token) {
            let (sink, seconds) = if cam.record {
                (self.sink(), cam.segment_seconds)
            } else {
                (
                    live_only_sink(dir.clone()),
                    cam.segment_seconds.min(crate::capture::supervisor::LIVE_ONLY_SEGMENT_SECONDS),
                )
            };
            let started = std::fs::create_dir_all(&dir).and_then(|()| {
                let motion = cam.motion.then(|| crate::ingest::analysis::Spec {
                    camera: cam.clone(),
                    exe: self.child.exe.clone(),
                    activity: self.activity.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                });
                Recorder::spawn(cam.name.clone(), dir.clone(), seconds, sink, status.clone(), motion)
            });
            match started {
                Ok(recorder) => {
                    let w = WhipCamera::new(cam.name.clone(), token.clone(), recorder, feed.clone(), status.clone());
                    self.ingest.add_camera(w);
                    Source::Whip
                }
                Err(e) => {
                    tracing::error!(camera = %cam.name, error = %e, "starting a WHIP camera's segment writer");
                    status.set_state(CameraState::Failed, Some(format!("cannot start the segment writer: {e}")));
                    Source::Off
                }
            }
        } else {
            let (tx, rx) = tokio::sync::watch::channel(Arc::new(cam.clone()));
            let activity = self.activity.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let task = tokio::spawn(supervise(
                rx,
                self.child.clone(),
                status.clone(),
                self.sink(),
                activity,
                self.shutdown.clone(),
            ));
            Source::Capture { settings: tx, task }
        }
    }

    async fn stop_source(&self, name: &str, source: Source) {
        match source {
            Source::Off => {}
            Source::Capture { settings, task } => {
                // A closed settings channel stops the supervisor (SIGTERM to its child).
                drop(settings);
                if tokio::time::timeout(Duration::from_secs(10), task).await.is_err() {
                    tracing::warn!(camera = name, "capture supervisor did not stop within 10 s");
                }
            }
            Source::Whip => self.ingest.remove_camera(name).await,
        }
    }

    /// Renews the last known good picture of every running camera.
    async fn latest_pictures(self: Arc<Self>) {
        let dir = self.data_dir.join(SNAPSHOT_DIR);
        let _ = std::fs::create_dir_all(&dir);
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due: Vec<(String, PathBuf)> = {
                let running = self.running.lock().await;
                let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
                running
                    .iter()
                    .filter(|(_, r)| r.status.snapshot().state == CameraState::Running)
                    .filter(|(n, _)| latest.get(*n).is_none_or(|(t, _)| t.elapsed() >= LATEST_EVERY))
                    .map(|(n, r)| (n.clone(), r.hub_dir.clone()))
                    .collect()
            };
            for (name, cam_dir) in due {
                let made = tokio::task::spawn_blocking(move || super::pictures::newest_keyframe_jpeg(&cam_dir)).await;
                match made {
                    Ok(Ok(jpeg)) => {
                        let _ = std::fs::write(dir.join(format!("{name}.jpg")), &jpeg);
                        self.latest
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(name, (Instant::now(), jpeg.into()));
                    }
                    Ok(Err(e)) => tracing::debug!(camera = %name, error = %e, "no latest picture yet"),
                    Err(_) => {}
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl CameraRuntime for Runtime {
    fn state(&self, name: &str) -> Map<String, Value> {
        let mut out = match self.status(name).map(|s| serde_json::to_value(s.snapshot())) {
            Some(Ok(Value::Object(m))) => m,
            _ => Map::new(),
        };
        out.insert("viewers".into(), Value::from(self.live.hub(name).map_or(0, |h| h.viewers())));
        out
    }

    async fn probe(&self, req: ProbeRequest) -> ProbeResult {
        let mut cam = CameraConfig::test_pattern("probe");
        cam.source = req.source;
        cam.width = req.width.unwrap_or(cam.width);
        cam.height = req.height.unwrap_or(cam.height);
        cam.fps = req.fps.unwrap_or(cam.fps);
        let id = crate::webrtc::net::random_id();
        let scratch = self.data_dir.join(".probe").join(&id);
        let probed = match crate::capture::probe::probe(&self.child.exe, &cam, scratch).await {
            Ok(p) => p,
            Err(e) => return ProbeResult::failed(e),
        };
        let seg = probed.segment.clone();
        let looked = tokio::task::spawn_blocking(move || super::pictures::probe_picture(&seg)).await;
        let _ = std::fs::remove_dir_all(&probed.dir);
        match looked {
            Ok(Ok(p)) => {
                let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
                probes.retain(|_, (t, _)| t.elapsed() < PROBE_KEEP);
                probes.insert(id.clone(), (Instant::now(), p.jpeg.into()));
                ProbeResult {
                    ok: true,
                    codec: Some(p.codec),
                    width: Some(p.width),
                    height: Some(p.height),
                    fps: p.fps,
                    snapshot: Some(format!("/api/cameras/probe/{id}/snapshot.jpg")),
                    error: None,
                }
            }
            Ok(Err(e)) => ProbeResult::failed(e),
            Err(e) => ProbeResult::failed(format!("probe cancelled: {e}")),
        }
    }

    fn probe_snapshot(&self, id: &str) -> Option<Bytes> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.get(id).filter(|(t, _)| t.elapsed() < PROBE_KEEP).map(|(_, b)| b.clone())
    }

    fn latest_jpeg(&self, name: &str) -> Option<Bytes> {
        if let Some((_, b)) = self.latest.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Some(b.clone());
        }
        // From a previous run, until this one has a picture.
        std::fs::read(self.data_dir.join(SNAPSHOT_DIR).join(format!("{name}.jpg"))).ok().map(Bytes::from)
    }

    async fn devices(&self) -> Value {
        tokio::task::spawn_blocking(crate::capture::probe::devices).await.unwrap_or(Value::Array(Vec::new()))
    }

    async fn delete_recordings(&self, name: &str) -> Result<usize, String> {
        let _ = std::fs::remove_file(self.data_dir.join(SNAPSHOT_DIR).join(format!("{name}.jpg")));
        self.history.delete_camera_recordings(name).await.map_err(|e| e.to_string())
    }
}
