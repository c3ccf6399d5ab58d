//! The configuration file (`vigil.toml`): `[server]`, `[[cameras]]`, `[tls]` (its types live
//! in [`crate::tls::config`]) and `[auth]` (in [`crate::auth::config`]).
//! Every key is documented in `deploy/vigil.toml`; unknown keys are an error naming the key.

pub use crate::tls::config::{LETSENCRYPT_PRODUCTION, LETSENCRYPT_STAGING, TlsConfig, TlsMode, valid_dns_name};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod duration;
pub use duration::HumanDuration;

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or has an unknown key / wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server-wide settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// The cameras. With no config file, one test-pattern camera named `test`.
    #[serde(default)]
    pub cameras: Vec<CameraConfig>,
    /// HTTPS: off, self-signed, certificate files, or ACME (see [`TlsConfig`]).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Users, tokens, sessions, shared links (see [`crate::auth::AuthConfig`]).
    #[serde(default)]
    pub auth: crate::auth::AuthConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Where segments (and later the index database) live.
    pub data_dir: PathBuf,
    /// STUN/TURN servers handed to WebRTC peers (`Link` headers) and used by the server.
    pub ice_servers: Vec<IceServer>,
    /// UDP ports for WebRTC: `"8189"` (the default: every peer connection on this one port),
    /// `"40000-40100"` (one port per peer connection from the range) or empty for ephemeral
    /// ports.
    pub webrtc_udp_ports: String,
    /// TCP port for ICE-TCP (RFC 6544), the fallback for networks that block UDP, when every
    /// peer connection shares one UDP port; 0 turns ICE-TCP off.
    pub webrtc_tcp_port: u16,
    /// Public addresses to advertise as ICE candidates when behind a NAT with forwarded
    /// ports (1:1 NAT).
    pub public_ips: Vec<String>,
    /// WHEP viewers allowed per camera.
    pub max_viewers_per_camera: usize,
    /// WHEP viewers allowed in total.
    pub max_viewers: usize,
    /// The recordings index: `None` = SQLite at `<data_dir>/vigil.db`, or `postgres://...`.
    pub database_url: Option<String>,
    /// Free disk space to keep on the data directory's filesystem; the oldest recordings of
    /// all cameras are deleted to stay above it. 0 disables the check.
    pub min_free_bytes: u64,
    /// WHEP sessions one client address may hold at once (429 beyond); 0 for no limit.
    pub max_sessions_per_client: usize,
    /// Longest wait for a request's headers, also how long an idle keep-alive connection
    /// stays open (`"10s"`).
    pub request_header_timeout: HumanDuration,
    /// Longest wait for a request's whole body (408 beyond).
    pub request_body_timeout: HumanDuration,
    /// Largest request body in bytes (413 beyond).
    pub max_request_body_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            ice_servers: Vec::new(),
            webrtc_udp_ports: "8189".into(),
            webrtc_tcp_port: 8189,
            public_ips: Vec::new(),
            max_viewers_per_camera: 250,
            max_viewers: 500,
            database_url: None,
            min_free_bytes: 256 << 20,
            max_sessions_per_client: 16,
            request_header_timeout: HumanDuration(Duration::from_secs(10)),
            request_body_timeout: HumanDuration(Duration::from_secs(10)),
            max_request_body_bytes: 64 * 1024,
        }
    }
}

/// A STUN or TURN server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ...
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default)]
    pub credential: Option<String>,
}

