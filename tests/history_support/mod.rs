//! Helpers shared by the recorded-history tests (`history_export`, `crash_recovery`,
//! `retention`), on top of the shared harness in `tests/common`:
//!
//! * [`get`]: a raw HTTP/1.1 GET over `std::net::TcpStream` that keeps the body as bytes
//!   (MP4), and [`SlowDownload`], a reader that takes the body a little at a time.
//! * [`recordings`]: `GET /api/cameras/{camera}/recordings?…&segments=true`, parsed.
//! * [`probe`] / [`decode_errors`]: what `ffprobe` and `ffmpeg` say about a file.
//! * [`Restarted`]: a second `vigil serve` on an existing data directory (the harness always
//!   makes a fresh one).
//! * [`Seg`], [`read_idx`]: segment files on disk and their `.idx` records;
//!   [`thumbnail_files`]: the `.jpg` beside them; [`probe_image`]: what ffprobe sees in one.
#![allow(dead_code)] // each test binary uses a different part

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common;

/// Frames per second of every test camera.
pub const FPS: f64 = 30.0;

/// One frame at [`FPS`], in milliseconds.
pub const FRAME_MS: f64 = 1000.0 / FPS;

/// A camera block: the built-in test pattern at 640x360, 30 fps, x264, keyframe every second.
pub fn camera_toml(name: &str, segment_seconds: u32, extra: &str) -> String {
    format!(
        r#"
[[cameras]]
name = "{name}"
source = "test"
width = 640
height = 360
fps = 30
keyframe_interval_s = 1.0
segment_seconds = {segment_seconds}
encoder = "x264"
{extra}
"#
    )
}

/// A whole config: no free-disk floor (the test machine's disk may be nearly full), one
/// camera.
pub fn config(name: &str, segment_seconds: u32, extra: &str) -> String {
    format!("[server]\nmin_free_bytes = 0\n{}", camera_toml(name, segment_seconds, extra))
}

/// Now, Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

// ---------------------------------------------------------------------------------------------
// HTTP with binary bodies
// ---------------------------------------------------------------------------------------------

/// Response headers: names in lower case, in the order received.
pub type Headers = Vec<(String, String)>;

/// A response with its body as bytes.
#[derive(Debug, Clone)]
pub struct BinResp {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl BinResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text (for error messages).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Content-Length`, parsed.
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

fn request_text(port: u16, path: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// Splits the status line and headers off `buf` once they are complete: (status, headers,
/// bytes of the head).
fn parse_head(buf: &[u8]) -> Option<(u16, Headers, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some((status, headers, end))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&b[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}

/// `GET path` on 127.0.0.1:`port`, the whole body read (as bytes).
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> BinResp {
    let what = format!("GET {path} {headers:?}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("{what}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request_text(port, path, headers).as_bytes()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap_or_else(|e| panic!("{what}: reading: {e}"));
    let (status, headers, head_len) =
        parse_head(&buf).unwrap_or_else(|| panic!("{what}: not an HTTP response: {:?}", String::from_utf8_lossy(&buf)));
    let mut resp = BinResp { status, headers, body: buf[head_len..].to_vec() };
    if resp.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        resp.body = dechunk(&resp.body);
    }
    resp
}

/// A GET whose body is read only when asked: the connection has a small receive buffer so
/// the server cannot push the whole body into the kernel ahead of the reader.
pub struct SlowDownload {
    stream: TcpStream,
    pub status: u16,
    pub headers: Headers,
    /// Body bytes read so far.
    pub body: Vec<u8>,
    /// `Content-Length` (required).
    pub len: u64,
}

impl SlowDownload {
    /// Sends the request and reads the head (and whatever body came with it).
    pub fn start(port: u16, path: &str) -> SlowDownload {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let stream = rt
            .block_on(async {
                let sock = tokio::net::TcpSocket::new_v4()?;
                // Before connect, so the window never grows past it.
                sock.set_recv_buffer_size(16 * 1024)?;
                sock.connect(addr).await?.into_std()
            })
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut stream = stream;
        stream.write_all(request_text(port, path, &[]).as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let (status, headers, head_len) = loop {
            if let Some(h) = parse_head(&buf) {
                break h;
            }
            let n = stream.read(&mut chunk).expect("reading the response head");
            assert!(n > 0, "GET {path}: connection closed before the head");
            buf.extend_from_slice(&chunk[..n]);
        };
        let len = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or_else(|| panic!("GET {path}: no Content-Length in {headers:?}"));
        SlowDownload { stream, status, headers, body: buf[head_len..].to_vec(), len }
    }

    /// Reads at most `max` more body bytes (fewer at the end); returns how many.
    pub fn read_some(&mut self, max: usize) -> usize {
        let mut chunk = vec![0u8; max];
        let n = self.stream.read(&mut chunk).expect("reading the body");
        self.body.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads the rest of the body, `chunk` bytes at a time, until the server closes.
    pub fn finish(&mut self, chunk: usize) {
        while self.read_some(chunk) > 0 {}
    }
}

// ---------------------------------------------------------------------------------------------
// The recordings API
// ---------------------------------------------------------------------------------------------

/// One entry of `segments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub start_ms: i64,
    pub end_ms: i64,
    pub bytes: i64,
    pub frames: i64,
    pub open: bool,
}

