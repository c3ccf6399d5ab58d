//! WHIP ingest with independent peers: a GStreamer `webrtcbin` publisher (x264 test pattern)
//! publishes to a `source = "whip"` camera; a `webrtcbin` WHEP viewer decodes what it sent;
//! the recordings API lists the segments it made; the refusals (401/404/406/409) are
//! what RFC 9725 and the issue say; a viewer stays connected across publishers.

mod common;

use common::publisher::{PublishOptions, Publisher};
use common::{Server, WhepClient, http, serial, vp8_caps, wait_for, webrtcbin_offer};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const CAMERA: &str = "phone";
const TOKEN: &str = "test-publish-token-0123456789";

fn config(extra_cameras: &str) -> String {
    format!(
        "[server]\nmin_free_bytes = 0\n\n[[cameras]]\nname = \"{CAMERA}\"\nsource = \"whip\"\n\
         publish_token = \"{TOKEN}\"\nsegment_seconds = 2\n{extra_cameras}"
    )
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn state(server: &Server) -> String {
    server.camera(CAMERA)["state"].as_str().unwrap_or("").to_owned()
}

fn wait_state(server: &Server, want: &str) {
    server.wait_camera(CAMERA, Duration::from_secs(15), &format!("state {want}"), |c| c["state"] == want);
}

/// (closed, open) segments of the camera in the last hour.
fn segments(server: &Server) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let path = format!(
        "/api/cameras/{CAMERA}/recordings?start={}&end={}&segments=true",
        now_ms() - 3_600_000,
        now_ms() + 60_000
    );
    let r = http("GET", &server.url(&path), &[], None).expect("GET recordings");
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    let json: serde_json::Value = serde_json::from_str(&r.body).expect("recordings JSON");
    let segs = json["segments"].as_array().cloned().unwrap_or_default();
    segs.into_iter().partition(|s| s["open"] == false)
}

#[test]
fn a_published_stream_is_relayed_recorded_and_survives_a_publisher_change() {
    let _serial = serial();
    let server = Server::start(&config(""));
    wait_state(&server, "offline");

    // A viewer may wait for a publisher.
    let viewer = WhepClient::connect(&server.base(), CAMERA).expect("WHEP viewer on an offline WHIP camera");

    let opts = PublishOptions { width: 640, height: 360, fps: 30, audio: true, key_int: 30, ..Default::default() };
    let publishing = Publisher::new(&opts).expect("publisher").publish(&server.base(), CAMERA, TOKEN).expect("publish");
    assert!(publishing.location().starts_with(&server.url(&format!("/whip/{CAMERA}/"))), "{}", publishing.location());
    wait_state(&server, "running");

    let stats = viewer.wait_frames(60, Duration::from_secs(20)).expect("the viewer decodes the publisher's frames");
    assert_eq!((stats.width, stats.height), (640, 360), "decoded frames have the publisher's size");

    // Recorded: at least two closed 2 s segments appear in the listing.
    wait_for(Duration::from_secs(30), "two closed segments", || (segments(&server).0.len() >= 2).then_some(()))
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", server.log()));
    for s in segments(&server).0 {
        assert!(s["frames"].as_i64().unwrap_or(0) >= 30, "a 2 s segment at 30 fps has >= 30 frames: {s}");
    }

    // The publisher leaves: 200, the camera goes offline and its open segment is closed.
    assert_eq!(publishing.delete().expect("DELETE"), 200);
    wait_state(&server, "offline");
    wait_for(Duration::from_secs(10), "no open segment", || segments(&server).1.is_empty().then_some(()))
        .expect("the last segment is closed when the publisher leaves");

    // The viewer stays connected and resumes with the next publisher.
    let before = viewer.frames().frames;
    let again =
        Publisher::new(&opts).expect("publisher 2").publish(&server.base(), CAMERA, TOKEN).expect("publish again");
    viewer.wait_frames(before + 60, Duration::from_secs(20)).expect("the same viewer resumes with the new publisher");
    assert_eq!(again.delete().expect("DELETE"), 200);
}

