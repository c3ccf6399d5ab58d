//! One WHEP viewer: a webrtc-rs peer connection with one H.264 track fed from the hub.
//!
//! A WHIP camera's viewers also get the publisher's Opus audio when they offer audio, and a
//! viewer's PLI/FIR is passed up as a keyframe request.
//!
//! Lifecycle: `ViewerSession::negotiate` (offer → answer, gathering done) → the session task
//! waits for `Connected` (at most [`CONNECT_TIMEOUT`]) → streams the GOP cache, then live
//! frames (skipping to the next keyframe when it lags the hub or when its connection's send
//! queue holds a frame older than [`MAX_QUEUE_DELAY`]) → ends on DELETE, ICE failure/close,
//! or a hub that stops. Ending closes the peer
//! connection and drops the viewer count.

use super::backlog::{Backlog, MAX_QUEUE_DELAY, Progress};
use super::hub::{Frame, Hub};
use crate::capture::feed::CameraFeed;
use crate::webrtc::net::Binding;
use crate::webrtc::peer::{NegotiateError, NetConfig, build_peer_connection};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, register_default_interceptors,
};

/// A viewer that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the answer waits for ICE gathering (host candidates are immediate).
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    /// Counts completed gatherings (one per answer, so an ICE restart can wait for its own).
    gathered: watch::Sender<u32>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.send_modify(|n| *n += 1);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }
}

/// The H.264 variants offered for a stream of `profile_idc` (SPS byte 1). webrtc-rs
/// matches `profile-level-id` on profile and constraint bytes only; a decoder for a higher
/// profile decodes a constrained-baseline stream, never the other way round.
pub fn h264_variants(profile_idc: u8) -> &'static [&'static str] {
    match profile_idc {
        77 => &["4d001f", "64001f"],
        100 => &["64001f"],
        // Baseline / constrained baseline, and unknown (assume what vigil encodes).
        _ => &["42e01f", "42001f", "4d001f", "64001f"],
    }
}

/// The codecs a viewer's peer connection offers for a stream of `profile_idc` (and Opus,
/// relayed from a WHIP publisher, when `audio`).
pub(crate) fn media_engine(profile_idc: u8, audio: bool) -> Result<MediaEngine, NegotiateError> {
    let mut me = MediaEngine::default();
    if audio {
        me.register_codec(RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: 111 }, RtpCodecKind::Audio)
            .map_err(|e| NegotiateError::Stack(e.to_string()))?;
    }
    for (i, plid) in h264_variants(profile_idc).iter().enumerate() {
        me.register_codec(
            RTCRtpCodecParameters { rtp_codec: h264_codec(plid), payload_type: 102 + 2 * i as u8 },
            RtpCodecKind::Video,
        )
        .map_err(|e| NegotiateError::Stack(e.to_string()))?;
    }
    Ok(me)
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn h264_codec(plid: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/H264".to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={plid}"),
        rtcp_feedback: vec![],
    }
}

/// The one H.264 track a viewer receives, with its SSRC.
pub(crate) fn viewer_track(profile_idc: u8, ssrc: u32) -> MediaStreamTrack {
    MediaStreamTrack::new(
        "vigil".to_owned(),
        "video".to_owned(),
        "video".to_owned(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: h264_codec(h264_variants(profile_idc)[0]),
            ..Default::default()
        }],
    )
}

/// A negotiated viewer, not yet streaming.
pub struct ViewerSession {
    /// The peer connection.
    pub pc: Arc<dyn PeerConnection>,
    /// The answer SDP (with candidates).
    pub answer: String,
    /// The remote ICE credentials in force; ICE restarts.
    ice: crate::webrtc::ice::IceState,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
    /// The Opus track, when the camera's source carries audio and the viewer offered it.
    audio: Option<AudioOut>,
    state: watch::Receiver<RTCPeerConnectionState>,
    /// The video packets that have left webrtc-rs's send queue (set by the tap).
    progress: Arc<Progress>,
}

/// What a viewer's peer connection sends: chosen before it is built (the tap needs the SSRC).
struct Media {
    profile_idc: u8,
    ssrc: u32,
    progress: Arc<Progress>,
    audio: bool,
}

struct AudioOut {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: u8,
}

