//! Prometheus remote write (`POST /api/v1/write`): snappy-compressed protobuf from Prometheus, vmagent or an
//! OpenTelemetry collector, turned into points: the metric name (`__name__`) is the measurement, the other
//! labels are tags, the sample is the field `value` (as InfluxDB maps Prometheus data, so queries read
//! `SELECT rate(value) FROM http_requests_total GROUP BY time(1m), job`).
//!
//! The whole request is checked before anything is written: a bad series gets 400 naming it and the reason,
//! and nothing of that request is written (Prometheus does not retry 4xx answers, and would otherwise resend
//! what was written). Empty label values mean "no label", as in Prometheus.

use pharos_proto::prometheus::WriteRequest;
use pharos_storage::line_protocol::Limits as LineLimits;
use pharos_storage::{Point, SmolStr};
use prost::Message;

/// The field name samples are stored under.
pub const VALUE_FIELD: &str = "value";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RemoteWriteError {
    #[error("body is not snappy-compressed (Prometheus remote write uses the snappy block format): {0}")]
    Snappy(String),
    #[error("body holds {size} bytes uncompressed, more than limits.max_body_bytes ({limit})")]
    TooLarge { size: usize, limit: usize },
    #[error("body is not a Prometheus remote write request (protobuf): {0}")]
    Protobuf(String),
    #[error("series {index} ({series}): {why}")]
    BadSeries { index: usize, series: String, why: String },
    #[error("request holds {samples} samples, more than limits.max_points_per_request ({limit}); nothing was written")]
    TooManySamples { samples: usize, limit: usize },
}

fn describe(labels: &[(String, String)]) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{k}={v:?}"));
    }
    s.push('}');
    if s.len() > 200 {
        s.truncate(200);
        s.push_str("...");
    }
    s
}

/// Decodes a remote write body into points (one per sample), checking the limits.
pub fn decode(
    body: &[u8],
    limits: &LineLimits,
    max_body: usize,
    max_samples: usize,
    now_ms: i64,
) -> Result<Vec<Point>, RemoteWriteError> {
    let size = snap::raw::decompress_len(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    if size > max_body {
        return Err(RemoteWriteError::TooLarge { size, limit: max_body });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|e| RemoteWriteError::Snappy(e.to_string()))?;
    let req = WriteRequest::decode(&raw[..]).map_err(|e| RemoteWriteError::Protobuf(e.to_string()))?;
    let samples: usize = req.timeseries.iter().map(|t| t.samples.len()).sum();
    if samples > max_samples {
        return Err(RemoteWriteError::TooManySamples { samples, limit: max_samples });
    }
    let mut out = Vec::with_capacity(samples);
    for (index, ts) in req.timeseries.into_iter().enumerate() {
        let labels: Vec<(String, String)> = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        let bad = |why: String| RemoteWriteError::BadSeries { index, series: describe(&labels), why };
        let mut name = None;
        let mut tags = Vec::with_capacity(labels.len());
        for (k, v) in &labels {
            if k == "__name__" {
                name = Some(v.clone());
            } else if !v.is_empty() {
                // An empty label value means the label is absent, in Prometheus's data model.
                tags.push((SmolStr::from(k.as_str()), SmolStr::from(v.as_str())));
            }
        }
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(bad("no metric name (__name__ label)".into()));
        };
        tags.sort();
        let name = SmolStr::from(name);
        let first = out.len();
        for s in ts.samples {
            out.push(Point {
                measurement: name.clone(),
                tags: tags.clone(),
                fields: vec![(SmolStr::new_static(VALUE_FIELD), s.value)],
                timestamp: s.timestamp,
            });
        }
        // The limits every structured point is held to: the series once (its samples share it), then each
        // sample's timestamp.
        if let Some(p) = out.get(first) {
            let checked = limits
                .check_series(p)
                .and_then(|()| out[first..].iter().try_for_each(|p| limits.check_timestamp(p.timestamp, now_ms)));
            checked.map_err(|e| bad(e.to_string()))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pharos_proto::prometheus::{Label, Sample, TimeSeries};

    fn body(series: Vec<(Vec<(&str, &str)>, Vec<(f64, i64)>)>) -> Vec<u8> {
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(ls, ss)| TimeSeries {
                    labels: ls.into_iter().map(|(n, v)| Label { name: n.into(), value: v.into() }).collect(),
                    samples: ss.into_iter().map(|(value, timestamp)| Sample { value, timestamp }).collect(),
                })
                .collect(),
        };
        snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
    }

    #[test]
    fn series_become_points_named_by_the_metric_with_sorted_tags() {
        let b = body(vec![(
            vec![("job", "api"), ("__name__", "http_requests_total"), ("instance", "a:9100"), ("empty", "")],
            vec![(1.0, 1000), (f64::from_bits(0x7ff0000000000002), 2000)],
        )]);
        let pts = decode(&b, &LineLimits::default(), 1 << 20, 100, 0).unwrap();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[0].measurement, "http_requests_total");
        assert_eq!(pts[0].tags, vec![("instance".into(), "a:9100".into()), ("job".into(), "api".into())]);
        assert_eq!(pts[0].fields, vec![("value".into(), 1.0)]);
        // Prometheus's staleness marker (a special NaN) arrives bit for bit.
        assert_eq!(pts[1].fields[0].1.to_bits(), 0x7ff0000000000002);
        assert_eq!(pts[1].timestamp, 2000);
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let l = LineLimits::default();
        assert!(matches!(
            decode(b"not snappy at all", &l, 1 << 20, 10, 0),
            Err(RemoteWriteError::Snappy(_) | RemoteWriteError::Protobuf(_))
        ));
        let no_name = body(vec![(vec![("job", "x")], vec![(1.0, 1)])]);
        let e = decode(&no_name, &l, 1 << 20, 10, 0).unwrap_err();
        assert_eq!(e.to_string(), "series 0 ({job=\"x\"}): no metric name (__name__ label)");
        let dup = body(vec![(vec![("__name__", "m"), ("a", "1"), ("a", "2")], vec![(1.0, 1)])]);
        assert!(decode(&dup, &l, 1 << 20, 10, 0).unwrap_err().to_string().contains("tag \"a\" given twice"));
        let many = body(vec![(vec![("__name__", "m")], vec![(1.0, 1), (2.0, 2), (3.0, 3)])]);
        assert_eq!(
            decode(&many, &l, 1 << 20, 2, 0).unwrap_err(),
            RemoteWriteError::TooManySamples { samples: 3, limit: 2 }
        );
        assert!(matches!(decode(&many, &l, 10, 10, 0), Err(RemoteWriteError::TooLarge { .. })));
        // A sample stamped more than limits.max_future ahead refuses the request, naming its series.
        let ahead = body(vec![(vec![("__name__", "m")], vec![(1.0, 1), (2.0, 1 + l.max_future_ms + 1)])]);
        let e = decode(&ahead, &l, 1 << 20, 10, 1).unwrap_err().to_string();
        assert!(e.contains("series 0") && e.contains("in the future"), "{e}");
        assert!(decode(&ahead, &l, 1 << 20, 10, 2).is_ok(), "up to the bound is fine");
    }
}
