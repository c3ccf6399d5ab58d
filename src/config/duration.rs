//! Durations as people write them in vigil.toml and the API: `"7d"`, `"1h30m"`, `"500ms"`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A duration written like `"7d"`, `"12h"`, `"30m"`, `"45s"`, `"500ms"` or a combination
/// (`"1h30m"`); a bare number is seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses the text form.
    pub fn parse(text: &str) -> Result<Self, String> {
        let s = text.trim();
        let bad = || format!("duration {text:?}: expected e.g. \"7d\", \"12h\", \"30m\", \"2s\" or \"500ms\"");
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(secs) = s.parse::<u64>() {
            return Ok(Self(Duration::from_secs(secs)));
        }
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = rest[digits..].trim_start();
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = rest[unit_len..].trim_start();
            let part = match unit {
                "ms" => Duration::from_millis(n),
                "s" | "sec" | "secs" => Duration::from_secs(n),
                "m" | "min" | "mins" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
                "h" | "hour" | "hours" => Duration::from_secs(n.checked_mul(3_600).ok_or_else(bad)?),
                "d" | "day" | "days" => Duration::from_secs(n.checked_mul(86_400).ok_or_else(bad)?),
                "w" | "week" | "weeks" => Duration::from_secs(n.checked_mul(604_800).ok_or_else(bad)?),
                _ => return Err(bad()),
            };
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        Ok(Self(total))
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        if d.subsec_nanos() != 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let s = d.as_secs();
        match s {
            0 => write!(f, "0s"),
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3_600 == 0 => write!(f, "{}h", s / 3_600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"7d\", \"12h\" or \"2s\", or a number of seconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                HumanDuration::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|v| HumanDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom("negative duration"))
            }
        }
        d.deserialize_any(V)
    }
}
