//! Access control (docs/auth.md) against the real `vigil` binary with `[auth] required = true`,
//! users and tokens made with the real `vigil user add` / `vigil token add` commands.
//!
//! * `unauthenticated_requests_are_refused`: pages redirect to the login page, the API, the
//!   scripts and WHEP answer 401 with `WWW-Authenticate: Bearer`; health, login page and CORS
//!   preflights stay open; a wrong token is 401.
//! * `viewer_token_watches_live_over_whep`: a webrtcbin WHEP viewer with a viewer token
//!   decodes frames; without the token 401, on a camera it may not see 403; `/api/cameras`
//!   lists only its camera; `/metrics` and `/api/status` are for admins.
//! * `browser_login_cookie_and_logout`: wrong password and unknown user get the same 401;
//!   logging in sets an HttpOnly, SameSite=Strict, expiring cookie (not Secure on plain
//!   HTTP) and redirects to a local `next` only; logout ends the session.
//! * `login_attempts_are_rate_limited`: per client address and per user name, 429 with
//!   `Retry-After`.
//! * `shared_links_open_one_export_until_they_expire`: a signed export link plays without
//!   credentials (Range too), a changed range/camera/expiry is 403, an expired link is 403.
//! * `refuses_to_start_without_credentials`: required auth (by config or by a non-loopback
//!   listen address) and nobody to log in: the server exits with a clear message.
//! * `https_session_cookie_is_secure`: over HTTPS the cookie is `__Host-` and `Secure`.
//! * `users_file_changes_apply_without_restart`: tokens and users added or removed with the
//!   CLI while the server runs apply within seconds; a broken users file is ignored.
//! * `publisher_token_publishes_over_whip`: a `publisher` API token publishes over WHIP; a
//!   viewer token or another camera's publisher token is 403.

mod common;
mod pebble;

use common::{Resp, Server, WhepClient, WhepRefused, serial, vigil_exe, wait_for};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ALICE_PW: &str = "alice-correct-horse";
const BOB_PW: &str = "bob-battery-staple";

const CONFIG: &str = r#"
[auth]
required = true
login_max_failures = 3
login_window = "10m"

[[cameras]]
name = "front"
width = 320
height = 240
fps = 15
bitrate_kbps = 300
segment_seconds = 2

[[cameras]]
name = "back"
width = 320
height = 240
fps = 15
bitrate_kbps = 300
segment_seconds = 2
"#;

/// Tokens made for a server.
struct Creds {
    /// Viewer, camera `front` only.
    viewer: String,
    /// Admin, every camera.
    admin: String,
}

impl Creds {
    fn viewer_h(&self) -> String {
        format!("Bearer {}", self.viewer)
    }
    fn admin_h(&self) -> String {
        format!("Bearer {}", self.admin)
    }
}

/// Runs `vigil ARGS` with `stdin`; (exit ok, stdout, stderr).
fn vigil(args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(vigil_exe())
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("vigil output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Adds users alice (admin) and bob (viewer of `front`) and two tokens next to `config`.
fn make_users(config: &Path) -> Creds {
    let c = config.to_str().expect("utf-8 path");
    let (ok, _, err) = vigil(
        &["user", "add", "alice", "--role", "admin", "--password-stdin", "--config", c],
        &format!("{ALICE_PW}\n"),
    );
    assert!(ok, "vigil user add alice: {err}");
    let (ok, _, err) = vigil(
        &["user", "add", "bob", "--role", "viewer", "--cameras", "front", "--password-stdin", "--config", c],
        &format!("{BOB_PW}\n"),
    );
    assert!(ok, "vigil user add bob: {err}");
    let (ok, viewer, err) =
        vigil(&["token", "add", "front-viewer", "--role", "viewer", "--cameras", "front", "--config", c], "");
    assert!(ok, "vigil token add: {err}");
    let (ok, admin, err) = vigil(&["token", "add", "ops", "--role", "admin", "--config", c], "");
    assert!(ok, "vigil token add: {err}");
    let users = std::fs::read_to_string(config.with_file_name("users.toml")).expect("users.toml written");
    assert!(!users.contains(viewer.trim()) && !users.contains(admin.trim()), "a token was stored in clear");
    assert!(!users.contains(ALICE_PW), "a password was stored in clear");
    Creds { viewer: viewer.trim().to_owned(), admin: admin.trim().to_owned() }
}

fn start(config: &str) -> (Server, Creds) {
    let mut creds = None;
    let server = Server::start_prepared(config, |p| creds = Some(make_users(p)));
    (server, creds.expect("credentials"))
}

// ---------------------------------------------------------------------------------------------
// An HTTP client that does not follow redirects and can use another loopback source address.
// ---------------------------------------------------------------------------------------------

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt"))
}

fn client_from(local: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(local)
        .build()
        .expect("reqwest client")
}

fn client() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| client_from(None))
}

