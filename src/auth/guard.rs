//! The middleware in front of every route: classifies the request, identifies the caller
//! (API token, session cookie, or shared-link signature), and lets it through with an
//! [`Access`] in its extensions, or refuses it.
//!
//! | request | without credentials | with credentials |
//! | --- | --- | --- |
//! | `OPTIONS` anything, `/whip/...` | through, untouched | through, untouched |
//! | `/healthz`, `/livez`, `/login`, `/login.js`, `/style.css`, `/logout` | through | through |
//! | `GET /`, `/history`, `/cameras`, `/kiosk` (pages) | `303` to `/login?next=...` | through |
//! | `/metrics`, `/api/status`, `/api/devices`, `/api/cameras/probe[/...]`, `POST /api/cameras`, `PATCH`/`DELETE /api/cameras/{camera}` | `401` | admin, else `403` |
//! | `/api/cameras/{camera}/...`, `/whep/{camera}[/...]` | `401` (a signed link opens its one path) | camera allowed, else `403` |
//! | anything else (`/api/cameras`, `/api/share`, scripts, unknown paths) | `401` | through |
//!
//! Every request the guard lets through carries an [`Access`] (nothing visible for anonymous
//! ones), so handlers that filter by it fail closed. A camera outside the caller's list is
//! `403` whether it exists or not, so a restricted caller cannot probe for camera names;
//! callers allowed every camera get the route's own `404` for an unknown camera. A wrong
//! bearer token is `401` even with a valid cookie.

use super::session::unix_now;
use super::{Access, Auth, AuthError, Principal, share};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Which listener a request came in on; in request extensions for the auth routes.
#[derive(Debug, Clone, Copy)]
pub struct Transport {
    /// HTTPS.
    pub tls: bool,
}

impl Transport {
    /// The session cookie's name: `__Host-` prefixed under TLS (browsers then insist on
    /// `Secure`, `Path=/` and no `Domain`).
    pub fn cookie_name(self) -> &'static str {
        if self.tls { "__Host-vigil_session" } else { "vigil_session" }
    }

    /// `Set-Cookie` for a session id living `max_age` seconds.
    pub fn set_cookie(self, id: &str, max_age: i64) -> HeaderValue {
        let secure = if self.tls { "; Secure" } else { "" };
        let v = format!("{}={id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}", self.cookie_name());
        // The id is hex: always a valid header value.
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// `Set-Cookie` that removes the session cookie.
    pub fn clear_cookie(self) -> HeaderValue {
        self.set_cookie("", 0)
    }
}

#[derive(Clone)]
struct GuardState {
    auth: Arc<Auth>,
    transport: Transport,
}

/// `router` behind the guard; `tls` says which listener it serves (cookie flags).
pub fn protect<S: Clone + Send + Sync + 'static>(router: Router<S>, auth: Arc<Auth>, tls: bool) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(GuardState { auth, transport: Transport { tls } }, guard))
}

/// What a path needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing; the request goes through untouched (preflights, WHIP).
    Untouched,
    /// Nothing, but the caller is identified if it can be.
    Public,
    /// A page: redirect to the login page when nobody is logged in.
    Page,
    /// An admin.
    Admin,
    /// Permission for this camera (percent-decoded; `None` if it does not decode).
    Camera(Option<String>),
    /// Any caller.
    Authenticated,
}

/// Classifies a request by method and path.
pub fn classify(method: &Method, path: &str) -> Need {
    if method == Method::OPTIONS || path == "/whip" || path.starts_with("/whip/") {
        return Need::Untouched;
    }
    // The publish page asks for the camera's publish token itself (a phone needs no account).
    if path == "/publish.js" || path.starts_with("/publish/") {
        return Need::Public;
    }
    match path {
        "/healthz" | "/livez" | "/login" | "/login.js" | "/style.css" | "/logout" => return Need::Public,
        "/" | "/history" | "/cameras" | "/kiosk" => return Need::Page,
        "/metrics" | "/api/status" | "/api/devices" => return Need::Admin,
        _ => {}
    }
    // Changing the set of cameras, and testing sources, is for admins.
    let probe = path == "/api/cameras/probe" || path.starts_with("/api/cameras/probe/");
    let camera_item = path.strip_prefix("/api/cameras/").is_some_and(|rest| !rest.contains('/'));
    if probe
        || (path == "/api/cameras" && method == Method::POST)
        || (camera_item && (method == Method::PATCH || method == Method::DELETE))
    {
        return Need::Admin;
    }
    for prefix in ["/api/cameras/", "/whep/"] {
        if let Some(rest) = path.strip_prefix(prefix) {
            let seg = rest.split('/').next().unwrap_or("");
            return Need::Camera(percent_decode(seg));
        }
    }
    Need::Authenticated
}

