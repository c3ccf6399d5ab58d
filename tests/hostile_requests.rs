//! Hostile requests against the real server (docs/api.md, "Limits"): no path from a request
//! reaches outside the data directory or the pages, bad times are refused, bodies are bounded
//! in size and time, a client that sends its headers one byte a second is disconnected while
//! others are served, and one client address cannot hold more WHEP sessions than
//! `max_sessions_per_client`. Requests are written on raw sockets so that nothing normalises
//! `..`, `%2e%2e` or backslashes on the way.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{RawResp, Server, h264_recv_caps, http, raw_http, serial, webrtcbin_offer};

const CONFIG: &str = r#"
[server]
max_sessions_per_client = 2
request_header_timeout = "2s"
request_body_timeout = "2s"
max_request_body_bytes = 65536

[[cameras]]
name = "test"
source = "test"
width = 320
height = 240
fps = 15
bitrate_kbps = 300
keyframe_interval_s = 1.0
segment_seconds = 2
"#;

/// A secret next to the data directory: nothing may ever serve it.
const SECRET: &str = "TOPSECRET-8c1f";

fn start() -> Server {
    let server = Server::start(CONFIG);
    std::fs::write(server.dir().join("secret.txt"), SECRET).expect("write secret");
    std::fs::write(server.data_dir().join("secret.txt"), SECRET).expect("write secret in data");
    server
}

fn get(server: &Server, target: &str) -> RawResp {
    let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    raw_http(server.port(), req.as_bytes()).expect("raw request")
}

fn send(server: &Server, method: &str, target: &str, headers: &str, body: &[u8]) -> RawResp {
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n").into_bytes();
    req.extend_from_slice(body);
    raw_http(server.port(), &req).expect("raw request")
}

/// A refusal with one of `statuses` and a one-line reason, serving nothing it should not.
/// hyper itself refuses a request line or headers too large to parse (414, 431) before any
/// handler runs; its reason is the status line's, with no body.
#[track_caller]
fn assert_refused(r: &RawResp, statuses: &[u16], what: &str) {
    let what: String = what.chars().take(120).collect();
    assert!(statuses.contains(&r.status), "{what}: status {} (want {statuses:?}); {}\n{}", r.status, r.head, r.body);
    assert!(!r.body.contains(SECRET) && !r.body.contains("root:"), "{what}: served a file: {:?}", r.body);
    if matches!(r.status, 414 | 431) && r.body.is_empty() {
        return;
    }
    let reason = r.body.trim_end_matches(['\r', '\n']);
    assert!(!reason.trim().is_empty() && !reason.contains('\n'), "{what}: reason is not one line: {:?}", r.body);
}