/// One request; the body as bytes too.
fn send(c: &reqwest::Client, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> (Resp, Vec<u8>) {
    let mut req = c.request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    rt().block_on(async {
        let r = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body").to_vec();
        (Resp { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }, bytes)
    })
}

fn req(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Resp {
    send(client(), method, url, headers, body).0
}

fn get(url: &str, headers: &[(&str, &str)]) -> Resp {
    req("GET", url, headers, None)
}

/// A one-line plain-text reason, as every refusal has.
fn assert_one_line(r: &Resp, what: &str) {
    assert_eq!(r.body.trim_end().lines().count(), 1, "{what}: body {:?}", r.body);
}

/// `application/x-www-form-urlencoded` value.
fn form_value(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn login_form(server: &Server, from: &reqwest::Client, user: &str, pw: &str, next: &str) -> Resp {
    let body = format!("user={}&password={}&next={}", form_value(user), form_value(pw), form_value(next));
    send(from, "POST", &server.url("/login"), &[("Content-Type", "application/x-www-form-urlencoded")], Some(&body)).0
}

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body))
}

fn camera_names(r: &Resp) -> Vec<String> {
    assert_eq!(r.status, 200, "/api/cameras: {}", r.body);
    json(r).as_array().expect("array").iter().map(|c| c["name"].as_str().unwrap_or("").to_owned()).collect()
}

/// Waits until both cameras run (as the admin).
fn wait_running(server: &Server, creds: &Creds) {
    let h = creds.admin_h();
    let mut last = String::new();
    wait_for(Duration::from_secs(40), "both cameras running", || {
        let r = get(&server.url("/api/cameras"), &[("Authorization", &h)]);
        last = r.body.clone();
        let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
        let arr = v.as_array()?;
        (arr.len() == 2 && arr.iter().all(|c| c["state"] == "running")).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; last /api/cameras: {last}\nlog:\n{}", server.log()));
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

// ---------------------------------------------------------------------------------------------

#[test]
fn unauthenticated_requests_are_refused() {
    let _g = serial();
    let (server, creds) = start(CONFIG);

    // Pages: to the login page, coming back to where the user was.
    let r = get(&server.url("/"), &[]);
    assert_eq!(r.status, 303, "GET /: {}", r.body);
    assert_eq!(r.header("location"), Some("/login?next=/"));
    let r = get(&server.url("/history?camera=front"), &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login?next=/history%3Fcamera%3Dfront"));
    let r = get(&server.url("/login?next=/history"), &[]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<form") && r.body.contains("type=\"password\""), "login page: {}", r.body);
    assert_eq!(get(&server.url("/login.js"), &[]).status, 200);
    assert_eq!(get(&server.url("/style.css"), &[]).status, 200);
    assert_eq!(get(&server.url("/livez"), &[]).status, 200);
    // Health is open too, with the parts but without camera names.
    let h = get(&server.url("/healthz"), &[]);
    assert!(h.status == 200 || h.status == 503, "/healthz without credentials: {} {}", h.status, h.body);
    assert!(h.body.contains("\"status\"") && !h.body.contains("front") && !h.body.contains("back"), "{}", h.body);

    // The API, scripts, metrics: 401 with a Bearer challenge and a one-line reason.
    for path in [
        "/api/cameras",
        "/api/cameras/front/recordings",
        "/api/cameras/front/video.mp4",
        "/api/cameras/front/snapshot.jpg",
        "/api/status",
        "/metrics",
        "/live/page.js",
        "/live/kiosk.js",
        "/api/session",
        "/no-such-page",
    ] {
        let r = get(&server.url(path), &[]);
        assert_eq!(r.status, 401, "GET {path}: {}", r.body);
        assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "GET {path}: {:?}", r.headers);
        assert_one_line(&r, path);
    }
    let r = req("POST", &server.url("/api/share"), &[("Content-Type", "application/json")], Some("{\"path\":\"/\"}"));
    assert_eq!(r.status, 401);

    // WHEP: a real offer, refused before any media is set up; CORS preflight stays open.
    let err = WhepClient::connect(&server.base(), "front").err().expect("WHEP without credentials was accepted");
    let refused = err.downcast_ref::<WhepRefused>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(refused.status, 401, "{refused}");
    let r = req("OPTIONS", &server.url("/whep/front"), &[], None);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));

    // A wrong or malformed token: 401, even for a camera that exists.
    for h in ["Bearer vigil_0000", "Bearer ", "Basic YWxpY2U6eA=="] {
        let r = get(&server.url("/api/cameras"), &[("Authorization", h)]);
        assert_eq!(r.status, 401, "{h}: {}", r.body);
        assert_one_line(&r, h);
    }
    // The right one gets in.
    assert_eq!(get(&server.url("/api/cameras"), &[("Authorization", &creds.admin_h())]).status, 200);
}

