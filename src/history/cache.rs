//! The listing cache: each camera's segments (times, sizes, open or closed) in memory, so that
//! listing a month of one-minute segments is a walk over a `BTreeMap`, not 43,200 rows through
//! the database driver (BENCHMARKS.md: ~0.4–0.8 s before, on this machine).
//!
//! Sans-IO: [`super::index::Index`] owns one, fills a camera's entry from the `recording`
//! table on its first listing, and applies every change it makes to that table (open, close,
//! move to `garbage`, delete) after the change is committed. Every operation is idempotent
//! (insert-if-absent, replace, remove by start), so a change committed while a camera is being
//! loaded and applied again afterwards leaves the same state.
//!
//! Assumes what the index assumes: one vigil process writes the index, and a camera's
//! segments never overlap (so the only segment starting before a time that can hold it is the
//! latest one). Costs ~60 bytes per segment (~2.6 MB for 30 days of one-minute segments).

use std::collections::{BTreeMap, HashMap};

/// A segment as listings show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTimes {
    /// First AU capture time (µs).
    pub start_us: i64,
    /// Just past the last AU (µs); the start while open.
    pub end_us: i64,
    /// `.h264` bytes (0 while open).
    pub bytes: i64,
    /// Access units (0 while open).
    pub frames: i64,
    /// Still being written.
    pub open: bool,
}

impl SegmentTimes {
    /// A segment just opened.
    pub fn opened(start_us: i64) -> Self {
        Self { start_us, end_us: start_us, bytes: 0, frames: 0, open: true }
    }
}

/// The cached segments of the cameras loaded so far, by camera id, and camera ids by name.
#[derive(Debug, Default)]
pub struct ListingCache {
    cameras: HashMap<i64, BTreeMap<i64, SegmentTimes>>,
    ids: HashMap<String, i64>,
}

impl ListingCache {
    /// The id of a camera name, if known.
    pub fn id(&self, name: &str) -> Option<i64> {
        self.ids.get(name).copied()
    }

    /// Remembers a camera's id (ids never change: camera rows are never deleted).
    pub fn set_id(&mut self, name: &str, id: i64) {
        self.ids.insert(name.to_owned(), id);
    }

    /// Whether a camera's segments are loaded.
    pub fn is_loaded(&self, camera_id: i64) -> bool {
        self.cameras.contains_key(&camera_id)
    }

    /// Sets a camera's segments (all of them, from the table).
    pub fn load(&mut self, camera_id: i64, segments: impl IntoIterator<Item = SegmentTimes>) {
        self.cameras.insert(camera_id, segments.into_iter().map(|s| (s.start_us, s)).collect());
    }

    /// A segment was opened (a row inserted unless it existed).
    pub fn opened(&mut self, camera_id: i64, start_us: i64) {
        if let Some(m) = self.cameras.get_mut(&camera_id) {
            m.entry(start_us).or_insert_with(|| SegmentTimes::opened(start_us));
        }
    }

    /// A segment was closed with its final figures (inserted if it was never opened).
    pub fn closed(&mut self, camera_id: i64, segment: SegmentTimes) {
        if let Some(m) = self.cameras.get_mut(&camera_id) {
            m.insert(segment.start_us, segment);
        }
    }

    /// A segment left the index (to `garbage`, or deleted).
    pub fn removed(&mut self, camera_id: i64, start_us: i64) {
        if let Some(m) = self.cameras.get_mut(&camera_id) {
            m.remove(&start_us);
        }
    }

    /// A loaded camera's segments overlapping `[start_us, end_us)`, oldest first (an open
    /// segment overlaps everything after its start); `None` if not loaded.
    pub fn overlapping(&self, camera_id: i64, start_us: i64, end_us: i64) -> Option<Vec<SegmentTimes>> {
        let m = self.cameras.get(&camera_id)?;
        let mut out = Vec::new();
        if start_us >= end_us {
            return Some(out);
        }
        if let Some((_, s)) = m.range(..start_us).next_back()
            && (s.end_us > start_us || s.open)
        {
            out.push(*s);
        }
        out.extend(m.range(start_us..end_us).map(|(_, s)| *s));
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(start_us: i64, end_us: i64) -> SegmentTimes {
        SegmentTimes { start_us, end_us, bytes: 10, frames: 3, open: false }
    }

    #[test]
    fn follows_the_table() {
        let mut c = ListingCache::default();
        // Changes to a camera not loaded are ignored (the load will read them).
        c.opened(1, 0);
        assert_eq!(c.overlapping(1, 0, 10), None);
        c.load(1, [closed(0, 100), closed(100, 200)]);
        c.opened(1, 300);
        c.opened(1, 100); // exists: unchanged
        assert_eq!(c.overlapping(1, 150, 1000).unwrap(), vec![closed(100, 200), SegmentTimes::opened(300)]);
        // An open segment holds everything after its start.
        assert_eq!(c.overlapping(1, 5000, 6000).unwrap(), vec![SegmentTimes::opened(300)]);
        c.closed(1, closed(300, 400));
        assert!(c.overlapping(1, 5000, 6000).unwrap().is_empty());
        // A time in a gap, the end exclusive, an empty range.
        assert!(c.overlapping(1, 250, 300).unwrap().is_empty());
        assert_eq!(c.overlapping(1, 0, 100).unwrap(), vec![closed(0, 100)]);
        assert!(c.overlapping(1, 50, 50).unwrap().is_empty());
        c.removed(1, 0);
        c.removed(1, 0); // idempotent
        assert_eq!(c.overlapping(1, i64::MIN, i64::MAX).unwrap().len(), 2);
        c.set_id("front", 1);
        assert_eq!((c.id("front"), c.id("back")), (Some(1), None));
    }
}
