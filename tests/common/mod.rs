//! Shared harness for the integration tests that run the real `vigil` binary and talk to it
//! with an independent WebRTC peer (GStreamer `webrtcbin`, see STACK.md pitfall 7).
//!
//! * [`Server`]: starts `vigil serve` on a free loopback port in a temporary directory, waits
//!   for `/healthz`, prints the server's log if the test panics, stops it on drop.
//! * [`WhepClient`]: a WHEP viewer built on `webrtcbin` (recvonly H.264) that decodes what it
//!   receives (`rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! appsink`) and counts
//!   frames with their size.
//! * [`http`]: a blocking wrapper around an async `reqwest` client (plain HTTP, no proxy).
//!
//! Everything stays on loopback (pitfall 9): the server listens on 127.0.0.1 and the client's
//! ICE agent gathers host candidates on 127.0.0.1 only, with no STUN/TURN server.
//!
//! The API is blocking on purpose: tests are plain `#[test]` functions.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod publisher;

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;

/// How long `Server::start` waits for `GET /healthz` to answer 200.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Serialising tests that run a server
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests in one binary run on parallel threads; a server encodes video and a client decodes it,
/// which is a lot for a 2-core machine. Tests that start a server hold this guard so they run
/// one at a time (a failed test does not poison it for the others).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Poll `cond` every 100 ms until it returns `Some`, or fail after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("tokio runtime")
    })
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().expect("reqwest client")
    })
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    /// A header's value as a string, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of a header (e.g. several `Link` headers), each as a string.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok().map(str::to_owned)).collect()
    }
}