/// `[[cameras]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Name: 1–64 of `[A-Za-z0-9_-]`; used in URLs and as the directory name.
    pub name: String,
    /// Where the video comes from (see [`Source`]).
    #[serde(default = "default_source")]
    pub source: String,
    /// Width in pixels (for raw sources; H.264 sources keep their own).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Height in pixels.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Encoder bitrate in kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// Seconds between keyframes (encoder GOP length).
    #[serde(default = "default_kis")]
    pub keyframe_interval_s: f64,
    /// Target segment duration in seconds (rotation at the first keyframe after it).
    #[serde(default = "default_segment_seconds")]
    pub segment_seconds: f64,
    /// Encoder choice (see [`Encoder`]).
    #[serde(default)]
    pub encoder: Encoder,
    /// Keep at most this many bytes of recordings (oldest deleted first). None: no limit.
    #[serde(default)]
    pub retain_bytes: Option<u64>,
    /// Keep recordings at most this many days. None: no limit.
    #[serde(default)]
    pub retain_days: Option<f64>,
    /// For `source = "whip"`: the bearer token a publisher must present (at least 16
    /// characters; keep it secret, it lets anyone publish as this camera).
    #[serde(default)]
    pub publish_token: Option<String>,
    /// A display name for pages (any text up to 100 characters); the name when unset.
    #[serde(default)]
    pub title: Option<String>,
    /// A group for pages and the kiosk (`group=`): up to 64 characters.
    #[serde(default)]
    pub group: Option<String>,
    /// Whether the camera runs at all (false: no capture, WHEP answers 503).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Whether footage is kept (false: live only, nothing new is recorded — privacy mode).
    #[serde(default = "default_true")]
    pub record: bool,
    /// Motion detection on this camera (docs/activity.md).
    #[serde(default = "default_true")]
    pub motion: bool,
    /// 1 (only large, strong changes) to 100 (the faintest).
    #[serde(default = "default_motion_sensitivity")]
    pub motion_sensitivity: u32,
    /// Smallest moving blob that counts, as a fraction of the picture.
    #[serde(default = "default_motion_min_area")]
    pub motion_min_area: f64,
    /// Areas to ignore: polygons of `[x, y]` corners as fractions of the width and height.
    #[serde(default)]
    pub motion_masks: Vec<Vec<[f64; 2]>>,
    /// Stillness that closes an activity range.
    #[serde(default = "default_merge_gap")]
    pub activity_merge_gap: HumanDuration,
}

fn default_true() -> bool {
    true
}

fn default_motion_sensitivity() -> u32 {
    crate::activity::picture::DEFAULT_SENSITIVITY as u32
}
fn default_motion_min_area() -> f64 {
    // activity::picture::DEFAULT_MIN_AREA, written out so JSON shows 0.005, not its f32 value.
    0.005
}
fn default_merge_gap() -> HumanDuration {
    HumanDuration(Duration::from_micros(crate::activity::ranges::DEFAULT_MERGE_GAP_US as u64))
}

fn default_source() -> String {
    "test".into()
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}
fn default_bitrate() -> u32 {
    2000
}
fn default_kis() -> f64 {
    1.0
}
fn default_segment_seconds() -> f64 {
    60.0
}

/// Which H.264 encoder a raw-video source uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoder {
    /// `v4l2h264enc` (Raspberry Pi 4 hardware) where present, else `x264enc`.
    #[default]
    Auto,
    /// Software: `x264enc` (ultrafast, zerolatency, constrained baseline).
    X264,
    /// Hardware: `v4l2h264enc`.
    V4l2,
}

/// A parsed camera source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// GStreamer test pattern with a clock overlay.
    Test,
    /// A V4L2 device (USB camera), e.g. `v4l2:/dev/video0`.
    V4l2(String),
    /// The Raspberry Pi camera through `libcamerasrc`.
    Libcamera,
    /// An RTSP camera: H.264 passed through without re-encoding.
    Rtsp(String),
    /// A media file, looped.
    File(PathBuf),
    /// A gst-launch description producing raw video or H.264.
    Pipeline(String),
    /// Fed by a WHIP publisher (`POST /whip/{camera}` with the camera's `publish_token`);
    /// no capture process.
    Whip,
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(if s == "test" {
            Source::Test
        } else if s == "libcamera" {
            Source::Libcamera
        } else if let Some(dev) = s.strip_prefix("v4l2:") {
            Source::V4l2(dev.to_owned())
        } else if s.starts_with("rtsp://") || s.starts_with("rtsps://") {
            Source::Rtsp(s.to_owned())
        } else if let Some(p) = s.strip_prefix("file:") {
            Source::File(PathBuf::from(p))
        } else if let Some(p) = s.strip_prefix("pipeline:") {
            Source::Pipeline(p.to_owned())
        } else if s == "whip" {
            Source::Whip
        } else {
            return Err(format!(
                "unknown source {s:?}: expected test, v4l2:/dev/videoN, libcamera, rtsp://..., file:PATH, pipeline:... or whip"
            ));
        })
    }
}

