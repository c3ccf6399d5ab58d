//! Every WebRTC session on one UDP port (`[server] webrtc_udp_ports = "PORT"`, the default
//! 8189): twenty `webrtcbin` viewers and a WHIP publisher at once, each answer naming only
//! that port, each viewer decoding frames; a viewer without UDP decodes over ICE-TCP on one
//! TCP port; public IPs and TURN (a real coturn) both advertised, each session with a relay
//! allocation of its own; a port range still gives each session its own.

mod common;

use common::publisher::{PublishOptions, Publisher};
use common::{Server, WhepClient, serial};
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const VIEWERS: usize = 20;
const TOKEN: &str = "one-port-publish-token-0123456789";

/// The ports of an answer's UDP candidates.
fn udp_candidate_ports(sdp: &str) -> BTreeSet<u16> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|c| c.split(' ').collect::<Vec<_>>())
        .filter(|f| f.get(2).is_some_and(|t| t.eq_ignore_ascii_case("udp")))
        .map(|f| f[5].parse::<u16>().unwrap_or_else(|_| panic!("candidate port {:?} in:\n{sdp}", f[5])))
        .collect()
}

#[test]
fn twenty_viewers_and_a_publisher_share_one_udp_port() {
    let _serial = serial();
    // Small pictures: twenty decoders run in this process.
    let server = Server::start(&format!(
        "[server]\nmin_free_bytes = 0\nmax_sessions_per_client = 0\n\n\
         [[cameras]]\nname = \"test\"\nwidth = 320\nheight = 240\nfps = 15\n\n\
         [[cameras]]\nname = \"phone\"\nsource = \"whip\"\npublish_token = \"{TOKEN}\"\n"
    ));
    // The harness numbers the shared port like the HTTP port.
    let port = server.port();
    server.wait_running("test");

    let publishing = Publisher::new(&PublishOptions { width: 320, height: 240, fps: 15, ..Default::default() })
        .expect("publisher")
        .publish(&server.base(), "phone", TOKEN)
        .expect("WHIP publish");
    assert_eq!(
        udp_candidate_ports(publishing.answer()),
        BTreeSet::from([port]),
        "the WHIP answer names only the shared port:\n{}",
        publishing.answer()
    );

    let viewers: Vec<WhepClient> = (0..VIEWERS)
        .map(|i| {
            let camera = if i % 4 == 3 { "phone" } else { "test" };
            WhepClient::connect_retry(&server.base(), camera, Duration::from_secs(15))
                .unwrap_or_else(|e| panic!("viewer {i} of {camera}: {e:#}"))
        })
        .collect();
    for (i, v) in viewers.iter().enumerate() {
        assert_eq!(
            udp_candidate_ports(v.answer()),
            BTreeSet::from([port]),
            "viewer {i}'s answer names only the shared port:\n{}",
            v.answer()
        );
    }
    for (i, v) in viewers.iter().enumerate() {
        let stats = v.wait_frames(20, Duration::from_secs(30)).unwrap_or_else(|e| panic!("viewer {i}: {e:#}"));
        assert_eq!((stats.width, stats.height), (320, 240), "viewer {i} decodes the camera's size");
    }
    let watching = server.camera("test")["viewers"].as_i64().unwrap_or(-1)
        + server.camera("phone")["viewers"].as_i64().unwrap_or(-1);
    assert_eq!(watching, VIEWERS as i64, "the server counts every viewer");
    for v in &viewers {
        assert_eq!(v.delete().expect("DELETE"), 200, "DELETE {}", v.location());
    }
    assert_eq!(publishing.delete().expect("DELETE publisher"), 200);
}

/// The ports of an SDP's passive TCP candidates.
fn passive_tcp_ports(sdp: &str) -> BTreeSet<u16> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|c| c.split(' ').collect::<Vec<_>>())
        .filter(|f| f.get(2).is_some_and(|t| t.eq_ignore_ascii_case("tcp")) && f.contains(&"passive"))
        .map(|f| f[5].parse::<u16>().unwrap_or_else(|_| panic!("candidate port {:?} in:\n{sdp}", f[5])))
        .collect()
}

#[test]
fn viewers_without_udp_decode_over_ice_tcp_on_one_tcp_port() {
    let _serial = serial();
    let server = Server::start(
        "[server]\nmin_free_bytes = 0\n\n[[cameras]]\nname = \"test\"\nwidth = 320\nheight = 240\nfps = 15\n",
    );
    server.wait_running("test");
    let tcp = server.tcp_port();
    let viewers: Vec<WhepClient> = (0..3)
        .map(|i| {
            let v =
                WhepClient::connect_tcp_only(&server.base(), "test").unwrap_or_else(|e| panic!("viewer {i}: {e:#}"));
            assert!(
                !v.offer().lines().any(|l| l.starts_with("a=candidate:") && l.to_ascii_lowercase().contains(" udp ")),
                "the viewer offers no UDP candidate:\n{}",
                v.offer()
            );
            v
        })
        .collect();
    for (i, v) in viewers.iter().enumerate() {
        assert_eq!(
            passive_tcp_ports(v.answer()),
            BTreeSet::from([tcp]),
            "viewer {i}: the answer's passive TCP candidate is the shared ICE-TCP port:\n{}",
            v.answer()
        );
    }
    for (i, v) in viewers.iter().enumerate() {
        let stats = v.wait_frames(20, Duration::from_secs(30)).unwrap_or_else(|e| panic!("viewer {i} over TCP: {e:#}"));
        assert_eq!((stats.width, stats.height), (320, 240));
    }
}

