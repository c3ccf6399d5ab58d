//! Peer connections with vigil's network settings, for WHEP viewers (`live::session`) and
//! WHIP publishers (`ingest::publisher`) alike: the ICE and transport settings, the UDP
//! address a connection binds, and what a failed negotiation says.

use super::net::Binding;
use super::runtime::MuxRuntime;
use std::sync::Arc;
use std::time::Duration;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceServer, Registry, SettingEngine, SettingEngineBuilder,
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
    /// STUN/TURN servers this side's ICE agent uses (relay candidates through TURN). Public
    /// addresses are advertised by [`super::net::Binding::announce`].
    pub ice_servers: Vec<RTCIceServer>,
}

/// A peer connection with vigil's network settings: mDNS off, fast ICE checks, ICE servers, reaching the network through `binding` (on the shared port,
/// its UDP goes through the binding's route). Shared by WHEP viewers and WHIP publishers.
pub async fn build_peer_connection(
    me: MediaEngine,
    registry: Registry,
    handler: Arc<dyn PeerConnectionEventHandler>,
    binding: &Binding,
    net: &NetConfig,
) -> Result<Arc<dyn PeerConnection>, webrtc::error::Error> {
    // Public IPs (`Binding::announce`) and ICE servers both: a 1:1 NAT address for peers that
    // reach it, TURN relay candidates for those that do not.
    let config = RTCConfigurationBuilder::new().with_ice_servers(net.ice_servers.clone()).build();
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(me)
        .with_setting_engine(setting_engine())
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![binding.addr.clone()]);
    if let Some(route) = &binding.route {
        if route.shared_tcp_addr().is_some() {
            builder = builder.with_tcp_addrs(vec![binding.addr.clone()]);
        }
        builder = builder.with_runtime(MuxRuntime::new(route.clone(), turn_servers(net)));
    }
    Ok(Arc::new(builder.build().await?))
}

/// `host:port` of the UDP TURN servers among the ICE servers (as webrtc-rs resolves them).
fn turn_servers(net: &NetConfig) -> Vec<String> {
    use rtc::ice::url::SchemeType;
    net.ice_servers
        .iter()
        .filter_map(|s| s.urls().ok())
        .flatten()
        .filter(|u| u.scheme == SchemeType::Turn && u.proto.to_string() == "udp")
        .map(|u| format!("{}:{}", u.host, u.port))
        .collect()
}

/// The ICE and transport settings of every peer connection (viewers and publishers).
pub fn setting_engine() -> SettingEngine {
    // mDNS off: a browser's `.local` candidates are not resolved (its connectivity checks
    // still arrive as peer-reflexive candidates), and no multicast leaves the box.
    let se = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        // Connectivity checks every 25 ms (webrtc-rs default: 200 ms, which set a ~205 ms
        // floor on time to first frame, measured with vigil-bench); 56 attempts keep the
        // default ~1.4 s window per candidate for slow networks.
        .with_ice_connection_attempts(Some(Duration::from_millis(25)), Some(56))
        .with_ice_timeouts(Some(Duration::from_secs(5)), Some(Duration::from_secs(10)), Some(Duration::from_secs(2)));
    // `public_ips` are advertised by `Binding::announce`: webrtc-rs 0.21 keeps
    // `with_nat_1to1_ips` but never makes candidates from it.
    se.build()
}
