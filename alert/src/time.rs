//! RFC 3339 times as Go (Alertmanager, Prometheus) writes them: UTC, `Z`, fraction digits trimmed.

use chrono::DateTime;

/// Go's zero `time.Time`, which Alertmanager sends as `endsAt` of alerts still firing.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `2024-01-31T12:00:00Z`, `2024-01-31T12:00:00.5Z`, `2024-01-31T12:00:00.123Z` (Go's `RFC3339Nano`).
pub fn rfc3339(ms: i64) -> String {
    let Some(t) = DateTime::from_timestamp_millis(ms) else { return ZERO_TIME.to_string() };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let digits = format!("{frac:03}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_706_702_400_000), "2024-01-31T12:00:00Z");
        assert_eq!(rfc3339(1_706_702_400_500), "2024-01-31T12:00:00.5Z");
        assert_eq!(rfc3339(1_706_702_400_120), "2024-01-31T12:00:00.12Z");
        assert_eq!(rfc3339(1_706_702_400_007), "2024-01-31T12:00:00.007Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), ZERO_TIME);
    }
}
