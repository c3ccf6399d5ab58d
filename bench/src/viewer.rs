//! One WHEP viewer: a webrtc-rs peer connection with a recvonly H.264 transceiver, signalled
//! with one POST, whose track task counts whole access units and their latency.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::watch;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    SettingEngineBuilder,
};

use crate::h264::FrameScan;
use crate::idxwatch::IdxTimes;
use crate::now_us;

/// State shared by every viewer.
pub struct Shared {
    /// Frames, latencies and losses are counted only while this is set (the window).
    pub measuring: AtomicBool,
    pub idx: Option<Arc<IdxTimes>>,
    pub http: reqwest::Client,
    pub whep_url: String,
    pub bind: String,
    pub setup_timeout: Duration,
    /// Offer NACK (and TWCC) like a browser does; off = RTCP reports only.
    pub nack: bool,
    /// ICE connectivity-check pacing of the viewers (webrtc-rs default 200 ms).
    pub ice_check_interval: Option<Duration>,
    /// 1/fps of the camera, µs, when known: capture-time gaps larger than 1.5 of it count as
    /// skipped frames.
    pub frame_interval_us: Option<u64>,
}

/// What one viewer saw. Counters marked "window" only move while `Shared::measuring`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Just before the POST.
    pub post_at: Option<Instant>,
    pub post_at_us: u64,
    /// POST → 201 answer received.
    pub answer_rtt: Option<Duration>,
    /// POST → last packet of the first complete access unit.
    pub first_frame: Option<Duration>,
    pub first_frame_was_key: bool,
    /// POST → last packet of the first complete keyframe.
    pub first_key: Option<Duration>,
    pub connected: bool,
    /// POST → peer connection state `connected` (ICE + DTLS done).
    pub connected_after: Option<Duration>,
    /// Peer connection went to failed/disconnected/closed while measuring.
    pub dropped: Option<String>,
    /// Whole access units received over the viewer's life.
    pub frames_total: u64,
    // ---- window ----
    pub frames: u64,
    pub keyframes: u64,
    /// Access units with a missing packet (sequence gap or no start).
    pub incomplete: u64,
    pub packets: u64,
    pub lost_packets: u64,
    pub bytes: u64,
    /// Frames without a readable capture-time SEI.
    pub no_sei: u64,
    /// Frames missing between consecutive received frames, from capture-time gaps.
    pub skipped: u64,
    /// Frames captured before this viewer's POST (the GOP replayed to a new viewer).
    pub catchup: u64,
    /// receive time - SEI capture time, µs.
    pub latency_us: Vec<i64>,
    /// (capture time, receive time) of timed frames, µs, matched against the `.idx` records
    /// seen on disk at the end of the run (`--data-dir` only).
    pub timed: Vec<(u64, u64)>,
}

pub struct Viewer {
    pub pc: Option<Arc<dyn PeerConnection>>,
    /// Absolute URL of the WHEP session resource.
    pub location: Option<String>,
    pub stats: Arc<Mutex<Stats>>,
    pub error: Option<String>,
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    first_frame: watch::Sender<bool>,
    stats: Arc<Mutex<Stats>>,
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
        if let Ok(mut s) = self.stats.lock() {
            match state {
                RTCPeerConnectionState::Connected => {
                    s.connected = true;
                    if s.connected_after.is_none() {
                        s.connected_after = s.post_at.map(|t| t.elapsed());
                    }
                }
                RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Disconnected
                | RTCPeerConnectionState::Closed
                    if self.shared.measuring.load(Ordering::Relaxed) && s.dropped.is_none() =>
                {
                    s.dropped = Some(state.to_string());
                }
                _ => {}
            }
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let stats = self.stats.clone();
        let shared = self.shared.clone();
        let first = self.first_frame.clone();
        tokio::spawn(read_track(track, stats, shared, first));
    }
}

