//! One WHIP publisher: a receive-only webrtc-rs peer connection whose H.264 becomes access
//! units on disk (through the camera's [`Recorder`]) and whose Opus goes live to viewers.
//!
//! Lifecycle: [`PublisherSession::negotiate`] (offer → answer) → [`PublisherSession::run`]
//! waits for `Connected` (at most [`CONNECT_TIMEOUT`]), then depacketizes until DELETE, ICE
//! failure, or [`SILENCE_TIMEOUT`] without video. Keyframes are asked for with a PLI when
//! the stream starts or loses packets (then every [`PLI_RETRY`] until one arrives), and when
//! a viewer asks (a join with an empty GOP cache, or a viewer's own PLI).

use super::clock::RtpClock;
use super::depacketize::{AccessUnit, Depacketizer};
use super::recorder::{Command, Recorder, SendError};
use crate::capture::feed::{AudioPacket, CameraFeed};
use crate::webrtc::ice::IceState;
use crate::webrtc::net::Binding;
use crate::webrtc::peer::{NegotiateError, NetConfig, build_peer_connection};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use signaling::IceFragment;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    RTCSessionDescription, Registry, register_default_interceptors,
};

/// A publisher that has not connected by then is dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// No video packet for this long: the publisher is gone.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(5);
/// While waiting for a keyframe, a PLI is repeated this often.
pub const PLI_RETRY: Duration = Duration::from_secs(2);
/// Keyframe requests from viewers are answered at most this often.
const PLI_MIN_GAP: Duration = Duration::from_millis(300);
const TICK: Duration = Duration::from_millis(20);
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// H.264 `profile-level-id`s accepted from publishers (webrtc-rs matches the profile and
/// constraint bytes); the level is the receiver's, any stream level is taken.
const H264_PROFILES: &[&str] = &["42e01f", "42001f", "42c01f", "4d001f", "4d401f", "64001f", "640c1f"];

#[derive(Clone)]
struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    /// Counts completed ICE gatherings (one per offer/answer, so an ICE restart can wait).
    gathered: watch::Sender<u32>,
    tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
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

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tracks.send(track);
    }
}

/// The codecs a publisher may send: H.264 (every profile vigil records, both packetization
/// modes) and Opus.
pub(crate) fn media_engine() -> Result<MediaEngine, NegotiateError> {
    let stack = |e: webrtc::error::Error| NegotiateError::Stack(e.to_string());
    let mut me = MediaEngine::default();
    let mut pt = 96u8;
    for mode in [1, 0] {
        for plid in H264_PROFILES {
            let codec = RTCRtpCodec {
                mime_type: "video/H264".to_owned(),
                clock_rate: 90_000,
                channels: 0,
                sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={plid}"),
                rtcp_feedback: vec![],
            };
            me.register_codec(RTCRtpCodecParameters { rtp_codec: codec, payload_type: pt }, RtpCodecKind::Video)
                .map_err(stack)?;
            pt += 1;
        }
    }
    let opus = RTCRtpCodec {
        mime_type: "audio/opus".to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    };
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus, payload_type: 111 }, RtpCodecKind::Audio)
        .map_err(stack)?;
    Ok(me)
}

/// A negotiated publisher, not yet receiving.
pub struct PublisherSession {
    /// The peer connection.
    pub pc: Arc<dyn PeerConnection>,
    /// The answer SDP (with candidates).
    pub answer: String,
    /// The remote ICE credentials in force; ICE restarts.
    ice: IceState,
    stop: tokio::sync::Notify,
    state: watch::Receiver<RTCPeerConnectionState>,
    tracks: tokio::sync::Mutex<mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>>,
}

/// What a running publisher writes into.
pub struct Sink {
    /// The camera name (logs, metrics).
    pub camera: String,
    /// The camera's segment writer.
    pub recorder: Recorder,
    /// Keyframe requests in, audio out.
    pub feed: Arc<CameraFeed>,
    /// The capture time of the camera's last AU: a new publisher's times start above it,
    /// so segment names keep increasing.
    pub last_us: Arc<AtomicI64>,
}

