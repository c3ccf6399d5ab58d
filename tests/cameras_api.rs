//! The camera registry through its API (docs/cameras.md), against the real `vigil` binary,
//! with a `webrtcbin` WHEP viewer as the independent peer:
//!
//! * `a_camera_added_from_the_api_plays_changes_and_survives_a_restart`: `POST /api/cameras`
//!   → 201, live within 10 s; a `PATCH` of its size reaches a viewer already watching; its
//!   settings are the same after a restart; `DELETE` ends it (WHEP 404, capture child gone).
//! * `bad_changes_name_the_field_and_change_nothing`: 400 naming the field or the unknown
//!   key, 409 for a taken name and for settings of a camera defined in vigil.toml; the
//!   camera list is the same afterwards.
//! * `stop_start_and_live_only`: `enabled = false` stops a camera (state `stopped`, WHEP 503,
//!   no capture child) and `true` starts it again; a camera with `record = false` plays live
//!   and records nothing.
//! * `rtsp_passwords_never_leave_the_server`: the password of an RTSP source is in no
//!   response and no log line, and a masked value sent back keeps it.
//! * `sighup_rereads_the_file_and_events_tell_who_listens`: a camera added to vigil.toml
//!   starts on SIGHUP, a changed one applies, a broken file changes nothing, a removed one
//!   stops; a `GET /api/events` subscriber gets each change.
//! * `probe_devices_and_the_latest_picture`: a probe of the test pattern answers its size and
//!   codec with a JPEG ffprobe reads at that size; an unreachable RTSP source is `ok: false`
//!   without its password; `/api/devices` lists; `latest.jpg` of a running camera.

mod common;

use common::{Server, WhepClient, WhepRefused, http, read_until, serial, subscribe};
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = r#"
[[cameras]]
name = "front"
width = 320
height = 240
fps = 15
bitrate_kbps = 300
segment_seconds = 2
"#;

fn send(server: &Server, method: &str, path: &str, body: &Value) -> (u16, String) {
    let r = http(method, &server.url(path), &[("Content-Type", "application/json")], Some(&body.to_string()))
        .unwrap_or_else(|e| panic!("{method} {path}: {e:#}"));
    (r.status, r.body)
}

fn get_json(server: &Server, path: &str) -> (u16, Value) {
    let r = http("GET", &server.url(path), &[], None).unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    (r.status, serde_json::from_str(&r.body).unwrap_or(Value::String(r.body)))
}

/// The settings part of a camera object (the state fields change by themselves).
fn settings(cam: &Value) -> Value {
    let mut c = cam.clone();
    if let Some(o) = c.as_object_mut() {
        for k in ["state", "last_error", "last_frame_age_ms", "video_fps", "video_kbps", "video_width", "video_height"]
        {
            o.remove(k);
        }
        o.retain(|k, _| !matches!(k.as_str(), "restarts" | "motion_path" | "viewers" | "codec" | "since_ms"));
    }
    c
}

fn all_settings(server: &Server) -> Vec<Value> {
    server.cameras().as_array().expect("an array").iter().map(settings).collect()
}

fn whep_status(server: &Server, camera: &str) -> u16 {
    match WhepClient::connect(&server.base(), camera) {
        Ok(c) => {
            let _ = c.delete();
            201
        }
        Err(e) => e.downcast_ref::<WhepRefused>().map(|r| r.status).unwrap_or_else(|| panic!("WHEP {camera}: {e:#}")),
    }
}