impl CameraConfig {
    /// The built-in default camera: a 1280×720 30 fps test pattern at ~2 Mbit/s.
    pub fn test_pattern(name: &str) -> Self {
        Self {
            name: name.into(),
            source: default_source(),
            width: default_width(),
            height: default_height(),
            fps: default_fps(),
            bitrate_kbps: default_bitrate(),
            keyframe_interval_s: default_kis(),
            segment_seconds: default_segment_seconds(),
            encoder: Encoder::Auto,
            retain_bytes: None,
            retain_days: None,
            publish_token: None,
            title: None,
            group: None,
            enabled: true,
            record: true,
            motion: true,
            motion_sensitivity: default_motion_sensitivity(),
            motion_min_area: default_motion_min_area(),
            motion_masks: Vec::new(),
            activity_merge_gap: default_merge_gap(),
        }
    }

    /// The picture stage's settings for this camera (checked by [`CameraConfig::check`]).
    pub fn motion_settings(&self) -> crate::activity::picture::MotionSettings {
        crate::activity::picture::MotionSettings {
            sensitivity: self.motion_sensitivity.min(255) as u8,
            min_area: self.motion_min_area as f32,
            masks: self.motion_masks.iter().map(|p| p.iter().map(|[x, y]| (*x as f32, *y as f32)).collect()).collect(),
        }
    }

    /// Checks the camera's values; the error names the field.
    pub fn check(&self) -> Result<(), FieldError> {
        let bad = |field: &'static str, message: String| Err(FieldError { field, message });
        if !crate::segment::path::valid_camera_name(&self.name) {
            return bad("name", "must be 1-64 characters of A-Z a-z 0-9 _ -".into());
        }
        match (self.parsed_source(), &self.publish_token) {
            (Err(e), _) => return bad("source", e),
            (Ok(Source::Whip), None) => return bad("publish_token", "source \"whip\" needs a publish_token".into()),
            (Ok(Source::Whip), Some(t)) if t.chars().count() < 16 || t.chars().any(|ch| ch.is_whitespace()) => {
                return bad("publish_token", "must be at least 16 characters, without spaces".into());
            }
            (Ok(Source::Whip), Some(_)) => {}
            (Ok(_), Some(_)) => return bad("publish_token", "is only for source = \"whip\"".into()),
            (Ok(_), None) => {}
        }
        if !(16..=7680).contains(&self.width) {
            return bad("width", format!("{} out of range 16-7680", self.width));
        }
        if !(16..=4320).contains(&self.height) {
            return bad("height", format!("{} out of range 16-4320", self.height));
        }
        if !self.width.is_multiple_of(2) || !self.height.is_multiple_of(2) {
            return bad(
                if self.width.is_multiple_of(2) { "height" } else { "width" },
                format!("{}x{}: H.264 4:2:0 needs even sizes", self.width, self.height),
            );
        }
        if !(1..=240).contains(&self.fps) {
            return bad("fps", format!("{} out of range 1-240", self.fps));
        }
        if !(16..=200_000).contains(&self.bitrate_kbps) {
            return bad("bitrate_kbps", format!("{} out of range 16-200000", self.bitrate_kbps));
        }
        if !(self.keyframe_interval_s > 0.0 && self.keyframe_interval_s <= 60.0) {
            return bad("keyframe_interval_s", "must be in (0, 60]".into());
        }
        if !(self.segment_seconds >= 1.0 && self.segment_seconds <= 3600.0) {
            return bad("segment_seconds", "must be in [1, 3600]".into());
        }
        if self.retain_days.is_some_and(|d| !(d > 0.0 && d.is_finite())) {
            return bad("retain_days", "must be > 0".into());
        }
        if self.retain_bytes == Some(0) {
            return bad("retain_bytes", "must be > 0 (leave it out for no limit)".into());
        }
        if let Some(t) = &self.title
            && (t.chars().count() > 100 || t.chars().any(char::is_control))
        {
            return bad("title", "at most 100 characters, no control characters".into());
        }
        if let Some(g) = &self.group
            && (g.is_empty() || g.chars().count() > 64 || g.chars().any(|c| c.is_control() || c == ','))
        {
            return bad("group", "1-64 characters, no commas or control characters".into());
        }
        if self.motion_sensitivity > 100 {
            return bad("motion_sensitivity", format!("{} out of range 1-100", self.motion_sensitivity));
        }
        self.motion_settings().validate().map_err(|e| FieldError { field: e.field, message: e.message })?;
        if self.activity_merge_gap.0 > Duration::from_secs(600) {
            return bad("activity_merge_gap", format!("{} is more than 10m", self.activity_merge_gap));
        }
        Ok(())
    }

