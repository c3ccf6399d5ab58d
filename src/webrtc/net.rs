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
    /// Public addresses (1:1 NAT) advertised beside each host candidate.
    public_ips: Arc<Vec<IpAddr>>,
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
        Ok(Self { ip, mode, next, public_ips: Arc::default() })
    }

    /// Advertises `public_ips` (a 1:1 NAT in front of this box, forwarding the same ports)
    /// beside each host candidate, as server-reflexive candidates.
    pub fn advertising(mut self, public_ips: Vec<IpAddr>) -> Self {
        self.public_ips = Arc::new(public_ips);
        self
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
            Mode::Ephemeral => return Ok(self.binding(format!("{}:0", fmt_ip(ip)), None)),
            Mode::Shared(mux) => return Ok(self.binding(format!("{}:0", fmt_ip(ip)), Some(mux.route()))),
            Mode::Range(a, b) => (*a, *b),
        };
        let span = u32::from(b) - u32::from(a) + 1;
        for _ in 0..span {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let port = (u32::from(a) + (n.wrapping_sub(u32::from(a)) % span)) as u16;
            // Free right now? (The peer connection binds it a moment later.)
            if UdpSocket::bind((ip, port)).is_ok() {
                return Ok(self.binding(format!("{}:{port}", fmt_ip(ip)), None));
            }
        }
        Err(SignalError::Unavailable(format!("no free UDP port in webrtc_udp_ports {a}-{b}")))
    }

    fn binding(&self, addr: String, route: Option<Arc<Route>>) -> Binding {
        Binding { addr, route, public_ips: self.public_ips.clone() }
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
    /// Public addresses advertised beside each host candidate.
    public_ips: Arc<Vec<IpAddr>>,
}

impl Binding {
    /// This side's description (`sdp`, an answer or an sdpfrag) as the peer must see it: on
    /// the shared port, candidates name the shared port instead of the connection's own, and
    /// binding requests for its ufrag are routed to this connection from now on; each host
    /// candidate is followed by its public twins (`public_ips`).
    pub fn announce(&self, sdp: &str) -> String {
        if let Some(route) = &self.route
            && let Some(ufrag) = sdp_attr(sdp, "ice-ufrag")
        {
            route.claim_ufrag(ufrag);
        }
        let shared = self
            .route
            .as_ref()
            .map(|r| Shared { udp: r.shared_addr().port(), tcp: r.shared_tcp_addr().map_or(0, |a| a.port()) });
        let mut out = String::with_capacity(sdp.len());
        let mut twins: Vec<String> = Vec::new();
        for line in sdp.lines().map(str::trim_end) {
            match line.strip_prefix("a=candidate:") {
                Some(c) => {
                    let c = match (&self.route, &shared) {
                        (Some(route), Some(shared)) => {
                            rewrite_candidate(c, shared, |p| route.is_local_port(p), |p| route.is_local_tcp_port(p))
                        }
                        _ => c.to_owned(),
                    };
                    out.push_str("a=candidate:");
                    out.push_str(&c);
                    out.push_str("\r\n");
                    for twin in public_twins(&c, &self.public_ips) {
                        if !twins.contains(&twin) {
                            out.push_str(&format!("a=candidate:{twin}\r\n"));
                            twins.push(twin);
                        }
                    }
                }
                None => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            }
        }
        out
    }
}

/// Server-reflexive twins of a host candidate (after `a=candidate:`), one per public address of
/// its family: the same port, which a 1:1 NAT forwards to the host address.
fn public_twins(c: &str, public_ips: &[IpAddr]) -> Vec<String> {
    let f: Vec<&str> = c.split(' ').collect();
    if f.len() < 8 || f[6] != "typ" || f[7] != "host" || f[5] == "9" {
        return Vec::new();
    }
    let Ok(host) = f[4].parse::<IpAddr>() else { return Vec::new() };
    let (component, transport, port) = (f[1], f[2], f[5]);
    let tcp = if transport.eq_ignore_ascii_case("tcp") { " tcptype passive" } else { "" };
    // RFC 8445 §5.1.2.1: type preference 100 (server reflexive), local preference 65535.
    let component_n: u32 = component.parse().unwrap_or(1).clamp(1, 256);
    let priority = (100u32 << 24) + (65535 << 8) + (256 - component_n);
    public_ips
        .iter()
        .filter(|ip| ip.is_ipv4() == host.is_ipv4() && **ip != host)
        .enumerate()
        .map(|(i, ip)| {
            format!(
                "{}{i} {component} {transport} {priority} {ip} {port} typ srflx raddr {host} rport {port}{tcp}",
                if tcp.is_empty() { "7900" } else { "7901" }
            )
        })
        .collect()
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
    use super::{Shared, public_twins, rewrite_candidate};

    #[test]
    fn public_ips_are_advertised_beside_host_candidates_on_the_same_port() {
        let ips = ["203.0.113.7".parse().unwrap(), "2001:db8::1".parse().unwrap()];
        assert_eq!(
            public_twins("1 1 udp 2130706431 192.168.1.20 8189 typ host", &ips),
            ["79000 1 udp 1694498815 203.0.113.7 8189 typ srflx raddr 192.168.1.20 rport 8189"]
        );
        assert_eq!(
            public_twins("2 1 tcp 2124414975 192.168.1.20 8190 typ host tcptype passive", &ips),
            ["79010 1 tcp 1694498815 203.0.113.7 8190 typ srflx raddr 192.168.1.20 rport 8190 tcptype passive"]
        );
        // Active TCP (port 9), relays and reflexive candidates get no twin.
        assert!(public_twins("3 1 tcp 2128609279 192.168.1.20 9 typ host tcptype active", &ips).is_empty());
        assert!(public_twins("4 1 udp 16777215 198.51.100.1 50000 typ relay raddr 0.0.0.0 rport 0", &ips).is_empty());
    }

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
