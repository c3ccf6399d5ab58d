//! Health: `GET /healthz` says whether the server does its job, `GET /livez` only that the
//! process answers.
//!
//! `/healthz` checks each part a user depends on and answers `200` when all are well, `503`
//! when one is not, naming the failing parts (docs/api.md):
//! - every enabled camera is running, with a frame in the last [`STALE_FRAME`] (a WHIP camera
//!   waiting for its publisher is not a failure; a switched-off one is not checked);
//! - the index answers a query within [`INDEX_TIMEOUT`];
//! - the data directory's free space is known and above `min_free_bytes`;
//! - with TLS on, the certificate served is the one configured (not the placeholder of an
//!   ACME order still pending) and more than [`CERT_WARN`] from expiry.
//!
//! Callers that are not admins (with authentication on) get the status and the parts, with
//! camera names left out.
//!
//! Owns: the checks and their JSON. Must not touch: anything it checks (read-only).

use crate::auth::Access;
use crate::capture::status::CameraState;
use crate::history::service::History;
use crate::registry::Registry;
use crate::server::runtime::Runtime;
use crate::tls::{CertSource, TlsStatus};
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A running camera with no frame for this long is failing.
pub const STALE_FRAME: Duration = Duration::from_secs(5);
/// The index must answer within this.
pub const INDEX_TIMEOUT: Duration = Duration::from_secs(2);
/// A certificate this close to expiry is failing (renewal should have happened long before).
pub const CERT_WARN: Duration = Duration::from_secs(7 * 86_400);

/// What the checks read.
pub struct Health {
    /// The cameras that should run.
    pub registry: Arc<Registry>,
    /// Their state.
    pub runtime: Arc<Runtime>,
    /// The index, the data directory and the disk floor.
    pub history: Arc<History>,
    /// The served certificate.
    pub tls: Arc<TlsStatus>,
    /// `[server] min_free_bytes`.
    pub min_free_bytes: u64,
}

/// The routes.
pub fn router<S: Clone + Send + Sync + 'static>(health: Arc<Health>) -> Router<S> {
    Router::new().route("/livez", get(|| async { "ok\n" })).route("/healthz", get(healthz)).with_state(health)
}

#[derive(Debug, Serialize)]
struct CameraHealth {
    name: String,
    state: &'static str,
    last_frame_age_ms: Option<u64>,
    ok: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    /// `ok` or `failing`.
    status: &'static str,
    /// One line per failing part.
    failing: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cameras: Vec<CameraHealth>,
    index: &'static str,
    disk: Disk,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsHealth>,
}

#[derive(Debug, Serialize)]
struct Disk {
    free_bytes: Option<u64>,
    min_free_bytes: u64,
}

#[derive(Debug, Serialize)]
struct TlsHealth {
    mode: &'static str,
    source: Option<CertSource>,
    expires_in_s: Option<i64>,
}

impl Health {
    async fn report(&self, details: bool) -> Report {
        let mut failing = Vec::new();
        let mut cameras = Vec::new();
        let set = self.registry.snapshot();
        for cam in set.iter().filter(|c| c.config.enabled) {
            let snap = self.runtime.status(cam.name()).map(|s| s.snapshot());
            let (state, age) = snap.as_ref().map_or((CameraState::Starting, None), |s| (s.state, s.last_frame_age_ms));
            let stale = age.is_some_and(|a| a > STALE_FRAME.as_millis() as u64);
            let problem = match state {
                CameraState::Running if stale => Some(format!("no frame for {} s", age.unwrap_or(0) / 1000)),
                CameraState::Running | CameraState::Offline | CameraState::Stopped => None,
                other => Some(match snap.as_ref().and_then(|s| s.last_error.clone()) {
                    Some(e) => format!("{}: {e}", other.as_str()),
                    None => other.as_str().to_owned(),
                }),
            };
            if let Some(p) = &problem {
                failing.push(if details { format!("camera {}: {p}", cam.name()) } else { "a camera".to_owned() });
            }
            if details {
                cameras.push(CameraHealth {
                    name: cam.name().to_owned(),
                    state: state.as_str(),
                    last_frame_age_ms: age,
                    ok: problem.is_none(),
                });
            }
        }
        let pool = self.history.index().pool().clone();
        let index = match tokio::time::timeout(INDEX_TIMEOUT, sqlx::query("select 1").fetch_one(&pool)).await {
            Ok(Ok(_)) => "ok",
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health: the index does not answer");
                failing.push("index: a query failed (see the server log)".into());
                "failing"
            }
            Err(_) => {
                failing.push(format!("index: no answer within {} s", INDEX_TIMEOUT.as_secs()));
                "failing"
            }
        };
        let dir = self.history.data_dir().to_path_buf();
        let free = tokio::task::spawn_blocking(move || crate::history::service::free_bytes(&dir)).await.ok().flatten();
        match free {
            None => failing.push("disk: the free space of the data directory cannot be read".into()),
            Some(f) if self.min_free_bytes > 0 && f < self.min_free_bytes => failing.push(format!(
                "disk: {} MB free, below min_free_bytes ({} MB)",
                f >> 20,
                self.min_free_bytes >> 20
            )),
            Some(_) => {}
        }
        let t = self.tls.snapshot();
        let tls = (t.mode != "off").then(|| {
            let cert = t.certificate.as_ref();
            match cert {
                None => failing.push("tls: no certificate".into()),
                Some(c) if c.source == CertSource::SelfSignedPlaceholder => failing.push(format!(
                    "tls: no ACME certificate yet (serving a self-signed stand-in){}",
                    t.renewal
                        .as_ref()
                        .and_then(|r| r.last_error.as_deref())
                        .map_or(String::new(), |e| format!(": {e}"))
                )),
                Some(c) if c.expires_in_s < CERT_WARN.as_secs() as i64 => {
                    failing.push(format!("tls: the certificate expires in {} h", c.expires_in_s.max(0) / 3600));
                }
                Some(_) => {}
            }
            TlsHealth { mode: t.mode, source: cert.map(|c| c.source), expires_in_s: cert.map(|c| c.expires_in_s) }
        });
        failing.dedup();
        Report {
            status: if failing.is_empty() { "ok" } else { "failing" },
            failing,
            cameras,
            index,
            disk: Disk { free_bytes: free, min_free_bytes: self.min_free_bytes },
            tls,
        }
    }
}

async fn healthz(State(h): State<Arc<Health>>, access: Option<axum::Extension<Access>>) -> Response {
    let details = access.as_ref().is_none_or(|a| a.is_admin());
    let r = h.report(details).await;
    let status = if r.failing.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::to_string(&r).unwrap_or_else(|_| "{}".into());
    (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body).into_response()
}