#[test]
fn a_port_range_still_gives_each_session_its_own_port() {
    let _serial = serial();
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe port");
    let first = probe.local_addr().expect("addr").port().clamp(20_000, 60_000);
    drop(probe);
    let (a, b) = (first, first + 9);
    let server = Server::start(&format!(
        "[server]\nmin_free_bytes = 0\nwebrtc_udp_ports = \"{a}-{b}\"\n\n\
         [[cameras]]\nname = \"test\"\nwidth = 320\nheight = 240\nfps = 15\n"
    ));
    server.wait_running("test");
    let one = WhepClient::connect(&server.base(), "test").expect("first viewer");
    let two = WhepClient::connect(&server.base(), "test").expect("second viewer");
    let (p1, p2) = (udp_candidate_ports(one.answer()), udp_candidate_ports(two.answer()));
    assert_eq!(p1.len(), 1, "one port per session:\n{}", one.answer());
    assert!(p1.union(&p2).all(|p| (a..=b).contains(p)), "ports {p1:?} {p2:?} are in {a}-{b}");
    assert_ne!(p1, p2, "each session has its own port from the range");
    for v in [&one, &two] {
        v.wait_frames(10, Duration::from_secs(20)).expect("frames through a port of the range");
    }
}

/// A coturn TURN server on loopback, stopped on drop.
struct Turn {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Turn {
    fn start() -> Turn {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe").local_addr().expect("addr").port();
        let child = Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--lt-cred-mech"])
            .args(["--user=vigil:secret", "--realm=vigil.test", "--no-tls", "--no-dtls", "--no-cli"])
            .args(["--allow-loopback-peers", "--log-file=stdout", "--simple-log"])
            .arg(format!("--listening-port={port}"))
            .arg(format!("--db={}", dir.path().join("turndb").display()))
            .arg(format!("--pidfile={}", dir.path().join("turn.pid").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (deploy/install-deps.sh --test installs coturn)");
        // Ready once it answers on its UDP port (any STUN reply to a binding request).
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        probe.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        let binding: [u8; 20] = [0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let mut buf = [0u8; 512];
        common::wait_for(Duration::from_secs(10), "coturn to answer STUN", || {
            probe.send_to(&binding, ("127.0.0.1", port)).ok()?;
            probe.recv_from(&mut buf).ok().map(|_| ())
        })
        .expect("coturn up");
        Turn { child, port, _dir: dir }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The (address, port) of an SDP's candidates of type `typ`.
fn candidates_of_type(sdp: &str, typ: &str) -> Vec<(String, u16)> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .map(|c| c.split(' ').collect::<Vec<_>>())
        .filter(|f| f.get(7) == Some(&typ))
        .map(|f| (f[4].to_owned(), f[5].parse().unwrap_or(0)))
        .collect()
}

#[test]
fn public_ips_and_turn_are_both_advertised() {
    let _serial = serial();
    let turn = Turn::start();
    // 127.0.0.2 stands for the public address of a 1:1 NAT (still loopback: pitfall 9).
    let server = Server::start(&format!(
        "[server]\nmin_free_bytes = 0\npublic_ips = [\"127.0.0.2\"]\n\n\
         [[server.ice_servers]]\nurls = [\"turn:127.0.0.1:{}?transport=udp\"]\nusername = \"vigil\"\ncredential = \"secret\"\n\n\
         [[cameras]]\nname = \"test\"\nwidth = 320\nheight = 240\nfps = 15\n",
        turn.port
    ));
    server.wait_running("test");
    let port = server.port();
    let mut relays = BTreeSet::new();
    for i in 0..2 {
        let v = WhepClient::connect(&server.base(), "test").unwrap_or_else(|e| panic!("viewer {i}: {e:#}"));
        let answer = v.answer();
        assert!(
            candidates_of_type(answer, "srflx").contains(&("127.0.0.2".to_owned(), port)),
            "viewer {i}: the public IP is advertised on the shared port:\n{answer}"
        );
        // (webrtc-rs lists each candidate for components 1 and 2 alike.)
        let relay: BTreeSet<_> = candidates_of_type(answer, "relay").into_iter().collect();
        assert_eq!(relay.len(), 1, "viewer {i}: one TURN relay address:\n{answer}");
        relays.extend(relay);
        let link = v.response().header_all("link").join(", ");
        assert!(
            link.contains(&format!("<turn:127.0.0.1:{}?transport=udp>; rel=\"ice-server\"", turn.port)),
            "viewer {i}: the TURN server is in the Link header: {link}"
        );
        v.wait_frames(10, Duration::from_secs(20)).unwrap_or_else(|e| panic!("viewer {i}: {e:#}"));
    }
    // Each session has its own allocation (an allocation belongs to one 5-tuple).
    assert_eq!(relays.len(), 2, "two sessions, two relay addresses: {relays:?}");
}