/// One HTTP request: `method` to the absolute `url` with extra `headers` and an optional body.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Result<Resp> {
    let method = reqwest::Method::from_bytes(method.as_bytes())?;
    let mut req = client().request(method.clone(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    runtime().block_on(async move {
        let resp = req.send().await.with_context(|| format!("{method} {url}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.with_context(|| format!("{method} {url}: body"))?;
        Ok(Resp { status, headers, body })
    })
}

/// A response read off a raw socket by [`raw_http`].
#[derive(Debug, Clone)]
pub struct RawResp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` as-is on a new connection to 127.0.0.1:`port` and reads the response until
/// the server closes the connection (send `Connection: close`). Nothing is normalised on the
/// way, unlike an HTTP client library (`%2e%2e`, `..` and backslashes reach the server as
/// written). A connection closed without a response gives status 0.
pub fn raw_http(port: u16, request: &[u8]) -> Result<RawResp> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The server may answer (413) and close before it has read everything we send.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok(RawResp { status, head: head.to_owned(), body: body.to_owned() })
}

/// Resolve a (possibly relative) `Location` against `base`.
pub fn resolve(base: &str, location: &str) -> Result<String> {
    let base = reqwest::Url::parse(base)?;
    Ok(base.join(location)?.to_string())
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// A running `vigil serve` on 127.0.0.1:<free port>, in its own temporary directory.
pub struct Server {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    log_path: PathBuf,
}

impl Server {
    /// Start with the given config file contents (TOML). `--listen` and `--data-dir` on the
    /// command line override what the config says.
    pub fn start(config_toml: &str) -> Server {
        Self::spawn(Some(config_toml))
    }

    /// Start with no `--config`: the built-in default (one camera `test`, a 1280x720 30 fps
    /// test pattern).
    pub fn start_default() -> Server {
        Self::spawn(None)
    }

    /// Start with the given config after `prepare(config_path)` ran in the server's directory
    /// (e.g. `vigil user add --config <config_path>` writing the users file next to it).
    pub fn start_prepared(config_toml: &str, prepare: impl FnOnce(&Path)) -> Server {
        Self::spawn_prepared(Some(config_toml), prepare)
    }

    fn spawn(config_toml: Option<&str>) -> Server {
        Self::spawn_prepared(config_toml, |_| {})
    }

    fn spawn_prepared(config_toml: Option<&str>, prepare: impl FnOnce(&Path)) -> Server {
        let dir = tempfile::Builder::new().prefix("vigil-test-").tempdir().expect("tempdir");
        let port = free_port();
        let log_path = dir.path().join("vigil.log");
        let log = File::create(&log_path).expect("create log file");
        let data_dir = dir.path().join("data");

        let mut cmd = Command::new(vigil_exe());
        cmd.arg("serve");
        if let Some(toml) = config_toml {
            let config = dir.path().join("vigil.toml");
            std::fs::write(&config, toml).expect("write config");
            prepare(&config);
            cmd.arg("--config").arg(&config);
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&data_dir)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log));
        let child = cmd.spawn().expect("spawn vigil");

        let mut server = Server { child: Some(child), dir, port, log_path };
        server.wait_healthy();
        server
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = self.url("/healthz");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!("vigil exited during startup ({status}); log:\n{}", self.log());
            }
            if let Ok(r) = http("GET", &url, &[], None)
                && r.status == 200
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!("vigil did not answer 200 on /healthz within {STARTUP_TIMEOUT:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:<port>`
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Absolute URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory (config, log, `data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the server wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// `GET /api/cameras` as JSON (an array).
    pub fn cameras(&self) -> serde_json::Value {
        let r = http("GET", &self.url("/api/cameras"), &[], None).expect("GET /api/cameras");
        assert_eq!(r.status, 200, "GET /api/cameras: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET /api/cameras is not JSON ({e}): {}", r.body))
    }

    /// The `/api/cameras` object of camera `name`.
    pub fn camera(&self, name: &str) -> serde_json::Value {
        let all = self.cameras();
        all.as_array()
            .unwrap_or_else(|| panic!("/api/cameras is not an array: {all}"))
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("camera {name:?} not in /api/cameras: {all}"))
    }

    /// Poll `/api/cameras` until `cond(camera object)` holds; returns that object.
    pub fn wait_camera(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        let r = wait_for(timeout, what, || {
            last = self.camera(name);
            cond(&last).then(|| last.clone())
        });
        r.unwrap_or_else(|e| panic!("camera {name:?}: {e}; last /api/cameras entry: {last}"))
    }

    /// Pids of live processes (other than the server itself) whose command line names this
    /// server's data directory: capture children, for instance.
    pub fn processes_using_data_dir(&self) -> Vec<u32> {
        let needle = self.data_dir().to_string_lossy().into_owned();
        let me = std::process::id();
        let server = self.pid();
        let mut pids = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me || Some(pid) == server {
                continue;
            }
            if let Ok(cmdline) = std::fs::read(e.path().join("cmdline"))
                && String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&needle)
            {
                pids.push(pid);
            }
        }
        pids
    }

    /// Wait (up to 30 s) until camera `name` reads `running`: `/healthz` answers before the
    /// capture has produced its first frame, and WHEP answers 503 until then.
    pub fn wait_running(&self, name: &str) -> serde_json::Value {
        self.wait_camera(name, Duration::from_secs(30), "state == running", |c| c["state"] == "running")
    }

    /// SIGKILL the server (no chance to clean up) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after 5 s. Returns the exit status if it
    /// exited on its own.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Server {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        self.stop();
        // Never leave processes behind (e.g. capture children orphaned by `kill9`).
        let left = self.processes_using_data_dir();
        if !left.is_empty() {
            eprintln!("vigil test harness: killing leftover processes using {}: {left:?}", self.data_dir().display());
            for pid in left {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if std::thread::panicking() || std::env::var_os("VIGIL_TEST_LOG").is_some() {
            eprintln!(
                "----- vigil log ({}) -----\n{}\n----- end of vigil log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// The binary under test: Cargo's `vigil`, or `$VIGIL_BIN` when set (to run these tests against
/// another build without rebuilding them).
pub fn vigil_exe() -> PathBuf {
    std::env::var_os("VIGIL_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vigil")))
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------------
// WebRTC peer (webrtcbin); the WHIP publisher is in publisher.rs
// ---------------------------------------------------------------------------------------------

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
fn promise_ok(promise: &gst::Promise, what: &str) -> Result<()> {
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
        let rx = Receiver::new(&[h264_recv_caps()])?;
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
                if addr != "127.0.0.1" && addr != "::1" {
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
