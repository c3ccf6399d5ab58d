//! A stand-in WHEP server to exercise `vigil-bench` without vigil: synthetic H.264 access
//! units (AUD, vigil capture-time SEI, fake SPS/PPS + IDR every `--gop`, otherwise one P slice,
//! not decodable) at `--fps`, one webrtc-rs peer connection per viewer, and the subset of the
//! vigil API the bench reads (`/api/cameras`, `/metrics`, `POST`/`DELETE /whep/...`).
//!
//! `cargo run --release -p vigil-bench --example fake_whep -- --listen 127.0.0.1:18081`

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "../src/h264.rs"]
#[allow(dead_code)]
mod h264;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use clap::Parser;
use rtc::interceptor::Registry;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MediaEngine};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
    SettingEngineBuilder,
};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value = "127.0.0.1:18081")]
    listen: String,
    #[arg(long, default_value_t = 30)]
    fps: u32,
    #[arg(long, default_value_t = 2000)]
    kbps: u32,
    #[arg(long, default_value_t = 30)]
    gop: u32,
    /// ICE check interval in ms (webrtc-rs default 200).
    #[arg(long)]
    ice_check_ms: Option<u64>,
}

#[derive(Clone)]
struct Au {
    data: Bytes,
    key: bool,
}

struct App {
    aus: broadcast::Sender<Au>,
    frames_sent: AtomicU64,
    sessions: Mutex<HashMap<u64, Arc<dyn PeerConnection>>>,
    next: AtomicU64,
    fps: u32,
    kbps: u32,
    ice_check_ms: Option<u64>,
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

fn make_au(n: u64, gop: u32, frame_bytes: usize) -> Au {
    let key = n.is_multiple_of(u64::from(gop));
    let mut v = Vec::with_capacity(frame_bytes * 4 + 64);
    let sc = [0u8, 0, 0, 1];
    v.extend_from_slice(&sc);
    v.extend_from_slice(&[0x09, 0xf0]);
    v.extend_from_slice(&sc);
    v.extend_from_slice(&h264::build_sei(now_us()));
    let size = if key {
        v.extend_from_slice(&sc);
        v.extend_from_slice(&[0x67, 0x42, 0xe0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8]);
        v.extend_from_slice(&sc);
        v.extend_from_slice(&[0x68, 0xce, 0x3c, 0x80]);
        v.extend_from_slice(&sc);
        v.push(0x65);
        frame_bytes * 4
    } else {
        v.extend_from_slice(&sc);
        v.push(0x41);
        frame_bytes * 9 / 10
    };
    v.extend(std::iter::repeat_n(0x5au8, size));
    Au { data: Bytes::from(v), key }
}

struct Handler {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, s: RTCIceGatheringState) {
        if s == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }
    async fn on_connection_state_change(&self, s: RTCPeerConnectionState) {
        let _ = self.state.send(s);
    }
}

fn codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".to_owned(),
        rtcp_feedback: vec![],
    }
}

async fn whep(app: Arc<App>, offer: String) -> Result<(u64, String)> {
    let mut me = MediaEngine::default();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: codec(), payload_type: 102 }, RtpCodecKind::Video)?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?;
    let (gtx, mut grx) = watch::channel(false);
    let (stx, mut srx) = watch::channel(RTCPeerConnectionState::New);
    let mut se = SettingEngineBuilder::new();
    if let Some(ms) = app.ice_check_ms {
        se = se.with_ice_connection_attempts(Some(Duration::from_millis(ms)), None);
    }
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(se.build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { gathered: gtx, state: stx }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let id = app.next.fetch_add(1, Ordering::Relaxed);
    let ssrc = (id as u32).wrapping_mul(2_654_435_761) ^ (now_us() as u32) | 1;
    let track = Arc::new(TrackLocalStaticSample::new(
        Instant::now(),
        MediaStreamTrack::new(
            "vigil".into(),
            "video".into(),
            "video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec: codec(),
                ..Default::default()
            }],
        ),
    )?);
    let sender = pc.add_track(track.clone() as Arc<dyn TrackLocal>).await?;
    pc.set_remote_description(RTCSessionDescription::offer(offer)?).await?;
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    grx.wait_for(|g| *g).await?;
    let sdp = pc.local_description().await.ok_or_else(|| anyhow!("no local sdp"))?.sdp;
    app.sessions.lock().unwrap().insert(id, pc.clone());

    let app2 = app.clone();
    tokio::spawn(async move {
        if srx.wait_for(|s| *s == RTCPeerConnectionState::Connected).await.is_err() {
            return;
        }
        let pt = match sender.get_parameters().await {
            Ok(p) => p.rtp_parameters.codecs.first().map(|c| c.payload_type).unwrap_or(102),
            Err(_) => return,
        };
        let ssrc = track.ssrcs().await.first().copied().unwrap_or(ssrc);
        let mut rx = app2.aus.subscribe();
        let mut started = false;
        let dur = Duration::from_secs(1) / app2.fps;
        loop {
            let au = match rx.recv().await {
                Ok(au) => au,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    started = false;
                    continue;
                }
                Err(_) => return,
            };
            if !started && !au.key {
                continue;
            }
            started = true;
            let s = Sample { data: au.data, duration: dur, ..Sample::new(Instant::now()) };
            if track.sample_writer(ssrc, pt).write_sample(&s).await.is_err() {
                return;
            }
            app2.frames_sent.fetch_add(1, Ordering::Relaxed);
            if matches!(*srx.borrow(), RTCPeerConnectionState::Closed | RTCPeerConnectionState::Failed) {
                return;
            }
        }
    });
    Ok((id, sdp))
}

