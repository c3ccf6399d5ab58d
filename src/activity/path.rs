//! Which analysis a camera's motion needs, and for pass-through sources (H.264 from the
//! camera: RTSP, H.264 files) the rule that moves a camera between the two ways of decoding.
//!
//! * [`Path::Picture`]: vigil encodes the source itself; the picture stage sees the raw frames
//!   before the encoder, nothing is decoded.
//! * [`Path::Decode`]: every frame is decoded (at the source's size; only 5 pictures/s are
//!   scaled and analysed) and the picture stage decides. Every pass-through camera starts
//!   here: a constant-bitrate encoder keeps P-frame sizes flat through motion, so nothing else
//!   is safe until the bitstream has shown that it follows motion.
//! * [`Path::Keyframes`]: the bitstream score decides; only keyframes are decoded (they keep
//!   the picture stage's background current and check the bitstream). A camera moves here
//!   after [`PROOF`] activity ranges in a row where the P-frame sizes rose with the motion
//!   and stayed low while still, and moves back to [`Path::Decode`] when keyframes show
//!   changes the bitstream missed. Cameras with mask polygons stay on `Decode`: sizes do not
//!   say where something moved.

/// How motion is analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Raw frames before vigil's encoder.
    Picture,
    /// Every frame decoded.
    Decode,
    /// The bitstream score, keyframes decoded.
    Keyframes,
    /// Motion detection is off for the camera.
    Off,
}

impl Path {
    /// The name in `/api/cameras` (`motion_path`) and in the capture reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Picture => "picture",
            Path::Decode => "decode",
            Path::Keyframes => "keyframes",
            Path::Off => "off",
        }
    }
}

/// Smoothed P-frame size over baseline at or above which the bitstream says "motion".
pub const TRIGGER: f64 = 2.0;
/// Below this the bitstream says "still".
const QUIET: f64 = 1.4;
/// Informative ranges in a row before a camera moves to [`Path::Keyframes`].
pub const PROOF: u32 = 2;
/// Keyframes in a row with a change the bitstream did not see before it moves back.
const MISSES: u32 = 2;
/// P-frame ratios averaged into one reading.
const SMOOTH: usize = 3;

/// One pass-through camera's choice between [`Path::Decode`] and [`Path::Keyframes`].
#[derive(Debug)]
pub struct Chooser {
    path: Path,
    allowed: bool,
    recent: [f64; SMOOTH],
    filled: usize,
    in_range: bool,
    range_max: f64,
    still_max: f64,
    informative: u32,
    misses: u32,
    /// Motion level per unit of (ratio − 1), learnt while decoding every frame.
    gain: Option<f64>,
}

impl Chooser {
    /// A camera starting on [`Path::Decode`]; with `masks` it never leaves it.
    pub fn new(masks: bool) -> Self {
        Self {
            path: Path::Decode,
            allowed: !masks,
            recent: [1.0; SMOOTH],
            filled: 0,
            in_range: false,
            range_max: 0.0,
            still_max: 0.0,
            informative: 0,
            misses: 0,
            gain: None,
        }
    }

    /// The current path.
    pub fn path(&self) -> Path {
        self.path
    }

    /// The last few P-frame ratios' mean, once there are enough.
    pub fn smoothed(&self) -> Option<f64> {
        (self.filled >= SMOOTH).then(|| self.recent.iter().sum::<f64>() / SMOOTH as f64)
    }

    /// One P-frame's size over the baseline (from [`super::bitstream::BitstreamScore`]).
    pub fn ratio(&mut self, r: f64) {
        self.recent[self.filled % SMOOTH] = r;
        self.filled = self.filled.saturating_add(1);
        let Some(s) = self.smoothed() else { return };
        if self.in_range {
            self.range_max = self.range_max.max(s);
        } else {
            self.still_max = self.still_max.max(s);
        }
    }

    /// On [`Path::Keyframes`]: the bitstream's verdict now, motion and its estimated level.
    pub fn bitstream_verdict(&self) -> Option<(bool, f32)> {
        if self.path != Path::Keyframes {
            return None;
        }
        let s = self.smoothed()?;
        let level = (self.gain.unwrap_or(0.01) * (s - 1.0)).clamp(0.0, 1.0) as f32;
        Some((s >= TRIGGER, if s >= TRIGGER { level.max(f32::MIN_POSITIVE) } else { 0.0 }))
    }

