//! Where segments live on disk: `<data_dir>/<camera>/<YYYY-MM-DD>/<start_us>.{h264,idx}`.

use std::path::{Path, PathBuf};

/// Validates a camera name for use as a directory and URL segment: 1–64 of `[A-Za-z0-9_-]`.
pub fn valid_camera_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The UTC calendar day (`YYYY-MM-DD`) of a time in µs since the Unix epoch.
pub fn day_name(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The files of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFiles {
    /// Wall-clock start (µs since the epoch) = the file stem.
    pub start_us: i64,
    /// The `.h264` data file.
    pub data: PathBuf,
    /// The `.idx` index file.
    pub idx: PathBuf,
}

impl SegmentFiles {
    /// The files of the segment starting at `start_us` in `camera_dir`.
    pub fn new(camera_dir: &Path, start_us: i64) -> Self {
        let dir = camera_dir.join(day_name(start_us));
        Self { start_us, data: dir.join(format!("{start_us}.h264")), idx: dir.join(format!("{start_us}.idx")) }
    }

    /// The day directory holding both files.
    pub fn dir(&self) -> &Path {
        self.data.parent().unwrap_or(Path::new("."))
    }
}

/// Lists the segments of a camera directory, oldest first (by start time, not file name).
/// Only `.h264` files with a numeric stem count; day directories are read in name order.
pub fn list_segments(camera_dir: &Path) -> std::io::Result<Vec<SegmentFiles>> {
    let mut days: Vec<PathBuf> = match std::fs::read_dir(camera_dir) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    days.sort();
    let mut out = Vec::new();
    for day in days {
        out.extend(list_day(&day)?);
    }
    Ok(out)
}

/// Lists the segments in one day directory, oldest first.
pub fn list_day(day_dir: &Path) -> std::io::Result<Vec<SegmentFiles>> {
    let mut segs: Vec<SegmentFiles> = std::fs::read_dir(day_dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let stem = name.strip_suffix(".h264")?;
            let start_us: i64 = stem.parse().ok()?;
            Some(SegmentFiles { start_us, data: e.path(), idx: day_dir.join(format!("{stem}.idx")) })
        })
        .collect();
    segs.sort_by_key(|s| s.start_us);
    Ok(segs)
}

/// The newest segment of a camera, looking only at the newest day directory that has one.
pub fn newest_segment(camera_dir: &Path) -> std::io::Result<Option<SegmentFiles>> {
    let mut days: Vec<PathBuf> = match std::fs::read_dir(camera_dir) {
        Ok(rd) => {
            rd.filter_map(|e| e.ok()).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    days.sort();
    for day in days.iter().rev() {
        if let Some(s) = list_day(day)?.pop() {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_names() {
        assert_eq!(day_name(0), "1970-01-01");
        assert_eq!(day_name(-1), "1969-12-31");
        // 2026-11-21T23:59:59.999999Z
        assert_eq!(day_name(1_795_305_599_999_999), "2026-11-21");
        assert_eq!(day_name(1_795_305_600_000_000), "2026-11-22");
        assert_eq!(day_name(951_782_400_000_000), "2000-02-29");
    }

    #[test]
    fn camera_names() {
        assert!(valid_camera_name("front-door_2"));
        for bad in ["", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!valid_camera_name(bad), "{bad:?}");
        }
    }
}
