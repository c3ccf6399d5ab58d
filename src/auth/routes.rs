//! The auth routes:
//!
//! ```text
//! GET  /login[?next=/path]   the login page (already logged in, or auth off: 303 to next)
//! POST /login                form user, password, next -> 303 to next + session cookie
//!                            (Accept: application/json -> 200 {user, role, next});
//!                            401 wrong name or password, 429 + Retry-After, 400
//! POST /logout               ends the session, clears the cookie -> 303 /login (JSON: 204)
//! GET  /api/session          who is calling: {auth, name, kind, role, cameras}
//! POST /api/share            {path, ttl} -> {path, url, expires, expires_unix}: a signed link
//! GET  /login.js, /session.js
//! ```

use super::guard::{Transport, cookie};
use super::session::unix_now;
use super::share::{has_signature, shareable};
use super::{Access, Auth, AuthError, CameraScope, PrincipalKind};
use crate::config::HumanDuration;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Default lifetime of a shared link.
const DEFAULT_SHARE_TTL: Duration = Duration::from_secs(86_400);
/// Longest user name or password accepted (longer is a 400 without hashing anything).
const MAX_FIELD: usize = 1024;

/// The routes, over the auth state.
pub fn router<S: Clone + Send + Sync + 'static>(auth: Arc<Auth>) -> Router<S> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/login.js", get(|| async { js(include_str!("../../web/login.js")) }))
        .route("/session.js", get(|| async { js(include_str!("../../web/session.js")) }))
        .route("/logout", post(logout))
        .route("/api/session", get(session_info))
        .route("/api/share", post(share))
        .with_state(auth)
}

fn js(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body)
        .into_response()
}

/// `next` if it is a path on this server (not `//host`, no backslash or control character,
/// not the login page itself), else `/`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && n.len() <= 2048
                && !n.starts_with("/login")
                && !n.starts_with("/logout") =>
        {
            n.to_owned()
        }
        _ => "/".into(),
    }
}

