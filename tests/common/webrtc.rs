//! The WebRTC peers of the test harness, on GStreamer `webrtcbin`: [`WhepClient`] (a
//! recvonly viewer that decodes and counts frames), offers for refusal tests, caps. The WHIP
//! publisher is in `publisher.rs`.

use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;

use super::{Resp, http, resolve, wait_for};

/// `gst::init()`, once per process.
pub fn gst_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().expect("gst::init"));
}

/// The H.264 RTP caps a viewer offers, like a browser does: constrained baseline first, then
/// baseline, main and high, all packetization-mode 1, with NACK/PLI feedback.
pub fn h264_recv_caps() -> gst::Caps {
    gst_init();
    let mut caps = gst::Caps::new_empty();
    {
        let caps = caps.get_mut().unwrap();
        for (pt, profile) in [(96, "42e01f"), (97, "42001f"), (98, "4d001f"), (99, "64001f")] {
            caps.append_structure(h264_structure(pt, profile));
        }
    }
    caps
}

fn h264_structure(pt: i32, profile_level_id: &str) -> gst::Structure {
    gst::Structure::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", "H264")
        .field("payload", pt)
        .field("clock-rate", 90000i32)
        .field("packetization-mode", "1")
        .field("profile-level-id", profile_level_id)
        .field("level-asymmetry-allowed", "1")
        .field("rtcp-fb-nack", true)
        .field("rtcp-fb-nack-pli", true)
        .field("rtcp-fb-ccm-fir", true)
        .build()
}

/// Opus audio caps (for offers the server must refuse: no video at all).
pub fn opus_caps() -> gst::Caps {
    gst_init();
    gst::Caps::builder("application/x-rtp")
        .field("media", "audio")
        .field("encoding-name", "OPUS")
        .field("payload", 111i32)
        .field("clock-rate", 48000i32)
        .field("encoding-params", "2")
        .build()
}

/// VP8 video caps (for offers the server must refuse: video, but no H.264).
pub fn vp8_caps() -> gst::Caps {
    gst_init();
    gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("encoding-name", "VP8")
        .field("payload", 100i32)
        .field("clock-rate", 90000i32)
        .build()
}

/// What the client has decoded so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Decoded frames since the client started.
    pub frames: u64,
    /// Size of the last decoded frame (0 before the first).
    pub width: u32,
    pub height: u32,
}

#[derive(Default)]
struct Shared {
    stats: FrameStats,
    /// Errors and warnings from the pipeline bus and from linking the decoder.
    errors: Vec<String>,
    /// Caps of every pad webrtcbin exposed.
    pads: Vec<String>,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

/// A `webrtcbin` that receives (or, for refusal tests, merely offers) media, with everything
/// it receives decoded and counted. Transport-agnostic: [`WhepClient`] adds the HTTP part.
pub struct Receiver {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    state: SharedState,
    offer: String,
}

impl Receiver {
    /// Build a pipeline with one recvonly transceiver per entry of `transceivers`, create the
    /// offer, set it as the local description and wait for ICE gathering to complete (loopback
    /// host candidates only). The full offer (with candidates) is [`Receiver::offer`].
    pub fn new(transceivers: &[gst::Caps]) -> Result<Receiver> {
        Self::with_transport(transceivers, false)
    }

    /// [`Receiver::new`] whose ICE agent gathers TCP candidates only (a network that blocks
    /// UDP): media can only flow over ICE-TCP.
    pub fn new_tcp_only(transceivers: &[gst::Caps]) -> Result<Receiver> {
        Self::with_transport(transceivers, true)
    }

    fn with_transport(transceivers: &[gst::Caps], tcp_only: bool) -> Result<Receiver> {
        gst_init();
        let pipeline = gst::Pipeline::new();
        let webrtc = gst::ElementFactory::make("webrtcbin")
            .property_from_str("bundle-policy", "max-bundle")
            .build()
            .context("webrtcbin (gstreamer1.0-plugins-bad, gstreamer1.0-nice)")?;
        pipeline.add(&webrtc)?;

        // Loopback only: once a local address is added, libnice gathers on it alone.
        let ice = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
        let added = ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]);
        if !added {
            bail!("webrtcbin's ICE agent refused local address 127.0.0.1");
        }
        if tcp_only {
            ice.set_property("ice-udp", false);
            ice.set_property("ice-tcp", true);
        }

