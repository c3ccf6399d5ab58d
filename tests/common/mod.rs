//! Shared harness for the integration tests that run the real `vigil` binary and talk to it
//! with an independent WebRTC peer (GStreamer `webrtcbin`, see STACK.md pitfall 7).
//!
//! * [`Server`]: starts `vigil serve` on a free loopback port in a temporary directory, waits
//!   for `/livez`, prints the server's log if the test panics, stops it on drop.
//! * [`WhepClient`] (`webrtc.rs`): a WHEP viewer built on `webrtcbin` (recvonly H.264) that
//!   decodes what it receives (`rtph264depay ! h264parse ! avdec_h264 ! videoconvert !
//!   appsink`) and counts frames with their size; the WHIP publisher is in `publisher.rs`.
//! * [`http`]: a blocking wrapper around an async `reqwest` client (plain HTTP, no proxy).
//!
//! Everything stays on loopback (pitfall 9): the server listens on 127.0.0.1 and the client's
//! ICE agent gathers host candidates on 127.0.0.1 only, with no STUN/TURN server.
//!
//! The API is blocking on purpose: tests are plain `#[test]` functions.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod publisher;
mod webrtc;

pub use webrtc::*;

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long `Server::start` waits for `GET /livez` to answer 200.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------------

/// Subscribes to `GET /api/events{query}`; returns the stream once the response headers are in.
pub fn subscribe(port: u16, query: &str) -> (std::net::TcpStream, Vec<u8>) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    write!(s, "GET /api/events{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let got = read_until(&mut s, Vec::new(), |t| t.contains("\r\n\r\n"));
    (s, got)
}

/// Reads more of `s` into `got` until `until` holds for all of it (or 15 s pass).
pub fn read_until(s: &mut std::net::TcpStream, got: Vec<u8>, until: impl Fn(&str) -> bool) -> Vec<u8> {
    read_until_within(s, got, Duration::from_secs(15), until)
}

/// [`read_until`] with a deadline of `within`.
pub fn read_until_within(
    s: &mut std::net::TcpStream,
    mut got: Vec<u8>,
    within: Duration,
    until: impl Fn(&str) -> bool,
) -> Vec<u8> {
    use std::io::Read;
    let deadline = std::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    while std::time::Instant::now() < deadline && !until(&String::from_utf8_lossy(&got)) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    got
}

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

/// GET `url`: the status and the body as bytes (pictures, video).
pub fn get_bytes(url: &str) -> Result<(u16, Vec<u8>)> {
    let req = client().get(url);
    runtime().block_on(async move {
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        Ok((status, resp.bytes().await.with_context(|| format!("GET {url}: body"))?.to_vec()))
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
    /// The ICE-TCP port (`--webrtc-tcp-port`).
    tcp_port: u16,
    log_path: PathBuf,
    /// `--config`, when started with one.
    config: Option<PathBuf>,
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
        let config = config_toml.map(|toml| {
            let config = dir.path().join("vigil.toml");
            std::fs::write(&config, toml).expect("write config");
            prepare(&config);
            config
        });
        let tcp_port = loop {
            let p = free_port();
            if p != port {
                break p;
            }
        };
        let mut server = Server { child: None, dir, port, tcp_port, log_path, config };
        server.launch();
        server
    }

    /// Starts `vigil serve` in this server's directory (log appended) and waits for `/livez`.
    fn launch(&mut self) {
        let log = File::options().create(true).append(true).open(&self.log_path).expect("open log file");
        let mut cmd = Command::new(vigil_exe());
        cmd.arg("serve");
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        // WebRTC on one UDP port (the default), numbered like the HTTP port so that servers
        // running side by side do not share it; a config that names its ports keeps them.
        let names_ports = self
            .config
            .as_ref()
            .and_then(|c| std::fs::read_to_string(c).ok())
            .is_some_and(|c| c.contains("webrtc_udp_ports"));
        if !names_ports {
            cmd.arg("--webrtc-udp-ports").arg(self.port.to_string());
            cmd.arg("--webrtc-tcp-port").arg(self.tcp_port.to_string());
        }
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log));
        self.child = Some(cmd.spawn().expect("spawn vigil"));
        self.wait_healthy();
    }

    /// Stops the server (SIGTERM) and starts it again on the same port, config and data
    /// directory.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let url = self.url("/livez");
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
                panic!("vigil did not answer 200 on /livez within {STARTUP_TIMEOUT:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The ICE-TCP port (the WebRTC UDP port is [`Server::port`]).
    pub fn tcp_port(&self) -> u16 {
        self.tcp_port
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

    /// Wait (up to 30 s) until camera `name` reads `running`: `/livez` answers before the
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
