//! One UDP port for every peer connection (`[server] webrtc_udp_ports = "8189"`): a shared
//! socket whose datagrams are handed to the peer connection they belong to; and one TCP port
//! (`webrtc_tcp_port`) whose connections are handed over the same way ([`super::tcp`]).
//!
//! A datagram from a remote address not yet known must be a STUN binding request; its
//! USERNAME (`<local ufrag>:<remote ufrag>`, RFC 8445 §7.2.2) names the peer connection by
//! the local ufrag of its answer ([`Route::claim_ufrag`]). After that the remote address
//! picks the peer connection (DTLS, SRTP, consent checks); a later binding request with
//! another known ufrag moves the address (an ICE restart onto the same port). Responses to
//! this side's own STUN requests (to a STUN server shared by every connection) come back
//! by transaction id. What matches nothing is dropped and counted.
//!
//! Owns: the shared sockets, the demultiplexing tables and each connection's inboxes. Must
//! not touch: ICE itself (webrtc-rs runs it per connection, over [`super::runtime`]'s sockets).

use bytes::Bytes;
use rtc::stun::attributes::ATTR_USERNAME;
use rtc::stun::message::{CLASS_REQUEST, Message, is_stun_message};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams queued per connection before new ones are dropped (the connection's driver
/// drains its inbox as fast as it reads a socket of its own).
const INBOX: usize = 1024;
/// How long a STUN transaction of this side waits for its response to be routed.
const TRANSACTION_TTL: Duration = Duration::from_secs(30);

/// One datagram for a connection: bytes and who sent them.
pub type Datagram = (Bytes, SocketAddr);

/// One ICE-TCP connection for a connection: the stream, who opened it, and what was read
/// from it to find the connection (to be read again).
pub type Accepted = (tokio::net::TcpStream, SocketAddr, Vec<u8>);

/// The shared socket and the tables that demultiplex it.
#[derive(Debug)]
pub struct UdpMux {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    /// The shared ICE-TCP listener's address, when there is one.
    tcp: Option<SocketAddr>,
    table: Mutex<Table>,
    next_route: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    by_ufrag: HashMap<String, Weak<Route>>,
    by_addr: HashMap<SocketAddr, Weak<Route>>,
    by_transaction: HashMap<[u8; 12], (Weak<Route>, Instant)>,
}

impl Table {
    fn forget_dead(&mut self) {
        self.by_ufrag.retain(|_, r| r.strong_count() > 0);
        self.by_addr.retain(|_, r| r.strong_count() > 0);
        self.by_transaction.retain(|_, (r, _)| r.strong_count() > 0);
    }
}

impl UdpMux {
    /// Binds `addr` (a fixed port) and starts reading it, and listens for ICE-TCP on `tcp`
    /// when given. Needs a tokio runtime.
    pub fn bind(addr: SocketAddr, tcp: Option<SocketAddr>) -> io::Result<Arc<Self>> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std)?);
        let local = socket.local_addr()?;
        let listener = match tcp {
            Some(tcp) => Some(super::tcp::listen(tcp)?),
            None => None,
        };
        let mux = Arc::new(Self {
            socket: socket.clone(),
            local,
            tcp: listener.as_ref().map(|l| l.local_addr()).transpose()?,
            table: Mutex::default(),
            next_route: AtomicU64::new(1),
        });
        // Present in /metrics (at 0) before the first session.
        metrics::gauge!("vigil_webrtc_shared_port_sessions").set(0.0);
        metrics::gauge!("vigil_webrtc_shared_port_addresses").set(0.0);
        metrics::counter!("vigil_webrtc_unrouted_datagrams_total").absolute(0);
        metrics::counter!("vigil_webrtc_inbox_dropped_datagrams_total").absolute(0);
        tokio::spawn(read_loop(socket, Arc::downgrade(&mux)));
        if let Some(listener) = listener {
            tokio::spawn(super::tcp::accept_loop(listener, Arc::downgrade(&mux)));
        }
        Ok(mux)
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The ICE-TCP listener's address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp
    }

    /// The connection whose answer carried `ufrag`.
    pub(super) fn by_ufrag(&self, ufrag: &str) -> Option<Arc<Route>> {
        lock(&self.table).by_ufrag.get(ufrag)?.upgrade()
    }

    /// A new route: the way in for one peer connection.
    pub fn route(self: &Arc<Self>) -> Arc<Route> {
        metrics::gauge!("vigil_webrtc_shared_port_sessions").increment(1.0);
        Arc::new(Route {
            mux: self.clone(),
            id: self.next_route.fetch_add(1, Ordering::Relaxed),
            inboxes: Mutex::default(),
            local_ports: Mutex::default(),
            tcp_inboxes: Mutex::default(),
            local_tcp_ports: Mutex::default(),
        })
    }

    fn dispatch(&self, data: &[u8], from: SocketAddr) {
        let route = self.route_for(data, from);
        match route {
            Some(route) => route.deliver(Bytes::copy_from_slice(data), from),
            None => metrics::counter!("vigil_webrtc_unrouted_datagrams_total").increment(1),
        }
    }

    fn route_for(&self, data: &[u8], from: SocketAddr) -> Option<Arc<Route>> {
        let mut table = lock(&self.table);
        if is_stun_message(data) {
            let mut msg = Message { raw: data.to_vec(), ..Default::default() };
            if msg.decode().is_ok() {
                if msg.typ.class == CLASS_REQUEST {
                    if let Some(route) = username_ufrag(&msg).and_then(|u| table.by_ufrag.get(&u)?.upgrade()) {
                        table.by_addr.insert(from, Arc::downgrade(&route));
                        metrics::gauge!("vigil_webrtc_shared_port_addresses").set(table.by_addr.len() as f64);
                        return Some(route);
                    }
                } else if let Some((route, _)) = table.by_transaction.remove(&msg.transaction_id.0) {
                    return route.upgrade();
                }
            }
        }
        table.by_addr.get(&from)?.upgrade()
    }

    /// Notes what `route` sends, so that the answers find their way back.
    fn outgoing(&self, route: &Arc<Route>, data: &[u8], to: SocketAddr) {
        let mut table = lock(&self.table);
        if is_stun_message(data) && data.len() >= 20 {
            let class_request = data[0] & 0x01 == 0 && data[1] & 0x10 == 0;
            if class_request {
                let mut id = [0u8; 12];
                id.copy_from_slice(&data[8..20]);
                let now = Instant::now();
                if table.by_transaction.len() > 4096 {
                    table.by_transaction.retain(|_, (r, at)| r.strong_count() > 0 && now - *at < TRANSACTION_TTL);
                }
                table.by_transaction.insert(id, (Arc::downgrade(route), now));
            }
        } else {
            let entry = table.by_addr.entry(to).or_default();
            if entry.strong_count() == 0 {
                *entry = Arc::downgrade(route);
            }
        }
    }
}

