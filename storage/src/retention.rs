//! Retention policies and the time-partition arithmetic that makes expiry a range delete.
//!
//! Each series belongs to one retention class, fixed when the series is created: the first policy whose globs
//! match its measurement, else the default (class 0). A policy's `id` is part of every data key of its series
//! (see `keys`), so ids must stay stable once data exists; durations may change at any time.

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

/// Width of one raw-data partition; expiry drops whole partitions.
pub const RAW_PARTITION_MS: i64 = DAY;
/// Width of a 1-minute rollup block (one value per series per block) and of its partitions.
pub const M1_BLOCK_MS: i64 = 6 * HOUR;
pub const M1_PARTITION_MS: i64 = DAY;
/// Width of a 1-hour rollup block (six buckets) and of its partitions. A block grows by an hour as each
/// hour closes (see [`Tier::build_step_ms`]), so a dashboard over the last day reads only the hours not yet
/// closed raw; six hours, not a day, bounds what each growth step rewrites, at the cost of a block header per
/// column per six hours.
pub const H1_BLOCK_MS: i64 = 6 * HOUR;
pub const H1_PARTITION_MS: i64 = 30 * DAY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Tier {
    Raw,
    Minute,
    Hour,
}

impl Tier {
    pub fn bucket_ms(self) -> i64 {
        match self {
            Tier::Raw => 1,
            Tier::Minute => MINUTE,
            Tier::Hour => HOUR,
        }
    }
    pub fn partition_ms(self) -> i64 {
        match self {
            Tier::Raw => RAW_PARTITION_MS,
            Tier::Minute => M1_PARTITION_MS,
            Tier::Hour => H1_PARTITION_MS,
        }
    }
    pub fn block_ms(self) -> i64 {
        match self {
            Tier::Raw => RAW_PARTITION_MS,
            Tier::Minute => M1_BLOCK_MS,
            Tier::Hour => H1_BLOCK_MS,
        }
    }
    /// How far a tier's build advances at a time. The 1-hour tier grows its newest block bucket by bucket,
    /// so recent hours are read from the tier as soon as they close; the 1-minute tier is built a day
    /// before raw data expires, long after its blocks closed, so it goes block by block and never rewrites
    /// one.
    pub fn build_step_ms(self) -> i64 {
        match self {
            Tier::Hour => HOUR,
            tier => tier.block_ms(),
        }
    }
}

/// How long each tier keeps data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    #[serde(with = "humantime_ms")]
    pub raw: Duration,
    #[serde(with = "humantime_ms")]
    pub minute: Duration,
    #[serde(with = "humantime_ms")]
    pub hour: Duration,
}

impl Default for Durations {
    fn default() -> Self {
        Durations {
            raw: Duration::from_secs(7 * 86_400),
            minute: Duration::from_secs(30 * 86_400),
            hour: Duration::from_secs(365 * 86_400),
        }
    }
}

impl Durations {
    pub fn of(&self, tier: Tier) -> i64 {
        let d = match tier {
            Tier::Raw => self.raw,
            Tier::Minute => self.minute,
            Tier::Hour => self.hour,
        };
        d.as_millis().min(i64::MAX as u128) as i64
    }
}

/// A per-measurement override, e.g. `{ id = 1, measurements = ["debug_*"], raw = "1d", minute = "7d", hour = "30d" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub id: u16,
    pub measurements: Vec<String>,
    #[serde(flatten)]
    pub keep: Durations,
    /// Significant digits kept of each value (None: as the default class; 16 or more: every bit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significant_digits: Option<u8>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetentionConfig {
    /// Significant decimal digits kept of each written value, for the default class and every policy that
    /// does not set its own; None keeps every bit (the default). Lossy, opt-in: rounding happens as a write
    /// is applied, identically on every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significant_digits: Option<u8>,
    #[serde(default)]
    pub default: Durations,
    #[serde(default)]
    pub policies: Vec<Policy>,
}

/// Compiled policies.
#[derive(Debug, Clone)]
pub struct Retention {
    config: RetentionConfig,
    globs: Vec<GlobSet>,
}

