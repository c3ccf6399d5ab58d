//! Times in requests: RFC 3339 (`2026-11-21T10:00:00Z`, `+01:00` offsets) or Unix
//! milliseconds, bounded to [`MIN_TIME_US`]..=[`MAX_TIME_US`] so that no arithmetic on them
//! downstream (spans, look-backs, 90 kHz conversions) can overflow. Their RFC 3339 form in
//! responses is [`format_time`] (written in [`super::listing`], which needs it fastest).
//! Pure functions; never panic on any input (fuzzed: `http_params`).

use super::api::ApiError;
pub use super::listing::format_time;

/// The earliest time a request may name: the Unix epoch.
pub const MIN_TIME_US: i64 = 0;
/// The latest: 9999-12-31T23:59:59.999999Z. With times bounded like this, no arithmetic on
/// them (spans, look-backs, 90 kHz conversions) can overflow.
pub const MAX_TIME_US: i64 = 253_402_300_799_999_999;

/// Parses RFC 3339 or Unix milliseconds into µs since the epoch, within
/// [`MIN_TIME_US`]..=[`MAX_TIME_US`].
pub fn parse_time(s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    let shown: String = s.chars().take(40).collect();
    let us = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !s[1..].contains('-') {
        s.parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| ApiError::BadRequest(format!("bad time {shown:?}")))?
    } else {
        rfc3339_us(s)
            .ok_or_else(|| ApiError::BadRequest(format!("bad time {shown:?}: expected RFC 3339 or Unix ms")))?
    };
    if !(MIN_TIME_US..=MAX_TIME_US).contains(&us) {
        return Err(ApiError::BadRequest(format!("time {shown:?} out of range (1970-01-01 to 9999-12-31)")));
    }
    Ok(us)
}

fn rfc3339_us(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let f = s.get(r)?;
        if f.bytes().all(|b| b.is_ascii_digit()) { f.parse().ok() } else { None }
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_us = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let padded: String = digits.chars().chain(std::iter::repeat('0')).take(6).collect();
        frac_us = padded.parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        // ASCII only: slicing a multi-byte character would panic.
        tz if tz.len() == 6 && tz.is_ascii() && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let (h, m) = (tz[1..3].parse::<u8>().ok()?, tz[4..6].parse::<u8>().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (i64::from(h) * 3600 + i64::from(m) * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    secs.checked_mul(1_000_000)?.checked_add(frac_us)
}

/// (year, month, day) → days since 1970-01-01 (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `[start, end)` of a request's `start` and `end` parameters: `end` defaults to `now_us`,
/// `start` to `default_span_us` before `end`. Both within [`MIN_TIME_US`]..=[`MAX_TIME_US`].
pub fn time_range_at(
    start: Option<&str>,
    end: Option<&str>,
    default_span_us: i64,
    now_us: i64,
) -> Result<(i64, i64), ApiError> {
    let named = |field: &str, t: &str| parse_time(t).map_err(|e| ApiError::BadRequest(format!("{field}: {e}")));
    let end = end.map(|t| named("end", t)).transpose()?.unwrap_or(now_us.clamp(MIN_TIME_US, MAX_TIME_US));
    let start =
        start.map(|t| named("start", t)).transpose()?.unwrap_or(end.saturating_sub(default_span_us).max(MIN_TIME_US));
    if start >= end {
        return Err(ApiError::BadRequest("start must be before end".into()));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1700000000123").unwrap(), 1_700_000_000_123_000);
        assert_eq!(parse_time("2026-11-22T00:00:00Z").unwrap(), 1_795_305_600_000_000);
        assert_eq!(parse_time("2026-11-22T01:00:00.5+01:00").unwrap(), 1_795_305_600_500_000);
        assert_eq!(format_time(1_795_305_600_500_000), "2026-11-22T00:00:00.500Z");
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-22T00:00:00", "2026-11-22T00:00:00.Z", "1-2"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_times_are_400_not_panics() {
        for bad in [
            // A multi-byte character across the offset's `:` used to panic on slicing.
            "2026-11-22T00:00:00+0\u{e9}00",
            "2026-11-22T00:00:00+\u{e9}:00",
            "\u{e9}026-11-22T00:00:00Z",
            "2026-11-22T00:00:00+99:99",
            "+026-11-22T00:00:00Z",
            "2026-+1-22T00:00:00Z",
            "-1",
            "-9223372036854775808",
            "9223372036854775807",
            "253402300800000",
            "99999-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert!(matches!(parse_time(bad), Err(ApiError::BadRequest(_))), "{bad:?}");
        }
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("9999-12-31T23:59:59.999999Z").unwrap(), MAX_TIME_US);
        // Defaults never go below the epoch, whatever the clock says.
        assert_eq!(time_range_at(None, Some("1000"), 7 * 86_400_000_000, 0).unwrap(), (0, 1_000_000));
        assert!(time_range_at(None, Some("0"), 1, 0).is_err());
        assert_eq!(time_range_at(None, None, 60_000_000, i64::MAX).unwrap().1, MAX_TIME_US);
    }
}