/// Reads RTP packets, delimits access units by timestamp and marker bit, and records each
/// complete one. Only the per-frame bookkeeping takes the stats lock.
async fn read_track(
    track: Arc<dyn TrackRemote>,
    stats: Arc<Mutex<Stats>>,
    shared: Arc<Shared>,
    first_frame: watch::Sender<bool>,
) {
    let mut scan = FrameScan::default();
    let mut cur_ts: Option<u32> = None;
    let mut frame_ok = true;
    let mut last_seq: Option<u16> = None;
    // packet-level window counters, flushed into `stats` once per frame
    let (mut packets, mut lost, mut bytes) = (0u64, 0u64, 0u64);
    let mut post: Option<(Instant, u64)> = None;
    let mut last_cap: Option<u64> = None;

    while let Some(ev) = track.poll().await {
        let pkt = match ev {
            TrackRemoteEvent::OnRtpPacket(p) => p,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        let h = &pkt.header;
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let mut gap = false;
        if let Some(prev) = last_seq {
            let d = h.sequence_number.wrapping_sub(prev);
            if d == 0 || d >= 0x8000 {
                continue; // duplicate or late (reordered) packet
            }
            if d > 1 {
                tracing::debug!(from = prev, to = h.sequence_number, ts = h.timestamp, "RTP sequence gap");
                if measuring {
                    lost += u64::from(d - 1);
                }
                gap = true;
            }
        }
        last_seq = Some(h.sequence_number);
        if measuring {
            packets += 1;
            bytes += pkt.payload.len() as u64;
        }

        if cur_ts != Some(h.timestamp) {
            if cur_ts.is_some() && measuring {
                // the previous AU never saw its marker: its last packet was lost
                if let Ok(mut s) = stats.lock() {
                    s.incomplete += 1;
                }
            }
            cur_ts = Some(h.timestamp);
            scan.reset();
            // a frame must start with a whole NAL / STAP-A or the first FU-A fragment, and
            // nothing may be missing right before it
            let p = &pkt.payload;
            let mid_fu = p.len() >= 2 && p[0] & 0x1f == 28 && p[1] & 0x80 == 0;
            frame_ok = !gap && !mid_fu;
        } else if gap {
            frame_ok = false;
        }
        scan.push_payload(&pkt.payload);

        if !h.marker {
            continue;
        }
        // the access unit's last packet: it is complete now
        let now = Instant::now();
        let now_unix = now_us();
        let Ok(mut s) = stats.lock() else { break };
        if post.is_none() {
            post = s.post_at.map(|t| (t, s.post_at_us));
        }
        s.packets += packets;
        s.lost_packets += lost;
        s.bytes += bytes;
        (packets, lost, bytes) = (0, 0, 0);
        if frame_ok {
            s.frames_total += 1;
            if let Some((t0, _)) = post {
                if s.first_frame.is_none() {
                    s.first_frame = Some(now - t0);
                    s.first_frame_was_key = scan.keyframe;
                }
                if scan.keyframe && s.first_key.is_none() {
                    s.first_key = Some(now - t0);
                    let _ = first_frame.send(true);
                }
            }
            if let Some(cap) = scan.capture_us {
                if measuring
                    && let (Some(last), Some(iv)) = (last_cap, shared.frame_interval_us)
                    && cap > last + iv * 3 / 2
                {
                    tracing::debug!(last, cap, gap_ms = (cap - last) / 1000, "capture-time gap");
                    s.skipped += ((cap - last + iv / 2) / iv).saturating_sub(1);
                }
                last_cap = Some(cap);
            }
            if measuring {
                s.frames += 1;
                if scan.keyframe {
                    s.keyframes += 1;
                }
                match scan.capture_us {
                    None => s.no_sei += 1,
                    Some(cap) if post.is_some_and(|(_, p)| cap < p) => s.catchup += 1,
                    Some(cap) => {
                        s.latency_us.push(now_unix as i64 - cap as i64);
                        if shared.idx.is_some() {
                            s.timed.push((cap, now_unix));
                        }
                    }
                }
            }
        } else if measuring {
            s.incomplete += 1;
        }
        drop(s);
        cur_ts = None;
        frame_ok = true;
        scan.reset();
    }
}

fn media_engine(nack: bool) -> Result<(MediaEngine, Registry)> {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_H264.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 102,
        },
        RtpCodecKind::Video,
    )?;
    let registry = if nack {
        register_default_interceptors(Registry::new(), &mut me)?
    } else {
        configure_rtcp_reports(Registry::new())
    };
    Ok((me, registry))
}

