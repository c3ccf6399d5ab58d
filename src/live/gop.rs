//! The GOP cache: the frames since the last keyframe, so a new viewer starts on a keyframe
//! at once instead of waiting up to a keyframe interval. Pure data structure, no I/O.

use super::hub::Frame;
use std::sync::Arc;

/// Frames from the latest keyframe on, bounded so a source that never sends another
/// keyframe cannot grow it without limit.
#[derive(Debug)]
pub struct GopCache {
    frames: Vec<Arc<Frame>>,
    max_frames: usize,
}

impl GopCache {
    /// A cache holding at most `max_frames` frames.
    pub fn new(max_frames: usize) -> Self {
        Self { frames: Vec::new(), max_frames: max_frames.max(1) }
    }

    /// Adds a frame: a keyframe starts a new GOP; a frame that does not fit is dropped
    /// along with the whole cache (a viewer then waits for the next keyframe).
    pub fn push(&mut self, frame: Arc<Frame>) {
        if frame.keyframe {
            self.frames.clear();
            self.frames.push(frame);
        } else if !self.frames.is_empty() {
            if self.frames.len() >= self.max_frames {
                self.frames.clear();
            } else {
                self.frames.push(frame);
            }
        }
    }

    /// The cached GOP, keyframe first (empty if no keyframe is cached).
    pub fn snapshot(&self) -> Vec<Arc<Frame>> {
        self.frames.clone()
    }

    /// Empties the cache (e.g. the source restarted).
    pub fn clear(&mut self) {
        self.frames.clear();
    }

    /// The cached keyframe, if any.
    pub fn keyframe(&self) -> Option<&Arc<Frame>> {
        self.frames.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: i64, key: bool) -> Arc<Frame> {
        Arc::new(Frame { pts_us: n, rtp_ts: n as u32, keyframe: key, payloads: Vec::new(), bytes: 0 })
    }

    #[test]
    fn starts_at_keyframe_and_bounds() {
        let mut g = GopCache::new(3);
        g.push(f(1, false));
        assert!(g.snapshot().is_empty());
        g.push(f(2, true));
        g.push(f(3, false));
        assert_eq!(g.snapshot().iter().map(|f| f.pts_us).collect::<Vec<_>>(), vec![2, 3]);
        g.push(f(4, false));
        g.push(f(5, false)); // over the bound: dropped with the cache
        assert!(g.snapshot().is_empty());
        g.push(f(6, false));
        assert!(g.snapshot().is_empty());
        g.push(f(7, true));
        assert_eq!(g.keyframe().unwrap().pts_us, 7);
    }
}