#[test]
fn viewer_token_watches_live_over_whep() {
    let _g = serial();
    let (server, creds) = start(CONFIG);
    wait_running(&server, &creds);
    let viewer = creds.viewer_h();
    let admin = creds.admin_h();
    let vh = [("Authorization", viewer.as_str())];

    // The list shows only what the caller may see.
    assert_eq!(camera_names(&get(&server.url("/api/cameras"), &vh)), ["front"]);
    assert_eq!(camera_names(&get(&server.url("/api/cameras"), &[("Authorization", &admin)])), ["front", "back"]);
    let me = json(&get(&server.url("/api/session"), &vh));
    assert_eq!(me["name"], "front-viewer");
    assert_eq!(me["role"], "viewer");

    // Live video through an independent WebRTC peer, with the token.
    let client = WhepClient::connect_with(&server.base(), "front", &vh).expect("WHEP with a viewer token");
    let stats = client.wait_frames(20, Duration::from_secs(20)).expect("decoded frames");
    assert_eq!((stats.width, stats.height), (320, 240));

    // Without it: 401; a camera the token may not see: 403 (with CORS for browsers).
    let err = WhepClient::connect(&server.base(), "front").err().expect("accepted without a token");
    assert_eq!(err.downcast_ref::<WhepRefused>().map(|r| r.status), Some(401), "{err:#}");
    let err = WhepClient::connect_with(&server.base(), "back", &vh).err().expect("accepted for another camera");
    let refused = err.downcast_ref::<WhepRefused>().unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(refused.status, 403, "{refused}");
    assert!(refused.body.contains("back"), "{refused}");
    // A camera that does not exist looks the same to a restricted caller.
    let r = get(&server.url("/api/cameras/nonexistent/recordings"), &vh);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(get(&server.url("/api/cameras/back/recordings"), &vh).status, 403);
    assert_eq!(get(&server.url("/api/cameras/front/recordings"), &vh).status, 200);

    // The session resource needs the credentials too.
    assert_eq!(client.delete_with(&[]).expect("DELETE"), 401);
    assert_eq!(client.delete_with(&vh).expect("DELETE"), 200);

    // Metrics and status: admins only.
    for path in ["/metrics", "/api/status"] {
        let r = get(&server.url(path), &vh);
        assert_eq!(r.status, 403, "{path} as a viewer: {}", r.body);
        assert_one_line(&r, path);
        assert_eq!(get(&server.url(path), &[("Authorization", &admin)]).status, 200, "{path} as admin");
    }

    // Managing cameras: admins only. A viewer sees its camera's name and state, no settings.
    let json = [("Content-Type", "application/json")];
    let as_viewer = [vh[0], json[0]];
    let as_admin = [("Authorization", admin.as_str()), json[0]];
    let body = r#"{"name":"added","width":320,"height":240}"#;
    let r = req("POST", &server.url("/api/cameras"), &as_viewer, Some(body));
    assert_eq!(r.status, 403, "POST /api/cameras as a viewer: {}", r.body);
    assert_one_line(&r, "POST /api/cameras");
    let r = req("PATCH", &server.url("/api/cameras/front"), &as_viewer, Some(r#"{"enabled":false}"#));
    assert_eq!(r.status, 403, "PATCH as a viewer: {}", r.body);
    assert_eq!(req("DELETE", &server.url("/api/cameras/front"), &vh, None).status, 403);
    assert_eq!(req("POST", &server.url("/api/cameras/probe"), &as_viewer, Some(r#"{"source":"test"}"#)).status, 403);
    let r = get(&server.url("/api/cameras/front"), &vh);
    assert_eq!(r.status, 200, "{}", r.body);
    let front: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert!(front.get("source").is_none() && front["name"] == "front", "a viewer sees no settings: {front}");
    let r = req("POST", &server.url("/api/cameras"), &as_admin, Some(body));
    assert_eq!(r.status, 201, "POST /api/cameras as admin: {}", r.body);
}

#[test]
fn browser_login_cookie_and_logout() {
    let _g = serial();
    let (server, _creds) = start(CONFIG);
    let c = client();

    // Wrong password and unknown user: the same answer.
    let wrong = login_form(&server, c, "bob", "not-the-password", "/");
    let unknown = login_form(&server, c, "mallory", "not-the-password", "/");
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    assert_eq!(wrong.body, unknown.body);
    assert_one_line(&wrong, "wrong password");
    assert!(wrong.header("set-cookie").is_none());

    // The right one: a session cookie, and back to `next`.
    let ok = login_form(&server, c, "bob", BOB_PW, "/history?camera=front");
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/history?camera=front"));
    let set = ok.header("set-cookie").expect("Set-Cookie").to_owned();
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("vigil_session=") && attrs[0].len() > "vigil_session=".len() + 32, "{set}");
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(attrs.contains(&want), "cookie lacks {want}: {set}");
    }
    assert!(!attrs.contains(&"Secure"), "Secure on plain HTTP would make the cookie unusable: {set}");
    let cookie = attrs[0].to_owned();
    let ch = [("Cookie", cookie.as_str())];

    // With it: pages, the API (only bob's camera), and who is logged in.
    let page = get(&server.url("/"), &ch);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/session.js"));
    assert_eq!(camera_names(&get(&server.url("/api/cameras"), &ch)), ["front"]);
    assert_eq!(get(&server.url("/api/cameras/back/recordings"), &ch).status, 403);
    assert_eq!(get(&server.url("/metrics"), &ch).status, 403);
    let me = json(&get(&server.url("/api/session"), &ch));
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str(), me["role"].as_str()),
        (Some("bob"), Some("user"), Some("viewer"))
    );
    // Already logged in: the login page goes straight on.
    let r = get(&server.url("/login?next=/history"), &ch);
    assert_eq!((r.status, r.header("location")), (303, Some("/history")));

    // `next` only ever leads to this server.
    for next in ["//evil.example/", "https://evil.example/", "/\\evil.example"] {
        let r = login_form(&server, c, "alice", ALICE_PW, next);
        assert_eq!(r.status, 303, "{next}: {}", r.body);
        assert_eq!(r.header("location"), Some("/"), "next={next}");
    }
    // The JSON form of the answer (what the login page's script uses).
    let r = req(
        "POST",
        &server.url("/login"),
        &[("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
        Some(&format!("user=alice&password={ALICE_PW}&next=%2Fhistory")),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["next"], "/history");
    assert_eq!(json(&r)["role"], "admin");

    // Logout ends the session on the server, not just in the browser.
    let r = req("POST", &server.url("/logout"), &ch, None);
    assert_eq!((r.status, r.header("location")), (303, Some("/login")));
    assert!(r.header("set-cookie").is_some_and(|v| v.contains("Max-Age=0")), "{:?}", r.headers);
    let r = get(&server.url("/api/cameras"), &ch);
    assert_eq!(r.status, 401, "old cookie still works after logout: {}", r.body);
    assert_eq!(get(&server.url("/"), &ch).status, 303);
}

#[test]
fn login_attempts_are_rate_limited() {
    let _g = serial();
    let (server, _creds) = start(CONFIG);
    // Two client addresses (both loopback): 127.0.0.1 and 127.0.0.2.
    let here = client();
    let there = client_from(Some(IpAddr::from([127, 0, 0, 2])));

    // Three failures for bob from 127.0.0.2 (login_max_failures = 3)...
    for i in 0..3 {
        let r = login_form(&server, &there, "bob", "guess", "/");
        assert_eq!(r.status, 401, "attempt {i}: {}", r.body);
    }
    // ...then even the right password waits: 429, a reason and Retry-After.
    let r = login_form(&server, &there, "bob", BOB_PW, "/");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_one_line(&r, "429");
    let after: u64 = r.header("retry-after").expect("Retry-After").parse().expect("Retry-After seconds");
    assert!((1..=600).contains(&after), "Retry-After {after}");
    assert!(r.header("set-cookie").is_none());

    // Per user name: bob is limited from any address.
    let r = login_form(&server, here, "bob", BOB_PW, "/");
    assert_eq!(r.status, 429, "bob from another address: {}", r.body);
    // Per address: 127.0.0.2 is limited for every name; 127.0.0.1 is not.
    assert_eq!(login_form(&server, &there, "alice", ALICE_PW, "/").status, 429);
    let r = login_form(&server, here, "alice", ALICE_PW, "/");
    assert_eq!(r.status, 303, "alice from a clean address: {}", r.body);
    // Names that are not users are counted like real ones (a 429 reveals nothing).
    for _ in 0..3 {
        assert_eq!(login_form(&server, here, "nobody", "x", "/").status, 401);
    }
    assert_eq!(login_form(&server, here, "alice", ALICE_PW, "/").status, 429, "the address budget is shared");
}

#[test]
fn shared_links_open_one_export_until_they_expire() {
    let _g = serial();
    let (server, creds) = start(CONFIG);
    wait_running(&server, &creds);
    let viewer = creds.viewer_h();
    let vh = [("Authorization", viewer.as_str())];

    // A few seconds of recording.
    let mut runs = serde_json::Value::Null;
    let (start_ms, end_ms) = wait_for(Duration::from_secs(30), "4 s recorded", || {
        runs = json(&get(&server.url("/api/cameras/front/recordings"), &vh))["runs"].clone();
        let r = runs.as_array()?.last()?;
        let (s, e) = (r["start_ms"].as_i64()?, r["end_ms"].as_i64()?);
        (e - s >= 4000).then_some((s + 500, s + 3500))
    })
    .unwrap_or_else(|e| panic!("{e}; runs {runs}"));
    let target = format!("/api/cameras/front/video.mp4?start={start_ms}&end={end_ms}");

    let share = |path: &str, ttl: serde_json::Value, h: &[(&str, &str)]| {
        let body = serde_json::json!({ "path": path, "ttl": ttl }).to_string();
        let mut headers = vec![("Content-Type", "application/json")];
        headers.extend_from_slice(h);
        req("POST", &server.url("/api/share"), &headers, Some(&body))
    };
    let r = share(&target, 600.into(), &vh);
    assert_eq!(r.status, 200, "{}", r.body);
    let link = json(&r);
    let path = link["path"].as_str().expect("path").to_owned();
    assert!(path.starts_with(&format!("{target}&exp=")) && path.contains("&sig="), "{path}");
    assert_eq!(link["url"].as_str(), Some(server.url(&path).as_str()));
    let exp = link["expires_unix"].as_i64().expect("expires_unix");
    assert!((exp - unix_now() - 600).abs() <= 5, "expires {exp}");

    // Without any credentials: the MP4, also by byte range.
    let (r, bytes) = send(client(), "GET", &server.url(&path), &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("video/mp4"));
    assert_eq!(bytes.get(4..8), Some(&b"ftyp"[..]), "not an MP4");
    let (r, bytes) = send(client(), "GET", &server.url(&path), &[("Range", "bytes=0-99")], None);
    assert_eq!((r.status, bytes.len()), (206, 100));

    // Only that exact path and range: any change is 403.
    let tampered = [
        path.replace(&format!("end={end_ms}"), &format!("end={}", end_ms + 1000)),
        path.replace("/front/", "/back/"),
        path.replace(&format!("exp={exp}"), &format!("exp={}", exp + 3600)),
        path.replace("video.mp4", "snapshot.jpg"),
        format!("{}{}", &path[..path.len() - 1], if path.ends_with('0') { '1' } else { '0' }),
    ];
    for t in &tampered {
        let r = get(&server.url(t), &[]);
        assert_eq!(r.status, 403, "{t}: {}", r.body);
        assert_one_line(&r, t);
    }
    let r = get(&server.url(&path.replace("video.mp4", "recordings")), &[]);
    assert_eq!(r.status, 403, "a signature opened another route: {}", r.body);
    // Without the signature it is an ordinary, unauthenticated request.
    assert_eq!(get(&server.url(&target), &[]).status, 401);

    // Snapshots can be shared too; cameras the sharer may not see, other routes and overlong
    // lifetimes cannot.
    let r = share("/api/cameras/front/snapshot.jpg", "1h".into(), &vh);
    assert_eq!(r.status, 200, "{}", r.body);
    let snap = get(&server.url(json(&r)["path"].as_str().expect("path")), &[]);
    assert_eq!((snap.status, snap.header("content-type")), (200, Some("image/jpeg")), "shared snapshot: {}", snap.body);
    assert_eq!(share("/api/cameras/back/snapshot.jpg", "1h".into(), &vh).status, 403);
    assert_eq!(share("/api/cameras/front/recordings", "1h".into(), &vh).status, 400);
    assert_eq!(share(&target, "30d".into(), &vh).status, 400);
    assert_eq!(share(&target, 600.into(), &[]).status, 401);

    // Expired: 403 once `exp` has passed.
    let r = share(&target, 1.into(), &vh);
    assert_eq!(r.status, 200, "{}", r.body);
    let short = json(&r);
    let short_path = short["path"].as_str().expect("path").to_owned();
    let short_exp = short["expires_unix"].as_i64().expect("expires_unix");
    wait_for(Duration::from_secs(10), "the link's expiry to pass", || (unix_now() > short_exp).then_some(()))
        .expect("clock");
    let r = get(&server.url(&short_path), &[]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
}

#[test]
fn refuses_to_start_without_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    // Required because of a non-loopback listen address (it never gets as far as binding).
    let cfg = dir.path().join("vigil.toml");
    std::fs::write(&cfg, "[[cameras]]\nname = \"a\"\n").expect("config");
    let cfg = cfg.to_str().expect("utf-8");
    let (ok, _, err) =
        vigil(&["serve", "--config", cfg, "--listen", "0.0.0.0:0", "--data-dir", data, "--webrtc-udp-ports", ""], "");
    assert!(!ok, "started with a public listener and nobody to log in");
    assert!(err.contains("authentication is required") && err.contains("vigil user add"), "{err}");
    assert!(err.contains("not on loopback"), "{err}");
    // Required by the config, on loopback.
    std::fs::write(cfg, "[auth]\nrequired = true\n[[cameras]]\nname = \"a\"\n").expect("config");
    let (ok, _, err) =
        vigil(&["serve", "--config", cfg, "--listen", "127.0.0.1:0", "--data-dir", data, "--webrtc-udp-ports", ""], "");
    assert!(!ok, "started with [auth] required and nobody to log in");
    assert!(err.contains("[auth] required = true") && err.contains("no users or API tokens"), "{err}");
    // A malformed hash is named.
    std::fs::write(dir.path().join("users.toml"), "[[users]]\nname = \"x\"\npassword_hash = \"hunter2\"\n")
        .expect("users");
    let (ok, _, err) =
        vigil(&["serve", "--config", cfg, "--listen", "127.0.0.1:0", "--data-dir", data, "--webrtc-udp-ports", ""], "");
    assert!(!ok);
    assert!(err.contains("user \"x\"") && err.contains("password_hash"), "{err}");
}

#[test]
fn https_session_cookie_is_secure() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let _g = serial();
    let https = SocketAddr::from(([127, 0, 0, 1], pebble::free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], pebble::free_port()));
    let certs = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[tls]\nmode = \"self-signed\"\ndomains = [\"vigil.test\"]\nhttps_listen = \"{https}\"\nhttp_listen = \"{http}\"\n\
         certs_dir = \"{}\"\n{CONFIG}",
        certs.path().join("certs").display()
    );
    let (server, creds) = start(&config);
    let cert = CertificateDer::from_pem_file(certs.path().join("certs/self-signed-cert.pem")).expect("certificate");
    let roots = [cert];
    let resp = pebble::rt().block_on(async {
        let mut c = pebble::HttpsConn::connect(https, "vigil.test", &roots).await.expect("HTTPS");
        let page = c.request("GET", "/", &[], None).await.expect("GET /");
        let body = format!("user=bob&password={BOB_PW}&next=%2F");
        let login = c
            .request("POST", "/login", &[("Content-Type", "application/x-www-form-urlencoded")], Some(body.as_bytes()))
            .await
            .expect("POST /login");
        (page, login)
    });
    assert_eq!(resp.0.status, 303, "{}", resp.0.text());
    assert_eq!(resp.1.status, 303, "{}", resp.1.text());
    let set = resp.1.header("set-cookie").expect("Set-Cookie");
    let attrs: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attrs[0].starts_with("__Host-vigil_session="), "{set}");
    for want in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attrs.contains(&want), "cookie lacks {want}: {set}");
    }
    // The cookie works over HTTPS; the plain listener (loopback) needs credentials as well.
    let cookie = attrs[0].to_owned();
    let me = pebble::rt().block_on(async {
        let mut c = pebble::HttpsConn::connect(https, "vigil.test", &roots).await.expect("HTTPS");
        c.request("GET", "/api/session", &[("Cookie", &cookie)], None).await.expect("GET /api/session")
    });
    assert_eq!(me.status, 200, "{}", me.text());
    assert_eq!(me.json()["name"], "bob");
    assert_eq!(get(&server.url("/api/cameras"), &[]).status, 401);
    assert_eq!(get(&server.url("/api/cameras"), &[("Authorization", &creds.viewer_h())]).status, 200);
}

