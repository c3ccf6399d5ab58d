//! The configuration file (`vigil.toml`): one `[server]` table and `[[cameras]]`.
//! Every key is documented in `deploy/vigil.toml`; unknown keys are an error naming the key.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    /// UDP ports for WebRTC: `"40000-40100"` (one port per peer connection from the range)
    /// or empty for ephemeral ports.
    pub webrtc_udp_ports: String,
    /// Public addresses to advertise as ICE candidates when behind a NAT with forwarded
    /// ports (1:1 NAT).
    pub public_ips: Vec<String>,
    /// WHEP viewers allowed per camera.
    pub max_viewers_per_camera: usize,
    /// WHEP viewers allowed in total.
    pub max_viewers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            ice_servers: Vec::new(),
            webrtc_udp_ports: String::new(),
            public_ips: Vec::new(),
            max_viewers_per_camera: 250,
            max_viewers: 500,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        } else {
            return Err(format!(
                "unknown source {s:?}: expected test, v4l2:/dev/videoN, libcamera, rtsp://..., file:PATH or pipeline:..."
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
        }
    }

    /// The parsed source.
    pub fn parsed_source(&self) -> Result<Source, String> {
        self.source.parse()
    }
}

impl Config {
    /// The configuration used when no file is given: one test camera.
    pub fn default_with_test_camera() -> Self {
        Self { server: ServerConfig::default(), cameras: vec![CameraConfig::test_pattern("test")] }
    }

    /// Loads and validates a file, or the default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let cfg = match path {
            None => Self::default_with_test_camera(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| ConfigError::Read { path: p.to_owned(), source })?;
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
        for c in &self.cameras {
            let bad = |m: String| Err(ConfigError::Invalid(format!("camera {:?}: {m}", c.name)));
            if !crate::segment::path::valid_camera_name(&c.name) {
                return bad("name must be 1-64 characters of A-Z a-z 0-9 _ -".into());
            }
            if !seen.insert(c.name.clone()) {
                return bad("duplicate name".into());
            }
            if let Err(e) = c.parsed_source() {
                return bad(e);
            }
            if !(16..=7680).contains(&c.width) || !(16..=4320).contains(&c.height) {
                return bad(format!("size {}x{} out of range", c.width, c.height));
            }
            if !(1..=240).contains(&c.fps) {
                return bad(format!("fps {} out of range 1-240", c.fps));
            }
            if !(16..=200_000).contains(&c.bitrate_kbps) {
                return bad(format!("bitrate_kbps {} out of range 16-200000", c.bitrate_kbps));
            }
            if !(c.keyframe_interval_s > 0.0 && c.keyframe_interval_s <= 60.0) {
                return bad("keyframe_interval_s must be in (0, 60]".into());
            }
            if !(c.segment_seconds >= 1.0 && c.segment_seconds <= 3600.0) {
                return bad("segment_seconds must be in [1, 3600]".into());
            }
        }
        self.server.udp_port_range().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The camera named `name`.
    pub fn camera(&self, name: &str) -> Option<&CameraConfig> {
        self.cameras.iter().find(|c| c.name == name)
    }
}

impl ServerConfig {
    /// `webrtc_udp_ports` parsed: `None` for ephemeral ports, else an inclusive range.
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
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = Config::parse("[[cameras]]\nname = \"a\"\nfsp = 3\n").unwrap_err();
        assert!(e.to_string().contains("fsp"), "{e}");
    }

    #[test]
    fn full_example_parses_and_validates() {
        let text = include_str!("../deploy/vigil.toml");
        let cfg = Config::parse(text).unwrap();
        cfg.validate().unwrap();
        assert!(!cfg.cameras.is_empty());
    }

    #[test]
    fn validation_errors() {
        let mut cfg = Config::default_with_test_camera();
        cfg.cameras[0].name = "../x".into();
        assert!(cfg.validate().is_err());
        let mut cfg = Config::default_with_test_camera();
        cfg.cameras[0].source = "webcam".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("unknown source"));
        let mut cfg = Config::default_with_test_camera();
        cfg.server.webrtc_udp_ports = "50000-40000".into();
        assert!(cfg.validate().is_err());
        cfg.server.webrtc_udp_ports = "40000-40010".into();
        assert_eq!(cfg.server.udp_port_range().unwrap(), Some((40000, 40010)));
    }
}