#[test]
fn no_path_leaves_the_tree() {
    let _serial = serial();
    let server = start();
    let long = "a".repeat(5000);
    let huge = "b".repeat(200_000);
    let traversals = [
        "/../../../../etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/data/secret.txt",
        "/secret.txt",
        "//etc/passwd",
        "/live.js/../../secret.txt",
        "/history%00.html",
        "/%5c..%5c..%5csecret.txt",
        "/api/cameras/..%2f..%2fsecret.txt/recordings",
        "/api/cameras/%2e%2e/recordings",
        "/api/cameras/..%5csecret.txt/video.mp4",
        "/api/cameras/test%2f..%2f..%2fsecret.txt/video.mp4",
        "/api/cameras/%2fetc%2fpasswd/snapshot.jpg",
        "/api/cameras/%00/recordings",
        "/api/cameras/test%00/fmp4/init.mp4",
        "/api/cameras/C:%5cWindows/recordings",
        "/api/cameras/%c3%a9/recordings",
        "/api/cameras/%ff%fe/recordings",
        &format!("/api/cameras/{long}/recordings"),
        &format!("/api/cameras/{huge}/recordings"),
    ];
    for t in traversals {
        let r = get(&server, t);
        assert_refused(&r, &[400, 404, 414, 431], t);
    }
    // Backslashes and a NUL written raw into the request line.
    for t in ["/..\\..\\secret.txt", "/api/cameras/..\\..\\secret.txt/recordings", "/a\0b"] {
        let r = get(&server, t);
        assert!(r.status == 0 || (400..500).contains(&r.status), "{t:?}: {}\n{}", r.head, r.body);
        assert!(!r.body.contains(SECRET), "{t:?}: served the secret");
    }
    // An absolute URI in the request line names no file either.
    let r = get(&server, "http://127.0.0.1/../../secret.txt");
    assert_refused(&r, &[400, 404], "absolute-form target");

    // WHEP: the camera and session segments.
    let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\n";
    let sdp = format!("Content-Type: application/sdp\r\nContent-Length: {}\r\n", offer.len());
    for t in [
        "/whep/..",
        "/whep/%2e%2e",
        "/whep/..%2f..%2fsecret.txt",
        "/whep/test%00",
        "/whep/%5csecret",
        &format!("/whep/{long}"),
    ] {
        let r = send(&server, "POST", t, &sdp, offer.as_bytes());
        assert_refused(&r, &[400, 404], &format!("POST {t}"));
    }
    for t in ["/whep/test/..", "/whep/test/%2e%2e", "/whep/test/..%2f..%2fsecret.txt", "/whep/test/x%00"] {
        let r = send(&server, "DELETE", t, "", b"");
        assert_refused(&r, &[400, 404], &format!("DELETE {t}"));
        let frag = "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n";
        let h = format!("Content-Type: application/trickle-ice-sdpfrag\r\nContent-Length: {}\r\n", frag.len());
        let r = send(&server, "PATCH", t, &h, frag.as_bytes());
        assert_refused(&r, &[400, 404], &format!("PATCH {t}"));
    }
    // Still serving.
    assert_eq!(get(&server, "/livez").status, 200);
    assert_eq!(get(&server, "/api/cameras/test/recordings").status, 200);
}

#[test]
fn bad_times_are_400() {
    let _serial = serial();
    let server = start();
    let bad = [
        "-1",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999999999999",
        "253402300800000",
        "1e9",
        "NaN",
        "%00",
        "..%2f..%2fetc",
        "2026-11-22T00:00:00%2B0%C3%A900",
        "2026-11-22T00:00:00%2B99:99",
        "0000-01-01T00:00:00Z",
        "10000-01-01T00:00:00Z",
        "2026-11-22T25:00:00Z",
        "yesterday",
    ];
    let routes = [
        ("/api/cameras/test/recordings", &["start", "end"][..]),
        ("/api/cameras/test/video.mp4", &["start", "end"]),
        ("/api/cameras/test/snapshot.jpg", &["t"]),
        ("/api/cameras/test/fmp4/init.mp4", &["start", "end"]),
        ("/api/cameras/test/fmp4/media.m4s", &["start", "end", "base"]),
    ];
    for (route, params) in routes {
        for p in params {
            for v in bad {
                let t = format!("{route}?{p}={v}");
                assert_refused(&get(&server, &t), &[400], &t);
            }
        }
        // start after end (snapshot.jpg takes no range: it would answer the latest picture).
        if params.contains(&"start") {
            assert_refused(&get(&server, &format!("{route}?start=2000&end=1000")), &[400, 404], route);
        }
    }
    for t in [
        "/api/cameras/test/video.mp4?start=0&end=253402300799999",
        "/api/cameras/test/fmp4/media.m4s?start=0&end=253402300799999",
    ] {
        assert_refused(&get(&server, t), &[400], t);
    }
    // Valid but empty: 404 or 200, never 500.
    for t in ["/api/cameras/test/recordings?start=0&end=253402300799999", "/api/cameras/test/snapshot.jpg?t=0"] {
        let r = get(&server, t);
        assert!(r.status == 200 || r.status == 404, "{t}: {}\n{}", r.head, r.body);
    }
    assert!(!server.log().contains("panicked"), "the server panicked:\n{}", server.log());
}