/// A parsed listing.
#[derive(Debug, Clone)]
pub struct Listing {
    pub runs: Vec<(i64, i64)>,
    pub segments: Vec<Seg>,
    pub json: serde_json::Value,
}

impl Listing {
    pub fn closed(&self) -> Vec<&Seg> {
        self.segments.iter().filter(|s| !s.open).collect()
    }

    pub fn open(&self) -> Vec<&Seg> {
        self.segments.iter().filter(|s| s.open).collect()
    }
}

/// `GET /api/cameras/{camera}/recordings?start=&end=&segments=true` (Unix ms; `start` 1 h
/// back and `end` 1 min ahead by default).
pub fn recordings(port: u16, camera: &str, range: Option<(i64, i64)>) -> Listing {
    let (start, end) = range.unwrap_or_else(|| (now_ms() - 3_600_000, now_ms() + 60_000));
    let path = format!("/api/cameras/{camera}/recordings?start={start}&end={end}&segments=true");
    let r = get(port, &path, &[]);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    let json: serde_json::Value =
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {}", r.text()));
    assert_eq!(json["camera"], camera, "GET {path}: {json}");
    let int = |v: &serde_json::Value, k: &str| -> i64 {
        v[k].as_i64().unwrap_or_else(|| panic!("GET {path}: `{k}` is not an integer in {v}"))
    };
    let runs = json["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no `runs` array: {json}"))
        .iter()
        .map(|r| (int(r, "start_ms"), int(r, "end_ms")))
        .collect();
    let segments = json["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no `segments` array: {json}"))
        .iter()
        .map(|s| Seg {
            start_ms: int(s, "start_ms"),
            end_ms: int(s, "end_ms"),
            bytes: int(s, "bytes"),
            frames: int(s, "frames"),
            open: s["open"].as_bool().unwrap_or_else(|| panic!("GET {path}: `open` is not a bool in {s}")),
        })
        .collect();
    Listing { runs, segments, json }
}

// ---------------------------------------------------------------------------------------------
// Segment files
// ---------------------------------------------------------------------------------------------

/// Segment data files (`.h264`) of `camera` under `data_dir`, by start µs, oldest first.
pub fn segment_files(data_dir: &Path, camera: &str) -> Vec<(i64, PathBuf)> {
    files_with_ext(data_dir, camera, "h264")
}

/// Thumbnail files (`<start_us>.jpg`) of `camera` under `data_dir`, by start µs.
pub fn thumbnail_files(data_dir: &Path, camera: &str) -> Vec<(i64, PathBuf)> {
    files_with_ext(data_dir, camera, "jpg")
}

/// `<start_us>.<ext>` files in the day directories of `camera`, by start µs.
fn files_with_ext(data_dir: &Path, camera: &str, ext: &str) -> Vec<(i64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(data_dir.join(camera)) else {
        return out;
    };
    for day in days.flatten() {
        let Ok(files) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == ext)
                && let Some(us) = p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse::<i64>().ok())
            {
                out.push((us, p));
            }
        }
    }
    out.sort();
    out
}

/// One `.idx` record (docs/segment-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdxRecord {
    pub offset: u64,
    pub len: u32,
    pub pts_us: i64,
    pub keyframe: bool,
}

