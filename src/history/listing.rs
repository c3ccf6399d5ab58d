//! The recordings listing: runs merged from segments, RFC 3339 times out (requests' times
//! are parsed in [`super::time`]), and the `recordings` JSON, written by hand (a month of
//! one-minute segments is 43,200 objects, ~7 MB: serde's field-by-field path and string
//! escaping were most of its cost). Pure functions; the handler in [`super::api`] does the I/O.

use super::cache::SegmentTimes;
use super::plan::RUN_GAP_US;

/// Merges segments into continuous runs (gap ≤ [`RUN_GAP_US`]); an open one lasts until
/// `open_end_us`.
pub fn runs(recs: &[SegmentTimes], open_end_us: i64) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for r in recs {
        let end = if r.open { r.end_us.max(open_end_us) } else { r.end_us };
        match out.last_mut() {
            Some(last) if r.start_us - last.1 <= RUN_GAP_US => last.1 = last.1.max(end),
            _ => out.push((r.start_us, end)),
        }
    }
    out
}

/// µs since the epoch → RFC 3339 with milliseconds (`2026-11-22T00:00:00.500Z`).
pub fn format_time(us: i64) -> String {
    let mut out = Vec::with_capacity(24);
    push_time(&mut out, us, &mut DayText::default());
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// The last calendar day formatted (`YYYY-MM-DD`): consecutive times of a listing mostly
/// share one, so the date is worked out once a day, not twice a segment.
#[derive(Default)]
struct DayText {
    day: Option<i64>,
    text: Vec<u8>,
}

/// Appends `us` as [`format_time`] does.
fn push_time(out: &mut Vec<u8>, us: i64, days: &mut DayText) {
    let secs = us.div_euclid(1_000_000);
    let day = secs.div_euclid(86_400);
    if days.day != Some(day) {
        days.day = Some(day);
        days.text = crate::segment::path::day_name(us).into_bytes();
    }
    out.extend_from_slice(&days.text);
    let sod = secs.rem_euclid(86_400);
    let ms = us.rem_euclid(1_000_000) / 1000;
    let d2 = |v: i64| [b'0' + (v / 10) as u8, b'0' + (v % 10) as u8];
    out.push(b'T');
    out.extend_from_slice(&d2(sod / 3600));
    out.push(b':');
    out.extend_from_slice(&d2(sod / 60 % 60));
    out.push(b':');
    out.extend_from_slice(&d2(sod % 60));
    out.push(b'.');
    out.extend_from_slice(&[b'0' + (ms / 100) as u8, b'0' + (ms / 10 % 10) as u8, b'0' + (ms % 10) as u8]);
    out.push(b'Z');
}

/// Appends an integer in decimal.
fn push_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// The `recordings` body: `{"camera", "runs": [{start,end,start_ms,end_ms}], "segments":
/// [{start,end,start_ms,end_ms,bytes,frames,open}]}` (`segments` only when given).
pub fn recordings_json(camera: &str, runs: &[(i64, i64)], segments: Option<&[SegmentTimes]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + runs.len() * 100 + segments.map_or(0, |s| s.len() * 176));
    let mut days = DayText::default();
    out.extend_from_slice(b"{\"camera\":");
    // Camera names are [A-Za-z0-9_-], but escape as JSON would anyway.
    out.extend_from_slice(serde_json::to_string(camera).unwrap_or_else(|_| "\"\"".into()).as_bytes());
    let span = |out: &mut Vec<u8>, days: &mut DayText, s: i64, e: i64| {
        out.extend_from_slice(b"{\"start\":\"");
        push_time(out, s, days);
        out.extend_from_slice(b"\",\"end\":\"");
        push_time(out, e, days);
        out.extend_from_slice(b"\",\"start_ms\":");
        push_int(out, s.div_euclid(1000));
        out.extend_from_slice(b",\"end_ms\":");
        push_int(out, e.div_euclid(1000));
    };
    out.extend_from_slice(b",\"runs\":[");
    for (i, &(s, e)) in runs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        span(&mut out, &mut days, s, e);
        out.push(b'}');
    }
    out.push(b']');
    if let Some(segs) = segments {
        out.extend_from_slice(b",\"segments\":[");
        for (i, r) in segs.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            span(&mut out, &mut days, r.start_us, r.end_us);
            out.extend_from_slice(b",\"bytes\":");
            push_int(&mut out, r.bytes);
            out.extend_from_slice(b",\"frames\":");
            push_int(&mut out, r.frames);
            out.extend_from_slice(if r.open { b",\"open\":true}" } else { b",\"open\":false}" });
        }
        out.push(b']');
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(1_795_305_600_500_000), "2026-11-22T00:00:00.500Z");
        assert_eq!(format_time(1_795_391_999_999_999), "2026-11-22T23:59:59.999Z");
        assert_eq!(format_time(951_782_400_123_456), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999Z");
        for us in [i64::MIN, i64::MAX, -62_167_219_200_000_001] {
            assert!(format_time(us).ends_with('Z'), "{us}");
        }
    }

    #[test]
    fn runs_merge_adjacent_and_split_at_gaps() {
        let r = |s: i64, e: i64| SegmentTimes { start_us: s, end_us: e, bytes: 0, frames: 0, open: false };
        let recs = [r(0, 1_000_000), r(1_000_000, 2_000_000), r(5_000_000, 6_000_000)];
        assert_eq!(runs(&recs, 0), vec![(0, 2_000_000), (5_000_000, 6_000_000)]);
    }

    #[test]
    fn json_is_json() {
        let segs = [
            SegmentTimes {
                start_us: 1_795_305_599_999_999,
                end_us: 1_795_305_660_000_000,
                bytes: 7,
                frames: 3,
                open: false,
            },
            SegmentTimes::opened(1_795_305_660_000_000),
        ];
        let body = recordings_json("a\"b", &[(segs[0].start_us, 1_795_305_700_000_000)], Some(&segs));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["camera"], "a\"b");
        assert_eq!(v["runs"][0]["start"], "2026-11-21T23:59:59.999Z");
        assert_eq!(v["runs"][0]["end_ms"], 1_795_305_700_000i64);
        assert_eq!(v["segments"][0]["end"], "2026-11-22T00:01:00.000Z");
        assert_eq!(v["segments"][0]["start_ms"], 1_795_305_599_999i64);
        assert_eq!((v["segments"][0]["bytes"].as_i64(), v["segments"][0]["frames"].as_i64()), (Some(7), Some(3)));
        assert_eq!((v["segments"][0]["open"].as_bool(), v["segments"][1]["open"].as_bool()), (Some(false), Some(true)));
        let v: serde_json::Value = serde_json::from_slice(&recordings_json("c", &[], None)).unwrap();
        assert_eq!(v, serde_json::json!({"camera": "c", "runs": []}));
        let mut out = Vec::new();
        for n in [0, -5, i64::MIN, i64::MAX] {
            out.clear();
            push_int(&mut out, n);
            assert_eq!(String::from_utf8(out.clone()).unwrap(), n.to_string());
        }
    }
}
