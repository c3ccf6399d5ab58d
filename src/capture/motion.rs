//! The capture child's motion branch: small grey pictures taken from the raw frames before the
//! encoder (a scaled `tee` branch, no decoding) go through [`crate::activity`]'s detector and
//! range tracker; what they decide leaves as [`Report`] lines (`activity_started`,
//! `activity_ended`, and one `motion_level` per second).
//!
//! The branch may drop pictures (a leaky queue of one): a slow analysis never holds back
//! recording. Access unit sizes feed the bitstream score from the recording path.
//!
//! Pass-through sources (H.264 from the camera) have no raw frames: a `tee` after the parser
//! feeds [`decode_branch`], whose [`Gate`] passes every access unit or keyframes only, as
//! [`crate::activity::path`] decides.

use super::report::Report;
use crate::activity::bitstream::BitstreamScore;
use crate::activity::path::{Chooser, Path};
use crate::activity::picture::PictureDetector;
use crate::activity::ranges::{Change, RangeTracker};
use crate::config::CameraConfig;
use gst::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// Width of the analysed pictures.
pub const WIDTH: u32 = 160;
/// Pictures analysed per second at most.
pub const RATE: u32 = 5;
/// Name of the motion branch's app sink.
pub const SINK_NAME: &str = "vigil_motion";

/// Height of the analysed pictures for a `width` × `height` camera: the same aspect ratio,
/// even, at least 2.
pub fn picture_height(width: u32, height: u32) -> u32 {
    let h = (u64::from(WIDTH) * u64::from(height.max(1)) / u64::from(width.max(1))) as u32;
    (h & !1).clamp(2, 4 * WIDTH)
}

/// The branch from a raw-video `tee` to the motion app sink. Scaled before it is converted:
/// `videoconvert` from I420 to GRAY8 at 720p costs about 4 ms a picture, at 160 px nothing.
pub fn branch(cam: &CameraConfig) -> String {
    format!(
        "queue max-size-buffers=1 leaky=downstream ! videorate max-rate={RATE} ! videoscale ! \
         video/x-raw,width={WIDTH},height={} ! videoconvert ! video/x-raw,format=GRAY8 ! \
         appsink name={SINK_NAME} sync=false max-buffers=1 drop=true",
        picture_height(cam.width, cam.height)
    )
}

/// Name of the decoder in [`decode_branch`].
pub const DECODER_NAME: &str = "vigil_motion_dec";
/// Name of the queue before it.
pub const QUEUE_NAME: &str = "vigil_motion_q";

/// The branch from an H.264 `tee` (parsed, byte-stream AUs) to the motion app sink: a queue
/// of up to 2 s that drops when analysis falls behind (the [`Gate`] then waits for a
/// keyframe), one decoder thread, and only [`RATE`] pictures per second scaled and converted.
pub fn decode_branch() -> String {
    format!(
        "queue name={QUEUE_NAME} max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 leaky=downstream ! \
         avdec_h264 name={DECODER_NAME} max-threads=1 output-corrupt=false ! videorate max-rate={RATE} ! \
         videoscale ! video/x-raw,width={WIDTH},pixel-aspect-ratio=1/1 ! videoconvert ! video/x-raw,format=GRAY8 ! \
         appsink name={SINK_NAME} sync=false max-buffers=1 drop=true"
    )
}

/// What the decoder of a pass-through camera is given.
#[derive(Debug, Default)]
pub struct Gate(AtomicU8);

const EVERY: u8 = 0;
const KEYS: u8 = 1;
const WAIT_KEY: u8 = 2;

impl Gate {
    /// Whether an access unit goes to the decoder. Waiting for a keyframe (after a drop, or
    /// when every frame is wanted again) ends at the next one.
    pub fn pass(&self, keyframe: bool) -> bool {
        match self.0.load(Ordering::Relaxed) {
            EVERY => true,
            WAIT_KEY if keyframe => {
                self.0.store(EVERY, Ordering::Relaxed);
                true
            }
            _ => keyframe,
        }
    }

    /// Decode keyframes only (`false`) or every frame from the next keyframe on (`true`).
    pub fn every_frame(&self, every: bool) {
        self.0.store(if every { WAIT_KEY } else { KEYS }, Ordering::Relaxed);
    }

    /// Frames were dropped before the decoder: its references are gone until a keyframe.
    pub fn dropped(&self) {
        let _ = self.0.compare_exchange(EVERY, WAIT_KEY, Ordering::Relaxed, Ordering::Relaxed);
    }
}

/// One camera's analysis in the child.
pub struct Motion {
    detector: PictureDetector,
    tracker: RangeTracker,
    bitstream: BitstreamScore,
    /// Pass-through cameras: the choice of decoding, and the gate it sets.
    chooser: Option<(Chooser, Arc<Gate>)>,
    path: Path,
    /// The second being summed (µs, a multiple of 1 s) and its highest level so far.
    second: Option<(i64, f32)>,
    emit: fn(&Report),
}

