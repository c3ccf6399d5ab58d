//! Live viewing over WHEP with an independent peer (GStreamer `webrtcbin`): the default
//! test-pattern camera plays at its configured size, ending a session frees it, and several
//! viewers watch at once.

mod common;

use std::time::Duration;

use common::{Server, WhepClient, serial};

const CAMERA: &str = "test";

fn viewers(server: &Server) -> i64 {
    let cam = server.camera(CAMERA);
    cam["viewers"].as_i64().unwrap_or_else(|| panic!("`viewers` is not an integer: {cam}"))
}

fn wait_viewers(server: &Server, n: i64) {
    server
        .wait_camera(CAMERA, Duration::from_secs(10), &format!("viewers == {n}"), |c| c["viewers"].as_i64() == Some(n));
}

#[test]
fn one_viewer_decodes_720p_and_delete_frees_the_session() {
    let _serial = serial();
    let server = Server::start_default();
    server.wait_running(CAMERA);
    assert_eq!(viewers(&server), 0, "nobody is watching yet");

    let client = WhepClient::connect(&server.base(), CAMERA).expect("WHEP connect");
    assert!(
        client.location().starts_with(&server.url(&format!("/whep/{CAMERA}/"))),
        "Location {} is not under /whep/{CAMERA}/",
        client.location()
    );
    let stats = client.wait_frames(60, Duration::from_secs(10)).expect("60 decoded frames");
    assert_eq!((stats.width, stats.height), (1280, 720), "decoded frames have the default camera's size");
    wait_viewers(&server, 1);

    let status = client.delete().expect("DELETE session");
    assert_eq!(status, 200, "DELETE {}", client.location());
    wait_viewers(&server, 0);

    // The session is gone: deleting it again is a 404.
    let again = client.delete().expect("DELETE session again");
    assert_eq!(again, 404, "second DELETE {}", client.location());
}

#[test]
fn two_viewers_at_once() {
    let _serial = serial();
    let server = Server::start_default();
    server.wait_running(CAMERA);

    let a = WhepClient::connect(&server.base(), CAMERA).expect("WHEP connect (first viewer)");
    let b = WhepClient::connect(&server.base(), CAMERA).expect("WHEP connect (second viewer)");
    assert_ne!(a.location(), b.location(), "each viewer gets its own session");

    for (name, c) in [("first", &a), ("second", &b)] {
        let s = c.wait_frames(30, Duration::from_secs(15)).unwrap_or_else(|e| panic!("{name} viewer: {e:#}"));
        assert_eq!((s.width, s.height), (1280, 720), "{name} viewer frame size");
    }
    wait_viewers(&server, 2);

    // Both keep playing while the other is there.
    let (fa, fb) = (a.frames().frames, b.frames().frames);
    a.wait_frames(fa + 30, Duration::from_secs(10)).expect("first viewer keeps decoding");
    b.wait_frames(fb + 30, Duration::from_secs(10)).expect("second viewer keeps decoding");

    assert_eq!(a.delete().expect("DELETE first"), 200);
    wait_viewers(&server, 1);
    // The other viewer is not disturbed by the first one leaving.
    let fb = b.frames().frames;
    b.wait_frames(fb + 30, Duration::from_secs(10)).expect("second viewer keeps decoding after the first left");
    assert_eq!(b.delete().expect("DELETE second"), 200);
    wait_viewers(&server, 0);
}

#[test]
fn old_footage_is_never_served_as_live() {
    // A camera that recorded, then cannot start after a restart: its last GOP is on disk,
    // but it is not live, and no viewer may be shown it as live.
    let _serial = serial();
    let cfg = |source: &str| {
        format!(
            "[[cameras]]\nname = \"cam\"\nsource = \"{source}\"\nwidth = 320\nheight = 240\nfps = 15\nbitrate_kbps = 300\nsegment_seconds = 60\n"
        )
    };
    let mut server = Server::start(&cfg("test"));
    server.wait_running("cam");
    let c = WhepClient::connect_retry(&server.base(), "cam", Duration::from_secs(5)).expect("WHEP");
    c.wait_frames(30, Duration::from_secs(10)).expect("frames while it runs");
    let _ = c.delete();
    std::fs::write(server.dir().join("vigil.toml"), cfg("pipeline:fakesrc num-buffers=0 ! fakesink")).unwrap();
    server.stop();
    // The newest footage on disk is now 3 s old.
    std::thread::sleep(Duration::from_secs(3));
    server.restart();
    for _ in 0..10 {
        match WhepClient::connect(&server.base(), "cam") {
            Ok(c) => {
                let got = c.wait_frames(1, Duration::from_secs(2));
                panic!("a camera that is not running was offered as live (decoded: {got:?})");
            }
            Err(e) => {
                let refused = e.downcast_ref::<common::WhepRefused>().unwrap_or_else(|| panic!("{e:#}"));
                assert_eq!(refused.status, 503, "{refused}");
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
