//! GStreamer pipeline descriptions per camera source (pure string building, unit-tested).
//!
//! Every pipeline ends in `decodebin` limited to raw video or H.264: H.264 from the source
//! (RTSP cameras, UVC cameras with H.264, `pipeline:` descriptions that encode) is passed
//! through without re-encoding; anything else is decoded and encoded once by [`encode_chain`].
//! STACK.md pitfall 1: browser-decodable H.264 needs I420 before the encoder and a
//! constrained-baseline profile after it.

use crate::config::{CameraConfig, Encoder, Source};

/// Caps `decodebin` stops at: raw video, or parsed H.264.
pub const DECODEBIN_CAPS: &str = "video/x-raw(ANY);video/x-h264";

/// The source part of the pipeline, up to (not including) `decodebin`.
pub fn source_description(cam: &CameraConfig, source: &Source) -> String {
    let raw_caps = format!("video/x-raw,width={},height={},framerate={}/1", cam.width, cam.height, cam.fps);
    match source {
        Source::Test => format!("{} ! {TEST_OVERLAYS}", test_scene(cam)),
        Source::V4l2(dev) => format!("v4l2src device={} do-timestamp=true", quote(dev)),
        Source::Libcamera => format!("libcamerasrc ! {raw_caps}"),
        Source::Rtsp(url) => format!("rtspsrc location={} latency=200 protocols=tcp+udp", quote(url)),
        Source::File(path) => format!("filesrc location={}", quote(&path.to_string_lossy())),
        Source::Pipeline(desc) => desc.clone(),
        // Never captured by a child (the server refuses to start one); a source that yields
        // nothing keeps this total.
        Source::Whip => "fakesrc num-buffers=0".to_owned(),
    }
}

/// The test pattern's picture, before the clock overlays (what motion detection looks at: the
/// ticking clock is an annotation, not a change in the scene).
pub fn test_scene(cam: &CameraConfig) -> String {
    format!(
        "videotestsrc is-live=true pattern=smpte ! video/x-raw,width={},height={},framerate={}/1",
        cam.width, cam.height, cam.fps
    )
}

/// The clocks drawn over the test pattern: wall-clock time, and running time with ms.
pub const TEST_OVERLAYS: &str = "clockoverlay time-format=\"%Y-%m-%d %H:%M:%S\" halignment=left valignment=top \
     shaded-background=true font-desc=\"Sans 24\" ! timeoverlay halignment=right valignment=top \
     shaded-background=true font-desc=\"Sans 18\"";

/// The encoder chain for raw video, from raw frames to byte-stream AUs.
pub fn encode_chain(cam: &CameraConfig, hardware_available: bool, pace_to_clock: bool) -> String {
    let gop = ((cam.fps as f64) * cam.keyframe_interval_s).round().max(1.0) as u32;
    let pace = if pace_to_clock { "identity sync=true ! " } else { "" };
    let scale = to_encoder_format(cam);
    let use_hw = match cam.encoder {
        Encoder::Auto => hardware_available,
        Encoder::V4l2 => true,
        Encoder::X264 => false,
    };
    let enc = if use_hw {
        format!(
            "v4l2h264enc extra-controls=\"controls,video_bitrate={},h264_i_frame_period={gop},repeat_sequence_header=1\" ! \
             video/x-h264,level=(string)4,profile=(string)constrained-baseline",
            cam.bitrate_kbps * 1000
        )
    } else {
        format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={gop} bframes=0 aud=true \
             byte-stream=true threads=2 ! video/x-h264,profile=constrained-baseline",
            cam.bitrate_kbps
        )
    };
    format!("{pace}queue max-size-buffers=2 leaky=downstream ! {scale} ! {enc} ! h264parse config-interval=-1")
}

/// Raw video to what the encoder takes: I420 at the camera's size and rate. Placed before the
/// motion `tee` too, so that the tee's branches cannot negotiate another format with a
/// flexible source (with `videotestsrc`, the motion branch's GRAY8 would win: a grey
/// recording and a costly conversion); the encoder chain's copy then passes through.
pub fn to_encoder_format(cam: &CameraConfig) -> String {
    format!(
        "videoconvert ! videoscale ! videorate ! video/x-raw,format=I420,width={},height={},framerate={}/1",
        cam.width, cam.height, cam.fps
    )
}

/// The tail every branch ends in: byte-stream access units into the app sink.
pub const SINK_CAPS: &str = "video/x-h264,stream-format=byte-stream,alignment=au";

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_source_is_raw_with_clock() {
        let cam = CameraConfig::test_pattern("t");
        let d = source_description(&cam, &Source::Test);
        assert!(d.contains("is-live=true") && d.contains("width=1280") && d.contains("clockoverlay"));
    }

    #[test]
    fn x264_chain_is_browser_decodable() {
        let cam = CameraConfig::test_pattern("t");
        let c = encode_chain(&cam, false, false);
        assert!(c.contains("format=I420"));
        assert!(c.contains("profile=constrained-baseline"));
        assert!(c.contains("key-int-max=30") && c.contains("bframes=0") && c.contains("tune=zerolatency"));
        assert!(encode_chain(&cam, true, true).contains("v4l2h264enc"));
    }

    #[test]
    fn quoting_survives_spaces_and_quotes() {
        assert_eq!(quote("a \"b\""), "\"a \\\"b\\\"\"");
    }
}