fn see_other(to: &str) -> Response {
    let mut r = (StatusCode::SEE_OTHER, format!("see {to}\n")).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"))
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_page(
    State(auth): State<Arc<Auth>>,
    access: Option<Extension<Access>>,
    Query(q): Query<NextQuery>,
) -> Response {
    let logged_in = access.is_some_and(|a| a.principal.is_some());
    if !auth.required() || logged_in {
        return see_other(&safe_next(q.next.as_deref()));
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        include_str!("../../web/login.html"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

#[derive(Serialize)]
struct LoginJson {
    user: String,
    role: &'static str,
    next: String,
}

async fn login(
    State(auth): State<Arc<Auth>>,
    Extension(t): Extension<Transport>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, AuthError> {
    let Form(f) = form.map_err(|e| AuthError::BadRequest(format!("login: {}", e.body_text())))?;
    if f.user.is_empty() || f.password.is_empty() {
        return Err(AuthError::BadRequest("user and password are required".into()));
    }
    if f.user.len() > MAX_FIELD || f.password.len() > MAX_FIELD {
        return Err(AuthError::BadRequest("user or password too long".into()));
    }
    let (id, session, principal) = auth.login(&f.user, &f.password, peer.map(|c| c.0.0.ip())).await?;
    let next = safe_next(f.next.as_deref());
    let mut r = if wants_json(&headers) {
        Json(LoginJson { user: principal.name.clone(), role: principal.role.as_str(), next }).into_response()
    } else {
        see_other(&next)
    };
    r.headers_mut().append(header::SET_COOKIE, t.set_cookie(&id, session.expires - unix_now()));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn logout(State(auth): State<Arc<Auth>>, Extension(t): Extension<Transport>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, t.cookie_name())
        && auth.sessions.remove(id)
    {
        tracing::info!("logout");
    }
    let mut r = if wants_json(&headers) { StatusCode::NO_CONTENT.into_response() } else { see_other("/login") };
    r.headers_mut().append(header::SET_COOKIE, t.clear_cookie());
    r
}

#[derive(Serialize)]
struct SessionJson {
    auth: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cameras: Option<Vec<String>>,
}

async fn session_info(access: Option<Extension<Access>>) -> Response {
    let access = access.map_or_else(Access::open, |a| a.0);
    let body = match &access.principal {
        None => SessionJson { auth: !access.is_open(), name: None, kind: None, role: None, cameras: None },
        Some(p) => SessionJson {
            auth: true,
            name: Some(p.name.clone()),
            kind: Some(match p.kind {
                PrincipalKind::User => "user",
                PrincipalKind::Token => "token",
            }),
            role: Some(p.role.as_str()),
            cameras: Some(match &p.cameras {
                CameraScope::All => vec!["*".into()],
                CameraScope::Only(l) => l.clone(),
            }),
        },
    };
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// `ttl`: seconds, or a duration string such as `"1h"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Ttl {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
struct ShareRequest {
    path: String,
    ttl: Option<Ttl>,
}

#[derive(Serialize)]
struct ShareJson {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    expires: String,
    expires_unix: i64,
}

async fn share(
    State(auth): State<Arc<Auth>>,
    Extension(t): Extension<Transport>,
    access: Option<Extension<Access>>,
    headers: HeaderMap,
    body: Result<Json<ShareRequest>, JsonRejection>,
) -> Result<Response, AuthError> {
    let Json(req) = body.map_err(|e| AuthError::BadRequest(format!("share: {}", e.body_text())))?;
    let access = access.map_or_else(Access::open, |a| a.0);
    let (path, query) = req.path.split_once('?').unwrap_or((req.path.as_str(), ""));
    let camera = shareable(path).ok_or_else(|| {
        AuthError::BadRequest(
            "only /api/cameras/{camera}/video.mp4 and /api/cameras/{camera}/snapshot.jpg can be shared".into(),
        )
    })?;
    if query.len() > 2048 || query.contains('#') || query.chars().any(|c| c.is_control() || c == ' ') {
        return Err(AuthError::BadRequest("share: malformed query".into()));
    }
    if has_signature(query) {
        return Err(AuthError::BadRequest("share: the path is already a shared link".into()));
    }
    if !access.is_open() && access.principal.is_none() {
        return Err(AuthError::Unauthorized("authentication required".into()));
    }
    if !access.may_see(camera) {
        return Err(AuthError::Forbidden(format!("no access to camera {camera:?}")));
    }
    let ttl = match req.ttl {
        None => DEFAULT_SHARE_TTL.min(auth.share_max_ttl()),
        Some(Ttl::Seconds(s)) => Duration::from_secs(s),
        Some(Ttl::Text(s)) => HumanDuration::parse(&s).map_err(AuthError::BadRequest)?.0,
    };
    if ttl < Duration::from_secs(1) {
        return Err(AuthError::BadRequest("ttl must be at least 1 second".into()));
    }
    if ttl > auth.share_max_ttl() {
        return Err(AuthError::BadRequest(format!(
            "ttl is longer than [auth] share_max_ttl ({})",
            HumanDuration(auth.share_max_ttl())
        )));
    }
    let exp = unix_now().saturating_add(ttl.as_secs() as i64);
    let signed = format!("{path}?{}", auth.signer.sign(path, query, exp));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).filter(|h| {
        !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
    });
    let url = host.map(|h| format!("{}://{h}{signed}", if t.tls { "https" } else { "http" }));
    let who = access.principal.as_ref().map_or("-", |p| p.name.as_str());
    tracing::info!(by = who, %camera, ttl_s = ttl.as_secs(), "shared link");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(ShareJson {
            path: signed,
            url,
            expires: crate::history::listing::format_time(exp.saturating_mul(1_000_000)),
            expires_unix: exp,
        }),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_local_only() {
        assert_eq!(safe_next(Some("/history?camera=a&t=1")), "/history?camera=a&t=1");
        assert_eq!(safe_next(Some("/")), "/");
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "\\\\evil",
            "evil",
            "",
            "/login?next=/",
            "/x\ny",
            "/\t/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(super::super::guard::percent_encode("/history?camera=a&t=1"), "/history%3Fcamera%3Da%26t%3D1");
    }
}