/// Connects one viewer and waits for its first keyframe (or the setup timeout). Never fails:
/// a failure is recorded in `Viewer::error` so the session, if any, can still be deleted.
pub async fn connect(shared: Arc<Shared>) -> Viewer {
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut v = Viewer { pc: None, location: None, stats: stats.clone(), error: None };
    let timeout = shared.setup_timeout;
    if let Err(e) = tokio::time::timeout(timeout, connect_inner(&mut v, shared))
        .await
        .unwrap_or_else(|_| Err(anyhow!("no keyframe within {timeout:?}")))
    {
        let first_frame = stats.lock().ok().and_then(|s| s.first_frame);
        v.error = Some(match first_frame {
            Some(_) => format!("{e:#} (a non-key frame arrived)"),
            None => format!("{e:#}"),
        });
    }
    v
}

async fn connect_inner(v: &mut Viewer, shared: Arc<Shared>) -> Result<()> {
    let (gathered_tx, mut gathered) = watch::channel(false);
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
    let (first_tx, mut first) = watch::channel(false);
    let handler = Arc::new(Handler {
        gathered: gathered_tx,
        state: state_tx,
        first_frame: first_tx,
        stats: v.stats.clone(),
        shared: shared.clone(),
    });
    let (me, registry) = media_engine(shared.nack)?;
    let mut se = SettingEngineBuilder::new();
    if let Some(d) = shared.ice_check_interval {
        se = se.with_ice_connection_attempts(Some(d), None);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se.build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![shared.bind.clone()])
        .build()
        .await
        .context("peer connection")?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    v.pc = Some(pc.clone());
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() }),
    )
    .await?;
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    gathered.wait_for(|g| *g).await.map_err(|_| anyhow!("gathering never completed"))?;
    let sdp = pc.local_description().await.ok_or_else(|| anyhow!("no local description"))?.sdp;

    let t0 = Instant::now();
    if let Ok(mut s) = v.stats.lock() {
        s.post_at = Some(t0);
        s.post_at_us = now_us();
    }
    let resp = shared
        .http
        .post(&shared.whep_url)
        .header("content-type", "application/sdp")
        .body(sdp)
        .send()
        .await
        .context("POST")?;
    let status = resp.status();
    let location = resp.headers().get("location").and_then(|l| l.to_str().ok()).map(str::to_owned);
    let body = resp.text().await.unwrap_or_default();
    if status.as_u16() != 201 {
        bail!("POST {}: {}", status.as_u16(), body.lines().next().unwrap_or("").trim());
    }
    if let Ok(mut s) = v.stats.lock() {
        s.answer_rtt = Some(t0.elapsed());
    }
    match location {
        Some(l) => {
            let base = reqwest::Url::parse(&shared.whep_url)?;
            v.location = Some(base.join(&l)?.to_string());
        }
        None => bail!("201 without Location"),
    }
    pc.set_remote_description(RTCSessionDescription::answer(udp_candidates_only(&body))?).await.context("answer")?;

    tokio::select! {
        r = first.wait_for(|f| *f) => { r.map_err(|_| anyhow!("track ended"))?; Ok(()) }
        r = state.wait_for(|s| matches!(s, RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed)) => {
            let s = r.map(|s| s.to_string()).unwrap_or_default();
            bail!("peer connection {s} before the first keyframe")
        }
    }
}

impl Viewer {
    /// DELETEs the session and closes the peer connection. Returns the DELETE status.
    pub async fn close(&self, shared: &Shared) -> Option<u16> {
        let mut code = None;
        if let Some(loc) = &self.location {
            code = match shared.http.delete(loc).send().await {
                Ok(r) => Some(r.status().as_u16()),
                Err(_) => Some(0),
            };
        }
        if let Some(pc) = &self.pc {
            let _ = tokio::time::timeout(Duration::from_secs(5), pc.close()).await;
        }
        code
    }
}

/// `answer` without its TCP candidates. The viewers are UDP-only, and webrtc-rs (0.21) pairs a
/// UDP response from `ip:port` with a TCP candidate on the same `ip:port` (vigil's default
/// ICE-TCP port is its UDP port), fails the check and waits a check interval (~400 ms to the
/// first frame instead of ~30).
fn udp_candidates_only(answer: &str) -> String {
    answer
        .split_inclusive('\n')
        .filter(|l| {
            !(l.starts_with("a=candidate:") && l.split(' ').nth(2).is_some_and(|t| t.eq_ignore_ascii_case("tcp")))
        })
        .collect()
}
