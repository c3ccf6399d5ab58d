//! How long a viewer's frames wait inside webrtc-rs before they are sent, so that a viewer
//! whose peer connection falls behind skips to the next keyframe instead of falling further.
//!
//! `write_rtp` puts each packet in a per-peer-connection channel (256 events) that the
//! connection's driver task drains one packet per pass; there is no way to ask how full it is.
//! When the machine is starved (BENCHMARKS.md, "Under overload") that channel held 5-30 s of
//! media: latency grew without bound while every packet was still "sent". So the viewer
//! notes when it wrote each frame's last packet ([`Backlog::written`]), the interceptor tap
//! ([`crate::webrtc::rtcp_tap`]) notes the sequence number of each video packet as it leaves the
//! channel ([`Progress`]), and [`Backlog::oldest_age`] is how long the oldest frame not yet
//! out has waited. Sequence numbers rather than counts, so a packet webrtc-rs refuses before
//! the tap cannot leave a permanent offset. Sans-IO apart from the shared atomic.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A frame that has waited this long in the peer connection's queue makes the viewer drop
/// frames until the next keyframe (while the queue drains).
pub const MAX_QUEUE_DELAY: Duration = Duration::from_millis(250);

/// Frames remembered at most (about 17 s at 30 fps; far past [`MAX_QUEUE_DELAY`]).
const MAX_FRAMES: usize = 512;

/// The sequence number of the last video packet that left the queue, written by the tap.
#[derive(Debug, Default)]
pub struct Progress(AtomicU32);

/// Set in [`Progress`] once any packet was seen.
const SEEN: u32 = 1 << 16;

impl Progress {
    /// A packet with `seq` entered the interceptor chain (left the queue).
    pub fn taken(&self, seq: u16) {
        self.0.store(SEEN | u32::from(seq), Ordering::Relaxed);
    }

    /// The last sequence number taken, if any.
    pub fn last(&self) -> Option<u16> {
        let v = self.0.load(Ordering::Relaxed);
        (v & SEEN != 0).then_some(v as u16)
    }
}

/// The viewer's frames written but not yet seen leaving the queue.
#[derive(Debug)]
pub struct Backlog {
    progress: std::sync::Arc<Progress>,
    /// (sequence number of the frame's last packet, when it was written), oldest first.
    frames: VecDeque<(u16, Instant)>,
}

impl Backlog {
    /// A backlog reading the tap's `progress`.
    pub fn new(progress: std::sync::Arc<Progress>) -> Self {
        Self { progress, frames: VecDeque::new() }
    }

    /// A frame whose last packet has sequence number `last_seq` was written at `at`.
    pub fn written(&mut self, last_seq: u16, at: Instant) {
        if self.frames.len() == MAX_FRAMES {
            self.frames.pop_front();
        }
        self.frames.push_back((last_seq, at));
    }

    /// How long the oldest frame still in the queue has waited (zero when none is).
    pub fn oldest_age(&mut self, now: Instant) -> Duration {
        if let Some(taken) = self.progress.last() {
            // `seq` is out once the tap has seen it or a later one (within half the
            // sequence space: the queue never holds 32,768 packets).
            while let Some(&(seq, _)) = self.frames.front() {
                if (taken.wrapping_sub(seq) as i16) < 0 {
                    break;
                }
                self.frames.pop_front();
            }
        }
        self.frames.front().map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at))
    }

    /// Frames remembered (for tests).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

impl crate::webrtc::rtcp_tap::SentObserver for Progress {
    fn taken(&self, seq: u16) {
        Progress::taken(self, seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn age_is_that_of_the_oldest_frame_not_yet_taken() {
        let p = Arc::new(Progress::default());
        let mut b = Backlog::new(p.clone());
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(b.oldest_age(ms(0)), Duration::ZERO);
        b.written(10, ms(0));
        b.written(20, ms(33));
        b.written(30, ms(66));
        // Nothing seen by the tap yet: the first frame has waited since it was written.
        assert_eq!(b.oldest_age(ms(100)), Duration::from_millis(100));
        p.taken(15); // part of the second frame is out
        assert_eq!(b.oldest_age(ms(100)), Duration::from_millis(67));
        p.taken(30);
        assert_eq!(b.oldest_age(ms(400)), Duration::ZERO);
        assert!(b.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let p = Arc::new(Progress::default());
        let mut b = Backlog::new(p.clone());
        let t0 = Instant::now();
        b.written(65_530, t0);
        b.written(4, t0 + Duration::from_millis(33));
        p.taken(65_535);
        assert_eq!(b.oldest_age(t0 + Duration::from_millis(50)), Duration::from_millis(17));
        p.taken(4);
        assert_eq!(b.oldest_age(t0 + Duration::from_millis(50)), Duration::ZERO);
    }

    #[test]
    fn a_packet_refused_before_the_tap_leaves_no_offset() {
        // Sequence numbers 11..=19 never reach the tap (refused by webrtc-rs); later ones do.
        let p = Arc::new(Progress::default());
        let mut b = Backlog::new(p.clone());
        let t0 = Instant::now();
        b.written(19, t0);
        b.written(29, t0);
        p.taken(29);
        assert_eq!(b.oldest_age(t0 + Duration::from_secs(5)), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let mut b = Backlog::new(Arc::new(Progress::default()));
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            b.written(i as u16, t0);
        }
        assert_eq!(b.len(), MAX_FRAMES);
    }
}
