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
}
