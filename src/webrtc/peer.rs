//! Peer connections with vigil's network settings, for WHEP viewers (`live::session`) and
//! WHIP publishers (`ingest::publisher`) alike: the ICE and transport settings, the UDP
//! address a connection binds, and what a failed negotiation says.

use super::net::Binding;
use super::runtime::MuxRuntime;
use std::sync::Arc;
use std::time::Duration;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateType, RTCIceServer, Registry, SettingEngine, SettingEngineBuilder,
};

/// Why negotiation failed.
#[derive(Debug, thiserror::Error)]
pub enum NegotiateError {
    /// The offer was not acceptable SDP for the WebRTC stack.
    #[error("offer rejected: {0}")]
    BadOffer(String),
    /// The offer has no H.264 profile this stream can be sent as.
    #[error("offer has no H.264 video this camera can send (stream profile {0})")]
    NoCodec(String),
    /// Something in the stack failed.
    #[error("webrtc: {0}")]
    Stack(String),
}

/// Network settings shared by all viewers.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to bind a new peer connection's UDP socket(s) to.
    pub ice_servers: Vec<RTCIceServer>,
    /// Public addresses to advertise (1:1 NAT).
    pub public_ips: Vec<String>,
}

/// A peer connection with vigil's network settings: mDNS off, fast ICE checks, 1:1 NAT
/// addresses and ICE servers, reaching the network through `binding` (on the shared port,
/// its UDP goes through the binding's route). Shared by WHEP viewers and WHIP publishers.
pub async fn build_peer_connection(
    me: MediaEngine,
    registry: Registry,
    handler: Arc<dyn PeerConnectionEventHandler>,
    binding: &Binding,
    net: &NetConfig,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    let ice_servers = if net.public_ips.is_empty() { net.ice_servers.clone() } else { Vec::new() };
    let config = RTCConfigurationBuilder::new().with_ice_servers(ice_servers).build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(me)
        .with_setting_engine(setting_engine(net))
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![binding.addr.clone()]);
    if let Some(route) = &binding.route {
        if route.shared_tcp_addr().is_some() {
            builder = builder.with_tcp_addrs(vec![binding.addr.clone()]);
        }
        builder = builder.with_runtime(MuxRuntime::new(route.clone()));
    }
    Ok(Arc::new(builder.build().await?))
}

/// The ICE and transport settings of every peer connection (viewers and publishers).
pub fn setting_engine(net: &NetConfig) -> SettingEngine {
    // mDNS off: a browser's `.local` candidates are not resolved (its connectivity checks
    // still arrive as peer-reflexive candidates), and no multicast leaves the box.
    let mut se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Connectivity checks every 25 ms (webrtc-rs default: 200 ms, which set a ~205 ms
        // floor on time to first frame, measured with vigil-bench); 56 attempts keep the
        // default ~1.4 s window per candidate for slow networks.
        .with_ice_connection_attempts(Some(Duration::from_millis(25)), Some(56))
        .with_ice_timeouts(Some(Duration::from_secs(5)), Some(Duration::from_secs(10)), Some(Duration::from_secs(2)));
    if !net.public_ips.is_empty() {
        se = se.with_nat_1to1_ips(net.public_ips.clone(), RTCIceCandidateType::Srflx);
    }
    se.build()
}
