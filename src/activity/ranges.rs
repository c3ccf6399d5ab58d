//! Activity ranges from per-picture verdicts: a range opens at the first confirmed motion and
//! closes once `merge_gap` has passed without motion (its end is the last motion seen), so
//! one person crossing the yard with a pause is one range, not five. Each range keeps the
//! time and score of its peak, the picture to thumbnail.

/// Default stillness that closes a range.
pub const DEFAULT_MERGE_GAP_US: i64 = 5_000_000;

/// A range, open (`end` is `None`) or closed. Times are capture times in Unix microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    /// First confirmed motion.
    pub start_us: i64,
    /// Last motion, once closed.
    pub end_us: Option<i64>,
    /// Highest score seen.
    pub peak: f32,
    /// When the peak was seen.
    pub peak_us: i64,
}

/// What one verdict changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Change {
    /// A range opened.
    Started(Range),
    /// The open range closed.
    Ended(Range),
}

/// One camera's ranges.
#[derive(Debug)]
pub struct RangeTracker {
    merge_gap_us: i64,
    open: Option<Range>,
    last_motion_us: i64,
}

impl RangeTracker {
    /// Ranges closed after `merge_gap_us` of stillness.
    pub fn new(merge_gap_us: i64) -> Self {
        Self { merge_gap_us: merge_gap_us.max(0), open: None, last_motion_us: i64::MIN }
    }

    /// The open range, if any.
    pub fn open(&self) -> Option<&Range> {
        self.open.as_ref()
    }

    /// A verdict at capture time `t_us`: `motion` confirmed, with `score`. Times must not go
    /// backwards; one that does is taken as `t_us` = the last time seen.
    pub fn observe(&mut self, t_us: i64, motion: bool, score: f32) -> Option<Change> {
        let t_us = t_us.max(self.last_motion_us.max(self.open.map_or(i64::MIN, |r| r.start_us)));
        if motion {
            self.last_motion_us = t_us;
            match &mut self.open {
                Some(r) => {
                    if score > r.peak {
                        r.peak = score;
                        r.peak_us = t_us;
                    }
                    None
                }
                None => {
                    let r = Range { start_us: t_us, end_us: None, peak: score, peak_us: t_us };
                    self.open = Some(r);
                    Some(Change::Started(r))
                }
            }
        } else {
            self.close_if_still(t_us)
        }
    }

    /// Closes the open range if `merge_gap` has passed since the last motion at `now_us` (also
    /// called when no picture comes, e.g. the camera stopped).
    pub fn close_if_still(&mut self, now_us: i64) -> Option<Change> {
        let r = self.open?;
        if now_us.saturating_sub(self.last_motion_us) < self.merge_gap_us {
            return None;
        }
        self.open = None;
        Some(Change::Ended(Range { end_us: Some(self.last_motion_us), ..r }))
    }

    /// Closes the open range now, whatever the gap (the source went away).
    pub fn finish(&mut self) -> Option<Change> {
        let r = self.open.take()?;
        Some(Change::Ended(Range { end_us: Some(self.last_motion_us), ..r }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// Feeds one verdict every 200 ms from `from` s to `to` s (motion or not).
    fn feed(t: &mut RangeTracker, from: f64, to: f64, motion: bool, out: &mut Vec<Change>) {
        let mut at = (from * S as f64) as i64;
        while at < (to * S as f64) as i64 {
            out.extend(t.observe(at, motion, if motion { 0.02 + (at % 7) as f32 / 1000.0 } else { 0.0 }));
            at += 200_000;
        }
    }

    #[test]
    fn motion_with_short_pauses_is_one_range_and_a_long_pause_splits_it() {
        let mut t = RangeTracker::new(DEFAULT_MERGE_GAP_US);
        let mut out = Vec::new();
        feed(&mut t, 0.0, 10.0, false, &mut out);
        feed(&mut t, 10.0, 14.0, true, &mut out);
        feed(&mut t, 14.0, 17.0, false, &mut out); // a 3 s pause: same range
        feed(&mut t, 17.0, 20.0, true, &mut out);
        feed(&mut t, 20.0, 40.0, false, &mut out); // 20 s of stillness: closed
        feed(&mut t, 40.0, 41.0, true, &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        let Change::Started(a) = out[0] else { panic!("{out:?}") };
        assert_eq!(a.start_us, 10 * S);
        let Change::Ended(a) = out[1] else { panic!("{out:?}") };
        assert_eq!((a.start_us, a.end_us), (10 * S, Some(20 * S - 200_000)));
        assert!(a.peak >= 0.02 && (10 * S..20 * S).contains(&a.peak_us));
        assert!(matches!(out[2], Change::Started(r) if r.start_us == 40 * S));
        assert!(t.open().is_some());
        assert!(matches!(t.finish(), Some(Change::Ended(r)) if r.end_us == Some(41 * S - 200_000)));
        assert_eq!(t.finish(), None);
    }

    #[test]
    fn a_clock_going_back_does_not_make_a_range_end_before_it_starts() {
        let mut t = RangeTracker::new(S);
        t.observe(100 * S, true, 0.1);
        t.observe(50 * S, true, 0.2);
        let Some(Change::Ended(r)) = t.observe(200 * S, false, 0.0) else { panic!("not closed") };
        assert!(r.end_us.unwrap() >= r.start_us, "{r:?}");
    }
}
