//! A capture that ends (here: a pipeline that sends EOS after 90 frames, 3 s) is restarted by
//! the server, `/api/cameras` says so, and a viewer keeps getting pictures across restarts.

mod common;

use std::time::Duration;

use common::{Server, WhepClient, serial};

const CAMERA: &str = "flaky";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
data_dir = "./data"

[[cameras]]
name = "flaky"
source = "pipeline:videotestsrc is-live=true num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1"
width = 320
height = 240
fps = 30
bitrate_kbps = 500
keyframe_interval_s = 1.0
segment_seconds = 2
encoder = "auto"
"#;

fn restarts(cam: &serde_json::Value) -> u64 {
    cam["restarts"].as_u64().unwrap_or_else(|| panic!("`restarts` is not a non-negative integer: {cam}"))
}

#[test]
fn capture_that_ends_is_restarted_and_viewers_resume() {
    let _serial = serial();
    let server = Server::start(CONFIG);

    // The first run: a viewer sees 320x240 pictures.
    server.wait_running(CAMERA);
    // A capture that restarts every 3 s is briefly not running between runs (503): retry.
    let client = WhepClient::connect_retry(&server.base(), CAMERA, Duration::from_secs(20)).expect("WHEP connect");
    let first = client.wait_frames(10, Duration::from_secs(10)).expect("frames from the first capture run");
    assert_eq!((first.width, first.height), (320, 240), "frame size");

    // The capture ends after 3 s; the server restarts it and reports it.
    let cam = server.wait_camera(CAMERA, Duration::from_secs(20), "restarts >= 1", |c| restarts(c) >= 1);
    let restarted = restarts(&cam);
    server.wait_camera(CAMERA, Duration::from_secs(20), "state back to running after a restart", |c| {
        c["state"] == "running" && restarts(c) >= restarted
    });

    // The viewer that was watching before the restart sees new pictures after it
    // (each run makes 90 frames, so 30 more can only come from a restarted capture).
    let before = client.frames().frames;
    let after = client
        .wait_frames(before + 30, Duration::from_secs(20))
        .expect("frames resume for a viewer connected before the restart");
    assert_eq!((after.width, after.height), (320, 240), "frame size after restart");

    // A viewer that connects after a restart plays too.
    let late =
        WhepClient::connect_retry(&server.base(), CAMERA, Duration::from_secs(20)).expect("WHEP connect after restart");
    let s = late.wait_frames(30, Duration::from_secs(20)).expect("a viewer connecting after a restart decodes frames");
    assert_eq!((s.width, s.height), (320, 240));
}
