//! `GET /healthz` tells the truth (docs/api.md): `200` when every part works, `503` naming
//! the parts that do not; `GET /livez` answers as long as the process does.
//!
//! * `a_failing_camera_is_named`: a camera whose capture cannot start makes `/healthz` 503
//!   naming it; switched off, health is 200 again.
//! * `a_disk_below_the_floor_is_named`: a `min_free_bytes` above the disk's free space is 503
//!   naming the disk.

mod common;

use common::{Server, http, serial, wait_for};
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
[[cameras]]
name = "good"
width = 320
height = 240
fps = 15
bitrate_kbps = 300
segment_seconds = 2

[[cameras]]
name = "dead"
source = "pipeline:fakesrc num-buffers=0 ! fakesink"
width = 320
height = 240
"#;

fn health(server: &Server) -> (u16, Value) {
    let r = http("GET", &server.url("/healthz"), &[], None).expect("GET /healthz");
    assert_eq!(r.header("content-type"), Some("application/json"), "{}", r.body);
    (r.status, serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("/healthz is not JSON ({e}): {}", r.body)))
}

#[test]
fn a_failing_camera_is_named() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    server.wait_running("good");
    assert_eq!(http("GET", &server.url("/livez"), &[], None).unwrap().status, 200);
    let (status, h) = health(&server);
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["status"], "failing", "{h}");
    let failing: Vec<&str> = h["failing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(failing.iter().any(|f| f.starts_with("camera dead:")), "{h}");
    assert!(!failing.iter().any(|f| f.contains("good")), "the running camera is not failing: {h}");
    assert_eq!(h["index"], "ok", "{h}");

    // Switched off, the dead camera is no longer expected to run: healthy.
    let r = http(
        "PATCH",
        &server.url("/api/cameras/dead"),
        &[("Content-Type", "application/json")],
        Some(r#"{"enabled":false}"#),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let h = wait_for(Duration::from_secs(10), "/healthz 200", || {
        let (s, h) = health(&server);
        (s == 200).then_some(h)
    })
    .unwrap_or_else(|e| panic!("{e}: {}", health(&server).1));
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["disk"]["free_bytes"].as_u64().is_some_and(|f| f > 0), "{h}");
}

#[test]
fn a_disk_below_the_floor_is_named() {
    let _serial = serial();
    // More free space than any test machine has: the floor cannot be met.
    let server = Server::start("[server]\nmin_free_bytes = 1000000000000000000\n");
    let (status, h) = health(&server);
    assert_eq!(status, 503, "{h}");
    let failing: Vec<&str> = h["failing"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(failing.iter().any(|f| f.starts_with("disk:") && f.contains("min_free_bytes")), "{h}");
}