impl Retention {
    pub fn new(config: RetentionConfig) -> Result<Retention, ConfigError> {
        let digits =
            std::iter::once(config.significant_digits).chain(config.policies.iter().map(|p| p.significant_digits));
        if let Some(d) = digits.flatten().find(|d| !(1..=17).contains(d)) {
            return Err(ConfigError::Retention(format!(
                "significant_digits must be 1 to 17 (16 or more keep every bit); got {d}"
            )));
        }
        let mut globs = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for p in &config.policies {
            if p.id == 0 || !seen.insert(p.id) {
                return Err(ConfigError::Retention(format!(
                    "retention policy ids must be unique and non-zero (0 is the default); got {}",
                    p.id
                )));
            }
            let mut b = GlobSetBuilder::new();
            for g in &p.measurements {
                b.add(Glob::new(g).map_err(|e| ConfigError::Retention(format!("bad glob {g:?}: {e}")))?);
            }
            globs.push(b.build().map_err(|e| ConfigError::Retention(e.to_string()))?);
        }
        Ok(Retention { config, globs })
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.config
    }

    pub fn class_of(&self, measurement: &str) -> u16 {
        for (p, g) in self.config.policies.iter().zip(&self.globs) {
            if g.is_match(measurement) {
                return p.id;
            }
        }
        0
    }

    /// Every class that may hold data, with its durations.
    pub fn classes(&self) -> impl Iterator<Item = (u16, &Durations)> {
        std::iter::once((0u16, &self.config.default)).chain(self.config.policies.iter().map(|p| (p.id, &p.keep)))
    }

    /// Significant digits a class's values are rounded to; None when its values are kept whole.
    pub fn significant_digits(&self, class: u16) -> Option<u8> {
        let own = self.config.policies.iter().find(|p| p.id == class).and_then(|p| p.significant_digits);
        own.or(self.config.significant_digits).filter(|&d| d < crate::codec::decimal::FULL_DIGITS)
    }

    /// Whether any class rounds its values (writes skip the per-sample lookup otherwise).
    pub fn rounds_values(&self) -> bool {
        self.classes().any(|(c, _)| self.significant_digits(c).is_some())
    }

    pub fn durations(&self, class: u16) -> &Durations {
        self.config.policies.iter().find(|p| p.id == class).map(|p| &p.keep).unwrap_or(&self.config.default)
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention::new(RetentionConfig::default()).expect("default retention is valid")
    }
}

/// Durations as human strings ("7d", "36h", "90m", "1y") in config files.
pub mod humantime_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_millis() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// Parses "10s", "5m", "36h", "7d", "2w", "1y", "250ms" and sums like "1h30m".
    pub fn parse(s: &str) -> Result<Duration, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let mut total: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let n_end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if n_end == 0 {
                return Err(format!("bad duration {s:?}: expected a number"));
            }
            let n: u128 = rest[..n_end].parse().map_err(|_| format!("bad duration {s:?}"))?;
            rest = &rest[n_end..];
            let u_end = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
            let unit_ms: u128 = match &rest[..u_end] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                u => return Err(format!("bad duration {s:?}: unknown unit {u:?} (use ms, s, m, h, d, w, y)")),
            };
            total = total.saturating_add(n.saturating_mul(unit_ms));
            rest = &rest[u_end..];
        }
        Ok(Duration::from_millis(total.min(u64::MAX as u128) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_first_matching_glob() {
        let cfg: RetentionConfig = toml::from_str(
            r#"
            [default]
            raw = "7d"
            minute = "30d"
            hour = "1y"
            [[policies]]
            id = 3
            measurements = ["debug_*", "tmp"]
            raw = "1d"
            minute = "2d"
            hour = "3d"
            "#,
        )
        .unwrap();
        let r = Retention::new(cfg).unwrap();
        assert_eq!(r.class_of("debug_x"), 3);
        assert_eq!(r.class_of("tmp"), 3);
        assert_eq!(r.class_of("cpu"), 0);
        assert_eq!(r.durations(3).of(Tier::Raw), DAY);
        assert_eq!(r.durations(0).of(Tier::Hour), 365 * DAY);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(humantime_ms::parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(humantime_ms::parse("250ms").unwrap(), Duration::from_millis(250));
        assert!(humantime_ms::parse("5 parsecs").is_err());
        assert!(humantime_ms::parse("").is_err());
    }
}
