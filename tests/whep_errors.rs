//! WHEP signaling errors and session resources (docs/api.md): every refusal has the documented
//! status and a one-line plain-text reason; PATCH honours `If-Match`; OPTIONS advertises
//! `application/sdp`. Offers are made by a real `webrtcbin`.

mod common;

use std::time::Duration;

use common::{Resp, Server, WhepClient, h264_recv_caps, http, opus_caps, serial, vp8_caps, webrtcbin_offer};

/// A light camera so that the error tests do not compete with a 720p encoder for the CPU.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

[[cameras]]
name = "test"
source = "test"
width = 320
height = 240
fps = 30
bitrate_kbps = 500
keyframe_interval_s = 1.0
segment_seconds = 2
encoder = "auto"
"#;

/// A camera whose capture can never start: the pipeline ends (or fails) at once.
const DEAD_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

[[cameras]]
name = "dead"
source = "pipeline:fakesrc num-buffers=0 ! fakesink"
width = 320
height = 240
fps = 30
bitrate_kbps = 500
keyframe_interval_s = 1.0
segment_seconds = 2
encoder = "auto"
"#;

fn post_offer(server: &Server, camera: &str, content_type: &str, body: &str) -> Resp {
    http("POST", &server.url(&format!("/whep/{camera}")), &[("Content-Type", content_type)], Some(body))
        .expect("POST /whep")
}

/// `resp` has `status` and a one-line, non-empty, plain-text reason.
#[track_caller]
fn assert_error(resp: &Resp, status: u16, what: &str) {
    assert_eq!(resp.status, status, "{what}: status (body {:?})", resp.body);
    let reason = resp.body.trim_end_matches(['\r', '\n']);
    assert!(!reason.trim().is_empty(), "{what}: empty error body");
    assert!(!reason.contains('\n'), "{what}: error body is not one line: {:?}", resp.body);
    let ct = resp.header("content-type").unwrap_or("");
    assert!(
        ct.starts_with("text/plain"),
        "{what}: error Content-Type is {ct:?}, not text/plain (body {:?})",
        resp.body
    );
}

#[test]
fn refused_offers() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    server.wait_running("test");
    let h264 = webrtcbin_offer(&[h264_recv_caps()]).expect("H.264 offer");

    let r = post_offer(&server, "test", "application/sdp", "garbage");
    assert_error(&r, 400, "malformed SDP");

    let r = post_offer(&server, "no-such-camera", "application/sdp", &h264);
    assert_error(&r, 404, "unknown camera");
    // A typo in the camera name says so, whatever the body and its type.
    let r = post_offer(&server, "tset", "application/sdp", "garbage");
    assert_error(&r, 404, "unknown camera with a malformed body");
    assert!(r.body.contains("tset"), "the 404 names the camera: {:?}", r.body);
    let r = post_offer(&server, "tset", "text/plain", &h264);
    assert_error(&r, 404, "unknown camera with the wrong Content-Type");
    let r =
        http("PATCH", &server.url("/whep/tset/no-such-session"), &[("Content-Type", "text/plain")], Some("garbage"))
            .expect("PATCH");
    assert_error(&r, 404, "PATCH of an unknown session with a bad body");

    let r = post_offer(&server, "test", "text/plain", &h264);
    assert_error(&r, 415, "Content-Type text/plain");

    let audio = webrtcbin_offer(&[opus_caps()]).expect("opus offer");
    let r = post_offer(&server, "test", "application/sdp", &audio);
    assert_error(&r, 406, "audio-only (Opus) offer");

    let vp8 = webrtcbin_offer(&[vp8_caps()]).expect("VP8 offer");
    let r = post_offer(&server, "test", "application/sdp", &vp8);
    assert_error(&r, 406, "VP8-only offer");

    // None of that left a viewer behind.
    assert_eq!(server.camera("test")["viewers"], 0, "viewers after refused offers");
}

