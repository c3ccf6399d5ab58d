//! The webrtc-rs runtime of a peer connection on the shared UDP port ([`super::mux`]): tokio
//! for everything, except that the UDP sockets the connection binds are stood in for by
//! its [`Route`] through the shared socket. webrtc-rs binds a socket of its own (an
//! ephemeral port) and hands it to [`Runtime::wrap_udp_socket`]; the socket is kept, unused,
//! so its port stays unique, and the connection's candidates naming it are rewritten to the
//! shared port ([`super::net::Binding::announce`]). Traffic with a TURN server is the
//! exception: an allocation belongs to one 5-tuple, so each connection reaches its TURN
//! server from its own socket (and so gets relay candidates of its own).
//!
//! The same for ICE-TCP: the connection's own listener is kept, unused, and connections
//! come from the shared listener ([`super::tcp`]).
//!
//! Owns: the socket and listener stand-ins. Must not touch: the tables ([`super::mux`] owns
//! them).

use super::mux::{Accepted, Datagram, Route};
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, TokioRuntime,
    Transmit,
};

static NEXT_SOCKET: AtomicU64 = AtomicU64::new(1);

/// Tokio, with UDP through `route`.
#[derive(Debug)]
pub struct MuxRuntime {
    route: Arc<Route>,
    /// `host:port` of the TURN servers (as webrtc-rs resolves them).
    turn_servers: Vec<String>,
    /// Their addresses, once resolved: reached from the connection's own socket.
    direct: Arc<Mutex<Vec<SocketAddr>>>,
}

impl MuxRuntime {
    /// The runtime of the connection that `route` serves; `turn_servers` (`host:port`) are
    /// reached from the connection's own socket.
    pub fn new(route: Arc<Route>, turn_servers: Vec<String>) -> Arc<Self> {
        Arc::new(Self { route, turn_servers, direct: Arc::default() })
    }
}

impl Runtime for MuxRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn(future)
    }

    fn spawn_reactor(&self, size: usize, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        TokioRuntime.spawn_reactor(size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let local = socket.local_addr()?;
        let key = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let inbox = self.route.attach(key, local.port());
        Ok(Arc::new(SharedSocket {
            route: self.route.clone(),
            key,
            local,
            inbox: Mutex::new(inbox),
            own: tokio::net::UdpSocket::from_std(socket)?,
            direct: self.direct.clone(),
        }))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        if self.route.shared_tcp_addr().is_none() {
            return TokioRuntime.wrap_tcp_listener(listener);
        }
        let local = listener.local_addr()?;
        let key = NEXT_SOCKET.fetch_add(1, Ordering::Relaxed);
        let inbox = self.route.attach_tcp(key, local.port());
        Ok(Arc::new(SharedListener {
            route: self.route.clone(),
            key,
            local,
            inbox: tokio::sync::Mutex::new(inbox),
            _own: listener,
        }))
    }

    fn connect_tcp<'a>(
        &'a self,
        remote: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        TokioRuntime.connect_tcp(remote)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        Box::pin(async move {
            let addrs = TokioRuntime.resolve_host(host).await?;
            if self.turn_servers.iter().any(|t| t == host) {
                self.direct.lock().unwrap_or_else(|p| p.into_inner()).extend(addrs.iter().copied());
            }
            Ok(addrs)
        })
    }

    fn now(&self) -> Instant {
        TokioRuntime.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        TokioRuntime.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        TokioRuntime.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        TokioRuntime.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (shared UDP port)"
    }
}

/// What the connection sees as its UDP socket: datagrams routed to it, sends from the shared
/// socket.
#[derive(Debug)]
struct SharedSocket {
    route: Arc<Route>,
    key: u64,
    /// The address of the connection's own socket (what its candidates were made from).
    local: SocketAddr,
    inbox: Mutex<mpsc::Receiver<Datagram>>,
    /// The connection's own socket: its port (in its candidates, before rewriting) is not
    /// handed to another connection, and TURN traffic goes through it.
    own: tokio::net::UdpSocket,
    /// TURN server addresses.
    direct: Arc<Mutex<Vec<SocketAddr>>>,
}

impl SharedSocket {
    fn is_direct(&self, to: SocketAddr) -> bool {
        self.direct.lock().unwrap_or_else(|p| p.into_inner()).contains(&to)
    }
}

