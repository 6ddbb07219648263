//! Prometheus durations: `500ms`, `30s`, `5m`, `1h30m`, `1d`, `1w`, `1y`, or `0`.
//!
//! Units come from largest to smallest, each at most once (`y`=365d, `w`=7d, `d`, `h`, `m`, `s`, `ms`).
//! A [`PromDuration`] serializes as its canonical text (`90m` becomes `1h30m`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration in milliseconds, written the Prometheus way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PromDuration(pub i64);

const UNITS: [(&str, i64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {text:?}: {why}")]
pub struct DurationError {
    pub text: String,
    pub why: &'static str,
}

impl PromDuration {
    pub const ZERO: PromDuration = PromDuration(0);

    pub fn from_secs(s: i64) -> PromDuration {
        PromDuration(s * 1000)
    }

    pub fn from_mins(m: i64) -> PromDuration {
        PromDuration(m * 60_000)
    }

    /// Milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses Prometheus's syntax.
    pub fn parse(text: &str) -> Result<PromDuration, DurationError> {
        let err = |why| DurationError { text: text.to_string(), why };
        if text.is_empty() {
            return Err(err("empty duration"));
        }
        if text == "0" {
            return Ok(PromDuration(0));
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        let mut total: i64 = 0;
        let mut next_unit = 0; // index into UNITS of the largest unit still allowed
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            if i == start {
                return Err(err("expected a number (durations look like 1h30m, 15s or 500ms)"));
            }
            let n: i64 = text[start..i].parse().map_err(|_| err("number too large"))?;
            let ustart = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &text[ustart..i];
            if unit.is_empty() {
                return Err(err("missing unit (ms, s, m, h, d, w or y)"));
            }
            let Some(pos) = UNITS.iter().position(|(u, _)| *u == unit) else {
                return Err(err("unknown unit (use ms, s, m, h, d, w or y)"));
            };
            if pos < next_unit {
                return Err(err("units must go from largest to smallest, each at most once"));
            }
            next_unit = pos + 1;
            total = n.checked_mul(UNITS[pos].1).and_then(|v| total.checked_add(v)).ok_or_else(|| err("too large"))?;
        }
        Ok(PromDuration(total))
    }
}

impl fmt::Display for PromDuration {
    /// Canonical text: `0s`, `500ms`, `1h30m`; years and weeks only when they divide exactly (`90d`, not `12w6d`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        if ms < 0 {
            f.write_str("-")?;
            ms = -ms;
        }
        for (i, (unit, mult)) in UNITS.iter().enumerate() {
            if i < 2 && ms % mult != 0 {
                continue;
            }
            let v = ms / mult;
            if v > 0 {
                write!(f, "{v}{unit}")?;
                ms -= v * mult;
            }
        }
        Ok(())
    }
}

impl FromStr for PromDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PromDuration::parse(s)
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PromDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("0", 0),
            ("0s", 0),
            ("500ms", 500),
            ("1s", 1_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("2h0m30s5ms", 7_230_005),
            ("90m", 5_400_000),
        ];
        for (text, ms) in cases {
            assert_eq!(PromDuration::parse(text), Ok(PromDuration(ms)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        let cases = [
            ("", "empty duration"),
            ("5x", "unknown unit (use ms, s, m, h, d, w or y)"),
            ("5", "missing unit (ms, s, m, h, d, w or y)"),
            ("m", "expected a number (durations look like 1h30m, 15s or 500ms)"),
            ("1.5h", "missing unit (ms, s, m, h, d, w or y)"),
            ("-5m", "expected a number (durations look like 1h30m, 15s or 500ms)"),
            ("30m1h", "units must go from largest to smallest, each at most once"),
            ("1m1m", "units must go from largest to smallest, each at most once"),
            ("5 m", "missing unit (ms, s, m, h, d, w or y)"),
            ("99999999999999999999s", "number too large"),
            ("999999999999y", "too large"),
        ];
        for (text, why) in cases {
            assert_eq!(PromDuration::parse(text), Err(DurationError { text: text.into(), why }), "{text}");
        }
        assert_eq!(
            PromDuration::parse("5x").unwrap_err().to_string(),
            r#"invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#
        );
    }

    #[test]
    fn displays_canonically() {
        let cases = [
            (0, "0s"),
            (500, "500ms"),
            (90 * 60_000, "1h30m"),
            (86_400_000, "1d"),
            (14 * 86_400_000, "2w"),
            (90 * 86_400_000, "90d"),
            (365 * 86_400_000, "1y"),
            (61_001, "1m1s1ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(PromDuration(ms).to_string(), text);
        }
    }

    #[test]
    fn serde_uses_the_text() {
        let d: PromDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d, PromDuration(5_400_000));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        assert!(serde_json::from_str::<PromDuration>("\"5x\"").is_err());
    }

    proptest::proptest! {
        #[test]
        fn display_then_parse_round_trips(ms in 0i64..10_000_000_000_000) {
            let d = PromDuration(ms);
            proptest::prop_assert_eq!(PromDuration::parse(&d.to_string()), Ok(d));
        }
    }
}