/// WHIP takes vigil API tokens too: a `publisher` token for the camera publishes (and a viewer
/// with an admin token decodes what it sends); a viewer token, or a publisher token for
/// another camera, is 403; an unknown token 401.
#[test]
fn publisher_token_publishes_over_whip() {
    use common::publisher::{PublishOptions, Publisher};
    let _g = serial();
    let config = format!(
        "{CONFIG}\n[[cameras]]\nname = \"studio\"\nsource = \"whip\"\npublish_token = \"studio-publish-token-0123\"\nsegment_seconds = 2\n"
    );
    let mut tokens = None;
    let server = Server::start_prepared(&config, |p| {
        let creds = make_users(p);
        let c = p.to_str().expect("utf-8 path");
        let add = |name: &str, cameras: &str| {
            let (ok, token, err) =
                vigil(&["token", "add", name, "--role", "publisher", "--cameras", cameras, "--config", c], "");
            assert!(ok, "vigil token add {name}: {err}");
            token.trim().to_owned()
        };
        let studio = add("studio-pub", "studio");
        let front = add("front-pub", "front");
        tokens = Some((creds, studio, front));
    });
    let (creds, studio_pub, front_pub) = tokens.expect("tokens");
    let base = server.base();
    let publisher = Publisher::new(&PublishOptions::default()).expect("publisher");

    let r = publisher.post(&base, "studio", Some(&creds.viewer)).unwrap();
    assert_eq!(r.status, 403, "a viewer token: {}", r.body);
    assert!(r.body.contains("publisher or admin"), "{}", r.body);
    let r = publisher.post(&base, "studio", Some(&front_pub)).unwrap();
    assert_eq!(r.status, 403, "a publisher token for another camera: {}", r.body);
    assert!(r.body.contains("studio"), "{}", r.body);
    let r = publisher.post(&base, "studio", Some("not-a-token-of-this-server")).unwrap();
    assert_eq!(r.status, 401, "an unknown token: {}", r.body);

    let live = publisher.publish(&base, "studio", &studio_pub).expect("publish with a publisher token");
    let admin = creds.admin_h();
    let client = WhepClient::connect_with(&base, "studio", &[("Authorization", admin.as_str())]).expect("WHEP viewer");
    let stats = client.wait_frames(20, Duration::from_secs(20)).expect("decoded frames from the publisher");
    assert!(stats.width > 0 && stats.height > 0, "{stats:?}");
    // Ending the session needs a token that may publish to it.
    let r = req("DELETE", live.location(), &[("Authorization", &creds.viewer_h())], None);
    assert_eq!(r.status, 403, "DELETE with a viewer token: {}", r.body);
    assert_eq!(live.delete().expect("DELETE"), 200);
}

