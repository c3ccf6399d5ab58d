//! The axum routes: POST/PATCH/DELETE/OPTIONS for WHIP and WHEP, CORS and Link headers.

use crate::sdp::{MAX_SDP_LEN, check_offer, parse_fragment};
use crate::{Backend, Kind, Offer, PatchOutcome, SignalError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::net::SocketAddr;
use std::sync::Arc;

/// A STUN/TURN server advertised in `Link` headers (RFC 9725 §4.6).
#[derive(Debug, Clone, Default)]
pub struct IceServer {
    /// `stun:` / `turn:` / `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

/// What the routes serve.
#[derive(Debug, Clone)]
pub struct Config {
    /// Serve `/whep/...`.
    pub whep: bool,
    /// Serve `/whip/...`.
    pub whip: bool,
    /// ICE servers for `Link` headers.
    pub ice_servers: Vec<IceServer>,
}

impl Default for Config {
    fn default() -> Self {
        Self { whep: true, whip: false, ice_servers: Vec::new() }
    }
}

struct Shared<B> {
    backend: Arc<B>,
    links: Vec<HeaderValue>,
}

type St<B> = State<Arc<Shared<B>>>;

/// The WHIP/WHEP routes, ready to merge into an application router. The application's
/// server must be run with `into_make_service_with_connect_info::<SocketAddr>()` for the
/// client address to reach [`Offer::peer`] (it is optional).
pub fn router<B: Backend, S: Clone + Send + Sync + 'static>(backend: Arc<B>, config: Config) -> Router<S> {
    let links = config.ice_servers.iter().flat_map(link_values).collect();
    let shared = Arc::new(Shared { backend, links });
    let mut r = Router::new();
    if config.whep {
        r = r.route("/whep/{resource}", post(create::<B, WhepK>).options(options_collection::<B>)).route(
            "/whep/{resource}/{session}",
            axum::routing::patch(patch::<B, WhepK>).delete(delete::<B, WhepK>).options(options_session),
        );
    }
    if config.whip {
        r = r.route("/whip/{resource}", post(create::<B, WhipK>).options(options_collection::<B>)).route(
            "/whip/{resource}/{session}",
            axum::routing::patch(patch::<B, WhipK>).delete(delete::<B, WhipK>).options(options_session),
        );
    }
    r.layer(DefaultBodyLimit::max(MAX_SDP_LEN)).with_state(shared)
}

/// Type-level kind so one handler serves both paths.
trait KindOf: Send + Sync + 'static {
    const KIND: Kind;
}
struct WhepK;
impl KindOf for WhepK {
    const KIND: Kind = Kind::Whep;
}
struct WhipK;
impl KindOf for WhipK {
    const KIND: Kind = Kind::Whip;
}

/// The `Link` header values of one ICE server (RFC 9725 §4.6, RFC 8288): the URL as a
/// URI-reference in `<>`, the TURN user name and credential as quoted strings. Characters
/// that would end the URL (`<`, `>`, `"`, spaces, controls, non-ASCII) are percent-encoded;
/// `"` and `\` in quoted strings are escaped. A credential that cannot be a header value
/// (a control character) drops that server, with nothing half-sent.
fn link_values(s: &IceServer) -> Vec<HeaderValue> {
    s.urls
        .iter()
        .filter_map(|u| {
            let mut v = format!("<{}>; rel=\"ice-server\"", link_uri(u));
            if let (Some(user), Some(cred)) = (&s.username, &s.credential) {
                v.push_str(&format!(
                    "; username={}; credential={}; credential-type=\"password\"",
                    quoted(user),
                    quoted(cred)
                ));
            }
            HeaderValue::from_str(&v).ok()
        })
        .collect()
}

/// `u` with everything that cannot stand inside `<...>` percent-encoded.
fn link_uri(u: &str) -> String {
    let mut out = String::with_capacity(u.len());
    for b in u.bytes() {
        if b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An RFC 9110 quoted-string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn cors(h: &mut HeaderMap) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Post, Accept-Patch"),
    );
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
}

fn content_type_is(h: &HeaderMap, want: &str) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn with_cors(mut r: Response) -> Response {
    cors(r.headers_mut());
    r
}