/// Decodes `%XX` escapes; `None` for a bad escape or non-UTF-8 result.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Encodes everything but unreserved characters and `/` (for `next=`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of cookie `name`, from every `Cookie` header.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Authorization: Bearer` token, if that header is there with that scheme.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Who the caller is.
enum Ident {
    Nobody {
        stale_cookie: bool,
    },
    /// The caller, and the session id and new expiry if its session was just renewed.
    Principal(Arc<Principal>, Option<(String, i64)>),
    Shared(String),
}

fn identify(auth: &Auth, t: Transport, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Ident, AuthError> {
    if headers.contains_key(header::AUTHORIZATION) {
        let Some(token) = bearer(headers) else {
            return Err(AuthError::Unauthorized("unsupported Authorization scheme: use Bearer".into()));
        };
        return match auth.token(token) {
            Some(p) => Ok(Ident::Principal(p, None)),
            None => Err(AuthError::Unauthorized("invalid API token".into())),
        };
    }
    let mut stale_cookie = false;
    if let Some(id) = cookie(headers, t.cookie_name()) {
        match auth.session(id, unix_now()) {
            Some((p, found)) => {
                let renewed = found.renewed.then(|| (id.to_owned(), found.session.expires));
                return Ok(Ident::Principal(p, renewed));
            }
            None => stale_cookie = true,
        }
    }
    if let Some(q) = uri.query()
        && share::has_signature(q)
        && (method == Method::GET || method == Method::HEAD)
    {
        let stripped =
            auth.signer.verify(uri.path(), q, unix_now()).map_err(|e| AuthError::Forbidden(e.to_string()))?;
        return Ok(Ident::Shared(stripped));
    }
    Ok(Ident::Nobody { stale_cookie })
}

fn is_whep(path: &str) -> bool {
    path.starts_with("/whep/")
}

async fn guard(State(g): State<GuardState>, mut req: Request, next: Next) -> Response {
    let t = g.transport;
    req.extensions_mut().insert(t);
    let auth = &g.auth;
    if !auth.required() {
        req.extensions_mut().insert(Access::open());
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let need = classify(req.method(), &path);
    if need == Need::Untouched {
        req.extensions_mut().insert(Access::none());
        return next.run(req).await;
    }
    let refuse = |e: AuthError, clear: bool| {
        let mut r = e.into_response();
        if is_whep(&path) {
            // Browsers on other origins need this to read the reason.
            r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
        if clear {
            r.headers_mut().append(header::SET_COOKIE, t.clear_cookie());
        }
        r
    };
    let ident = match identify(auth, t, req.method(), req.uri(), req.headers()) {
        Ok(i) => i,
        // Public routes answer whatever the credentials (a health check with a stale token).
        Err(_) if need == Need::Public => {
            req.extensions_mut().insert(Access::none());
            return next.run(req).await;
        }
        Err(e) => return refuse(e, false),
    };
    let (access, renewed, stale) = match ident {
        Ident::Principal(p, renewed) => (Some(Access::of(p)), renewed, false),
        Ident::Shared(stripped) => {
            // The handler sees the target's own query, without exp and sig.
            let pq = if stripped.is_empty() { path.clone() } else { format!("{path}?{stripped}") };
            match pq.parse::<axum::http::uri::PathAndQuery>() {
                Ok(pq) => {
                    let mut parts = req.uri().clone().into_parts();
                    parts.path_and_query = Some(pq);
                    if let Ok(uri) = Uri::from_parts(parts) {
                        *req.uri_mut() = uri;
                    }
                }
                Err(_) => return refuse(AuthError::BadRequest("malformed share link".into()), false),
            }
            // Signed for this exact path (only shareable camera paths can be signed).
            req.extensions_mut().insert(Access::none());
            return next.run(req).await;
        }
        Ident::Nobody { stale_cookie } => (None, None, stale_cookie),
    };
    let Some(access) = access else {
        return match need {
            Need::Public => {
                req.extensions_mut().insert(Access::none());
                next.run(req).await
            }
            Need::Page if matches!(*req.method(), Method::GET | Method::HEAD) => {
                let here = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
                let loc = format!("/login?next={}", percent_encode(here));
                let mut r = (StatusCode::SEE_OTHER, "log in first\n").into_response();
                if let Ok(v) = HeaderValue::from_str(&loc) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if stale {
                    r.headers_mut().append(header::SET_COOKIE, t.clear_cookie());
                }
                r
            }
            _ => {
                let why = if stale { "session expired: log in again" } else { "authentication required" };
                refuse(AuthError::Unauthorized(why.into()), stale)
            }
        };
    };
    match &need {
        Need::Admin if !access.is_admin() => return refuse(AuthError::Forbidden("admin only".into()), false),
        Need::Camera(cam) if !cam.as_deref().is_some_and(|c| access.may_see(c)) => {
            let name = cam.as_deref().unwrap_or("?");
            return refuse(AuthError::Forbidden(format!("no access to camera {name:?}")), false);
        }
        _ => {}
    }
    req.extensions_mut().insert(access);
    let mut resp = next.run(req).await;
    // A session in the second half of its life was renewed: send the cookie again (unless
    // the route set one itself, e.g. logout).
    if let Some((id, expires)) = renewed
        && !resp.headers().contains_key(header::SET_COOKIE)
    {
        resp.headers_mut().append(header::SET_COOKIE, t.set_cookie(&id, (expires - unix_now()).max(0)));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        let get = Method::GET;
        let cam = |c: &str| Need::Camera(Some(c.to_owned()));
        assert_eq!(classify(&Method::OPTIONS, "/whep/front"), Need::Untouched);
        assert_eq!(classify(&Method::POST, "/whip/front"), Need::Untouched);
        assert_eq!(classify(&Method::DELETE, "/whip/front/abc"), Need::Untouched);
        assert_eq!(classify(&get, "/healthz"), Need::Public);
        assert_eq!(classify(&get, "/"), Need::Page);
        assert_eq!(classify(&get, "/history"), Need::Page);
        assert_eq!(classify(&get, "/metrics"), Need::Admin);
        assert_eq!(classify(&get, "/api/status"), Need::Admin);
        assert_eq!(classify(&get, "/api/cameras"), Need::Authenticated);
        assert_eq!(classify(&Method::POST, "/api/cameras"), Need::Admin);
        assert_eq!(classify(&get, "/api/cameras/front"), cam("front"));
        assert_eq!(classify(&Method::PATCH, "/api/cameras/front"), Need::Admin);
        assert_eq!(classify(&Method::DELETE, "/api/cameras/front"), Need::Admin);
        assert_eq!(classify(&Method::POST, "/api/cameras/probe"), Need::Admin);
        assert_eq!(classify(&get, "/api/cameras/probe/ab12/snapshot.jpg"), Need::Admin);
        assert_eq!(classify(&get, "/api/devices"), Need::Admin);
        assert_eq!(classify(&get, "/cameras"), Need::Page);
        assert_eq!(classify(&get, "/kiosk"), Need::Page);
        assert_eq!(classify(&get, "/api/cameras/front/video.mp4"), cam("front"));
        assert_eq!(classify(&get, "/api/cameras/fr%6Fnt/recordings"), cam("front"));
        assert_eq!(classify(&get, "/api/cameras/%ff/recordings"), Need::Camera(None));
        assert_eq!(classify(&get, "/api/cameras/%zz"), Need::Camera(None));
        assert_eq!(classify(&Method::POST, "/whep/front"), cam("front"));
        assert_eq!(classify(&Method::PATCH, "/whep/front/s1"), cam("front"));
        assert_eq!(classify(&get, "/whepx"), Need::Authenticated);
        assert_eq!(classify(&get, "/whipx/front"), Need::Authenticated);
        assert_eq!(classify(&get, "/live/page.js"), Need::Authenticated);
        assert_eq!(classify(&get, "/kiosk"), Need::Page);
        assert_eq!(classify(&get, "/nope"), Need::Authenticated);
    }

    #[test]
    fn cookies_and_bearer() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; vigil_session=abc ; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("__Host-vigil_session=def"));
        assert_eq!(cookie(&h, "vigil_session"), Some("abc"));
        assert_eq!(cookie(&h, "__Host-vigil_session"), Some("def"));
        assert_eq!(cookie(&h, "c"), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  vigil_x "));
        assert_eq!(bearer(&h), Some("vigil_x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic eDp5"));
        assert_eq!(bearer(&h), None);
        let t = Transport { tls: true };
        let c = t.set_cookie("ff", 60);
        assert_eq!(c, "__Host-vigil_session=ff; Path=/; Max-Age=60; HttpOnly; SameSite=Strict; Secure");
        assert_eq!(
            Transport { tls: false }.clear_cookie(),
            "vigil_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
        );
    }
}