impl AsyncUdpSocket for SharedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // GSO is not offered (max_gso_segments = 1), so `contents` is one datagram.
        if self.is_direct(transmit.destination) {
            return self.own.poll_send_to(cx, transmit.contents, transmit.destination);
        }
        self.route.poll_send(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut inbox = self.inbox.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        let max = bufs.len().min(meta.len());
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        while n < max {
            let got = if n == 0 {
                match inbox.poll_recv(cx) {
                    Poll::Ready(got) => got,
                    Poll::Pending => return self.poll_recv_own(cx, &mut bufs[0], &mut meta[0]),
                }
            } else {
                match inbox.try_recv() {
                    Ok(got) => Some(got),
                    Err(_) => break,
                }
            };
            let Some((data, from)) = got else {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "shared UDP port closed")));
            };
            let len = data.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&data[..len]);
            let mut m = RecvMeta::default();
            m.addr = from;
            m.len = len;
            m.stride = len.max(1);
            meta[n] = m;
            n += 1;
        }
        Poll::Ready(Ok(n))
    }
}

impl SharedSocket {
    /// One datagram from the connection's own socket (a TURN server's).
    fn poll_recv_own(
        &self,
        cx: &mut Context<'_>,
        buf: &mut IoSliceMut<'_>,
        meta: &mut RecvMeta,
    ) -> Poll<io::Result<usize>> {
        let mut read = tokio::io::ReadBuf::new(buf);
        match self.own.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => {
                let len = read.filled().len();
                let mut m = RecvMeta::default();
                m.addr = from;
                m.len = len;
                m.stride = len.max(1);
                *meta = m;
                Poll::Ready(Ok(1))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for SharedSocket {
    fn drop(&mut self) {
        self.route.detach(self.key);
    }
}

/// What the connection sees as its ICE-TCP listener: connections handed over by the shared
/// listener.
#[derive(Debug)]
struct SharedListener {
    route: Arc<Route>,
    key: u64,
    local: SocketAddr,
    inbox: tokio::sync::Mutex<mpsc::Receiver<Accepted>>,
    /// Kept so that its port is not handed to another connection.
    _own: std::net::TcpListener,
}

impl AsyncTcpListener for SharedListener {
    fn accept<'a>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = io::Result<(Arc<dyn AsyncTcpStream>, SocketAddr)>> + Send + 'a>> {
        Box::pin(async move {
            let Some((stream, peer, prefix)) = self.inbox.lock().await.recv().await else {
                // The route let go of this listener: nothing will ever come.
                return std::future::pending().await;
            };
            let (read, write) = stream.into_split();
            let stream = SharedStream {
                read: tokio::sync::Mutex::new((prefix, 0, read)),
                write: tokio::sync::Mutex::new(write),
                local: self.local,
                peer,
            };
            Ok((Arc::new(stream) as Arc<dyn AsyncTcpStream>, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Drop for SharedListener {
    fn drop(&mut self) {
        self.route.detach_tcp(self.key);
    }
}

/// An ICE-TCP stream that first gives back what the shared listener read from it.
#[derive(Debug)]
struct SharedStream {
    /// (bytes read ahead, how many of them were given back, the stream).
    read: tokio::sync::Mutex<(Vec<u8>, usize, tokio::net::tcp::OwnedReadHalf)>,
    write: tokio::sync::Mutex<tokio::net::tcp::OwnedWriteHalf>,
    /// The connection's own listener address (what its candidate was made from).
    local: SocketAddr,
    peer: SocketAddr,
}

impl AsyncTcpStream for SharedStream {
    fn read<'a, 'b>(&'a self, buf: &'b mut [u8]) -> Pin<Box<dyn Future<Output = io::Result<usize>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let mut guard = self.read.lock().await;
            let (ahead, given, stream) = &mut *guard;
            if *given < ahead.len() {
                let n = (ahead.len() - *given).min(buf.len());
                buf[..n].copy_from_slice(&ahead[*given..*given + n]);
                *given += n;
                return Ok(n);
            }
            stream.read(buf).await
        })
    }

    fn write_all<'a, 'b>(&'a self, buf: &'b [u8]) -> Pin<Box<dyn Future<Output = io::Result<()>> + Send + 'b>>
    where
        'a: 'b,
    {
        Box::pin(async move {
            use tokio::io::AsyncWriteExt;
            self.write.lock().await.write_all(buf).await
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer)
    }
}
