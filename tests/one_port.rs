//! Every WebRTC session on one UDP port (`[server] webrtc_udp_ports = "PORT"`, the default
//! 8189): twenty `webrtcbin` viewers and a WHIP publisher at once, each answer naming only
//! that port, each viewer decoding frames; a viewer without UDP decodes over ICE-TCP on one
//! TCP port; a port range still gives each session its own.

mod common;

use common::publisher::{PublishOptions, Publisher};
use common::{Server, WhepClient, serial};
use std::collections::BTreeSet;
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
