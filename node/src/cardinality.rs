//! The series explorer: which measurements, tag keys and tag pairs hold the most series in the cluster, and
//! which measurements created the most lately (`/api/v1/status/tsdb`, `pharosctl cardinality`). The limits
//! that stop a label explosion are in [`crate::series_limits`].

use std::sync::Arc;

/// The cluster's series statistics (`/api/v1/status/tsdb`, `pharosctl cardinality`), merged from every
/// shard's leader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Explored {
    pub series: u64,
    /// (measurement, series, series created in the window), most series first.
    pub measurements: Vec<(String, u64, u64)>,
    /// (tag key, distinct values (the most any one shard holds: a lower bound), series carrying it).
    pub labels: Vec<(String, u64, u64)>,
    /// (tag key, value, series), most series first.
    pub pairs: Vec<(String, String, u64)>,
    /// Where the "created" counts start (ms; the latest start over the shards, None when unknown: a
    /// replica keeps two hours of marks in memory, from its start).
    pub since_ms: Option<i64>,
}

/// Asks every shard's leader for its statistics and merges them; `top` entries of each list.
pub async fn explore(
    client: &Arc<crate::rpc::Client>,
    shards: u32,
    since_ms: i64,
    top: u32,
) -> Result<Explored, String> {
    use std::collections::HashMap;

    use crate::shard_rpc::{ShardRequest, ShardResponse};
    // Each shard sends more pairs than asked: the merged top is then right unless a pair's series are
    // spread thinly over many shards.
    let req = Arc::new(ShardRequest::Cardinality { since_ms, top: top.saturating_mul(4).max(100) });
    let answers = crate::rpc::fan_out(0..shards, |&s| {
        let (client, req) = (client.clone(), req.clone());
        async move { client.shard_request(s, &req, true, std::time::Duration::from_secs(30)).await }
    })
    .await;
    let mut out = Explored::default();
    let mut ms: HashMap<String, (u64, u64)> = HashMap::new();
    let mut labels: HashMap<String, (u64, u64)> = HashMap::new();
    let mut pairs: HashMap<(String, String), u64> = HashMap::new();
    let mut since: Option<i64> = Some(i64::MIN);
    for (shard, a) in answers {
        let (c, from) = match a {
            Ok(ShardResponse::Cardinality(c, from)) => (c, from),
            Ok(_) => return Err(format!("shard {shard}: unexpected answer")),
            Err(e) => return Err(format!("shard {shard}: {}", crate::error::chain(&e))),
        };
        out.series += c.series;
        for (m, n, new) in c.measurements {
            let e = ms.entry(m).or_default();
            e.0 += n;
            e.1 += new;
        }
        for (k, distinct, n) in c.labels {
            let e = labels.entry(k).or_default();
            e.0 = e.0.max(distinct);
            e.1 += n;
        }
        for (k, v, n) in c.pairs {
            *pairs.entry((k, v)).or_default() += n;
        }
        since = match (since, from) {
            (_, i64::MAX) | (None, _) => None,
            (Some(a), b) => Some(a.max(b)),
        };
    }
    let top = top as usize;
    out.measurements = ms.into_iter().map(|(m, (n, new))| (m, n, new)).collect();
    out.measurements.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out.measurements.truncate(top);
    out.labels = labels.into_iter().map(|(k, (d, n))| (k, d, n)).collect();
    out.labels.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    out.labels.truncate(top);
    out.pairs = pairs.into_iter().map(|((k, v), n)| (k, v, n)).collect();
    out.pairs.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    out.pairs.truncate(top);
    out.since_ms = since.filter(|s| *s != i64::MIN);
    Ok(out)
}

impl Explored {
    /// Prometheus's `/api/v1/status/tsdb` answer (`data`), with Pharos's additions: `seriesCountByLabelName`
    /// (as VictoriaMetrics has it) and `seriesCreatedByMetricName` since `createdSince`.
    pub fn to_prometheus_json(&self) -> serde_json::Value {
        use serde_json::json;
        let mut grew: Vec<&(String, u64, u64)> = self.measurements.iter().filter(|m| m.2 > 0).collect();
        grew.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        json!({
            "headStats": {"numSeries": self.series},
            "seriesCountByMetricName": self.measurements.iter().map(|(m, n, _)| json!({"name": m, "value": n})).collect::<Vec<_>>(),
            "labelValueCountByLabelName": self.labels.iter().map(|(k, d, _)| json!({"name": k, "value": d})).collect::<Vec<_>>(),
            "seriesCountByLabelName": self.labels.iter().map(|(k, _, n)| json!({"name": k, "value": n})).collect::<Vec<_>>(),
            "seriesCountByLabelValuePair": self.pairs.iter().map(|(k, v, n)| json!({"name": format!("{k}={v}"), "value": n})).collect::<Vec<_>>(),
            "seriesCreatedByMetricName": grew.iter().map(|(m, _, new)| json!({"name": m, "value": new})).collect::<Vec<_>>(),
            "createdSince": self.since_ms.and_then(chrono::DateTime::from_timestamp_millis).map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
    }
}
