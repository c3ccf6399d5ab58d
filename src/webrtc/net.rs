//! Small pieces shared by the WHEP and WHIP backends: UDP port hand-out for new peer
//! connections, session ids, one-line error text.

use signaling::SignalError;
use std::net::{IpAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};

/// Hands each new peer connection a UDP bind address: an ephemeral port, or the next free
/// port of `[server] webrtc_udp_ports` (round robin).
#[derive(Debug)]
pub struct UdpPorts {
    ip: IpAddr,
    range: Option<(u16, u16)>,
    next: AtomicU32,
}

impl UdpPorts {
    /// Ports on `ip`, from `range` (inclusive) or ephemeral.
    pub fn new(ip: IpAddr, range: Option<(u16, u16)>) -> Self {
        Self { ip, range, next: AtomicU32::new(range.map_or(0, |(a, _)| u32::from(a))) }
    }

    /// A bind address (`ip:port`) for a new peer connection.
    pub fn next_addr(&self) -> Result<String, SignalError> {
        let ip = self.ip;
        let Some((a, b)) = self.range else {
            return Ok(format!("{}:0", fmt_ip(ip)));
        };
        let span = u32::from(b) - u32::from(a) + 1;
        for _ in 0..span {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let port = (u32::from(a) + (n.wrapping_sub(u32::from(a)) % span)) as u16;
            // Free right now? (The peer connection binds it a moment later.)
            if UdpSocket::bind((ip, port)).is_ok() {
                return Ok(format!("{}:{port}", fmt_ip(ip)));
            }
        }
        Err(SignalError::Unavailable(format!("no free UDP port in webrtc_udp_ports {a}-{b}")))
    }
}

fn fmt_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The first line of `s`, at most 200 characters (error text for a one-line reason).
pub fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

/// A random 128-bit id in hex (session ids, ETags).
pub fn random_id() -> String {
    let v: u128 = rand::random();
    format!("{v:032x}")
}
