//! Query results in InfluxDB 1.x's shape: per statement a list of series, each with a name, group tags,
//! column names and rows of values; and their JSON rendering for `/query`.

use chrono::{DateTime, SecondsFormat};
use serde_json::{json, Map, Value as Json};

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Milliseconds since the epoch (the `time` column).
    Time(i64),
    Float(f64),
    Int(i64),
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub name: String,
    /// The group's tags (GROUP BY); empty without GROUP BY tags.
    pub tags: Vec<(String, String)>,
    pub columns: Vec<String>,
    pub values: Vec<Vec<Value>>,
}

/// How `time` values are written: RFC 3339 text (InfluxDB's default) or an integer epoch in a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Epoch {
    #[default]
    Rfc3339,
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

impl Epoch {
    /// The `epoch=` parameter of InfluxDB's `/query`: `ns`, `n`, `u`, `µ`, `ms`, `s`, `m`, `h`.
    pub fn parse(s: &str) -> Option<Epoch> {
        Some(match s {
            "" => Epoch::Rfc3339,
            "ns" | "n" => Epoch::Nanoseconds,
            "u" | "us" | "µ" => Epoch::Microseconds,
            "ms" => Epoch::Milliseconds,
            "s" => Epoch::Seconds,
            "m" => Epoch::Minutes,
            "h" => Epoch::Hours,
            _ => return None,
        })
    }

    pub fn time(self, ms: i64) -> Json {
        match self {
            Epoch::Rfc3339 => Json::String(rfc3339(ms)),
            Epoch::Nanoseconds => json!((ms as i128 * 1_000_000) as i64),
            Epoch::Microseconds => json!(ms.saturating_mul(1000)),
            Epoch::Milliseconds => json!(ms),
            Epoch::Seconds => json!(ms.div_euclid(1000)),
            Epoch::Minutes => json!(ms.div_euclid(60_000)),
            Epoch::Hours => json!(ms.div_euclid(3_600_000)),
        }
    }
}

/// `2024-01-31T12:00:00Z`, with as many fraction digits as needed (as InfluxDB prints).
pub fn rfc3339(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => ms.to_string(),
    }
}

impl Value {
    pub fn to_json(&self, epoch: Epoch) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Time(t) => epoch.time(*t),
            // JSON has no NaN or infinity: they print as null.
            Value::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
            Value::Int(i) => json!(i),
            Value::Str(s) => json!(s),
            Value::Bool(b) => json!(b),
        }
    }

    /// Plain text for tables and CSV.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Time(t) => rfc3339(*t),
            Value::Float(f) => f.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
        }
    }
}

impl Series {
    pub fn to_json(&self, epoch: Epoch) -> Json {
        let mut m = Map::new();
        if !self.name.is_empty() {
            m.insert("name".into(), json!(self.name));
        }
        if !self.tags.is_empty() {
            let tags: Map<String, Json> = self.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            m.insert("tags".into(), Json::Object(tags));
        }
        m.insert("columns".into(), json!(self.columns));
        let rows: Vec<Json> =
            self.values.iter().map(|r| Json::Array(r.iter().map(|v| v.to_json(epoch)).collect())).collect();
        m.insert("values".into(), Json::Array(rows));
        Json::Object(m)
    }
}

/// The outcome of one statement: series, or an error that concerns this statement only.
#[derive(Debug, Clone, PartialEq)]
pub struct StatementResult {
    pub statement_id: usize,
    pub series: Vec<Series>,
    pub error: Option<String>,
}

impl StatementResult {
    pub fn to_json(&self, epoch: Epoch) -> Json {
        let mut m = Map::new();
        m.insert("statement_id".into(), json!(self.statement_id));
        if let Some(e) = &self.error {
            m.insert("error".into(), json!(e));
        } else if !self.series.is_empty() {
            m.insert("series".into(), Json::Array(self.series.iter().map(|s| s.to_json(epoch)).collect()));
        }
        Json::Object(m)
    }
}

/// `{"results": [...]}` as InfluxDB 1.x answers `/query`.
pub fn results_json(results: &[StatementResult], epoch: Epoch) -> Json {
    json!({ "results": results.iter().map(|r| r.to_json(epoch)).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_like_influxdb() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200_500), "2024-01-01T00:00:00.500Z");
        assert_eq!(Epoch::parse("s").unwrap().time(1_704_067_200_500), json!(1_704_067_200));
        assert_eq!(Epoch::parse("ns").unwrap().time(1), json!(1_000_000));
        assert!(Epoch::parse("fortnight").is_none());
    }

    #[test]
    fn nan_is_null_and_empty_series_are_left_out() {
        let s = Series {
            name: "cpu".into(),
            tags: vec![("host".into(), "a".into())],
            columns: vec!["time".into(), "mean".into()],
            values: vec![vec![Value::Time(0), Value::Float(f64::NAN)]],
        };
        let r = StatementResult { statement_id: 0, series: vec![s], error: None };
        assert_eq!(
            results_json(&[r], Epoch::Milliseconds),
            json!({"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[[0,null]]}]}]})
        );
        let empty = StatementResult { statement_id: 1, series: vec![], error: None };
        assert_eq!(empty.to_json(Epoch::Rfc3339), json!({"statement_id":1}));
    }
}