impl PublisherSession {
    /// Negotiates a receive-only peer connection for `offer` reaching the network through
    /// `binding`.
    pub async fn negotiate(offer: &str, binding: Binding, net: &NetConfig) -> Result<Self, NegotiateError> {
        let stack = |e: webrtc::error::Error| NegotiateError::Stack(e.to_string());
        let mut me = media_engine()?;
        let registry =
            crate::webrtc::rtcp_tap::with_tap(register_default_interceptors(Registry::new(), &mut me).map_err(stack)?);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, mut gathered) = watch::channel(0u32);
        let (tracks_tx, tracks) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler { state: state_tx, gathered: gathered_tx, tracks: tracks_tx });
        let pc = build_peer_connection(me, registry, handler, &binding, net).await.map_err(stack)?;
        let answer = async {
            let desc =
                RTCSessionDescription::offer(offer.to_owned()).map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
            pc.set_remote_description(desc).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
            let answer = pc.create_answer(None).await.map_err(|e| NegotiateError::BadOffer(e.to_string()))?;
            pc.set_local_description(answer).await.map_err(stack)?;
            let _ = tokio::time::timeout(GATHER_TIMEOUT, gathered.wait_for(|g| *g > 0)).await;
            let sdp =
                pc.local_description().await.ok_or_else(|| NegotiateError::Stack("no local description".into()))?.sdp;
            let sdp = binding.announce(&sdp);
            if !answer_receives_h264(&sdp) {
                return Err(NegotiateError::NoCodec("the offer's video has no H.264 this server takes".into()));
            }
            Ok(sdp)
        }
        .await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        tracing::debug!(%offer, %answer, "publisher negotiated");
        Ok(Self {
            pc,
            answer,
            ice: IceState::new(offer, gathered, binding),
            stop: tokio::sync::Notify::new(),
            state,
            tracks: tokio::sync::Mutex::new(tracks),
        })
    }

    /// Ends [`PublisherSession::run`] (which then hands over what it holds and returns).
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Whether `frag` is an ICE restart (new remote credentials) rather than trickle.
    pub fn is_ice_restart(&self, frag: &IceFragment) -> bool {
        self.ice.is_restart(frag)
    }

    /// Adds a trickled remote candidate.
    pub async fn add_candidate(&self, mid: Option<String>, candidate: String) -> Result<(), String> {
        self.ice.add_candidate(&self.pc, mid, candidate).await
    }

    /// An ICE restart (RFC 9725 §4.4.2): the publisher's new credentials and candidates in,
    /// this side's new credentials and candidates out (as an sdpfrag). Media keeps flowing
    /// into the same camera; only the transport is re-established.
    pub async fn restart_ice(&self, frag: &IceFragment) -> Result<String, NegotiateError> {
        self.ice.restart(&self.pc, frag).await
    }

    /// Receives until the publisher is gone; returns why it ended.
    pub async fn run(&self, sink: &Sink) -> &'static str {
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
        tracing::info!(camera = %sink.camera, "publisher connected");
        let (events_tx, mut events) = mpsc::channel::<(RtpCodecKind, u32, TrackRemoteEvent)>(1024);
        let mut tracks = self.tracks.lock().await;
        let mut readers = Vec::new();
        let mut rx = Receive::new(sink);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            tokio::select! {
                Some(track) = tracks.recv() => {
                    if let Some(meta) = rx.add_track(&track).await {
                        readers.push(tokio::spawn(forward(track, meta, events_tx.clone())));
                    }
                }
                Some((kind, ssrc, ev)) = events.recv() => {
                    if let Some(why) = rx.on_event(kind, ssrc, ev) {
                        break why;
                    }
                }
                _ = tick.tick() => {
                    if let Some(why) = rx.on_tick() {
                        break why;
                    }
                }
                _ = sink.feed.keyframe_requested() => rx.viewer_wants_keyframe(),
                _ = ended(&mut state) => break "ICE failed or peer closed",
                _ = self.stop.notified() => break "the publisher sent DELETE",
            }
            rx.send_pli_if_due().await;
        };
        for r in readers {
            r.abort();
        }
        rx.flush();
        let st = rx.depack.stats();
        tracing::info!(
            camera = %sink.camera,
            frames = rx.frames,
            lost_packets = st.lost_packets,
            dropped_aus = st.dropped_aus,
            synced_to_sender = rx.clock.synced_to_sender(),
            "publisher stream ended"
        );
        why
    }
}

/// Resolves when the connection has failed or closed.
async fn ended(state: &mut watch::Receiver<RTCPeerConnectionState>) {
    let _ = state.wait_for(|s| matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)).await;
}

/// The receiving state of one publisher: depacketizer, clock, keyframe requests.
struct Receive<'a> {
    sink: &'a Sink,
    video: Option<(Arc<dyn TrackRemote>, u32)>,
    depack: Depacketizer,
    clock: RtpClock,
    aus: Vec<AccessUnit>,
    last_video: Instant,
    last_pli: Option<Instant>,
    pli_due: bool,
    wanted: bool,
    /// The writer queue overflowed: skip to the next keyframe.
    writer_skip: bool,
    frames: u64,
    lost: metrics::Counter,
}

impl<'a> Receive<'a> {
    fn new(sink: &'a Sink) -> Self {
        Self {
            sink,
            video: None,
            depack: Depacketizer::new(),
            clock: RtpClock::new(90_000, sink.last_us.load(Ordering::Relaxed)),
            aus: Vec::new(),
            last_video: Instant::now(),
            last_pli: None,
            pli_due: false,
            wanted: false,
            writer_skip: false,
            frames: 0,
            lost: metrics::counter!("vigil_whip_lost_packets_total", "camera" => sink.camera.clone()),
        }
    }