/// `vigil token ...` and `vigil user ...` apply to a running server: a token added after the
/// start works, a removed one gets 401; a removed user's browser session ends.
#[test]
fn users_file_changes_apply_without_restart() {
    let _g = serial();
    let (server, creds) = start(CONFIG);
    let config = server.dir().join("vigil.toml");
    let c = config.to_str().expect("utf-8 path");
    let cameras = |h: &str| get(&server.url("/api/cameras"), &[("Authorization", h)]).status;

    let (ok, token, err) = vigil(&["token", "add", "late", "--role", "viewer", "--cameras", "back", "--config", c], "");
    assert!(ok, "vigil token add: {err}");
    let late = format!("Bearer {}", token.trim());
    wait_for(Duration::from_secs(10), "the token added while serving to work", || {
        (cameras(&late) == 200).then_some(())
    })
    .expect("a token added while serving");
    assert_eq!(camera_names(&get(&server.url("/api/cameras"), &[("Authorization", &late)])), ["back"]);

    // bob logs in; then bob and the token are removed.
    let r = login_form(&server, client(), "bob", BOB_PW, "/");
    assert_eq!(r.status, 303, "login: {}", r.body);
    let cookie = r.header("set-cookie").expect("session cookie").split(';').next().expect("cookie").to_owned();
    let by_cookie = || get(&server.url("/api/cameras"), &[("Cookie", &cookie)]).status;
    assert_eq!(by_cookie(), 200);
    let (ok, _, err) = vigil(&["token", "remove", "late", "--config", c], "");
    assert!(ok, "vigil token remove: {err}");
    let (ok, _, err) = vigil(&["user", "remove", "bob", "--config", c], "");
    assert!(ok, "vigil user remove: {err}");
    wait_for(Duration::from_secs(10), "the removed token to be refused", || (cameras(&late) == 401).then_some(()))
        .expect("a removed token");
    assert_eq!(by_cookie(), 401, "a removed user's session still works");
    // The others are untouched.
    assert_eq!(cameras(&creds.viewer_h()), 200);

    // A users file that no longer parses is ignored: the previous credentials stay.
    let users = config.with_file_name("users.toml");
    std::fs::write(&users, "this is [not toml").expect("write users file");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(cameras(&creds.admin_h()), 200, "a broken users file locked everyone out");
    let log = std::fs::read_to_string(server.dir().join("vigil.log")).expect("log");
    assert!(log.contains("cannot be used"), "no warning about the broken users file");
}
