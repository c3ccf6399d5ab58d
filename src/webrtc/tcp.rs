//! ICE-TCP (RFC 6544, passive side) on one TCP port for every peer connection, the fallback
//! for networks that block UDP: a connection's first frame (RFC 4571: a 2-byte length, then
//! a STUN binding request) names the peer connection by the local ufrag of its USERNAME, and
//! the stream is handed to that connection's listener ([`super::runtime`]) with the frame to
//! be read again.
//!
//! Owns: the shared listener and the hand-over. Must not touch: the tables
//! ([`super::mux`] owns them) and ICE.

use super::mux::{UdpMux, request_ufrag};
use std::io;
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// How long a new connection has to send its first binding request.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);

/// Listens on `addr` (a fixed port). Needs a tokio runtime.
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let std = std::net::TcpListener::bind(addr)?;
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// Accepts connections until the mux is gone.
pub async fn accept_loop(listener: TcpListener, mux: Weak<UdpMux>) {
    loop {
        let accepted = listener.accept().await;
        let Some(m) = mux.upgrade() else { return };
        match accepted {
            Ok((stream, peer)) => {
                let mux = mux.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(FIRST_FRAME_TIMEOUT, hand_over(stream, peer, mux)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ICE-TCP connection refused"),
                        Err(_) => tracing::debug!(%peer, "ICE-TCP connection sent no binding request in time"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, addr = ?m.tcp_addr(), "ICE-TCP accept failed");
                drop(m);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn hand_over(mut stream: TcpStream, peer: SocketAddr, mux: Weak<UdpMux>) -> io::Result<()> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut frame = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut frame).await?;
    let ufrag = request_ufrag(&frame).ok_or_else(|| bad("first frame is not a STUN binding request"))?;
    let route = mux.upgrade().and_then(|m| m.by_ufrag(&ufrag)).ok_or_else(|| bad("unknown ufrag"))?;
    let mut prefix = len.to_vec();
    prefix.extend_from_slice(&frame);
    if route.deliver_tcp((stream, peer, prefix)) { Ok(()) } else { Err(bad("the session takes no ICE-TCP")) }
}