async fn respond(w: &mut TcpStream, code: u16, ctype: &str, extra: &str, body: &str) -> Result<()> {
    let head = format!("HTTP/1.1 {code} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{extra}\r\n", body.len());
    w.write_all(head.as_bytes()).await?;
    w.write_all(body.as_bytes()).await?;
    Ok(())
}

async fn conn(app: Arc<App>, stream: TcpStream) -> Result<()> {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut it = line.split_whitespace();
        let (method, path) = (it.next().unwrap_or("").to_owned(), it.next().unwrap_or("").to_owned());
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        let body = String::from_utf8_lossy(&body).into_owned();
        let w = r.get_mut();
        match (method.as_str(), path.as_str()) {
            ("GET", "/api/cameras") => {
                let n = app.sessions.lock().unwrap().len();
                let j = format!(
                    "[{{\"name\":\"test\",\"state\":\"running\",\"fps\":{}.0,\"bitrate_kbps\":{}.0,\"viewers\":{n}}}]",
                    app.fps, app.kbps
                );
                respond(w, 200, "application/json", "", &j).await?;
            }
            ("GET", "/metrics") => {
                let t = format!(
                    "# TYPE vigil_frames_sent_total counter\nvigil_frames_sent_total{{camera=\"test\"}} {}\n",
                    app.frames_sent.load(Ordering::Relaxed)
                );
                respond(w, 200, "text/plain", "", &t).await?;
            }
            ("POST", "/whep/test") => match whep(app.clone(), body).await {
                Ok((id, sdp)) => {
                    let extra = format!("location: /whep/test/{id}\r\n");
                    respond(w, 201, "application/sdp", &extra, &sdp).await?;
                }
                Err(e) => respond(w, 400, "text/plain", "", &format!("{e}\n")).await?,
            },
            ("DELETE", p) if p.starts_with("/whep/test/") => {
                let id: u64 = p.rsplit('/').next().and_then(|x| x.parse().ok()).unwrap_or(u64::MAX);
                let pc = app.sessions.lock().unwrap().remove(&id);
                match pc {
                    Some(pc) => {
                        let _ = pc.close().await;
                        respond(w, 200, "text/plain", "", "").await?;
                    }
                    None => respond(w, 404, "text/plain", "", "no such session\n").await?,
                }
            }
            _ => respond(w, 404, "text/plain", "", "not found\n").await?,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (tx, _) = broadcast::channel(64);
    let app = Arc::new(App {
        aus: tx,
        frames_sent: AtomicU64::new(0),
        sessions: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        fps: cli.fps,
        kbps: cli.kbps,
        ice_check_ms: cli.ice_check_ms,
    });
    let frame_bytes = (cli.kbps as usize * 1000 / 8 / cli.fps as usize).max(100);
    let a = app.clone();
    let gop = cli.gop;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / a.fps);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        for n in 0u64.. {
            tick.tick().await;
            let _ = a.aus.send(make_au(n, gop, frame_bytes));
        }
    });
    let l = TcpListener::bind(&cli.listen).await?;
    println!("fake WHEP server on http://{}", cli.listen);
    loop {
        let (s, _) = l.accept().await?;
        tokio::spawn(conn(app.clone(), s));
    }
}