/// The analysis shared by the branch's sink and the recorder.
pub type Shared = Arc<Mutex<Motion>>;

impl Motion {
    /// The analysis with the camera's settings (checked when they were loaded), reporting
    /// through `emit`.
    pub fn new(cam: &CameraConfig, emit: fn(&Report)) -> Shared {
        Arc::new(Mutex::new(Self {
            detector: PictureDetector::new(cam.motion_settings()),
            tracker: RangeTracker::new(cam.activity_merge_gap.0.as_micros().min(i64::MAX as u128) as i64),
            bitstream: BitstreamScore::new(),
            chooser: None,
            path: Path::Picture,
            second: None,
            emit,
        }))
    }

    /// The path motion is on.
    pub fn path(&self) -> Path {
        self.path
    }

    /// The source is pass-through: pictures come from [`decode_branch`], whose decoder
    /// `gate` this analysis now sets. Reports the path.
    pub fn pass_through(&mut self, gate: Arc<Gate>) {
        gate.every_frame(true);
        self.chooser = Some((Chooser::new(!self.detector.settings().masks.is_empty()), gate));
        self.set_path(Path::Decode);
    }

    /// Reports the path (sent once the source's video is linked, and on every change).
    pub fn set_path(&mut self, path: Path) {
        self.path = path;
        (self.emit)(&Report::MotionPath { path: path.as_str().to_owned() });
    }

    /// One grey picture captured at `t_us`.
    pub fn picture(&mut self, grey: &[u8], width: usize, height: usize, t_us: i64) {
        let v = self.detector.observe(grey, width, height);
        let level = if v.blob { v.score } else { 0.0 };
        if self.path == Path::Keyframes {
            // The bitstream decides; the keyframe checks it.
            let back = self.chooser.as_mut().and_then(|(c, _)| c.keyframe(v.blob));
            if let Some(path) = back {
                self.switch(path);
            }
            return;
        }
        if let Some((c, _)) = &mut self.chooser {
            c.picture_level(level);
        }
        self.level(t_us, level);
        self.verdict(t_us, v.motion, v.score);
    }

    /// One recorded access unit captured at `t_us` (its size feeds the bitstream score,
    /// which decides on [`Path::Keyframes`]).
    pub fn access_unit(&mut self, bytes: usize, keyframe: bool, t_us: i64) {
        let ratio = self.bitstream.push(bytes, keyframe);
        let Some((c, _)) = &mut self.chooser else { return };
        if let Some(r) = ratio {
            c.ratio(r);
        }
        if let (Some(_), Some((motion, level))) = (ratio, c.bitstream_verdict()) {
            self.level(t_us, level);
            self.verdict(t_us, motion, level);
        }
    }

    fn verdict(&mut self, t_us: i64, motion: bool, score: f32) {
        if let Some(change) = self.tracker.observe(t_us, motion, score) {
            let decoding = self.path == Path::Decode;
            let moved = match (&change, &mut self.chooser) {
                (Change::Started(_), Some((c, _))) if decoding => {
                    c.range_started();
                    None
                }
                (Change::Ended(_), Some((c, _))) if decoding => c.range_ended(),
                _ => None,
            };
            self.report(change);
            if let Some(path) = moved {
                self.switch(path);
            }
        }
    }

    fn switch(&mut self, path: Path) {
        if let Some((_, gate)) = &self.chooser {
            gate.every_frame(path == Path::Decode);
        }
        tracing::info!(path = path.as_str(), "motion analysis moves");
        self.set_path(path);
    }

    /// The capture is ending: the open range closes at its last motion, the last second's
    /// level goes out.
    pub fn finish(&mut self) {
        if let Some((second_us, level)) = self.second.take() {
            (self.emit)(&Report::MotionLevel { second_us, level });
        }
        if let Some(change) = self.tracker.finish() {
            self.report(change);
        }
    }

    fn level(&mut self, t_us: i64, level: f32) {
        let second_us = t_us.div_euclid(1_000_000) * 1_000_000;
        match &mut self.second {
            Some((s, max)) if *s == second_us => *max = max.max(level),
            Some((s, _)) if second_us < *s => {} // a clock step back: keep the later second
            cur => {
                if let Some((s, max)) = cur.take() {
                    (self.emit)(&Report::MotionLevel { second_us: s, level: max });
                }
                *cur = Some((second_us, level));
            }
        }
    }

    fn report(&self, change: Change) {
        let r = match change {
            Change::Started(r) => Report::ActivityStarted { start_us: r.start_us, peak: r.peak },
            Change::Ended(r) => Report::ActivityEnded {
                start_us: r.start_us,
                end_us: r.end_us.unwrap_or(r.start_us),
                peak: r.peak,
                peak_us: r.peak_us,
            },
        };
        (self.emit)(&r);
    }
}

