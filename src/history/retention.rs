//! Retention planning (sans-IO): given a camera's closed recordings (oldest first), its
//! limits, the time, and which segments are leased, say which to delete. The service does
//! the deleting (garbage table → unlink → fsync → forget).

use super::index::Recording;

/// A camera's limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Keep at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Keep nothing that ended more than this long ago (µs).
    pub max_age_us: Option<i64>,
    /// Extra bytes to free for the disk floor (0 if the disk has room).
    pub free_bytes: u64,
}

/// Recordings to delete, oldest first. `total_bytes` is the camera's current usage. A
/// leased recording stops the sweep (deleting around it would leave a hole in what the
/// reader is about to read); it will be retried once the lease is gone, so a quota can be
/// exceeded for as long as a reader holds the oldest segment.
pub fn plan(
    oldest_first: &[Recording],
    total_bytes: u64,
    policy: &Policy,
    now_us: i64,
    is_leased: impl Fn(&Recording) -> bool,
) -> Vec<i64> {
    let mut out = Vec::new();
    let mut remaining = total_bytes;
    let mut freed_for_disk = 0u64;
    for r in oldest_first {
        let over_bytes = policy.max_bytes.is_some_and(|m| remaining > m);
        let too_old = policy.max_age_us.is_some_and(|age| r.end_us < now_us - age);
        let disk = freed_for_disk < policy.free_bytes;
        if !(over_bytes || too_old || disk) {
            break;
        }
        if is_leased(r) {
            break;
        }
        out.push(r.id);
        let b = r.bytes.max(0) as u64;
        remaining = remaining.saturating_sub(b);
        freed_for_disk += b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, start: i64, bytes: i64) -> Recording {
        Recording {
            id,
            camera: "c".into(),
            path: format!("c/d/{start}.h264"),
            start_us: start,
            end_us: start + 10,
            bytes,
            frames: 1,
            state: "closed".into(),
        }
    }

    #[test]
    fn bytes_quota_deletes_oldest_until_within() {
        let recs: Vec<_> = (0..5).map(|i| rec(i, i * 10, 100)).collect();
        let p = Policy { max_bytes: Some(250), ..Default::default() };
        assert_eq!(plan(&recs, 500, &p, 0, |_| false), vec![0, 1, 2]);
        assert!(plan(&recs, 250, &p, 0, |_| false).is_empty());
    }

    #[test]
    fn age_and_disk_floor() {
        let recs: Vec<_> = (0..5).map(|i| rec(i, i * 1000, 100)).collect();
        let p = Policy { max_age_us: Some(2500), ..Default::default() };
        // now = 5000: recordings ending before 2500 go (ends: 10, 1010, 2010, ...).
        assert_eq!(plan(&recs, 500, &p, 5000, |_| false), vec![0, 1, 2]);
        let p = Policy { free_bytes: 150, ..Default::default() };
        assert_eq!(plan(&recs, 500, &p, 0, |_| false), vec![0, 1]);
    }

    #[test]
    fn a_leased_segment_is_never_deleted() {
        let recs: Vec<_> = (0..5).map(|i| rec(i, i * 10, 100)).collect();
        let p = Policy { max_bytes: Some(100), ..Default::default() };
        assert_eq!(plan(&recs, 500, &p, 0, |r| r.id == 1), vec![0]);
        assert!(plan(&recs, 500, &p, 0, |r| r.id == 0).is_empty());
    }
}