/// The complete records of an `.idx` file (24-byte little-endian records).
pub fn read_idx(path: &Path) -> Vec<IdxRecord> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    b.chunks_exact(24)
        .map(|r| IdxRecord {
            offset: u64::from_le_bytes(r[0..8].try_into().unwrap()),
            len: u32::from_le_bytes(r[8..12].try_into().unwrap()),
            pts_us: i64::from_le_bytes(r[12..20].try_into().unwrap()),
            keyframe: u32::from_le_bytes(r[20..24].try_into().unwrap()) & 1 != 0,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ffprobe / ffmpeg
// ---------------------------------------------------------------------------------------------

/// What ffprobe says about an MP4's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub codec: String,
    pub width: u64,
    pub height: u64,
    pub frames: i64,
    pub duration_s: f64,
}

/// `ffprobe -v error -count_frames -show_entries stream=codec_name,width,height,nb_read_frames
/// -show_entries format=duration -of json FILE`.
pub fn probe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
            "-show_entries",
            "format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe {}: {}\n{stderr}", path.display(), out.status);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &j["streams"][0];
    let num = |v: &serde_json::Value| -> f64 {
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("ffprobe {}: not a number: {v} in {j}", path.display()))
    };
    Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_owned(),
        width: s["width"].as_u64().unwrap_or(0),
        height: s["height"].as_u64().unwrap_or(0),
        frames: num(&s["nb_read_frames"]) as i64,
        duration_s: num(&j["format"]["duration"]),
    }
}

/// What ffprobe says about a picture: (codec, width, height), e.g. `("mjpeg", 320, 180)`.
pub fn probe_image(path: &Path) -> (String, u64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name,width,height", "-of", "json"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe {}: {}\n{stderr}", path.display(), out.status);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &j["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or_default().to_owned(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
    )
}

/// What `ffmpeg -v error -i FILE -f null -` prints (empty when the file decodes cleanly).
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        s.push_str(&format!("\n(ffmpeg exited with {})", out.status));
    }
    s.trim().to_owned()
}

/// Keeps `path` as `name` in `$VIGIL_TEST_ARTIFACTS` when set.
pub fn keep_artifact(path: &Path, name: &str) {
    if let Some(dir) = std::env::var_os("VIGIL_TEST_ARTIFACTS") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::copy(path, dir.join(name));
    }
}

// ---------------------------------------------------------------------------------------------
// A server restarted on an existing data directory
// ---------------------------------------------------------------------------------------------

/// `vigil serve` on a data directory that already exists (e.g. the one a killed
/// [`common::Server`] left behind). Stops the server on drop; the first server's harness
/// object kills anything else left using the directory when it is dropped afterwards.
pub struct Restarted {
    child: Option<Child>,
    port: u16,
    log_path: PathBuf,
}

impl Restarted {
    /// Starts `vigil serve --config <dir>/<name>.toml --data-dir <data_dir>` on a free port
    /// and waits for `/healthz`.
    pub fn start(dir: &Path, data_dir: &Path, config_toml: &str) -> Restarted {
        let config = dir.join("restarted.toml");
        std::fs::write(&config, config_toml).expect("write config");
        let log_path = dir.join("restarted.log");
        let log = File::create(&log_path).expect("create log");
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            l.local_addr().unwrap().port()
        };
        let child = Command::new(common::vigil_exe())
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--webrtc-udp-ports")
            .arg(port.to_string())
            .arg("--webrtc-tcp-port")
            .arg("0")
            .arg("--data-dir")
            .arg(data_dir)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn vigil");
        let mut me = Restarted { child: Some(child), port, log_path };
        let deadline = Instant::now() + common::STARTUP_TIMEOUT;
        let url = format!("http://127.0.0.1:{port}/healthz");
        loop {
            if let Some(c) = me.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                me.child = None;
                panic!("restarted vigil exited during startup ({status}); log:\n{}", me.log());
            }
            if common::http("GET", &url, &[], None).is_ok_and(|r| r.status == 200) {
                return me;
            }
            assert!(Instant::now() < deadline, "restarted vigil did not answer /healthz; log:\n{}", me.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (30 s) until `camera` reads `running` in `/api/cameras`.
    pub fn wait_running(&self, camera: &str) {
        let url = self.url("/api/cameras");
        let mut last = String::new();
        let r = common::wait_for(Duration::from_secs(30), "camera running", || {
            let r = common::http("GET", &url, &[], None).ok()?;
            last = r.body.clone();
            let v: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            v.as_array()?.iter().any(|c| c["name"] == camera && c["state"] == "running").then_some(())
        });
        if let Err(e) = r {
            panic!("{e}; last /api/cameras: {last}; log:\n{}", self.log());
        }
    }
}

impl Drop for Restarted {
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() || std::env::var_os("VIGIL_TEST_LOG").is_some() {
            eprintln!(
                "----- restarted vigil log ({}) -----\n{}\n----- end of restarted vigil log -----",
                self.log_path.display(),
                self.log()
            );
        }
    }
}
