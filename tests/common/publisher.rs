//! A WHIP publisher built on GStreamer `webrtcbin` (STACK.md pitfall 7): a test pattern
//! encoded with x264 (and optionally a sine tone in Opus), offered sendonly, POSTed to
//! `/whip/{camera}` with a bearer token. Loopback ICE only (pitfall 9).

use super::{Resp, gst_init, http, promise_ok, resolve, wait_for};
use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use std::time::Duration;

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Send an Opus track too.
    pub audio: bool,
    /// x264 `key-int-max` (frames between keyframes).
    pub key_int: u32,
    /// Raw video to send instead of the moving ball (a GStreamer description ending in raw
    /// video at `width`×`height` and `fps`; it is converted to I420).
    pub video: Option<String>,
    /// Encode at a constant bitrate of this many kbit/s, with filler (`nal-hrd=cbr`): every
    /// frame the same size, as many cameras and WebRTC encoders do.
    pub cbr_kbps: Option<u32>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self { width: 640, height: 360, fps: 30, audio: false, key_int: 60, video: None, cbr_kbps: None }
    }
}

/// A publisher's pipeline with its offer ready (gathering complete).
pub struct Publisher {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    offer: String,
}

impl Publisher {
    /// Builds the pipeline and the offer.
    pub fn new(opts: &PublishOptions) -> Result<Publisher> {
        gst_init();
        let audio = if opts.audio {
            "audiotestsrc is-live=true wave=sine freq=440 ! audioconvert ! audioresample ! \
             opusenc ! rtpopuspay pt=111 ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111 ! w."
        } else {
            ""
        };
        let video = opts.video.clone().unwrap_or_else(|| "videotestsrc is-live=true pattern=ball".into());
        let rate = match opts.cbr_kbps {
            Some(kbps) => format!("pass=cbr bitrate={kbps} vbv-buf-capacity=200 option-string=\"nal-hrd=cbr\""),
            None => "bitrate=1000".into(),
        };
        let desc = format!(
            "webrtcbin name=w bundle-policy=max-bundle \
             {video} ! videoconvert ! video/x-raw,width={},height={},framerate={}/1,format=I420 ! \
             x264enc tune=zerolatency speed-preset=ultrafast {rate} key-int-max={} ! \
             video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 aggregate-mode=zero-latency pt=96 ! \
             application/x-rtp,media=video,encoding-name=H264,payload=96 ! w. {audio}",
            opts.width, opts.height, opts.fps, opts.key_int
        );
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("publisher pipeline: {desc}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("not a pipeline"))?;
        let webrtc = pipeline.by_name("w").context("webrtcbin")?;
        let ice = webrtc.property::<gst_webrtc::WebRTCICE>("ice-agent");
        if !ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]) {
            bail!("webrtcbin's ICE agent refused 127.0.0.1");
        }
        pipeline.set_state(gst::State::Playing).context("publisher to PLAYING")?;
        // Offer once every stream has caps: webrtcbin then declares each SSRC (a=ssrc), as
        // browsers and OBS do.
        wait_for(Duration::from_secs(10), "publisher caps on every webrtcbin sink pad", || {
            webrtc.sink_pads().iter().all(|p| p.current_caps().is_some()).then_some(())
        })?;
        // Sink pads made the transceivers (sendrecv); a publisher only sends.
        let mut i = 0u32;
        while let Some(t) =
            webrtc.emit_by_name::<Option<gst_webrtc::WebRTCRTPTransceiver>>("get-transceiver", &[&(i as i32)])
        {
            t.set_property("direction", gst_webrtc::WebRTCRTPTransceiverDirection::Sendonly);
            i += 1;
        }
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
        promise_ok(&promise, "create-offer")?;
        let offer = promise
            .get_reply()
            .and_then(|r| r.get::<gst_webrtc::WebRTCSessionDescription>("offer").ok())
            .ok_or_else(|| anyhow!("create-offer: no offer"))?;
        let promise = gst::Promise::new();
        webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
        promise_ok(&promise, "set-local-description")?;
        wait_for(Duration::from_secs(10), "publisher ICE gathering", || {
            (webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state")
                == gst_webrtc::WebRTCICEGatheringState::Complete)
                .then_some(())
        })?;
        let local = webrtc
            .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
            .context("no local description")?;
        let offer = local.sdp().as_text().context("offer to text")?;
        Ok(Publisher { pipeline, webrtc, offer })
    }

    /// The offer SDP (candidates included).
    pub fn offer(&self) -> &str {
        &self.offer
    }

    /// POSTs the offer; returns the response whatever its status.
    pub fn post(&self, base: &str, camera: &str, token: Option<&str>) -> Result<Resp> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/sdp")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http("POST", &format!("{base}/whip/{camera}"), &headers, Some(&self.offer))
    }

    /// POSTs the offer, expects 201, applies the answer: media starts flowing.
    pub fn publish(self, base: &str, camera: &str, token: &str) -> Result<Publishing> {
        let resp = self.post(base, camera, Some(token))?;
        if resp.status != 201 {
            bail!("POST /whip/{camera}: {} {:?}", resp.status, resp.body);
        }
        let location = resolve(base, resp.header("location").context("201 without Location")?)?;
        let msg = gst_sdp::SDPMessage::parse_buffer(resp.body.as_bytes())
            .map_err(|e| anyhow!("answer is not SDP ({e}):\n{}", resp.body))?;
        let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, msg);
        let promise = gst::Promise::new();
        self.webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
        promise_ok(&promise, "set-remote-description").with_context(|| format!("answer:\n{}", resp.body))?;
        let etag = resp.header("etag").map(str::to_owned);
        Ok(Publishing { publisher: self, location, token: token.to_owned(), answer: resp.body, etag })
    }

    /// Wall-clock time (ms since the epoch) of the pipeline's running time 0: a frame at
    /// running time t was sent at this + t.
    pub fn running_zero_ms(&self) -> i64 {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        let (Some(clock), Some(base)) = (self.pipeline.clock(), self.pipeline.base_time()) else { return now_ms };
        now_ms - clock.time().saturating_sub(base).mseconds() as i64
    }

    /// webrtcbin's ICE connection state.
    pub fn ice_state(&self) -> gst_webrtc::WebRTCICEConnectionState {
        self.webrtc.property("ice-connection-state")
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A publisher with a live WHIP session.
pub struct Publishing {
    publisher: Publisher,
    location: String,
    token: String,
    answer: String,
    etag: Option<String>,
}

impl Publishing {
    /// The session URL.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The answer SDP.
    pub fn answer(&self) -> &str {
        &self.answer
    }

    /// The session's ETag from the 201.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// The bearer token it published with.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The pipeline (to inspect its state).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// `DELETE` the session (with the token); returns the status. Media stops.
    pub fn delete(self) -> Result<u16> {
        let auth = format!("Bearer {}", self.token);
        let status = http("DELETE", &self.location, &[("Authorization", &auth)], None)?.status;
        drop(self.publisher);
        Ok(status)
    }
}