async fn create<B: Backend, K: KindOf>(
    State(st): St<B>,
    Path(resource): Path<String>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        check_resource(&resource)?;
        st.backend.admit(K::KIND, &resource, bearer(&headers).as_deref())?;
        if !content_type_is(&headers, "application/sdp") {
            return Err(SignalError::UnsupportedMediaType("expected Content-Type: application/sdp".into()));
        }
        let summary = check_offer(&body)?;
        let offer = Offer {
            kind: K::KIND,
            resource: resource.clone(),
            // check_offer verified UTF-8.
            sdp: String::from_utf8_lossy(&body).into_owned(),
            summary,
            bearer: bearer(&headers),
            peer: ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0),
        };
        st.backend.create(offer).await
    }
    .await;
    let answer = match result {
        Ok(a) => a,
        Err(e) => return with_cors(e.into_response()),
    };
    let location = format!("/{}/{}/{}", K::KIND.path(), resource, answer.session);
    let mut resp = (StatusCode::CREATED, answer.sdp).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&quote_etag(&answer.etag)) {
        h.insert(header::ETAG, v);
    }
    h.insert(HeaderName::from_static("accept-patch"), HeaderValue::from_static("application/trickle-ice-sdpfrag"));
    for l in &st.links {
        h.append(header::LINK, l.clone());
    }
    with_cors(resp)
}

/// Longest resource name or session id accepted in a URL.
pub const MAX_NAME_LEN: usize = 128;

/// A resource name or session id as it may appear in a URL path and in `Location`: 1 to
/// [`MAX_NAME_LEN`] unreserved characters (RFC 3986 §2.3), and not `.` or `..`. Anything
/// else (`/`, `%`, `\`, NUL, spaces, non-ASCII, decoded from a percent-encoded path) is refused
/// before the backend sees it.
pub fn valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn check_resource(resource: &str) -> Result<(), SignalError> {
    if valid_name(resource) {
        Ok(())
    } else {
        Err(SignalError::BadRequest(format!("invalid resource name: expected 1-{MAX_NAME_LEN} of A-Z a-z 0-9 - . _ ~")))
    }
}

fn check_session(resource: &str, session: &str) -> Result<(), SignalError> {
    check_resource(resource)?;
    if valid_name(session) { Ok(()) } else { Err(SignalError::NotFound("no such session".into())) }
}

fn quote_etag(e: &str) -> String {
    if e.starts_with('"') || e.starts_with("W/") { e.to_owned() } else { format!("\"{e}\"") }
}

fn etag_matches(if_match: &str, etag: &str) -> bool {
    let want = quote_etag(etag);
    if_match.split(',').map(str::trim).any(|t| t == "*" || t == want)
}