    /// On [`Path::Decode`]: a picture's motion level, paired with the bitstream now to learn
    /// how sizes map to levels.
    pub fn picture_level(&mut self, level: f32) {
        let Some(s) = self.smoothed() else { return };
        if self.path == Path::Decode && level > 0.0 && s >= TRIGGER {
            let sample = f64::from(level) / (s - 1.0);
            self.gain = Some(self.gain.map_or(sample, |g| g + (sample - g) / 8.0));
        }
    }

    /// The picture stage opened a range.
    pub fn range_started(&mut self) {
        self.in_range = true;
        self.range_max = 0.0;
    }

    /// The picture stage closed a range; returns the new path if the camera moves.
    pub fn range_ended(&mut self) -> Option<Path> {
        self.in_range = false;
        let informative = self.range_max >= TRIGGER && self.still_max < TRIGGER;
        self.still_max = 0.0;
        self.informative = if informative { self.informative + 1 } else { 0 };
        if self.path == Path::Decode && self.allowed && self.informative >= PROOF {
            self.path = Path::Keyframes;
            self.misses = 0;
            return Some(self.path);
        }
        None
    }

    /// On [`Path::Keyframes`]: a keyframe's picture did (`blob`) or did not show a change;
    /// returns [`Path::Decode`] when keyframes keep seeing changes the bitstream does not.
    pub fn keyframe(&mut self, blob: bool) -> Option<Path> {
        if self.path != Path::Keyframes {
            return None;
        }
        let quiet = self.smoothed().is_none_or(|s| s < QUIET);
        self.misses = if blob && quiet { self.misses + 1 } else { 0 };
        if self.misses >= MISSES {
            self.path = Path::Decode;
            self.informative = 0;
            self.misses = 0;
            return Some(self.path);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` P-frames at ratio `r`.
    fn frames(c: &mut Chooser, r: f64, n: usize) {
        for _ in 0..n {
            c.ratio(r);
        }
    }

    fn range(c: &mut Chooser, moving: f64, level: f32) -> Option<Path> {
        frames(c, 1.0, 60);
        c.range_started();
        for _ in 0..30 {
            c.ratio(moving);
            c.picture_level(level);
        }
        frames(c, 1.0, 30); // the merge gap: still, the range still open
        c.range_ended()
    }

    #[test]
    fn constant_bitrate_stays_on_decode() {
        let mut c = Chooser::new(false);
        for _ in 0..5 {
            assert_eq!(range(&mut c, 1.05, 0.05), None);
        }
        assert_eq!(c.path(), Path::Decode);
        assert_eq!(c.bitstream_verdict(), None, "the pictures decide on Decode");
    }

    #[test]
    fn variable_bitrate_moves_to_keyframes_after_proof_and_back_when_it_misses() {
        let mut c = Chooser::new(false);
        assert_eq!(range(&mut c, 4.0, 0.06), None);
        assert_eq!(range(&mut c, 4.0, 0.06), Some(Path::Keyframes));
        frames(&mut c, 1.0, 10);
        assert_eq!(c.bitstream_verdict(), Some((false, 0.0)));
        frames(&mut c, 4.0, 3);
        let (motion, level) = c.bitstream_verdict().unwrap();
        assert!(motion && (0.05..0.07).contains(&level), "level learnt from the pictures: {level}");
        // A change in a keyframe while the sizes are flat: once is not enough.
        frames(&mut c, 1.0, 10);
        assert_eq!(c.keyframe(true), None);
        assert_eq!(c.keyframe(false), None);
        assert_eq!(c.keyframe(true), None);
        assert_eq!(c.keyframe(true), Some(Path::Decode));
        // Back on Decode the proof starts again.
        assert_eq!(range(&mut c, 4.0, 0.06), None);
    }

    #[test]
    fn sizes_that_rise_while_still_prove_nothing_and_masks_keep_decode() {
        let mut c = Chooser::new(false);
        for _ in 0..3 {
            frames(&mut c, 3.0, 5); // a burst while nothing moved
            assert_eq!(range(&mut c, 4.0, 0.06), None);
        }
        let mut masked = Chooser::new(true);
        for _ in 0..4 {
            assert_eq!(range(&mut masked, 4.0, 0.06), None);
        }
        assert_eq!(masked.path(), Path::Decode);
    }
}