/// Capture children of camera `name` (their command line names it after `--camera`).
fn capture_children(server: &Server, name: &str) -> usize {
    server
        .processes_using_data_dir()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .split('\0')
                        .collect::<Vec<_>>()
                        .windows(2)
                        .any(|w| w == ["--camera", name])
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn a_camera_added_from_the_api_plays_changes_and_survives_a_restart() {
    let _serial = serial();
    let mut server = Server::start(CONFIG);
    let body = json!({"name": "yard", "title": "Back yard", "group": "outside", "width": 320, "height": 240,
                      "fps": 15, "bitrate_kbps": 300, "segment_seconds": 2});
    let (status, created) = send(&server, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "POST /api/cameras: {created}");
    let created: Value = serde_json::from_str(&created).expect("JSON");
    assert_eq!(
        (&created["name"], &created["title"], &created["defined_in"], &created["enabled"], &created["record"]),
        (&json!("yard"), &json!("Back yard"), &json!("api"), &json!(true), &json!(true)),
        "{created}"
    );
    assert!(
        matches!(created["state"].as_str(), Some("starting" | "running")),
        "the 201 says it is starting: {created}"
    );

    // Running within 10 s of the POST, and a viewer decodes it at its size.
    server.wait_camera("yard", Duration::from_secs(10), "state == running", |c| c["state"] == "running");
    let viewer = WhepClient::connect_retry(&server.base(), "yard", Duration::from_secs(5)).expect("WHEP yard");
    let s = viewer.wait_frames(20, Duration::from_secs(10)).expect("frames from the new camera");
    assert_eq!((s.width, s.height), (320, 240));

    // A new size reaches the viewer already watching (the capture restarts, the session stays).
    let (status, patched) = send(&server, "PATCH", "/api/cameras/yard", &json!({"width": 480, "height": 272}));
    assert_eq!(status, 200, "PATCH: {patched}");
    let patched: Value = serde_json::from_str(&patched).expect("JSON");
    assert_eq!(
        (&patched["width"], &patched["height"], &patched["title"]),
        (&json!(480), &json!(272), &json!("Back yard"))
    );
    common::wait_for(Duration::from_secs(20), "the viewer decodes 480x272", || {
        let f = viewer.frames();
        (f.width, f.height).eq(&(480, 272)).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; last {:?}", viewer.frames()));
    let _ = viewer.delete();

    // Settings survive a restart.
    let before: Vec<Value> = all_settings(&server);
    server.restart();
    assert_eq!(all_settings(&server), before, "the cameras after a restart");
    server.wait_camera("yard", Duration::from_secs(15), "running after the restart", |c| c["state"] == "running");
    let (status, yard) = get_json(&server, "/api/cameras/yard");
    assert_eq!((status, &yard["width"], &yard["defined_in"]), (200, &json!(480), &json!("api")), "{yard}");

    // Removed: no capture child, WHEP 404, the API 404.
    assert_eq!(capture_children(&server, "yard"), 1, "one capture child runs the camera");
    let (status, gone) = send(&server, "DELETE", "/api/cameras/yard", &json!(null));
    assert_eq!(status, 200, "DELETE: {gone}");
    assert_eq!(get_json(&server, "/api/cameras/yard").0, 404);
    assert_eq!(whep_status(&server, "yard"), 404);
    common::wait_for(Duration::from_secs(10), "the capture child ends", || {
        (capture_children(&server, "yard") == 0).then_some(())
    })
    .unwrap();
    assert!(server.cameras().as_array().unwrap().iter().all(|c| c["name"] != "yard"));
}

#[test]
fn bad_changes_name_the_field_and_change_nothing() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    let (status, _) = send(&server, "POST", "/api/cameras", &json!({"name": "api1", "width": 320, "height": 240}));
    assert_eq!(status, 201);
    let before = all_settings(&server);

    let cases: &[(&str, &str, Value, u16, &str)] = &[
        ("POST", "/api/cameras", json!({"name": "x", "fps": 1000}), 400, "fps:"),
        ("POST", "/api/cameras", json!({"name": "x", "width": 321}), 400, "width"),
        ("POST", "/api/cameras", json!({"name": "x", "fsp": 30}), 400, "\"fsp\""),
        ("POST", "/api/cameras", json!({"name": "x", "width": "wide"}), 400, "width:"),
        ("POST", "/api/cameras", json!({"name": "x", "source": "webcam"}), 400, "source:"),
        ("POST", "/api/cameras", json!({"name": "a b"}), 400, "name:"),
        ("POST", "/api/cameras", json!({"name": "probe"}), 400, "name:"),
        ("POST", "/api/cameras", json!({"width": 320}), 400, "name:"),
        ("POST", "/api/cameras", json!({"name": "x", "state": "running"}), 400, "state:"),
        ("POST", "/api/cameras", json!({"name": "front"}), 409, "front"),
        ("POST", "/api/cameras", json!({"name": "api1"}), 409, "api1"),
        ("PATCH", "/api/cameras/front", json!({"width": 640}), 409, "vigil.toml"),
        ("PATCH", "/api/cameras/front", json!({"widht": 640}), 400, "\"widht\""),
        ("PATCH", "/api/cameras/api1", json!({"width": 641}), 400, "width"),
        ("PATCH", "/api/cameras/api1", json!({"name": "renamed"}), 400, "name:"),
        ("PATCH", "/api/cameras/api1", json!({"segment_seconds": 0}), 400, "segment_seconds:"),
        ("PATCH", "/api/cameras/nobody", json!({"width": 640}), 404, "nobody"),
        ("DELETE", "/api/cameras/front", json!(null), 409, "vigil.toml"),
        ("DELETE", "/api/cameras/nobody", json!(null), 404, "nobody"),
    ];
    for (method, path, body, want, names) in cases {
        let (status, text) = send(&server, method, path, body);
        assert_eq!(status, *want, "{method} {path} {body}: {text}");
        assert!(text.contains(names), "{method} {path} {body}: {status} {text:?} does not name {names}");
        assert!(!text.contains('\n') || text.trim_end().lines().count() == 1, "one line: {text:?}");
    }
    // Not JSON at all.
    let r = http("POST", &server.url("/api/cameras"), &[("Content-Type", "application/json")], Some("{name")).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(all_settings(&server), before, "refused changes change nothing");
}

#[test]
fn stop_start_and_live_only() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    server.wait_running("front");
    assert_eq!(capture_children(&server, "front"), 1);

    let (status, body) = send(&server, "PATCH", "/api/cameras/front", &json!({"enabled": false}));
    assert_eq!(status, 200, "{body}");
    server.wait_camera("front", Duration::from_secs(10), "state == stopped", |c| c["state"] == "stopped");
    assert_eq!(whep_status(&server, "front"), 503, "a stopped camera is unavailable");
    common::wait_for(Duration::from_secs(10), "no capture child", || {
        (capture_children(&server, "front") == 0).then_some(())
    })
    .unwrap();

    let (status, body) = send(&server, "PATCH", "/api/cameras/front", &json!({"enabled": true}));
    assert_eq!(status, 200, "{body}");
    let c = WhepClient::connect_retry(&server.base(), "front", Duration::from_secs(15)).expect("WHEP after start");
    c.wait_frames(10, Duration::from_secs(10)).expect("frames after start");
    let _ = c.delete();

    // Live only: plays, records nothing.
    let body = json!({"name": "liveonly", "record": false, "width": 320, "height": 240, "fps": 15,
                      "bitrate_kbps": 300, "segment_seconds": 2});
    let (status, text) = send(&server, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "{text}");
    let c = WhepClient::connect_retry(&server.base(), "liveonly", Duration::from_secs(15)).expect("WHEP liveonly");
    c.wait_frames(60, Duration::from_secs(15)).expect("live-only frames");
    let _ = c.delete();
    // Over 4 s of footage has played (two segments' worth): none of it is in history.
    let (status, rec) = get_json(&server, "/api/cameras/liveonly/recordings?segments=true");
    assert_eq!(status, 200, "{rec}");
    assert_eq!(rec["runs"], json!([]), "a live-only camera records nothing: {rec}");
    assert!(!server.data_dir().join("liveonly").exists(), "no recording folder for a live-only camera");
    // The other camera records as before.
    let (_, front) = get_json(&server, "/api/cameras/front/recordings?segments=true");
    assert_ne!(front["runs"], json!([]), "{front}");
}

#[test]
fn rtsp_passwords_never_leave_the_server() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    // Nothing listens on port 9: the camera fails, and says why without the password.
    let body = json!({"name": "gate", "source": "rtsp://admin:hunter2secret@127.0.0.1:9/stream1"});
    let (status, text) = send(&server, "POST", "/api/cameras", &body);
    assert_eq!(status, 201, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["source"], "rtsp://admin:***@127.0.0.1:9/stream1", "{created}");
    server.wait_camera("gate", Duration::from_secs(20), "an error from the unreachable camera", |c| {
        c["last_error"].as_str().is_some_and(|e| !e.is_empty())
    });
    // A masked value sent back unchanged keeps the password; the camera stays the same.
    let (status, text) =
        send(&server, "PATCH", "/api/cameras/gate", &json!({"source": created["source"], "title": "Gate"}));
    assert_eq!(status, 200, "{text}");
    let (_, list) = get_json(&server, "/api/cameras");
    let (_, one) = get_json(&server, "/api/cameras/gate");
    for (what, shown) in
        [("POST", created.to_string()), ("PATCH", text), ("list", list.to_string()), ("GET", one.to_string())]
    {
        assert!(!shown.contains("hunter2secret"), "{what} shows the password: {shown}");
    }
    assert!(server.log().contains("admin:***@"), "the log names the source, masked");
    assert!(!server.log().contains("hunter2secret"), "the log shows the password");
    // And the capture child still has it (it is what it connects with).
    let pids = server.processes_using_data_dir();
    assert!(!pids.is_empty());
    assert!(
        pids.iter().all(|p| !String::from_utf8_lossy(&std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .contains("hunter2secret")),
        "the password is not on a command line (ps shows those)"
    );
}

#[test]
fn sighup_rereads_the_file_and_events_tell_who_listens() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    server.wait_running("front");
    let config = server.dir().join("vigil.toml");
    let hup = || {
        let ok = std::process::Command::new("kill")
            .arg("-HUP")
            .arg(server.pid().expect("running").to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
    };
    let (mut events, head) = subscribe(server.port(), "?types=camera_added,camera_changed,camera_removed");
    let names = || -> Vec<String> {
        server.cameras().as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect()
    };

    // A camera added to the file starts; a changed one applies.
    let side = "\n[[cameras]]\nname = \"side\"\nwidth = 320\nheight = 240\nfps = 15\nbitrate_kbps = 300\n";
    std::fs::write(&config, format!("{}{side}", CONFIG.replace("bitrate_kbps = 300", "bitrate_kbps = 400"))).unwrap();
    hup();
    common::wait_for(Duration::from_secs(10), "side listed", || (names() == ["front", "side"]).then_some(())).unwrap();
    server.wait_camera("side", Duration::from_secs(15), "running from the file", |c| c["state"] == "running");
    let (_, side_cam) = get_json(&server, "/api/cameras/side");
    assert_eq!(side_cam["defined_in"], "config", "{side_cam}");
    assert_eq!(get_json(&server, "/api/cameras/front").1["bitrate_kbps"], 400);
    let c = WhepClient::connect_retry(&server.base(), "side", Duration::from_secs(10)).expect("WHEP side");
    c.wait_frames(10, Duration::from_secs(10)).expect("frames from the reloaded camera");
    let _ = c.delete();

    // A file that does not load changes nothing.
    std::fs::write(&config, "[[cameras]]\nname = \"broken\"\nwidht = 3\n").unwrap();
    hup();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(names(), ["front", "side"]);
    common::wait_for(Duration::from_secs(5), "the refusal in the log", || {
        server.log().contains("SIGHUP: the config file does not load").then_some(())
    })
    .unwrap();

    // Removed from the file: gone.
    std::fs::write(&config, CONFIG).unwrap();
    hup();
    common::wait_for(Duration::from_secs(10), "side removed", || (names() == ["front"]).then_some(())).unwrap();
    assert_eq!(whep_status(&server, "side"), 404);

    // Everything above, as events to the subscriber that listened all along.
    let text = read_until(&mut events, head, |t| t.contains("event: camera_removed"));
    let text = String::from_utf8_lossy(&text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for want in [
        "event: camera_added",
        "\"camera\":\"side\"",
        "event: camera_changed",
        "\"bitrate_kbps\"",
        "event: camera_removed",
    ] {
        assert!(text.contains(want), "no {want:?} in the event stream:\n{text}");
    }
    assert!(!text.contains("event: camera_state"), "the types filter holds:\n{text}");
}

#[test]
fn probe_devices_and_the_latest_picture() {
    let _serial = serial();
    let server = Server::start(CONFIG);
    let (status, text) =
        send(&server, "POST", "/api/cameras/probe", &json!({"source": "test", "width": 320, "height": 240}));
    assert_eq!(status, 200, "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&p["ok"], &p["width"], &p["height"]), (&json!(true), &json!(320), &json!(240)), "{p}");
    assert!(p["codec"].as_str().is_some_and(|c| c.starts_with("avc1.")), "{p}");
    let snap = p["snapshot"].as_str().expect("a snapshot URL");
    let r = http("GET", &server.url(snap), &[], None).unwrap();
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/jpeg")), "{}", r.body);
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=width,height", "-of", "csv=p=0", &server.url(snap)])
        .output()
        .expect("ffprobe");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "320,240", "ffprobe of the probe's JPEG");

    // A source that answers nothing: ok false, one line, no password.
    let (status, text) =
        send(&server, "POST", "/api/cameras/probe", &json!({"source": "rtsp://u:probepass@127.0.0.1:9/x"}));
    assert_eq!(status, 200, "{text}");
    let p: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(p["ok"], false, "{p}");
    let e = p["error"].as_str().expect("an error");
    assert!(!e.is_empty() && !e.contains('\n') && !text.contains("probepass"), "{p}");
    let (status, text) = send(&server, "POST", "/api/cameras/probe", &json!({"source": "webcam"}));
    assert!(status == 400 && text.starts_with("source:"), "{status} {text}");
    let (status, text) = send(&server, "POST", "/api/cameras/probe", &json!({"source": "test", "fsp": 3}));
    assert!(status == 400 && text.contains("fsp"), "{status} {text}");

    let (status, devices) = get_json(&server, "/api/devices");
    assert_eq!(status, 200);
    assert!(devices.is_array(), "{devices}");

    // The last known good picture of a running camera.
    server.wait_running("front");
    let jpeg = common::wait_for(Duration::from_secs(15), "latest.jpg", || {
        let r = http("GET", &server.url("/api/cameras/front/latest.jpg"), &[], None).ok()?;
        (r.status == 200).then_some(r)
    })
    .unwrap();
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    assert_eq!(get_json(&server, "/api/cameras/nobody/latest.jpg").0, 404);
}