        let state: SharedState = Arc::default();
        {
            let bus = pipeline.bus().expect("pipeline bus");
            let state = state.clone();
            bus.set_sync_handler(move |_, msg| {
                use gst::MessageView;
                let text = match msg.view() {
                    MessageView::Error(e) => Some(format!(
                        "error from {}: {} ({:?})",
                        msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        e.error(),
                        e.debug()
                    )),
                    MessageView::Warning(w) => Some(format!(
                        "warning from {}: {} ({:?})",
                        msg.src().map(|s| s.path_string().to_string()).unwrap_or_default(),
                        w.error(),
                        w.debug()
                    )),
                    _ => None,
                };
                if let Some(t) = text {
                    state.0.lock().unwrap().errors.push(t);
                    state.1.notify_all();
                }
                gst::BusSyncReply::Drop
            });
        }

        {
            let state = state.clone();
            let pipeline_weak = pipeline.downgrade();
            webrtc.connect_pad_added(move |_, pad| {
                let Some(pipeline) = pipeline_weak.upgrade() else {
                    return;
                };
                if pad.direction() != gst::PadDirection::Src {
                    return;
                }
                let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
                let caps_str = caps.as_ref().map(|c| c.to_string()).unwrap_or_default();
                state.0.lock().unwrap().pads.push(caps_str.clone());
                let media_ok = caps
                    .as_ref()
                    .and_then(|c| c.structure(0).map(|s| s.get::<&str>("encoding-name") == Ok("H264")))
                    .unwrap_or(false);
                let res = if media_ok {
                    link_h264_decoder(&pipeline, pad, state.clone())
                } else {
                    link_fakesink(&pipeline, pad)
                };
                if let Err(e) = res {
                    state.0.lock().unwrap().errors.push(format!("linking {caps_str}: {e:#}"));
                    state.1.notify_all();
                }
            });
        }