    /// Registers a track; returns what its reader tags events with, or None to ignore it.
    async fn add_track(&mut self, track: &Arc<dyn TrackRemote>) -> Option<(RtpCodecKind, u32)> {
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
        // The codec says what the track is (its `kind()` may still be unset at this point).
        let mime = track.codec(ssrc).await.map(|c| c.mime_type.to_ascii_lowercase()).unwrap_or_default();
        tracing::debug!(camera = %self.sink.camera, %mime, ssrc, "publisher track");
        match mime.as_str() {
            "video/h264" if self.video.is_none() => {
                self.video = Some((track.clone(), ssrc));
                self.pli_due = true;
                Some((RtpCodecKind::Video, ssrc))
            }
            "audio/opus" => Some((RtpCodecKind::Audio, ssrc)),
            _ => None,
        }
    }

    fn on_event(&mut self, kind: RtpCodecKind, ssrc: u32, ev: TrackRemoteEvent) -> Option<&'static str> {
        match (kind, ev) {
            (RtpCodecKind::Video, TrackRemoteEvent::OnRtpPacket(p)) => {
                let now = Instant::now();
                self.last_video = now;
                let before = self.depack.stats().lost_packets;
                self.depack.push(now, p, &mut self.aus);
                self.lost.increment(self.depack.stats().lost_packets - before);
                self.write_aus();
            }
            (RtpCodecKind::Video, TrackRemoteEvent::OnRtcpPacket(packets)) => {
                for p in packets {
                    if let Some(sr) = p.as_any().downcast_ref::<SenderReport>()
                        && sr.ssrc == ssrc
                    {
                        self.clock.sender_report(sr.ntp_time, sr.rtp_time, now_us());
                    }
                }
            }
            (RtpCodecKind::Audio, TrackRemoteEvent::OnRtpPacket(p)) => {
                self.sink.feed.publish_audio(AudioPacket {
                    payload: p.payload,
                    rtp_ts: p.header.timestamp,
                    marker: p.header.marker,
                });
            }
            (RtpCodecKind::Video, TrackRemoteEvent::OnEnded) => return Some("publisher ended its video track"),
            _ => {}
        }
        None
    }

    fn on_tick(&mut self) -> Option<&'static str> {
        self.depack.tick(Instant::now(), &mut self.aus);
        self.write_aus();
        if self.last_video.elapsed() >= SILENCE_TIMEOUT {
            return Some("no video from the publisher for 5 s");
        }
        if self.depack.wants_keyframe() && self.last_pli.is_none_or(|t| t.elapsed() >= PLI_RETRY) {
            self.pli_due = true;
        }
        None
    }

    fn viewer_wants_keyframe(&mut self) {
        if self.last_pli.is_none_or(|t| t.elapsed() >= PLI_MIN_GAP) {
            self.pli_due = true;
        }
    }

    fn write_aus(&mut self) {
        let wants = self.depack.wants_keyframe();
        if wants && !self.wanted {
            // Loss just happened: ask at once rather than at the next retry.
            self.pli_due = true;
        }
        self.wanted = wants;
        for au in std::mem::take(&mut self.aus) {
            if self.writer_skip && !au.keyframe {
                continue;
            }
            self.writer_skip = false;
            let capture_us = self.clock.capture_us(au.rtp_ts, now_us());
            match self.sink.recorder.send(Command::Au { data: au.data, capture_us }) {
                Ok(()) => {
                    self.frames += 1;
                    self.sink.last_us.store(capture_us, Ordering::Relaxed);
                }
                Err(SendError::Full) => {
                    tracing::warn!(camera = %self.sink.camera, "segment writer behind; skipping to the next keyframe");
                    self.writer_skip = true;
                    self.pli_due = true;
                }
                Err(SendError::Stopped) => {
                    tracing::error!(camera = %self.sink.camera, "segment writer stopped");
                }
            }
        }
    }

    async fn send_pli_if_due(&mut self) {
        if !self.pli_due {
            return;
        }
        let Some((track, ssrc)) = &self.video else { return };
        self.pli_due = false;
        self.last_pli = Some(Instant::now());
        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc: *ssrc };
        if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
            tracing::debug!(error = %e, "sending PLI");
        }
    }

    /// Hands over what the reorder buffer still holds.
    fn flush(&mut self) {
        self.depack.tick(Instant::now() + Duration::from_secs(1), &mut self.aus);
        self.write_aus();
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Whether an answer SDP accepts some H.264 video (a rejected m-line has port 0).
pub(crate) fn answer_receives_h264(sdp: &str) -> bool {
    let mut in_video = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_video = m.starts_with("video ") && !m.starts_with("video 0 ");
        } else if in_video && line.starts_with("a=rtpmap:") && line.to_ascii_uppercase().contains(" H264/") {
            return true;
        }
    }
    false
}

async fn forward(
    track: Arc<dyn TrackRemote>,
    (kind, ssrc): (RtpCodecKind, u32),
    tx: mpsc::Sender<(RtpCodecKind, u32, TrackRemoteEvent)>,
) {
    while let Some(ev) = track.poll().await {
        let end = matches!(ev, TrackRemoteEvent::OnEnded);
        if tx.send((kind, ssrc, ev)).await.is_err() || end {
            return;
        }
    }
}
