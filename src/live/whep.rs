//! The WHEP backend: turns signaling requests into viewer sessions on camera hubs, enforces
//! viewer limits (per camera, in total, per client address), hands out UDP ports, and reaps
//! sessions that end on their own.
//!
//! Limits count open sessions and offers still being negotiated (negotiation awaits ICE
//! gathering), so a burst of concurrent POSTs cannot get past them. Gauges:
//! `vigil_whep_sessions` (open sessions), `vigil_whep_session_tasks` (tasks running for them).

use super::hub::Hub;
use super::session::ViewerSession;
use crate::capture::feed::CameraFeed;
use crate::webrtc::net::{UdpPorts, one_line, random_id};
use crate::webrtc::peer::{NegotiateError, NetConfig};
use signaling::{Answer, Backend, IceFragment, Kind, Offer, PatchOutcome, SignalError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use webrtc::peer_connection::PeerConnection;

/// A camera with no frame for this long is "not running" for new viewers (503).
const LIVE_MAX_AGE_MS: i64 = 5_000;

/// Limits and network settings for viewers.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// How peer connections reach the network (shared port, range or ephemeral); WHIP
    /// publishers use the same.
    pub ports: Arc<UdpPorts>,
    /// ICE servers and public IPs.
    pub net: NetConfig,
    /// Viewers per camera.
    pub max_per_camera: usize,
    /// Viewers in total.
    pub max_total: usize,
    /// Sessions one client address may hold (0: no limit).
    pub max_per_client: usize,
}

struct SessionEntry {
    camera: String,
    client: Option<IpAddr>,
    etag: String,
    viewer: Arc<ViewerSession>,
    pc: Arc<dyn PeerConnection>,
    task: tokio::task::AbortHandle,
    candidates: tokio::sync::mpsc::UnboundedSender<(Option<String>, String)>,
}

/// Live viewing: the hubs and their WHEP sessions. Cameras come and go at runtime
/// ([`Live::add_camera`], [`Live::remove_camera`]).
pub struct Live {
    hubs: RwLock<HashMap<String, Arc<Hub>>>,
    feeds: RwLock<HashMap<String, Arc<CameraFeed>>>,
    /// Cameras that exist but are switched off, with the reason WHEP gives (503).
    unavailable: RwLock<HashMap<String, String>>,
    sessions: Arc<Mutex<HashMap<String, SessionEntry>>>,
    /// Offers being negotiated: (slot id, camera, client), counted against the limits.
    negotiating: Mutex<Vec<(u64, String, Option<IpAddr>)>>,
    next_slot: AtomicU64,
    cfg: LiveConfig,
    ports: Arc<UdpPorts>,
}

/// A negotiation's place under the limits; gives it back when dropped.
struct Slot<'a>(&'a Live, u64);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut n = self.0.negotiating.lock().unwrap_or_else(|p| p.into_inner());
        n.retain(|(id, ..)| *id != self.1);
    }
}

/// Counts a task running for a session while it lives (aborted tasks drop it too).
struct TaskGauge;

impl TaskGauge {
    fn new() -> Self {
        metrics::gauge!("vigil_whep_session_tasks").increment(1.0);
        Self
    }
}

impl Drop for TaskGauge {
    fn drop(&mut self) {
        metrics::gauge!("vigil_whep_session_tasks").decrement(1.0);
    }
}

/// `vigil_whep_sessions` is the map's size, set wherever the map changes, so it cannot drift.
fn sessions_gauge(map: &HashMap<String, SessionEntry>) {
    metrics::gauge!("vigil_whep_sessions").set(map.len() as f64);
}

impl Live {
    /// Live viewing over these hubs.
    pub fn new(hubs: Vec<Arc<Hub>>, feeds: Vec<(String, Arc<CameraFeed>)>, cfg: LiveConfig) -> Arc<Self> {
        let ports = cfg.ports.clone();
        // Present in /metrics (at 0) before the first viewer.
        metrics::gauge!("vigil_whep_sessions").set(0.0);
        metrics::gauge!("vigil_whep_session_tasks").set(0.0);
        Arc::new(Self {
            hubs: RwLock::new(hubs.into_iter().map(|h| (h.camera().to_owned(), h)).collect()),
            feeds: RwLock::new(feeds.into_iter().collect()),
            unavailable: RwLock::default(),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            negotiating: Mutex::new(Vec::new()),
            next_slot: AtomicU64::new(0),
            cfg,
            ports,
        })
    }

    /// The hub of a camera.
    pub fn hub(&self, camera: &str) -> Option<Arc<Hub>> {
        self.hubs.read().unwrap_or_else(|p| p.into_inner()).get(camera).cloned()
    }

