//! The decode-free motion score: each P-frame's size against a running baseline of the
//! camera's P-frame sizes. Free for every source; it carries the decision where the encoder is
//! variable-bitrate (most IP cameras' default), where a moving object makes P-frames several
//! times larger than still ones. A constant-bitrate encoder keeps P-frame sizes flat through
//! motion; there the picture stage ([`super::picture`]) has to decide.

/// How fast the baseline follows the sizes: 1/64 per P-frame (about 2 s at 30 fps).
const FOLLOW: f64 = 1.0 / 64.0;
/// P-frames before the baseline is trusted.
const WARM_UP: u32 = 30;

/// One camera's bitstream score.
#[derive(Debug, Default)]
pub struct BitstreamScore {
    baseline: f64,
    seen: u32,
}

impl BitstreamScore {
    /// A score with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// An access unit of `bytes`; keyframes do not count (their size says nothing about
    /// motion). Returns the P-frame's size over the baseline (1.0 = as usual), once the
    /// baseline is warm.
    pub fn push(&mut self, bytes: usize, keyframe: bool) -> Option<f64> {
        if keyframe || bytes == 0 {
            return None;
        }
        let size = bytes as f64;
        self.seen = self.seen.saturating_add(1);
        if self.seen == 1 {
            self.baseline = size;
            return None;
        }
        let ratio = size / self.baseline.max(1.0);
        // Large frames move the baseline slowly (motion should not become the norm at once).
        let follow = if ratio > 2.0 { FOLLOW / 8.0 } else { FOLLOW };
        self.baseline += (size - self.baseline) * follow;
        (self.seen > WARM_UP).then_some(ratio)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_p_frames_stand_out_and_keyframes_do_not_count() {
        let mut s = BitstreamScore::new();
        let mut last = None;
        for i in 0..90 {
            // Still: P-frames of 2000-2200 bytes, a keyframe every 30 frames.
            last = s.push(2000 + (i * 37 % 200), i % 30 == 0).or(last);
        }
        let still = last.expect("warm");
        assert!((0.8..1.25).contains(&still), "still ratio {still}");
        assert_eq!(s.push(60_000, true), None, "keyframes are not scored");
        let moving: Vec<f64> = (0..30).filter_map(|_| s.push(9_000, false)).collect();
        assert!(moving.iter().all(|r| *r > 3.0), "motion ratios {moving:?}");
        assert_eq!(s.push(0, false), None);
    }
}
