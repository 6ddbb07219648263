//! The data model shared by every layer: points, series keys and time units.
//!
//! A point is a measurement, a sorted tag set, one or more numeric fields and a timestamp. A *series* is one
//! (measurement, tag set, field). Timestamps are stored in milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};
pub use smol_str::SmolStr;

/// One line of line protocol (or one Prometheus sample): several fields share measurement, tags and time.
///
/// Names and tag values are [`SmolStr`]s: up to 23 bytes live inline, so parsing, copying, decoding and
/// dropping a point allocates only for its vectors (and for long strings). They serialize as plain strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub measurement: SmolStr,
    /// Sorted by key, keys unique.
    pub tags: Vec<(SmolStr, SmolStr)>,
    /// Field name and value; integers, unsigned and booleans are converted to f64 by the parsers.
    pub fields: Vec<(SmolStr, f64)>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// Timestamp precision of an incoming write (`precision=` on `/write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    /// Parses the InfluxDB 1.x / 2.x spellings: `ns`, `n`, `us`, `u`, `ms`, `s`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "" | "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    /// Converts a timestamp in this precision to milliseconds (floor division, so negative times stay ordered).
    pub fn to_millis(self, t: i64) -> i64 {
        match self {
            Precision::Nanoseconds => t.div_euclid(1_000_000),
            Precision::Microseconds => t.div_euclid(1_000),
            Precision::Milliseconds => t,
            Precision::Seconds => t.saturating_mul(1_000),
        }
    }

    /// The spelling `precision=` takes.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    /// Inverse of [`Precision::to_millis`] (to the precision's resolution; saturates).
    pub fn from_millis(self, ms: i64) -> i64 {
        match self {
            Precision::Nanoseconds => ms.saturating_mul(1_000_000),
            Precision::Microseconds => ms.saturating_mul(1_000),
            Precision::Milliseconds => ms,
            Precision::Seconds => ms.div_euclid(1_000),
        }
    }

    /// For a timestamp written as `raw` in some precision that put it implausibly far from `now_ms`: the
    /// precision, other than `given`, under which `raw` is a time in the last ten years up to `max_future_ms`
    /// ahead of `now_ms`, if there is one. Used to say "these look like seconds" instead of "too old".
    pub fn fitting(raw: i64, given: Precision, now_ms: i64, max_future_ms: i64) -> Option<Precision> {
        const TEN_YEARS_MS: i64 = 10 * 366 * 86_400_000;
        [Precision::Seconds, Precision::Milliseconds, Precision::Microseconds, Precision::Nanoseconds]
            .into_iter()
            .filter(|p| *p != given)
            .find(|p| {
                let ms = p.to_millis(raw);
                ms >= now_ms.saturating_sub(TEN_YEARS_MS) && ms <= now_ms.saturating_add(max_future_ms)
            })
    }
}

/// A duration for people: "3 h", "12 days", "53,000 years" (rounded, the largest unit that fits).
pub fn human_ms(ms: i64) -> String {
    const DAY: i64 = 86_400_000;
    let ms = ms.unsigned_abs();
    let (n, unit) = if ms >= 365 * DAY as u64 {
        (ms / (365 * DAY as u64), "year")
    } else if ms >= DAY as u64 {
        (ms / DAY as u64, "day")
    } else if ms >= 3_600_000 {
        (ms / 3_600_000, "hour")
    } else if ms >= 60_000 {
        (ms / 60_000, "minute")
    } else {
        (ms / 1_000, "second")
    };
    let digits = n.to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{grouped} {unit}{}", if n == 1 { "" } else { "s" })
}