/// Feeds the pictures of the motion app sink in `bin` (the pipeline or a branch of it) to
/// `motion`; `capture_time` turns a sample into its wall-clock capture time. Does nothing
/// when `bin` has no motion sink.
pub fn attach(
    bin: &gst::Bin,
    motion: Shared,
    capture_time: fn(&gst_app::AppSink, &gst::Sample, &gst::BufferRef) -> i64,
) -> bool {
    let Some(sink) = bin.by_name(SINK_NAME).and_then(|e| e.downcast::<gst_app::AppSink>().ok()) else {
        return false;
    };
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let (Some(buffer), Some(s)) = (sample.buffer(), sample.caps().and_then(|c| c.structure(0))) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let width = s.get::<i32>("width").unwrap_or(0).max(0) as usize;
                let height = s.get::<i32>("height").unwrap_or(0).max(0) as usize;
                let t_us = capture_time(sink, &sample, buffer);
                let Ok(map) = buffer.map_readable() else { return Ok(gst::FlowSuccess::Ok) };
                motion.lock().unwrap_or_else(|p| p.into_inner()).picture(map.as_slice(), width, height, t_us);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    true
}

/// Puts `gate` in front of the decoder of [`decode_branch`] in `bin`: access units it does not
/// pass are dropped, and so are the next ones until a keyframe after the queue overran.
pub fn attach_gate(bin: &gst::Bin, gate: Arc<Gate>) -> bool {
    let (Some(dec), Some(queue)) = (bin.by_name(DECODER_NAME), bin.by_name(QUEUE_NAME)) else {
        return false;
    };
    let Some(pad) = dec.static_pad("sink") else { return false };
    let g = gate.clone();
    queue.connect("overrun", false, move |_| {
        g.dropped();
        None
    });
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let keyframe = info.buffer().is_some_and(|b| !b.flags().contains(gst::BufferFlags::DELTA_UNIT));
        if gate.pass(keyframe) { gst::PadProbeReturn::Ok } else { gst::PadProbeReturn::Drop }
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pictures_keep_the_aspect_ratio() {
        assert_eq!(picture_height(1280, 720), 90);
        assert_eq!(picture_height(640, 480), 120);
        assert_eq!(picture_height(1920, 1080), 90);
        assert_eq!(picture_height(16, 4320), 640);
        assert_eq!(picture_height(7680, 16), 2);
        let cam = CameraConfig::test_pattern("t");
        let b = branch(&cam);
        assert!(b.contains("GRAY8") && b.contains("width=160,height=90") && b.contains("leaky=downstream"), "{b}");
    }

    static SEEN: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    fn record(r: &Report) {
        SEEN.lock().unwrap().push(r.clone());
    }

    #[test]
    fn a_moving_square_is_one_range_with_levels_per_second() {
        let cam = CameraConfig::test_pattern("t");
        let m = Motion::new(&cam, record);
        let (w, h) = (160usize, 90usize);
        let mut seed = 7u32;
        let mut noise = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((seed >> 16) % 7) as u8
        };
        let mut g = m.lock().unwrap();
        // 0-4 s still, 4-8 s a 20 px square crossing, 8-20 s still; 5 pictures/s.
        for i in 0..100 {
            let t_us = 1_000_000_000 + i * 200_000;
            let mut pic: Vec<u8> = (0..w * h).map(|_| 100 + noise()).collect();
            if (20..40).contains(&i) {
                let x0 = (i as usize - 20) * 6;
                for y in 30..50 {
                    for x in x0..x0 + 20 {
                        pic[y * w + x] = 220;
                    }
                }
            }
            g.picture(&pic, w, h, t_us);
        }
        g.finish();
        drop(g);
        let seen = SEEN.lock().unwrap().clone();
        let ranges: Vec<_> = seen.iter().filter(|r| !matches!(r, Report::MotionLevel { .. })).collect();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        let Report::ActivityEnded { start_us, end_us, peak, .. } = ranges[1] else { panic!("{ranges:?}") };
        assert!((1_004_000_000..=1_004_600_000).contains(start_us), "start {start_us}");
        assert!((1_007_400_000..=1_008_800_000).contains(end_us), "end {end_us}");
        assert!(*peak > 0.02, "peak {peak}");
        let levels: Vec<(i64, f32)> = seen
            .iter()
            .filter_map(|r| match r {
                Report::MotionLevel { second_us, level } => Some((*second_us, *level)),
                _ => None,
            })
            .collect();
        assert_eq!(levels.len(), 20, "one level per second: {levels:?}");
        assert!(levels.iter().all(|(s, _)| s % 1_000_000 == 0));
        assert!(levels[..4].iter().all(|(_, l)| *l == 0.0), "{levels:?}");
        assert!(levels[5..8].iter().all(|(_, l)| *l > 0.02), "{levels:?}");
        assert!(levels[10..].iter().all(|(_, l)| *l == 0.0), "{levels:?}");
    }
}
