//! The WHIP side of the signaling backend: who may publish to which camera, one publisher
//! per camera at a time, and the publisher sessions' life (trickle, ICE restart, DELETE,
//! reaping).
//!
//! Checks, in order: the camera exists and is a WHIP camera (404), the bearer token is the
//! camera's `publish_token` or an API token (`vigil token add`) whose role is `publisher` or
//! `admin` and whose cameras include this one (401 for neither, 403 for a token of another
//! role or camera; compared in constant time), the offer has H.264 video (406), nobody is
//! publishing (409).

use super::publisher::{PublisherSession, Sink};
use super::recorder::{Command, Recorder};
use crate::auth::Auth;
use crate::auth::config::Role;
use crate::capture::feed::CameraFeed;
use crate::capture::status::{CameraState, CameraStatus};
use crate::webrtc::net::{UdpPorts, one_line, random_id};
use crate::webrtc::peer::{NegotiateError, NetConfig};
use signaling::{Answer, IceFragment, Offer, PatchOutcome, SignalError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A camera fed by WHIP.
pub struct WhipCamera {
    name: String,
    token: String,
    recorder: Recorder,
    feed: Arc<CameraFeed>,
    status: Arc<CameraStatus>,
    last_us: Arc<AtomicI64>,
    busy: AtomicBool,
}

impl WhipCamera {
    /// A WHIP camera: its token, writer thread, feed and status.
    pub fn new(
        name: String,
        token: String,
        recorder: Recorder,
        feed: Arc<CameraFeed>,
        status: Arc<CameraStatus>,
    ) -> Arc<Self> {
        status.set_state(CameraState::Offline, None);
        feed.set_fed_by_publisher(true);
        Arc::new(Self {
            name,
            token,
            recorder,
            feed,
            status,
            last_us: Arc::new(AtomicI64::new(0)),
            busy: AtomicBool::new(false),
        })
    }
}

/// Ends a publisher's claim on its camera however its task ends (returns, or is aborted).
struct Claim {
    cam: Arc<WhipCamera>,
    reason: &'static str,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = self.cam.recorder.send(Command::EndOfStream { reason: format!("publisher gone: {}", self.reason) });
        self.cam.status.set_state(CameraState::Offline, None);
        self.cam.busy.store(false, Ordering::Release);
        metrics::gauge!("vigil_whip_sessions").decrement(1.0);
    }
}

struct SessionEntry {
    camera: String,
    etag: String,
    session: Arc<PublisherSession>,
    task: tokio::task::AbortHandle,
}

/// The WHIP cameras and their publishers. Cameras come and go at runtime
/// ([`Ingest::add_camera`], [`Ingest::remove_camera`]).
pub struct Ingest {
    cameras: RwLock<HashMap<String, Arc<WhipCamera>>>,
    /// Every configured camera (a non-WHIP one gets a 404 that says so).
    all: RwLock<Vec<String>>,
    sessions: Arc<Mutex<HashMap<String, SessionEntry>>>,
    ports: Arc<UdpPorts>,
    net: NetConfig,
    /// API tokens that may publish (role publisher or admin).
    auth: Option<Arc<Auth>>,
}