        for caps in transceivers {
            let _t = webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, caps],
            );
        }

        pipeline.set_state(gst::State::Playing).context("pipeline to PLAYING")?;

        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        promise_ok(&promise, "create-offer")?;
        let offer = promise
            .get_reply()
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok())
            .ok_or_else(|| anyhow!("create-offer: no offer in the reply"))?;

        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
        promise_ok(&promise, "set-local-description")?;

        wait_for(Duration::from_secs(10), "ICE gathering to complete", || {
            (webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                == gst_webrtc::WebRTCICEGatheringState::Complete)
                .then_some(())
        })?;
        let local = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .ok_or_else(|| anyhow!("no local description after set-local-description"))?;
        let offer = local.sdp().as_text().context("offer SDP to text")?;
        let offer = loopback_only(&offer);
        if !offer.lines().any(|l| l.starts_with("a=candidate:")) {
            bail!("the offer has no loopback ICE candidate:\n{offer}");
        }

        Ok(Receiver { pipeline, webrtc, state, offer })
    }

    /// The offer SDP, ICE candidates included (gathering is complete: no trickle needed).
    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// Apply the answer.
    pub fn set_answer(&self, answer_sdp: &str) -> Result<()> {
        let msg = gst_sdp::SDPMessage::parse_buffer(answer_sdp.as_bytes())
            .map_err(|e| anyhow!("answer is not valid SDP ({e}):\n{answer_sdp}"))?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        let promise = gst::Promise::new();
        self.webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        promise_ok(&promise, "set-remote-description").with_context(|| format!("answer:\n{answer_sdp}"))
    }

    pub fn stats(&self) -> FrameStats {
        self.state.0.lock().unwrap().stats
    }

    /// Block until at least `n` frames in total have been decoded (since the client started).
    pub fn wait_frames(&self, n: u64, timeout: Duration) -> Result<FrameStats> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.state;
        let mut g = lock.lock().unwrap();
        loop {
            if g.stats.frames >= n {
                return Ok(g.stats);
            }
            let now = Instant::now();
            if now >= deadline {
                let diag = format!(
                    "decoded {} of {n} frames within {timeout:?} (last size {}x{}); \
                     ice-connection-state {:?}, connection-state {:?}; pads: {:?}; \
                     pipeline messages: {:#?}",
                    g.stats.frames,
                    g.stats.width,
                    g.stats.height,
                    self.webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state"),
                    self.webrtc.property::<gst_webrtc::WebRTCPeerConnectionState>("connection-state"),
                    g.pads,
                    g.errors,
                );
                bail!(diag);
            }
            g = cvar.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Pipeline errors and warnings seen so far.
    pub fn errors(&self) -> Vec<String> {
        self.state.0.lock().unwrap().errors.clone()
    }

    /// `ice-connection-state` of webrtcbin.
    pub fn ice_state(&self) -> gst_webrtc::WebRTCICEConnectionState {
        self.webrtc.property::<gst_webrtc::WebRTCICEConnectionState>("ice-connection-state")
    }

    pub fn webrtcbin(&self) -> &gst::Element {
        &self.webrtc
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Wait for a promise and turn "no reply / error in the reply" into an error.
pub(super) fn promise_ok(promise: &gst::Promise, what: &str) -> Result<()> {
    match promise.wait() {
        gst::PromiseResult::Replied => {}
        other => bail!("{what}: promise {other:?}"),
    }
    if let Some(reply) = promise.get_reply()
        && let Ok(err) = reply.get::<gst::glib::Error>("error")
    {
        bail!("{what}: {err}");
    }
    Ok(())
}

/// Drop every `a=candidate` line that is not on 127.0.0.1 or ::1 (the ICE agent was given
/// 127.0.0.1 only, so this is a safety net).
fn loopback_only(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        if let Some(cand) = line.trim_end().strip_prefix("a=candidate:") {
            let addr = cand.split_whitespace().nth(4).unwrap_or("");
            if addr != "127.0.0.1" && addr != "::1" {
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

fn link_fakesink(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<()> {
    let sink = gst::ElementFactory::make("fakesink").property("sync", false).build()?;
    pipeline.add(&sink)?;
    sink.sync_state_with_parent()?;
    pad.link(&sink.static_pad("sink").unwrap())?;
    Ok(())
}

fn link_h264_decoder(pipeline: &gst::Pipeline, pad: &gst::Pad, state: SharedState) -> Result<()> {
    let depay = gst::ElementFactory::make("rtph264depay").build()?;
    let parse = gst::ElementFactory::make("h264parse").build()?;
    let dec = gst::ElementFactory::make("avdec_h264").build()?;
    let conv = gst::ElementFactory::make("videoconvert").build()?;
    let sink = gst_app::AppSink::builder().sync(false).max_buffers(4).drop(true).build();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (w, h) = sample
                    .caps()
                    .and_then(|c| gst_video::VideoInfo::from_caps(c).ok())
                    .map(|i| (i.width(), i.height()))
                    .unwrap_or((0, 0));
                let (lock, cvar) = &*state;
                let mut g = lock.lock().unwrap();
                g.stats.frames += 1;
                g.stats.width = w;
                g.stats.height = h;
                cvar.notify_all();
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    let elems = [&depay, &parse, &dec, &conv, sink.upcast_ref::<gst::Element>()];
    pipeline.add_many(elems)?;
    gst::Element::link_many(elems)?;
    for e in elems {
        e.sync_state_with_parent()?;
    }
    pad.link(&depay.static_pad("sink").unwrap())?;
    Ok(())
}

/// A full offer for `transceivers` as a real `webrtcbin` makes it (for requests that the
/// server must refuse, e.g. audio only or VP8 only).
pub fn webrtcbin_offer(transceivers: &[gst::Caps]) -> Result<String> {
    Ok(Receiver::new(transceivers)?.offer().to_owned())
}

/// The server answered the offer with something other than 201.
#[derive(Debug, Clone)]
pub struct WhepRefused {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for WhepRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WHEP offer refused: {} {:?}", self.status, self.body)
    }
}

impl std::error::Error for WhepRefused {}

/// A WHEP viewer: [`Receiver`] with H.264 caps, the offer POSTed to `/whep/{camera}`.
pub struct WhepClient {
    rx: Receiver,
    base: String,
    location: String,
    etag: Option<String>,
    answer: String,
    response: Resp,
}

impl WhepClient {
    /// Offer (recvonly H.264), `POST {base_url}/whep/{camera}`, expect 201, apply the answer.
    pub fn connect(base_url: &str, camera: &str) -> Result<WhepClient> {
        Self::connect_with(base_url, camera, &[])
    }

    /// [`WhepClient::connect`] with extra request headers (e.g. `Authorization: Bearer ...`).
    pub fn connect_with(base_url: &str, camera: &str, extra: &[(&str, &str)]) -> Result<WhepClient> {
        Self::connect_receiver(Receiver::new(&[h264_recv_caps()])?, base_url, camera, extra)
    }

    /// [`WhepClient::connect`] from a peer that has no UDP (ICE-TCP only).
    pub fn connect_tcp_only(base_url: &str, camera: &str) -> Result<WhepClient> {
        Self::connect_receiver(Receiver::new_tcp_only(&[h264_recv_caps()])?, base_url, camera, &[])
    }

    fn connect_receiver(rx: Receiver, base_url: &str, camera: &str, extra: &[(&str, &str)]) -> Result<WhepClient> {
        let url = format!("{base_url}/whep/{camera}");
        let mut headers = vec![("Content-Type", "application/sdp"), ("Accept", "application/sdp")];
        headers.extend_from_slice(extra);
        let resp = http("POST", &url, &headers, Some(rx.offer()))?;
        if resp.status != 201 {
            let refused = WhepRefused { status: resp.status, body: resp.body.clone() };
            return Err(
                anyhow::Error::new(refused).context(format!("POST {url}: expected 201\noffer:\n{}", rx.offer()))
            );
        }
        let location = resp.header("location").ok_or_else(|| anyhow!("POST {url}: 201 without Location"))?;
        let location = resolve(base_url, location)?;
        let etag = resp.header("etag").map(str::to_owned);
        let answer = resp.body.clone();
        // STACK.md pitfall 9: a test's ICE traffic stays on loopback, the server's too.
        for line in answer.lines().map(str::trim_end) {
            if let Some(cand) = line.strip_prefix("a=candidate:") {
                let addr = cand.split_whitespace().nth(4).unwrap_or("");
                if !addr.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
                    bail!("the answer offers a non-loopback ICE candidate {line:?}:\n{answer}");
                }
            }
        }
        rx.set_answer(&answer)?;
        Ok(WhepClient { rx, base: base_url.to_owned(), location, etag, answer, response: resp })
    }

    /// [`WhepClient::connect`], retried while the server answers 503 (camera not running, e.g.
    /// between two runs of a restarting capture), for up to `timeout`.
    pub fn connect_retry(base_url: &str, camera: &str, timeout: Duration) -> Result<WhepClient> {
        let deadline = Instant::now() + timeout;
        loop {
            match Self::connect(base_url, camera) {
                Err(e)
                    if Instant::now() < deadline
                        && e.downcast_ref::<WhepRefused>().is_some_and(|r| r.status == 503) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// The session URL (absolute) from `Location`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The session's `ETag`, if the server sent one.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    pub fn offer(&self) -> &str {
        self.rx.offer()
    }

    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// The 201 response (headers such as `Link`).
    pub fn response(&self) -> &Resp {
        &self.response
    }

    pub fn receiver(&self) -> &Receiver {
        &self.rx
    }

    /// Frames decoded so far.
    pub fn frames(&self) -> FrameStats {
        self.rx.stats()
    }

    /// Block until at least `n` frames in total have been decoded since connecting.
    pub fn wait_frames(&self, n: u64, timeout: Duration) -> Result<FrameStats> {
        self.rx
            .wait_frames(n, timeout)
            .with_context(|| format!("WHEP session {}\nanswer:\n{}", self.location, self.answer))
    }

    /// `DELETE` the session; returns the status.
    pub fn delete(&self) -> Result<u16> {
        self.delete_with(&[])
    }

    /// `DELETE` the session with extra request headers; returns the status.
    pub fn delete_with(&self, extra: &[(&str, &str)]) -> Result<u16> {
        Ok(http("DELETE", &self.location, extra, None)?.status)
    }

    pub fn base(&self) -> &str {
        &self.base
    }
}