/// The local ufrag of `data` if it is a STUN binding request (`USERNAME` = `<local>:<remote>`).
pub(super) fn request_ufrag(data: &[u8]) -> Option<String> {
    if !is_stun_message(data) {
        return None;
    }
    let mut msg = Message { raw: data.to_vec(), ..Default::default() };
    msg.decode().ok()?;
    (msg.typ.class == CLASS_REQUEST).then(|| username_ufrag(&msg))?
}

/// The local ufrag of a binding request's USERNAME (`<local>:<remote>`).
fn username_ufrag(msg: &Message) -> Option<String> {
    let (attr, found) = msg.attributes.get(ATTR_USERNAME);
    let name = std::str::from_utf8(&attr.value).ok().filter(|_| found)?;
    name.split(':').next().filter(|u| !u.is_empty()).map(str::to_owned)
}

async fn read_loop(socket: Arc<UdpSocket>, mux: Weak<UdpMux>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let got = socket.recv_from(&mut buf).await;
        let Some(mux) = mux.upgrade() else { return };
        match got {
            Ok((n, from)) => mux.dispatch(&buf[..n], from),
            // ICMP errors for one remote surface here; the socket goes on serving the rest.
            Err(e) if transient(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, addr = %mux.local, "WebRTC UDP socket failed; no more media on it");
                return;
            }
        }
    }
}

fn transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted | WouldBlock | TimedOut)
}