#[test]
fn session_resources() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    server.wait_running("test");

    // OPTIONS advertises what POST accepts (and answers CORS preflight).
    let r = http(
        "OPTIONS",
        &server.url("/whep/test"),
        &[
            ("Origin", "http://example.test"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        None,
    )
    .expect("OPTIONS");
    assert!(r.status == 204 || r.status == 200, "OPTIONS status {} ({:?})", r.status, r.body);
    let accept_post = r.header_all("accept-post").join(", ");
    assert!(accept_post.contains("application/sdp"), "OPTIONS Accept-Post is {accept_post:?}, headers {:?}", r.headers);
    assert!(
        r.header("access-control-allow-origin").is_some(),
        "OPTIONS with Origin has no Access-Control-Allow-Origin; headers {:?}",
        r.headers
    );

    // Unknown sessions.
    let r = http("DELETE", &server.url("/whep/test/no-such-session"), &[], None).expect("DELETE");
    assert_error(&r, 404, "DELETE unknown session");
    let r = http(
        "PATCH",
        &server.url("/whep/test/no-such-session"),
        &[("Content-Type", "application/trickle-ice-sdpfrag"), ("If-Match", "*")],
        Some("a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"),
    )
    .expect("PATCH");
    assert_error(&r, 404, "PATCH unknown session");

    // A real session.
    let client = WhepClient::connect(&server.base(), "test").expect("WHEP connect");
    let ct = client.response().header("content-type").unwrap_or("");
    assert!(ct.starts_with("application/sdp"), "201 Content-Type is {ct:?}");
    let etag = client.etag().expect("201 has an ETag (needed for PATCH If-Match)").to_owned();
    client.wait_frames(10, Duration::from_secs(10)).expect("the session plays");

    // A trickle-ice-sdpfrag (RFC 8840) with the offer's ICE credentials and one of its
    // candidates again (harmless to add twice).
    let sdpfrag = sdpfrag_from_offer(client.offer());
    let patch = |if_match: Option<&str>| {
        let mut headers = vec![("Content-Type", "application/trickle-ice-sdpfrag")];
        if let Some(m) = if_match {
            headers.push(("If-Match", m));
        }
        http("PATCH", client.location(), &headers, Some(&sdpfrag)).expect("PATCH")
    };

    let r = patch(Some("\"not-the-etag\""));
    assert_error(&r, 412, "PATCH with a wrong If-Match");
    let r = patch(Some(&etag));
    assert_eq!(r.status, 204, "PATCH with If-Match {etag}: body {:?}", r.body);
    let r = patch(None);
    assert_eq!(r.status, 204, "PATCH without If-Match: body {:?}", r.body);

    // The session still plays after the PATCHes.
    let n = client.frames().frames;
    client.wait_frames(n + 10, Duration::from_secs(10)).expect("the session keeps playing after PATCH");

    assert_eq!(client.delete().expect("DELETE"), 200, "DELETE the session");
    let r = http("DELETE", client.location(), &[], None).expect("DELETE again");
    assert_error(&r, 404, "DELETE of an ended session");
    let r = patch(Some(&etag));
    assert_error(&r, 404, "PATCH of an ended session");
}

/// ufrag, pwd, the media section's mid and its first UDP candidate, as an sdpfrag.
fn sdpfrag_from_offer(offer: &str) -> String {
    let find = |prefix: &str| {
        offer
            .lines()
            .map(str::trim_end)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("offer has no {prefix} line:\n{offer}"))
            .to_owned()
    };
    let candidate = offer
        .lines()
        .map(str::trim_end)
        .find(|l| l.starts_with("a=candidate:") && l.contains(" UDP "))
        .unwrap_or_else(|| panic!("offer has no UDP candidate:\n{offer}"));
    let mline = find("m=video");
    let port_proto_fmt = mline.splitn(3, ' ').nth(2).unwrap_or("UDP/TLS/RTP/SAVPF 96");
    [
        find("a=ice-ufrag:"),
        find("a=ice-pwd:"),
        format!("m=video 9 {port_proto_fmt}"),
        find("a=mid:"),
        candidate.to_owned(),
        String::new(),
    ]
    .join("\r\n")
}

#[test]
fn camera_not_running_is_503() {
    let _serial = serial();
    let server = Server::start(DEAD_CONFIG);
    let h264 = webrtcbin_offer(&[h264_recv_caps()]).expect("H.264 offer");

    let cam = server.camera("dead");
    assert_ne!(cam["state"], "running", "a capture that cannot start is not running: {cam}");
    let r = post_offer(&server, "dead", "application/sdp", &h264);
    assert_error(&r, 503, "POST to a camera that is not running (just after start)");

    // Once its capture has ended at least once, the camera says why, and WHEP is still 503.
    let cam = server.wait_camera("dead", Duration::from_secs(20), "the capture to fail at least once", |c| {
        c["restarts"].as_u64() >= Some(1)
    });
    assert!(cam["state"] == "restarting" || cam["state"] == "failed" || cam["state"] == "starting", "{cam}");
    let why = cam["last_error"].as_str().unwrap_or_else(|| panic!("a camera that failed has a last_error: {cam}"));
    assert!(!why.trim().is_empty() && !why.contains('\n'), "last_error is one line saying why: {cam}");
    let r = post_offer(&server, "dead", "application/sdp", &h264);
    assert_error(&r, 503, "POST to a camera whose capture failed");
}
