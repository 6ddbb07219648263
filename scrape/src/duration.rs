//! Prometheus durations and byte sizes, as written in scrape configs.
//!
//! Durations follow Prometheus's `model.ParseDuration`: `0`, or units from largest to smallest, each at most
//! once, with integer counts: `1y` (365d), `2w`, `3d`, `1h30m`, `15s`, `500ms`. [`format_duration`] writes them
//! back the way Prometheus does (`90s` becomes `1m30s`, years and weeks only when they divide exactly), which is
//! the text of the `__scrape_interval__` and `__scrape_timeout__` target labels.
//!
//! Byte sizes follow `units.Base2Bytes`, used by `body_size_limit`: a number (fractions allowed) and a unit
//! (`B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`, `PB`/`PiB`, `EB`/`EiB`, all powers of 1024), possibly
//! repeated (`1MB512KB`), or `0`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

/// Why a duration or byte size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {text:?}: {why}")]
pub struct UnitError {
    /// `duration` or `size`.
    pub kind: &'static str,
    pub text: String,
    pub why: &'static str,
}

/// Parses a Prometheus duration (`1h30m`, `15s`, `500ms`, `0`); the syntax is pharos-promconf's, shared
/// with rule files.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    match pharos_promconf::PromDuration::parse(text) {
        Ok(d) if d.ms() <= i64::MAX / 1_000_000 => Ok(Duration::from_millis(d.ms() as u64)),
        Ok(_) => Err(UnitError { kind: "duration", text: text.to_string(), why: "too large" }),
        Err(e) => Err(UnitError { kind: "duration", text: text.to_string(), why: e.why }),
    }
}

/// Writes a duration as Prometheus does: `0s`, `500ms`, `15s`, `1m30s`, `1h`, `90d`, `2w`, `1y`.
/// Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis().min(i64::MAX as u128) as i64;
    pharos_promconf::PromDuration(ms).to_string()
}

/// Seconds as Go's `strconv.FormatFloat(s, 'f', -1, 64)` writes them: `10`, `0.5`, `1.25`.
pub(crate) fn format_seconds(d: Duration) -> String {
    // Rust's Display for f64 is the shortest round-trip text, without an exponent, like Go's 'f' with -1.
    format!("{}", d.as_secs_f64())
}

const SIZE_UNITS: [(&str, u32); 13] = [
    ("B", 0),
    ("KB", 1),
    ("KiB", 1),
    ("MB", 2),
    ("MiB", 2),
    ("GB", 3),
    ("GiB", 3),
    ("TB", 4),
    ("TiB", 4),
    ("PB", 5),
    ("PiB", 5),
    ("EB", 6),
    ("EiB", 6),
];

/// Parses a byte size as Prometheus's `body_size_limit` (`10MB`, `512KiB`, `1.5GB`, `0`); units are powers of
/// 1024.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = |why| UnitError { kind: "size", text: text.to_string(), why };
    if text.is_empty() {
        return Err(err("empty size"));
    }
    if text == "0" {
        return Ok(0);
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut total: f64 = 0.0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if i == start {
            return Err(err("expected a number (sizes look like 10MB or 512KiB)"));
        }
        let n: f64 = text[start..i].parse().map_err(|_| err("bad number"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &text[ustart..i];
        if unit.is_empty() {
            return Err(err("missing unit (B, KB, MB, GB, TB, PB or EB)"));
        }
        let Some((_, pow)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(err("unknown unit (use B, KB, MB, GB, TB, PB, EB or KiB, MiB...)"));
        };
        total += n * 1024f64.powi(*pow as i32);
    }
    if total >= u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(total as u64)
}

/// Deserializes a value written as text (or a bare number) with `parse`; null is None.
fn de_text<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, UnitError>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, UnitError>,
    }
    impl<T> Visitor<'_> for V<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            (self.parse)(v).map(Some).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            self.visit_str(&v.to_string())
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(V { expecting, parse })
}

/// Deserializes a Prometheus duration from a YAML string.
pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_text(d, "a duration such as 15s, 1m or 1h30m", parse_duration)
}

/// Deserializes a byte size (`10MB`) from a YAML string, or `0`.
pub(crate) fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    de_text(d, "a size such as 10MB or 512KiB", parse_size)
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
            ("15s", 15_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("2h0m30s5ms", 7_230_005),
            ("90m", 5_400_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        let cases = [
            ("", "empty duration"),
            ("5x", "unknown unit (use ms, s, m, h, d, w or y)"),
            ("5", "missing unit (ms, s, m, h, d, w or y)"),
            ("1.5h", "missing unit (ms, s, m, h, d, w or y)"),
            ("-5m", "expected a number (durations look like 1h30m, 15s or 500ms)"),
            ("30m1h", "units must go from largest to smallest, each at most once"),
            ("1m1m", "units must go from largest to smallest, each at most once"),
            ("99999999999999999999s", "number too large"),
            ("999999999y", "too large"),
        ];
        for (text, why) in cases {
            assert_eq!(parse_duration(text), Err(UnitError { kind: "duration", text: text.into(), why }), "{text}");
        }
        assert_eq!(
            parse_duration("5x").unwrap_err().to_string(),
            r#"invalid duration "5x": unknown unit (use ms, s, m, h, d, w or y)"#
        );
    }

    #[test]
    fn formats_like_prometheus() {
        let cases = [
            (0, "0s"),
            (500, "500ms"),
            (15_000, "15s"),
            (90_000, "1m30s"),
            (60_000, "1m"),
            (5_400_000, "1h30m"),
            (86_400_000, "1d"),
            (14 * 86_400_000, "2w"),
            (90 * 86_400_000, "90d"),
            (365 * 86_400_000, "1y"),
            (61_001, "1m1s1ms"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_duration(Duration::from_millis(ms)), text, "{ms}");
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text} round trip");
        }
    }

    #[test]
    fn formats_seconds_like_go() {
        assert_eq!(format_seconds(Duration::from_secs(10)), "10");
        assert_eq!(format_seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(format_seconds(Duration::from_millis(1250)), "1.25");
    }

    #[test]
    fn parses_sizes_in_powers_of_1024() {
        let cases = [
            ("0", 0),
            ("0B", 0),
            ("100B", 100),
            ("1KB", 1024),
            ("1KiB", 1024),
            ("10MB", 10 << 20),
            ("1.5GB", 3 << 29),
            ("1MB512KB", (1 << 20) + (512 << 10)),
        ];
        for (text, n) in cases {
            assert_eq!(parse_size(text), Ok(n), "{text}");
        }
        for (text, why) in [
            ("10", "missing unit (B, KB, MB, GB, TB, PB or EB)"),
            ("10XB", "unknown unit (use B, KB, MB, GB, TB, PB, EB or KiB, MiB...)"),
            ("MB", "expected a number (sizes look like 10MB or 512KiB)"),
            ("", "empty size"),
        ] {
            assert_eq!(parse_size(text), Err(UnitError { kind: "size", text: text.into(), why }), "{text}");
        }
    }
}