    /// Adds (or replaces) a camera's hub and feed; viewers can join at once.
    pub fn add_camera(&self, hub: Arc<Hub>, feed: Arc<CameraFeed>) {
        let name = hub.camera().to_owned();
        self.feeds.write().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), feed);
        self.hubs.write().unwrap_or_else(|p| p.into_inner()).insert(name, hub);
    }

    /// Marks a camera as switched off (`Some(reason)`: WHEP answers 503 with it, and its
    /// viewers are ended) or back on (`None`).
    pub async fn set_unavailable(&self, camera: &str, reason: Option<String>) {
        let off = {
            let mut u = self.unavailable.write().unwrap_or_else(|p| p.into_inner());
            match reason {
                Some(r) => u.insert(camera.to_owned(), r),
                None => u.remove(camera),
            };
            u.contains_key(camera)
        };
        if off {
            self.end_sessions(camera).await;
        }
    }

    /// Removes a camera: its viewers are ended, new ones get 404.
    pub async fn remove_camera(&self, camera: &str) {
        self.hubs.write().unwrap_or_else(|p| p.into_inner()).remove(camera);
        self.feeds.write().unwrap_or_else(|p| p.into_inner()).remove(camera);
        self.unavailable.write().unwrap_or_else(|p| p.into_inner()).remove(camera);
        self.end_sessions(camera).await;
    }

    /// Ends every session of `camera`.
    async fn end_sessions(&self, camera: &str) {
        let ended: Vec<SessionEntry> = {
            let mut map = self.lock();
            let ids: Vec<String> = map.iter().filter(|(_, s)| s.camera == camera).map(|(k, _)| k.clone()).collect();
            let out = ids.iter().filter_map(|id| map.remove(id)).collect();
            sessions_gauge(&map);
            out
        };
        for e in ended {
            e.task.abort();
            let _ = e.pc.close().await;
        }
    }

    /// The UDP port hand-out (shared with WHIP publishers).
    pub fn ports(&self) -> Arc<UdpPorts> {
        self.ports.clone()
    }

    /// Open WHEP sessions.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn create_viewer(&self, offer: Offer) -> Result<Answer, SignalError> {
        if let Some(reason) = self.unavailable.read().unwrap_or_else(|p| p.into_inner()).get(&offer.resource) {
            return Err(SignalError::Unavailable(format!("camera {:?} {reason}", offer.resource)));
        }
        let hub = self
            .hub(&offer.resource)
            .ok_or_else(|| SignalError::NotFound(format!("unknown camera {:?}", offer.resource)))?;
        if !offer.summary.has_codec("video", "H264") {
            return Err(SignalError::NotAcceptable("offer has no H.264 video section".into()));
        }
        let feed =
            self.feeds.read().unwrap_or_else(|p| p.into_inner()).get(&offer.resource).cloned().unwrap_or_default();
        // A WHIP camera without a publisher is normal: its viewers wait for one.
        if !hub.is_live(LIVE_MAX_AGE_MS) && !feed.fed_by_publisher() {
            return Err(SignalError::Unavailable(format!("camera {:?} is not running", offer.resource)));
        }
        let client = offer.peer.map(|p| p.ip().to_canonical());
        let _slot = self.reserve(&offer.resource, client)?;
        let binding = self.ports.next()?;
        let viewer =
            ViewerSession::negotiate(&offer.sdp, hub.profile_idc(), feed.fed_by_publisher(), binding, &self.cfg.net)
                .await
                .map_err(|e| match e {
                    NegotiateError::BadOffer(m) => SignalError::BadRequest(format!("offer rejected: {}", one_line(&m))),
                    NegotiateError::NoCodec(m) => SignalError::NotAcceptable(format!("no usable H.264 in offer ({m})")),
                    NegotiateError::Stack(m) => SignalError::Internal(m),
                })?;
        let id = random_id();
        let etag = random_id();
        let answer = viewer.answer.clone();
        let pc = viewer.pc.clone();
        let viewer = Arc::new(viewer);
        let entry_viewer = viewer.clone();
        let (cand_tx, mut cand_rx) = tokio::sync::mpsc::unbounded_channel::<(Option<String>, String)>();
        let sessions = self.sessions.clone();
        let sid = id.clone();
        let camera = offer.resource.clone();
        // Hold the map lock across spawn + insert so the task cannot remove itself first.
        let mut map = self.lock();
        let task = tokio::spawn(async move {
            let _gauge = TaskGauge::new();
            let v2 = viewer.clone();
            let trickle = tokio::spawn(async move {
                let _gauge = TaskGauge::new();
                while let Some((mid, c)) = cand_rx.recv().await {
                    if let Err(e) = v2.add_candidate(mid, c).await {
                        tracing::debug!(error = %e, "adding trickled candidate");
                    }
                }
            });
            let why = viewer.run(hub, feed).await;
            trickle.abort();
            tracing::info!(session = %sid, camera = %camera, reason = why, "viewer ended");
            let entry = {
                let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
                let e = map.remove(&sid);
                sessions_gauge(&map);
                e
            };
            if let Some(e) = entry {
                let _ = e.pc.close().await;
            }
        });
        map.insert(
            id.clone(),
            SessionEntry {
                camera: offer.resource.clone(),
                client,
                etag: etag.clone(),
                viewer: entry_viewer,
                pc,
                task: task.abort_handle(),
                candidates: cand_tx,
            },
        );
        sessions_gauge(&map);
        drop(map);
        tracing::info!(session = %id, camera = %offer.resource, peer = ?offer.peer, "viewer negotiated");
        Ok(Answer { sdp: answer, session: id, etag })
    }
}