    /// The device a `v4l2:` source opens (two cameras cannot share one).
    pub fn v4l2_device(&self) -> Option<String> {
        match self.parsed_source() {
            Ok(Source::V4l2(dev)) => Some(dev),
            _ => None,
        }
    }

    /// The source with any password masked (`rtsp://admin:***@10.0.0.64/...`): what logs,
    /// states and responses show.
    pub fn masked_source(&self) -> String {
        mask_secrets(&self.source)
    }

    /// Whether a WHIP publisher feeds this camera (no capture process).
    pub fn is_whip(&self) -> bool {
        matches!(self.parsed_source(), Ok(Source::Whip))
    }

    /// The parsed source.
    pub fn parsed_source(&self) -> Result<Source, String> {
        self.source.parse()
    }
}

/// A camera value that failed its check: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The key (`width`, `source`, ...).
    pub field: &'static str,
    /// Why, in one line.
    pub message: String,
}

/// Masks the password of every `scheme://user:password@host` URL in `text` (RTSP sources,
/// error messages that quote them): `rtsp://admin:***@10.0.0.64/stream`.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first '/', whitespace or quote; its userinfo at the last '@'.
        let end = tail.find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon]);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

impl Config {
    /// The configuration used when no file is given: one test camera.
    pub fn default_with_test_camera() -> Self {
        Self {
            server: ServerConfig::default(),
            cameras: vec![CameraConfig::test_pattern("test")],
            tls: TlsConfig::default(),
            auth: crate::auth::AuthConfig::default(),
        }
    }

    /// Loads and validates a file, or the default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let cfg = match path {
            None => Self::default_with_test_camera(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
                Self::parse(&text).map_err(|e| match e {
                    ConfigError::Parse { message, .. } => ConfigError::Parse { path: p.to_owned(), message },
                    other => other,
                })?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    /// Checks values: names, sources, ranges, duplicates.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        let mut devices = std::collections::HashMap::new();
        for c in &self.cameras {
            if let Err(e) = c.check() {
                return Err(ConfigError::Invalid(format!("camera {:?}: {e}", c.name)));
            }
            if !seen.insert(c.name.clone()) {
                return Err(ConfigError::Invalid(format!("camera {:?}: duplicate name", c.name)));
            }
            if let Some(dev) = c.v4l2_device()
                && let Some(other) = devices.insert(dev.clone(), c.name.clone())
            {
                return Err(ConfigError::Invalid(format!(
                    "camera {:?}: source: {dev} is already used by camera {other:?}",
                    c.name
                )));
            }
        }
        self.server.udp_port_range().map_err(ConfigError::Invalid)?;
        if let Some(ip) = self.server.public_ips.iter().find(|ip| ip.parse::<std::net::IpAddr>().is_err()) {
            return Err(ConfigError::Invalid(format!("public_ips: {ip:?} is not an IP address")));
        }
        crate::limits::HttpLimits::from_config(&self.server).map_err(ConfigError::Invalid)?;
        self.tls.validate(self.server.listen).map_err(|m| ConfigError::Invalid(format!("[tls] {m}")))?;
        self.auth.validate().map_err(|m| ConfigError::Invalid(format!("[auth] {m}")))?;
        Ok(())
    }

    /// The camera named `name`.
    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

impl ServerConfig {
    /// `webrtc_udp_ports` parsed: `None` for ephemeral ports, else an inclusive range (one
    /// port: shared by every peer connection).
    pub fn udp_port_range(&self) -> Result<Option<(u16, u16)>, String> {
        let s = self.webrtc_udp_ports.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || format!("webrtc_udp_ports {s:?}: expected \"PORT\" or \"FIRST-LAST\"");
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?),
            None => {
                let p = s.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if a == 0 || b < a {
            return Err(bad());
        }
        Ok(Some((a, b)))
    }
}

#[cfg(test)]
mod tests;
