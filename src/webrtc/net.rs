//! Small pieces shared by the WHEP and WHIP backends: how a new peer connection reaches the
//! network ([`UdpPorts`] hands out a [`Binding`]), session ids, one-line error text.

use super::ice::sdp_attr;
use super::mux::{Route, UdpMux};
use signaling::SignalError;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Hands each new peer connection its way to the network, as `[server] webrtc_udp_ports`
/// says: one shared port for every connection (`"8189"`, the default), the next free port
/// of a range (`"40000-40100"`, round robin), or an ephemeral port (`""`).
#[derive(Debug)]
pub struct UdpPorts {
    ip: IpAddr,
    mode: Mode,
    next: AtomicU32,
}

#[derive(Debug)]
enum Mode {
    Ephemeral,
    Range(u16, u16),
    Shared(Arc<UdpMux>),
}

impl UdpPorts {
    /// Ports on `ip`: `range` (inclusive; one port = shared by every connection, bound now,
    /// which needs a tokio runtime) or ephemeral. With one shared port, ICE-TCP listens on
    /// `tcp_port` (0: no ICE-TCP).
    pub fn new(ip: IpAddr, range: Option<(u16, u16)>, tcp_port: u16) -> std::io::Result<Self> {
        let mode = match range {
            None => Mode::Ephemeral,
            Some((a, b)) if a == b => {
                let tcp = (tcp_port != 0).then(|| SocketAddr::new(ip, tcp_port));
                Mode::Shared(UdpMux::bind(SocketAddr::new(ip, a), tcp)?)
            }
            Some((a, b)) => Mode::Range(a, b),
        };
        let next = AtomicU32::new(range.map_or(0, |(a, _)| u32::from(a)));
        Ok(Self { ip, mode, next })
    }

    /// The shared socket, when every connection uses one port.
    pub fn shared(&self) -> Option<&Arc<UdpMux>> {
        match &self.mode {
            Mode::Shared(mux) => Some(mux),
            _ => None,
        }
    }

    /// The way to the network for a new peer connection.
    pub fn next(&self) -> Result<Binding, SignalError> {
        let ip = self.ip;
        let (a, b) = match &self.mode {
            Mode::Ephemeral => return Ok(Binding { addr: format!("{}:0", fmt_ip(ip)), route: None }),
            Mode::Shared(mux) => return Ok(Binding { addr: format!("{}:0", fmt_ip(ip)), route: Some(mux.route()) }),
            Mode::Range(a, b) => (*a, *b),
        };
        let span = u32::from(b) - u32::from(a) + 1;
        for _ in 0..span {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let port = (u32::from(a) + (n.wrapping_sub(u32::from(a)) % span)) as u16;
            // Free right now? (The peer connection binds it a moment later.)
            if UdpSocket::bind((ip, port)).is_ok() {
                return Ok(Binding { addr: format!("{}:{port}", fmt_ip(ip)), route: None });
            }
        }
        Err(SignalError::Unavailable(format!("no free UDP port in webrtc_udp_ports {a}-{b}")))
    }
}

/// How one peer connection reaches the network: the address its own socket binds, and on
/// the shared port the [`Route`] its datagrams take.
#[derive(Debug, Clone)]
pub struct Binding {
    /// What the connection binds (`ip:port`).
    pub addr: String,
    /// Through the shared port, when there is one.
    pub route: Option<Arc<Route>>,
}

impl Binding {
    /// This side's description (`sdp`, an answer or an sdpfrag) as the peer must see it: on
    /// the shared port, candidates name the shared port instead of the connection's own, and
    /// binding requests for its ufrag are routed to this connection from now on.
    pub fn announce(&self, sdp: &str) -> String {
        let Some(route) = &self.route else { return sdp.to_owned() };
        if let Some(ufrag) = sdp_attr(sdp, "ice-ufrag") {
            route.claim_ufrag(ufrag);
        }
        let shared = Shared { udp: route.shared_addr().port(), tcp: route.shared_tcp_addr().map_or(0, |a| a.port()) };
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.lines().map(str::trim_end) {
            match line.strip_prefix("a=candidate:") {
                Some(c) => {
                    out.push_str("a=candidate:");
                    out.push_str(&rewrite_candidate(
                        c,
                        &shared,
                        |p| route.is_local_port(p),
                        |p| route.is_local_tcp_port(p),
                    ));
                }
                None => out.push_str(line),
            }
            out.push_str("\r\n");
        }
        out
    }
}

/// The shared ports candidates are moved to.
struct Shared {
    udp: u16,
    tcp: u16,
}

/// A candidate attribute value (after `a=candidate:`) with its port, and `rport`, moved to the
/// shared port where `own_udp` (`own_tcp` for a TCP candidate) says the port is the
/// connection's own socket (listener).
fn rewrite_candidate(c: &str, to: &Shared, own_udp: impl Fn(u16) -> bool, own_tcp: impl Fn(u16) -> bool) -> String {
    let mut fields: Vec<String> = c.split(' ').map(str::to_owned).collect();
    let transport = fields.get(2).map(|t| t.to_ascii_lowercase());
    let (shared, own): (u16, &dyn Fn(u16) -> bool) = match transport.as_deref() {
        Some("udp") => (to.udp, &own_udp),
        Some("tcp") if to.tcp != 0 => (to.tcp, &own_tcp),
        _ => return c.to_owned(),
    };
    {
        let shared = shared.to_string();
        let is_own = |f: &String| f.parse::<u16>().is_ok_and(own);
        if fields.get(5).is_some_and(is_own) {
            fields[5] = shared.clone();
        }
        if let Some(i) = fields.iter().position(|f| f == "rport")
            && fields.get(i + 1).is_some_and(is_own)
        {
            fields[i + 1] = shared;
        }
    }
    fields.join(" ")
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

#[cfg(test)]
mod tests {
    use super::{Shared, rewrite_candidate};

    #[test]
    fn candidates_move_to_the_shared_port_only_where_they_name_the_own_socket() {
        let to = Shared { udp: 8189, tcp: 8190 };
        let rw = |c| rewrite_candidate(c, &to, |p| p == 40123, |p| p == 40999);
        assert_eq!(rw("1 1 udp 2130706431 192.0.2.7 40123 typ host"), "1 1 udp 2130706431 192.0.2.7 8189 typ host");
        assert_eq!(
            rw("2 1 udp 1694498815 203.0.113.9 40123 typ srflx raddr 192.0.2.7 rport 40123"),
            "2 1 udp 1694498815 203.0.113.9 8189 typ srflx raddr 192.0.2.7 rport 8189"
        );
        // A relay candidate's port is the TURN server's.
        assert_eq!(
            rw("3 1 udp 16777215 198.51.100.1 50000 typ relay raddr 0.0.0.0 rport 0"),
            "3 1 udp 16777215 198.51.100.1 50000 typ relay raddr 0.0.0.0 rport 0"
        );
        // TCP: the passive candidate moves to the shared TCP port, the active one (port 9) stays.
        assert_eq!(
            rw("4 1 tcp 1518280447 192.0.2.7 40999 typ host tcptype passive"),
            "4 1 tcp 1518280447 192.0.2.7 8190 typ host tcptype passive"
        );
        assert_eq!(
            rw("5 1 tcp 1518280447 192.0.2.7 9 typ host tcptype active"),
            "5 1 tcp 1518280447 192.0.2.7 9 typ host tcptype active"
        );
        // A UDP candidate on a port that happens to be a TCP listener's stays.
        assert_eq!(rw("6 1 udp 2130706431 192.0.2.7 40999 typ host"), "6 1 udp 2130706431 192.0.2.7 40999 typ host");
    }
}