impl Live {
    /// Checks the limits for a new session of `camera` from `client` and holds its place
    /// until the returned slot drops (after the session is in the map, or on failure).
    fn reserve(&self, camera: &str, client: Option<IpAddr>) -> Result<Slot<'_>, SignalError> {
        let sessions = self.lock();
        let mut negotiating = self.negotiating.lock().unwrap_or_else(|p| p.into_inner());
        let open = sessions.values().map(|s| (s.camera.as_str(), s.client));
        let all: Vec<(&str, Option<IpAddr>)> =
            open.chain(negotiating.iter().map(|(_, c, a)| (c.as_str(), *a))).collect();
        if all.len() >= self.cfg.max_total {
            return Err(SignalError::Unavailable(format!("viewer limit reached ({})", self.cfg.max_total)));
        }
        if all.iter().filter(|(c, _)| *c == camera).count() >= self.cfg.max_per_camera {
            return Err(SignalError::Unavailable(format!(
                "viewer limit for this camera reached ({})",
                self.cfg.max_per_camera
            )));
        }
        if let Some(ip) = client
            && self.cfg.max_per_client > 0
            && all.iter().filter(|(_, a)| *a == Some(ip)).count() >= self.cfg.max_per_client
        {
            return Err(SignalError::TooManyRequests(format!(
                "too many viewer sessions from {ip} (max_sessions_per_client = {})",
                self.cfg.max_per_client
            )));
        }
        let id = self.next_slot.fetch_add(1, Ordering::Relaxed);
        negotiating.push((id, camera.to_owned(), client));
        Ok(Slot(self, id))
    }
}

impl Backend for Live {
    fn admit(&self, kind: Kind, resource: &str, _bearer: Option<&str>) -> Result<(), SignalError> {
        if kind == Kind::Whep && self.hub(resource).is_some() {
            Ok(())
        } else {
            Err(SignalError::NotFound(format!("unknown camera {resource:?}")))
        }
    }

    async fn create(&self, offer: Offer) -> Result<Answer, SignalError> {
        match offer.kind {
            Kind::Whep => self.create_viewer(offer).await,
            Kind::Whip => Err(SignalError::NotFound("WHIP is not enabled".into())),
        }
    }

    fn etag(&self, kind: Kind, resource: &str, session: &str) -> Option<String> {
        if kind != Kind::Whep {
            return None;
        }
        let map = self.lock();
        map.get(session).filter(|s| s.camera == resource).map(|s| s.etag.clone())
    }

    async fn patch(
        &self,
        _kind: Kind,
        _resource: &str,
        session: &str,
        frag: IceFragment,
        _bearer: Option<String>,
    ) -> Result<PatchOutcome, SignalError> {
        let viewer = {
            let map = self.lock();
            let s = map.get(session).ok_or_else(|| SignalError::NotFound(format!("no session {session}")))?;
            if !s.viewer.is_ice_restart(&frag) {
                for c in frag.candidates {
                    let _ = s.candidates.send(c);
                }
                return Ok(PatchOutcome::Applied);
            }
            s.viewer.clone()
        };
        // An ICE restart: the viewer's network changed; the session goes on over new paths.
        let sdpfrag = viewer.restart_ice(&frag).await.map_err(|e| match e {
            NegotiateError::BadOffer(m) => SignalError::BadRequest(format!("ICE restart rejected: {}", one_line(&m))),
            other => SignalError::Internal(other.to_string()),
        })?;
        let etag = random_id();
        match self.lock().get_mut(session) {
            Some(e) => e.etag = etag.clone(),
            None => return Err(SignalError::NotFound(format!("session {session} ended during the ICE restart"))),
        }
        tracing::info!(session, "viewer ICE restart");
        Ok(PatchOutcome::Restarted { sdpfrag, etag })
    }

    async fn delete(
        &self,
        _kind: Kind,
        resource: &str,
        session: &str,
        _bearer: Option<String>,
    ) -> Result<(), SignalError> {
        let entry = {
            let mut map = self.lock();
            let e = match map.get(session) {
                Some(s) if s.camera == resource => map.remove(session),
                _ => None,
            };
            sessions_gauge(&map);
            e
        };
        let e = entry.ok_or_else(|| SignalError::NotFound(format!("no session {session} for {resource}")))?;
        e.task.abort();
        let _ = e.pc.close().await;
        tracing::info!(session, camera = resource, "viewer deleted");
        Ok(())
    }
}