impl ViewerSession {
    /// Negotiates a peer connection for `offer` reaching the network through `binding`.
    /// With `audio`, an Opus track is added when the offer has an audio section.
    pub async fn negotiate(
        offer: &str,
        profile_idc: u8,
        audio: bool,
        binding: Binding,
        net: &NetConfig,
    ) -> Result<Self, NegotiateError> {
        let stack = |e: webrtc::error::Error| NegotiateError::Stack(e.to_string());
        let audio = audio && offer.lines().any(|l| l.starts_with("m=audio ") && !l.starts_with("m=audio 0 "));
        let mut me = media_engine(profile_idc, audio)?;
        let ssrc = rand::random::<u32>();
        let progress = Arc::new(Progress::default());
        let registry = crate::webrtc::rtcp_tap::with_progress_tap(
            register_default_interceptors(Registry::new(), &mut me).map_err(stack)?,
            ssrc,
            progress.clone(),
        );
        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, mut gathered_rx) = watch::channel(0u32);
        let handler = Arc::new(Handler { state: state_tx, gathered: gathered_tx });
        let pc = build_peer_connection(me, registry, handler, &binding, net).await.map_err(stack)?;
        let media = Media { profile_idc, ssrc, progress, audio };
        let result = Self::answer(pc.clone(), offer, media, binding, &mut gathered_rx, state_rx).await;
        if result.is_err() {
            let _ = pc.close().await;
        }
        result
    }

    async fn answer(
        pc: Arc<dyn PeerConnection>,
        offer: &str,
        media: Media,
        binding: Binding,
        gathered: &mut watch::Receiver<u32>,
        state: watch::Receiver<RTCPeerConnectionState>,
    ) -> Result<Self, NegotiateError> {
        let stack = |e: webrtc::error::Error| NegotiateError::Stack(e.to_string());
        let Media { profile_idc, ssrc, progress, audio } = media;
        let track = Arc::new(TrackLocalStaticRTP::new(viewer_track(profile_idc, ssrc)));
        let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await.map_err(stack)?;
        let audio_out = if audio {
            let assrc = rand::random::<u32>();
            let atrack = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
                "vigil".to_owned(),
                "audio".to_owned(),
                "audio".to_owned(),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(assrc), ..Default::default() },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            )));
            let asender = pc.add_track(atrack.clone() as Arc<dyn TrackLocal>).await.map_err(stack)?;
            Some((atrack, assrc, asender))
        } else {
            None
        };
        let desc =
            RTCSessionDescription::offer(offer.to_owned()).map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        pc.set_remote_description(desc).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        let answer = pc.create_answer(None).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
        pc.set_local_description(answer).await.map_err(stack)?;
        let payload_type = sender
            .get_parameters()
            .await
            .map_err(stack)?
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.payload_type)
            .ok_or_else(|| NegotiateError::NoCodec(format!("profile_idc {profile_idc}")))?;
        let audio = match audio_out {
            None => None,
            Some((track, ssrc, sender)) => {
                let pt =
                    sender.get_parameters().await.map_err(stack)?.rtp_parameters.codecs.first().map(|c| c.payload_type);
                pt.map(|payload_type| AudioOut { track, ssrc, payload_type })
            }
        };
        let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|g| *g > 0)).await;
        let answer =
            pc.local_description().await.ok_or_else(|| NegotiateError::Stack("no local description".into()))?.sdp;
        let answer = binding.announce(&answer);
        let ice = crate::webrtc::ice::IceState::new(offer, gathered.clone(), binding);
        Ok(Self { pc, answer, ice, track, ssrc, payload_type, audio, state, progress })
    }

    /// Adds a trickled remote candidate.
    pub async fn add_candidate(&self, mid: Option<String>, candidate: String) -> Result<(), String> {
        self.ice.add_candidate(&self.pc, mid, candidate).await
    }

    /// Whether `frag` is an ICE restart (new remote credentials) rather than trickle.
    pub fn is_ice_restart(&self, frag: &signaling::IceFragment) -> bool {
        self.ice.is_restart(frag)
    }

    /// An ICE restart (RFC 9725 §4.4.2, e.g. Chromium's `restartIce()` after a network
    /// change): the viewer's new credentials and candidates in, this side's out (as an
    /// sdpfrag). The session, its track and its place in the stream go on.
    pub async fn restart_ice(&self, frag: &signaling::IceFragment) -> Result<String, NegotiateError> {
        self.ice.restart(&self.pc, frag).await
    }

    /// Streams `hub` (and the feed's audio, if negotiated) to this viewer until the connection
    /// ends; passes the viewer's keyframe requests (PLI/FIR) to the feed. Returns why it ended.
    pub async fn run(&self, hub: Arc<Hub>, feed: Arc<CameraFeed>) -> &'static str {
        let _guard = hub.viewer_guard();
        let mut state = self.state.clone();
        let connected = {
            let r = tokio::time::timeout(
                CONNECT_TIMEOUT,
                state.wait_for(|s| {
                    matches!(
                        s,
                        RTCPeerConnectionState::Connected
                            | RTCPeerConnectionState::Failed
                            | RTCPeerConnectionState::Closed
                    )
                }),
            )
            .await;
            match r {
                Err(_) => Err("not connected within 30 s"),
                Ok(Err(_)) => Err("peer connection dropped"),
                Ok(Ok(s)) if *s != RTCPeerConnectionState::Connected => Err("ICE failed before connecting"),
                Ok(Ok(_)) => Ok(()),
            }
        };
        if let Err(why) = connected {
            return why;
        }
        tokio::select! {
            r = self.stream(&hub, &feed) => r,
            r = self.relay_audio(&feed) => r,
            _ = self.keyframe_requests(&feed) => "track closed",
            _ = state.wait_for(|s| matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)) => "ICE failed or peer closed",
        }
    }

    /// PLI/FIR from the viewer (delivered by [`crate::webrtc::rtcp_tap`]) become keyframe requests.
    async fn keyframe_requests(&self, feed: &CameraFeed) {
        use webrtc::media_stream::track_local::TrackLocalEvent;
        while let Some(ev) = self.track.poll().await {
            #[allow(irrefutable_let_patterns)]
            if let TrackLocalEvent::OnRtcpPacket(packets) = ev
                && crate::webrtc::rtcp_tap::asks_for_keyframe(&packets)
            {
                feed.request_keyframe();
            }
        }
    }

    /// Forwards the publisher's Opus packets (own SSRC and sequence; the publisher's clock).
    async fn relay_audio(&self, feed: &CameraFeed) -> &'static str {
        let Some(out) = &self.audio else { return std::future::pending().await };
        let mut rx = feed.subscribe_audio();
        let mut seq: u16 = rand::random();
        loop {
            match rx.recv().await {
                Ok(p) => {
                    let pkt = rtp::Packet {
                        header: rtp::header::Header {
                            version: 2,
                            marker: p.marker,
                            payload_type: out.payload_type,
                            sequence_number: seq,
                            timestamp: p.rtp_ts,
                            ssrc: out.ssrc,
                            ..Default::default()
                        },
                        payload: p.payload,
                    };
                    seq = seq.wrapping_add(1);
                    if out.track.write_rtp(pkt).await.is_err() {
                        return "audio track closed";
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
        }
    }

    async fn stream(&self, hub: &Hub, feed: &CameraFeed) -> &'static str {
        let cam = hub.camera().to_owned();
        let sent = metrics::counter!("vigil_frames_sent_total", "camera" => cam.clone());
        let dropped = metrics::counter!("vigil_frames_dropped_total", "camera" => cam.clone());
        let behind = metrics::counter!("vigil_viewer_skips_total", "camera" => cam);
        let (gop, mut rx) = hub.subscribe();
        let mut seq: u16 = rand::random();
        let mut backlog = Backlog::new(self.progress.clone());
        let mut need_key = gop.is_empty();
        if need_key {
            // Nothing to show until the next keyframe: ask the source for one now.
            feed.request_keyframe();
        }
        for f in gop {
            if self.send(&f, &mut seq).await.is_err() {
                return "track closed";
            }
            backlog.written(seq.wrapping_sub(1), Instant::now());
            sent.increment(1);
        }
        loop {
            let f = match rx.recv().await {
                Ok(f) => f,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    // Too slow for the hub: go on from the newest frame, not the oldest held.
                    dropped.increment(n);
                    rx = rx.resubscribe();
                    if !need_key {
                        behind.increment(1);
                        need_key = true;
                        feed.request_keyframe();
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return "camera hub stopped",
            };
            // Too slow on the way out (a starved machine or a slow peer connection): what is
            // queued drains while frames are skipped, then the next keyframe starts again.
            if backlog.oldest_age(Instant::now()) > MAX_QUEUE_DELAY {
                dropped.increment(1);
                if !need_key {
                    behind.increment(1);
                    need_key = true;
                    feed.request_keyframe();
                }
                continue;
            }
            if need_key {
                if !f.keyframe {
                    dropped.increment(1);
                    continue;
                }
                need_key = false;
            }
            if self.send(&f, &mut seq).await.is_err() {
                return "track closed";
            }
            backlog.written(seq.wrapping_sub(1), Instant::now());
            sent.increment(1);
        }
    }

    async fn send(&self, f: &Frame, seq: &mut u16) -> Result<(), webrtc::error::Error> {
        let last = f.payloads.len().saturating_sub(1);
        for (i, p) in f.payloads.iter().enumerate() {
            let pkt = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    marker: i == last,
                    payload_type: self.payload_type,
                    sequence_number: *seq,
                    timestamp: f.rtp_ts,
                    ssrc: self.ssrc,
                    ..Default::default()
                },
                payload: p.clone(),
            };
            *seq = seq.wrapping_add(1);
            self.track.write_rtp(pkt).await?;
        }
        Ok(())
    }
}