#[test]
fn request_bodies_are_bounded() {
    let _serial = serial();
    let server = start();
    let big = vec![b'v'; 200_000];
    // Declared too large: refused before the body is read.
    for (m, t, ct) in [
        ("POST", "/whep/test", "application/sdp"),
        ("PATCH", "/whep/test/abc", "application/trickle-ice-sdpfrag"),
        ("GET", "/api/cameras", "text/plain"),
        ("POST", "/healthz", "text/plain"),
    ] {
        let h = format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", big.len());
        let r = send(&server, m, t, &h, &big);
        assert_refused(&r, &[413], &format!("{m} {t} with a 200 kB body"));
    }
    // Chunked, no declared length: cut off at the limit.
    let mut chunked = Vec::new();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n", 10_000).as_bytes());
        chunked.extend_from_slice(&[b'v'; 10_000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let h = "Content-Type: application/sdp\r\nTransfer-Encoding: chunked\r\n";
    assert_refused(&send(&server, "POST", "/whep/test", h, &chunked), &[413], "chunked 200 kB offer");
    // A body that arrives too slowly: 408, and the connection is closed.
    let mut s = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    s.write_all(
        b"POST /whep/test HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\nContent-Length: 1000\r\n\r\nv=0\r\n",
    )
    .expect("write");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "slow body: {text:?}");
    assert!(text.contains("request body not received within"), "slow body: {text:?}");
}

#[test]
fn slowloris_is_disconnected_while_others_are_served() {
    let _serial = serial();
    let server = start();
    let mut slow = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(900))).expect("timeout");
    let idle = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let header = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut sent = 0;
    let mut served_meanwhile = 0;
    let disconnected = loop {
        // One header byte a second, never finishing the headers.
        if slow.write_all(&header[sent % header.len()..sent % header.len() + 1]).is_err() {
            break true;
        }
        sent += 1;
        let mut b = [0u8; 256];
        match slow.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => break true, // an error response, then close
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => {} // still open (read timed out)
        }
        // Everyone else is served meanwhile.
        let r = http("GET", &server.url("/livez"), &[], None).expect("GET /livez while a slowloris waits");
        assert_eq!(r.status, 200);
        served_meanwhile += 1;
        if started.elapsed() > Duration::from_secs(120) {
            break false;
        }
    };
    assert!(disconnected, "a client sending one header byte a second was never disconnected ({sent} bytes)");
    assert!(served_meanwhile > 0, "no other request was tried while the slow client was connected");
    // A connection that sends nothing at all is closed too.
    let mut b = [0u8; 16];
    let mut idle = idle;
    assert!(matches!(idle.read(&mut b), Ok(0) | Err(_)), "an idle connection stayed open");
    assert_eq!(http("GET", &server.url("/livez"), &[], None).expect("livez").status, 200);
}

#[test]
fn sessions_per_client_address_are_limited() {
    let _serial = serial();
    let server = start();
    server.wait_running("test");
    let offer = webrtcbin_offer(&[h264_recv_caps()]).expect("offer");
    let post =
        || http("POST", &server.url("/whep/test"), &[("Content-Type", "application/sdp")], Some(&offer)).expect("POST");
    let a = post();
    let b = post();
    assert_eq!((a.status, b.status), (201, 201), "{} / {}", a.body, b.body);
    let c = post();
    assert_eq!(c.status, 429, "third session from one address: {}", c.body);
    assert!(c.body.contains("max_sessions_per_client") && c.body.trim_end().lines().count() == 1, "{:?}", c.body);
    // Ending one frees its place.
    let loc = common::resolve(&server.base(), a.header("location").expect("Location")).expect("location");
    assert_eq!(http("DELETE", &loc, &[], None).expect("DELETE").status, 200);
    let d = post();
    assert_eq!(d.status, 201, "after a DELETE: {}", d.body);
}