/// One peer connection's way in and out of the shared socket.
#[derive(Debug)]
pub struct Route {
    mux: Arc<UdpMux>,
    id: u64,
    /// The inboxes of the connection's current sockets (an ICE restart replaces them).
    inboxes: Mutex<Vec<(u64, mpsc::Sender<Datagram>)>>,
    /// Ports of the connection's own (unused) sockets: its candidates name them and are
    /// rewritten to the shared port.
    local_ports: Mutex<Vec<u16>>,
    /// The inboxes of the connection's ICE-TCP listeners.
    tcp_inboxes: Mutex<Vec<(u64, mpsc::Sender<Accepted>)>>,
    /// Ports of the connection's own (unused) TCP listeners.
    local_tcp_ports: Mutex<Vec<u16>>,
}

impl Route {
    /// The shared socket's address.
    pub fn shared_addr(&self) -> SocketAddr {
        self.mux.local
    }

    /// The shared ICE-TCP listener's address.
    pub fn shared_tcp_addr(&self) -> Option<SocketAddr> {
        self.mux.tcp
    }

    /// Whether `port` is one of this connection's own TCP listener ports.
    pub fn is_local_tcp_port(&self, port: u16) -> bool {
        lock(&self.local_tcp_ports).contains(&port)
    }

    /// A new inbox for ICE-TCP connections, for a listener bound to `local_port`.
    pub fn attach_tcp(&self, key: u64, local_port: u16) -> mpsc::Receiver<Accepted> {
        let (tx, rx) = mpsc::channel(16);
        lock(&self.tcp_inboxes).push((key, tx));
        let mut ports = lock(&self.local_tcp_ports);
        if !ports.contains(&local_port) {
            ports.push(local_port);
        }
        rx
    }

    /// Drops the ICE-TCP inbox `key`.
    pub fn detach_tcp(&self, key: u64) {
        lock(&self.tcp_inboxes).retain(|(k, _)| *k != key);
    }

    /// Hands an ICE-TCP connection to this connection's newest listener.
    pub(super) fn deliver_tcp(&self, accepted: Accepted) -> bool {
        let inboxes = lock(&self.tcp_inboxes);
        inboxes.last().is_some_and(|(_, tx)| tx.try_send(accepted).is_ok())
    }

    /// Routes binding requests for `ufrag` (this side's ufrag in an answer) here.
    pub fn claim_ufrag(self: &Arc<Self>, ufrag: &str) {
        lock(&self.mux.table).by_ufrag.insert(ufrag.to_owned(), Arc::downgrade(self));
    }

    /// Whether `port` is one of this connection's own socket ports.
    pub fn is_local_port(&self, port: u16) -> bool {
        lock(&self.local_ports).contains(&port)
    }

    /// A new inbox, for a socket bound to `local_port`; `key` names it for [`Route::detach`].
    pub fn attach(&self, key: u64, local_port: u16) -> mpsc::Receiver<Datagram> {
        let (tx, rx) = mpsc::channel(INBOX);
        lock(&self.inboxes).push((key, tx));
        let mut ports = lock(&self.local_ports);
        if !ports.contains(&local_port) {
            ports.push(local_port);
        }
        rx
    }

    /// Drops the inbox `key` (its socket is gone).
    pub fn detach(&self, key: u64) {
        lock(&self.inboxes).retain(|(k, _)| *k != key);
    }

    fn deliver(&self, data: Bytes, from: SocketAddr) {
        let inboxes = lock(&self.inboxes);
        // The newest socket is the one in use (after an ICE restart the old ones go).
        if let Some((_, tx)) = inboxes.last()
            && tx.try_send((data, from)).is_err()
        {
            metrics::counter!("vigil_webrtc_inbox_dropped_datagrams_total").increment(1);
        }
    }

    /// Sends `data` to `to` from the shared socket.
    pub fn poll_send(
        self: &Arc<Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
        to: SocketAddr,
    ) -> std::task::Poll<io::Result<usize>> {
        self.mux.outgoing(self, data, to);
        self.mux.socket.poll_send_to(cx, data, to)
    }

    /// A process-unique id of this route (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        let mut table = lock(&self.mux.table);
        table.forget_dead();
        metrics::gauge!("vigil_webrtc_shared_port_addresses").set(table.by_addr.len() as f64);
        metrics::gauge!("vigil_webrtc_shared_port_sessions").decrement(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