#[test]
fn refusals_have_the_right_status() {
    let _serial = serial();
    let other = "\n[[cameras]]\nname = \"lobby\"\nsource = \"test\"\nwidth = 160\nheight = 120\nfps = 5\n";
    let server = Server::start(&config(other));
    wait_state(&server, "offline");
    let base = server.base();
    let publisher = Publisher::new(&PublishOptions::default()).expect("publisher");

    let r = publisher.post(&base, CAMERA, None).unwrap();
    assert_eq!(r.status, 401, "no token: {}", r.body);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = publisher.post(&base, CAMERA, Some("not-the-token-at-all")).unwrap();
    assert_eq!(r.status, 401, "wrong token: {}", r.body);
    let r = publisher.post(&base, "nosuchcamera", Some(TOKEN)).unwrap();
    assert_eq!(r.status, 404, "unknown camera: {}", r.body);
    let r = publisher.post(&base, "lobby", Some(TOKEN)).unwrap();
    assert_eq!(r.status, 404, "a camera that is not a WHIP camera: {}", r.body);
    assert!(r.body.contains("not a WHIP camera"), "{}", r.body);

    let vp8 = webrtcbin_offer(&[vp8_caps()]).unwrap();
    let auth = format!("Bearer {TOKEN}");
    let r = http(
        "POST",
        &format!("{base}/whip/{CAMERA}"),
        &[("Content-Type", "application/sdp"), ("Authorization", &auth)],
        Some(&vp8),
    )
    .unwrap();
    assert_eq!(r.status, 406, "no H.264 in the offer: {}", r.body);
    assert_eq!(r.body.lines().count(), 1, "one-line reason: {:?}", r.body);

    // One publisher at a time.
    let live = publisher.publish(&base, CAMERA, TOKEN).expect("first publisher");
    wait_state(&server, "running");
    let second = Publisher::new(&PublishOptions::default()).expect("publisher 2");
    let r = second.post(&base, CAMERA, Some(TOKEN)).unwrap();
    assert_eq!(r.status, 409, "a second publisher while one is live: {}", r.body);

    // Only the token holder may end the session.
    let r = http("DELETE", live.location(), &[], None).unwrap();
    assert_eq!(r.status, 401, "DELETE without the token: {}", r.body);
    let r =
        http("DELETE", &format!("{base}/whip/{CAMERA}/0123456789abcdef"), &[("Authorization", &auth)], None).unwrap();
    assert_eq!(r.status, 404, "DELETE of an unknown session: {}", r.body);
    assert_eq!(live.delete().unwrap(), 200);
    wait_state(&server, "offline");
    assert_eq!(state(&server), "offline");

    // The camera is free again.
    let third = Publisher::new(&PublishOptions::default()).expect("publisher 3");
    let r = third.post(&base, CAMERA, Some(TOKEN)).unwrap();
    assert_eq!(r.status, 201, "after DELETE the camera takes a new publisher: {}", r.body);
}

#[test]
fn trickle_and_ice_restart_patches() {
    let _serial = serial();
    let server = Server::start(&config(""));
    let live =
        Publisher::new(&PublishOptions::default()).unwrap().publish(&server.base(), CAMERA, TOKEN).expect("publish");
    wait_state(&server, "running");
    let etag = live.etag().expect("201 carries an ETag").to_owned();
    let auth = format!("Bearer {}", live.token());
    let frag_type = ("Content-Type", "application/trickle-ice-sdpfrag");

    // Trickle: a candidate for the session's ICE credentials → 204.
    let ufrag = live.answer().lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    let offer_ufrag =
        live.publisher().offer().lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:")).unwrap().to_owned();
    let trickle = format!(
        "a=ice-ufrag:{offer_ufrag}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n\
         a=candidate:9 1 UDP 2015363583 127.0.0.1 9 typ host\r\n"
    );
    let r = http("PATCH", live.location(), &[frag_type, ("If-Match", &etag), ("Authorization", &auth)], Some(&trickle))
        .unwrap();
    assert_eq!(r.status, 204, "trickle: {}", r.body);
    let r = http(
        "PATCH",
        live.location(),
        &[frag_type, ("If-Match", "\"stale\""), ("Authorization", &auth)],
        Some(&trickle),
    )
    .unwrap();
    assert_eq!(r.status, 412, "a stale If-Match: {}", r.body);
    let r = http("PATCH", live.location(), &[frag_type, ("If-Match", &etag)], Some(&trickle)).unwrap();
    assert_eq!(r.status, 401, "PATCH without the token: {}", r.body);

    // ICE restart: new credentials in → 200 with the server's new credentials and candidates,
    // and a new ETag.
    let restart = "a=ice-ufrag:restartufrag1\r\na=ice-pwd:restartpasswordrestartpwd00\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\n\
                   a=candidate:1 1 UDP 2015363583 127.0.0.1 9 typ host\r\n";
    let r = http("PATCH", live.location(), &[frag_type, ("If-Match", &etag), ("Authorization", &auth)], Some(restart))
        .unwrap();
    assert_eq!(r.status, 200, "ICE restart: {}", r.body);
    assert_eq!(r.header("content-type"), Some("application/trickle-ice-sdpfrag"));
    let new_ufrag = r.body.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:")).expect("new ufrag");
    assert_ne!(new_ufrag, ufrag, "the server's ICE credentials change: {}", r.body);
    assert!(r.body.lines().any(|l| l.starts_with("a=ice-pwd:")), "{}", r.body);
    assert!(r.body.lines().any(|l| l.starts_with("a=candidate:")), "candidates in the answer fragment: {}", r.body);
    let new_etag = r.header("etag").expect("a new ETag");
    assert_ne!(new_etag, etag);
}