/// Compares a presented token with the expected one without revealing, through timing,
/// how much of it matched.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    let mut diff = (g.len() ^ e.len()) as u64;
    for (i, b) in e.iter().enumerate() {
        diff |= u64::from(b ^ g.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

impl Ingest {
    /// The backend for `cameras` (the WHIP ones) among `all` configured camera names. With
    /// `auth`, its API tokens of role publisher or admin may publish too.
    pub fn new(
        cameras: Vec<Arc<WhipCamera>>,
        all: Vec<String>,
        ports: Arc<UdpPorts>,
        net: NetConfig,
        auth: Option<Arc<Auth>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            auth,
            cameras: RwLock::new(cameras.into_iter().map(|c| (c.name.clone(), c)).collect()),
            all: RwLock::new(all),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            ports,
            net,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionEntry>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Open publisher sessions.
    pub fn session_count(&self) -> usize {
        self.lock().len()
    }

    /// Sets the names of every configured camera (for the 404 that says "not a WHIP camera").
    pub fn set_all(&self, all: Vec<String>) {
        *self.all.write().unwrap_or_else(|p| p.into_inner()) = all;
    }

    /// Adds (or replaces) a WHIP camera.
    pub fn add_camera(&self, cam: Arc<WhipCamera>) {
        self.cameras.write().unwrap_or_else(|p| p.into_inner()).insert(cam.name.clone(), cam);
    }

    /// Removes a WHIP camera: its publisher is ended and its writer closes its segment and
    /// stops (waited for, so another writer may start in the same folder afterwards).
    pub async fn remove_camera(&self, name: &str) {
        let cam = self.cameras.write().unwrap_or_else(|p| p.into_inner()).remove(name);
        let entries: Vec<SessionEntry> = {
            let mut map = self.lock();
            let ids: Vec<String> = map.iter().filter(|(_, s)| s.camera == name).map(|(k, _)| k.clone()).collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for e in entries {
            e.task.abort();
            let _ = e.session.pc.close().await;
        }
        if let Some(cam) = cam {
            cam.recorder.stop_and_wait().await;
        }
    }

    fn camera(&self, name: &str) -> Result<Arc<WhipCamera>, SignalError> {
        self.cameras.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned().ok_or_else(|| {
            if self.all.read().unwrap_or_else(|p| p.into_inner()).iter().any(|c| c == name) {
                SignalError::NotFound(format!("camera {name:?} is not a WHIP camera (its source is not \"whip\")"))
            } else {
                SignalError::NotFound(format!("unknown camera {name:?}"))
            }
        })
    }

    fn authorize(&self, cam: &WhipCamera, bearer: Option<&str>) -> Result<(), SignalError> {
        let Some(t) = bearer else {
            return Err(SignalError::Unauthorized(
                "publishing needs Authorization: Bearer <publish_token or publisher API token>".into(),
            ));
        };
        if token_matches(t, &cam.token) {
            return Ok(());
        }
        match self.auth.as_ref().and_then(|a| a.token(t)) {
            Some(p) if matches!(p.role, Role::Publisher | Role::Admin) && p.cameras.contains(&cam.name) => Ok(()),
            Some(p) if matches!(p.role, Role::Publisher | Role::Admin) => {
                Err(SignalError::Forbidden(format!("token {:?} may not publish to camera {:?}", p.name, cam.name)))
            }
            Some(p) => Err(SignalError::Forbidden(format!(
                "token {:?} has role {}; publishing needs publisher or admin",
                p.name, p.role
            ))),
            None => Err(SignalError::Unauthorized("wrong publish token for this camera".into())),
        }
    }

    /// Before a `POST /whip/{camera}` body is read: the camera is a WHIP camera and the
    /// token may publish to it.
    pub fn admit(&self, resource: &str, bearer: Option<&str>) -> Result<(), SignalError> {
        let cam = self.camera(resource)?;
        self.authorize(&cam, bearer)
    }

    /// `POST /whip/{camera}`.
    pub async fn create(&self, offer: Offer) -> Result<Answer, SignalError> {
        let cam = self.camera(&offer.resource)?;
        self.authorize(&cam, offer.bearer.as_deref())?;
        if !offer.summary.has_codec("video", "H264") {
            return Err(SignalError::NotAcceptable("offer has no H.264 video section".into()));
        }
        if cam.busy.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Err(SignalError::Conflict(format!("camera {:?} already has a live publisher", cam.name)));
        }
        metrics::gauge!("vigil_whip_sessions").increment(1.0);
        // From here on the claim releases the camera whatever happens.
        let mut claim = Claim { cam: cam.clone(), reason: "negotiation failed" };
        let binding = self.ports.next()?;
        let session = PublisherSession::negotiate(&offer.sdp, binding, &self.net).await.map_err(|e| match e {
            NegotiateError::BadOffer(m) => SignalError::BadRequest(format!("offer rejected: {}", one_line(&m))),
            NegotiateError::NoCodec(m) => SignalError::NotAcceptable(format!("no usable H.264 in offer ({m})")),
            NegotiateError::Stack(m) => SignalError::Internal(m),
        })?;
        let session = Arc::new(session);
        let id = random_id();
        let etag = random_id();
        let answer = session.answer.clone();
        cam.status.set_state(CameraState::Starting, None);
        let sessions = self.sessions.clone();
        let (sid, s2) = (id.clone(), session.clone());
        // Hold the map lock across spawn + insert so the task cannot remove itself first.
        let mut map = self.lock();
        let task = tokio::spawn(async move {
            let sink = Sink {
                camera: claim.cam.name.clone(),
                recorder: claim.cam.recorder.clone(),
                feed: claim.cam.feed.clone(),
                last_us: claim.cam.last_us.clone(),
            };
            let why = s2.run(&sink).await;
            claim.reason = why;
            tracing::info!(session = %sid, camera = %sink.camera, reason = why, "publisher ended");
            sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(&sid);
            let _ = s2.pc.close().await;
            drop(claim);
        });
        map.insert(
            id.clone(),
            SessionEntry { camera: offer.resource.clone(), etag: etag.clone(), session, task: task.abort_handle() },
        );
        drop(map);
        tracing::info!(session = %id, camera = %offer.resource, peer = ?offer.peer, "publisher negotiated");
        Ok(Answer { sdp: answer, session: id, etag })
    }

    /// The ETag of a publisher session.
    pub fn etag(&self, resource: &str, session: &str) -> Option<String> {
        self.lock().get(session).filter(|s| s.camera == resource).map(|s| s.etag.clone())
    }

    fn entry(&self, resource: &str, session: &str, bearer: Option<&str>) -> Result<Arc<PublisherSession>, SignalError> {
        let cam = self.camera(resource)?;
        self.authorize(&cam, bearer)?;
        let map = self.lock();
        match map.get(session) {
            Some(s) if s.camera == resource => Ok(s.session.clone()),
            _ => Err(SignalError::NotFound(format!("no session {session} for {resource}"))),
        }
    }

    /// `PATCH /whip/{camera}/{session}`: trickle candidates or an ICE restart.
    pub async fn patch(
        &self,
        resource: &str,
        session: &str,
        frag: IceFragment,
        bearer: Option<&str>,
    ) -> Result<PatchOutcome, SignalError> {
        let s = self.entry(resource, session, bearer)?;
        if s.is_ice_restart(&frag) {
            let sdpfrag = s.restart_ice(&frag).await.map_err(|e| match e {
                NegotiateError::BadOffer(m) => {
                    SignalError::BadRequest(format!("ICE restart rejected: {}", one_line(&m)))
                }
                other => SignalError::Internal(other.to_string()),
            })?;
            let etag = random_id();
            if let Some(e) = self.lock().get_mut(session) {
                e.etag = etag.clone();
            }
            return Ok(PatchOutcome::Restarted { sdpfrag, etag });
        }
        for (mid, c) in frag.candidates {
            if let Err(e) = s.add_candidate(mid, c).await {
                tracing::debug!(error = %e, "adding trickled candidate");
            }
        }
        Ok(PatchOutcome::Applied)
    }

    /// Server shutdown: ends every publisher and lets each camera's writer close its segment
    /// and stop (so the history index gets the last `segment_closed`).
    pub async fn shutdown(&self) {
        let entries: Vec<SessionEntry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in entries {
            e.task.abort();
            let _ = e.session.pc.close().await;
        }
        let recorders: Vec<Recorder> =
            self.cameras.read().unwrap_or_else(|p| p.into_inner()).values().map(|c| c.recorder.clone()).collect();
        for r in recorders {
            r.stop_and_wait().await;
        }
    }

    /// `DELETE /whip/{camera}/{session}`: the publisher stops; the camera goes offline.
    pub async fn delete(&self, resource: &str, session: &str, bearer: Option<&str>) -> Result<(), SignalError> {
        let _ = self.entry(resource, session, bearer)?;
        let entry = self.lock().remove(session);
        let e = entry.ok_or_else(|| SignalError::NotFound(format!("no session {session} for {resource}")))?;
        // The task ends on its own (flushing what it holds, then dropping its claim: the
        // segment is closed and the camera released); aborted if it has not within 2 s.
        e.session.stop();
        let task = e.task;
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            task.abort();
        });
        tracing::info!(session, camera = resource, "publisher deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-toke", "s3cret-token"));
        assert!(!token_matches("s3cret-token!", "s3cret-token"));
        assert!(!token_matches("", "s3cret-token"));
        assert!(!token_matches("S3cret-token", "s3cret-token"));
    }
}