async fn patch<B: Backend, K: KindOf>(
    State(st): St<B>,
    Path((resource, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        check_session(&resource, &session)?;
        let Some(etag) = st.backend.etag(K::KIND, &resource, &session) else {
            return Err(SignalError::NotFound(format!("no session {session} for {resource}")));
        };
        if !content_type_is(&headers, "application/trickle-ice-sdpfrag") {
            return Err(SignalError::UnsupportedMediaType(
                "expected Content-Type: application/trickle-ice-sdpfrag".into(),
            ));
        }
        if let Some(im) = headers.get(header::IF_MATCH) {
            let im = im.to_str().unwrap_or("");
            if !etag_matches(im, &etag) {
                return Err(SignalError::PreconditionFailed("If-Match does not match the session's ETag".into()));
            }
        }
        let frag = parse_fragment(&body)?;
        st.backend.patch(K::KIND, &resource, &session, frag, bearer(&headers)).await
    }
    .await;
    match result {
        Ok(PatchOutcome::Applied) => with_cors(StatusCode::NO_CONTENT.into_response()),
        Ok(PatchOutcome::Restarted { sdpfrag, etag }) => {
            let mut r = (StatusCode::OK, sdpfrag).into_response();
            r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/trickle-ice-sdpfrag"));
            if let Ok(v) = HeaderValue::from_str(&quote_etag(&etag)) {
                r.headers_mut().insert(header::ETAG, v);
            }
            with_cors(r)
        }
        Err(e) => with_cors(e.into_response()),
    }
}

async fn delete<B: Backend, K: KindOf>(
    State(st): St<B>,
    Path((resource, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = check_session(&resource, &session) {
        return with_cors(e.into_response());
    }
    match st.backend.delete(K::KIND, &resource, &session, bearer(&headers)).await {
        Ok(()) => with_cors(StatusCode::OK.into_response()),
        Err(e) => with_cors(e.into_response()),
    }
}

fn preflight(h: &mut HeaderMap, methods: &'static str) {
    cors(h);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization, If-Match"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
}

async fn options_collection<B: Backend>(State(st): St<B>) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    preflight(h, "POST, OPTIONS");
    h.insert(HeaderName::from_static("accept-post"), HeaderValue::from_static("application/sdp"));
    for l in &st.links {
        h.append(header::LINK, l.clone());
    }
    r
}

async fn options_session() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    preflight(r.headers_mut(), "PATCH, DELETE, OPTIONS");
    r.headers_mut()
        .insert(HeaderName::from_static("accept-patch"), HeaderValue::from_static("application/trickle-ice-sdpfrag"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Answer, IceFragment};
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::Mutex;
    use tower::ServiceExt;

    /// A backend that records calls; the real one is vigil's webrtc-rs backend.
    #[derive(Default)]
    struct Recorder {
        sessions: Mutex<Vec<String>>,
    }

    impl Backend for Recorder {
        fn admit(&self, _: Kind, resource: &str, _: Option<&str>) -> Result<(), SignalError> {
            if resource == "cam" { Ok(()) } else { Err(SignalError::NotFound("unknown camera".into())) }
        }
        async fn create(&self, offer: Offer) -> Result<Answer, SignalError> {
            if offer.resource != "cam" {
                return Err(SignalError::NotFound("unknown camera".into()));
            }
            if !offer.summary.has_codec("video", "H264") {
                return Err(SignalError::NotAcceptable("no H.264 video".into()));
            }
            self.sessions.lock().unwrap().push("s1".into());
            Ok(Answer { sdp: "v=0\r\n".into(), session: "s1".into(), etag: "e1".into() })
        }
        fn etag(&self, _: Kind, _: &str, session: &str) -> Option<String> {
            self.sessions.lock().unwrap().iter().any(|s| s == session).then(|| "e1".into())
        }
        async fn patch(
            &self,
            _: Kind,
            _: &str,
            _: &str,
            _: IceFragment,
            _: Option<String>,
        ) -> Result<PatchOutcome, SignalError> {
            Ok(PatchOutcome::Applied)
        }
        async fn delete(&self, _: Kind, _: &str, session: &str, _: Option<String>) -> Result<(), SignalError> {
            let mut s = self.sessions.lock().unwrap();
            let n = s.len();
            s.retain(|x| x != session);
            if s.len() == n { Err(SignalError::NotFound("no such session".into())) } else { Ok(()) }
        }
    }

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";

    fn app() -> Router {
        let cfg = Config {
            ice_servers: vec![IceServer { urls: vec!["stun:stun.example.org".into()], ..Default::default() }],
            ..Default::default()
        };
        router(Arc::new(Recorder::default()), cfg)
    }

    async fn send(app: &Router, req: Request<Body>) -> Response {
        app.clone().oneshot(req).await.unwrap()
    }

    fn post(path: &str, ct: &str, body: &str) -> Request<Body> {
        Request::post(path).header("content-type", ct).body(Body::from(body.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn create_patch_delete() {
        let app = app();
        let r = send(&app, post("/whep/cam", "application/sdp", OFFER)).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["location"], "/whep/cam/s1");
        assert_eq!(r.headers()["etag"], "\"e1\"");
        assert!(r.headers()["link"].to_str().unwrap().contains("rel=\"ice-server\""));
        let frag = "a=ice-ufrag:x\r\na=ice-pwd:y\r\n";
        let patch = |etag: &str| {
            Request::patch("/whep/cam/s1")
                .header("content-type", "application/trickle-ice-sdpfrag")
                .header("if-match", etag)
                .body(Body::from(frag))
                .unwrap()
        };
        assert_eq!(send(&app, patch("\"nope\"")).await.status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(send(&app, patch("\"e1\"")).await.status(), StatusCode::NO_CONTENT);
        let del = || Request::delete("/whep/cam/s1").body(Body::empty()).unwrap();
        assert_eq!(send(&app, del()).await.status(), StatusCode::OK);
        assert_eq!(send(&app, del()).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(send(&app, patch("\"e1\"")).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn errors_have_the_right_status_and_one_line() {
        let app = app();
        for (req, want) in [
            (post("/whep/cam", "text/plain", OFFER), StatusCode::UNSUPPORTED_MEDIA_TYPE),
            (post("/whep/cam", "application/sdp", "garbage"), StatusCode::BAD_REQUEST),
            (post("/whep/nope", "application/sdp", OFFER), StatusCode::NOT_FOUND),
            // The camera is looked up before the body: a typo is 404 whatever the body.
            (post("/whep/nope", "application/sdp", "garbage"), StatusCode::NOT_FOUND),
            (post("/whep/nope", "text/plain", OFFER), StatusCode::NOT_FOUND),
            (post("/whep/cam", "application/sdp", &OFFER.replace("H264", "VP8")), StatusCode::NOT_ACCEPTABLE),
            (post("/whep/cam", "application/sdp", &"v".repeat(MAX_SDP_LEN + 10)), StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            let r = send(&app, req).await;
            assert_eq!(r.status(), want);
            let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
            let text = std::str::from_utf8(&body).unwrap();
            assert_eq!(text.trim_end().lines().count(), 1, "{text:?}");
        }
    }

    #[test]
    fn link_values_escape_urls_and_credentials() {
        let s = IceServer {
            urls: vec!["turn:turn.example.org:3478?transport=udp".into(), "turn:evil>; rel=\"x\"".into()],
            username: Some("vi\"gil".into()),
            credential: Some("se\\cret\"; rel=\"other".into()),
        };
        let v: Vec<String> = link_values(&s).iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert_eq!(
            v[0],
            "<turn:turn.example.org:3478?transport=udp>; rel=\"ice-server\"; username=\"vi\\\"gil\"; \
             credential=\"se\\\\cret\\\"; rel=\\\"other\"; credential-type=\"password\""
        );
        assert!(v[1].starts_with("<turn:evil%3E;%20rel=%22x%22>; rel=\"ice-server\""), "{}", v[1]);
        // A control character cannot be sent: that server is left out, not sent broken.
        let bad =
            IceServer { urls: vec!["stun:a".into()], username: Some("a\nb".into()), credential: Some("c".into()) };
        assert!(link_values(&bad).is_empty());
    }

    #[tokio::test]
    async fn path_segments_are_plain_names() {
        let app = app();
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for (path, want) in [
            ("/whep/..", StatusCode::BAD_REQUEST),
            ("/whep/%2e%2e", StatusCode::BAD_REQUEST),
            ("/whep/a%2fb", StatusCode::BAD_REQUEST),
            ("/whep/a%5cb", StatusCode::BAD_REQUEST),
            ("/whep/a%00", StatusCode::BAD_REQUEST),
            ("/whep/%c3%a9", StatusCode::BAD_REQUEST),
            (&format!("/whep/{long}"), StatusCode::BAD_REQUEST),
        ] {
            let r = send(&app, post(path, "application/sdp", OFFER)).await;
            assert_eq!(r.status(), want, "{path}");
        }
        for path in ["/whep/cam/..", "/whep/cam/%2e%2e", "/whep/cam/s%2f1", "/whep/cam/s%001"] {
            let r = send(&app, Request::delete(path).body(Body::empty()).unwrap()).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        }
        assert!(valid_name("front-door_2.cam~1") && !valid_name(".") && !valid_name(""));
    }

    #[tokio::test]
    async fn options_advertise_sdp_and_cors() {
        let app = app();
        let r = send(&app, Request::options("/whep/cam").body(Body::empty()).unwrap()).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["accept-post"], "application/sdp");
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers().contains_key("link"));
        // WHIP is off by default.
        let r = send(&app, post("/whip/cam", "application/sdp", OFFER)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
}
