//! The write coordinator: any node splits a batch by shard and sends each part to that shard's leader,
//! locally or over the internal gRPC service, following leader hints until the write deadline.
//!
//! What a failed request leaves behind: each shard's part commits or fails as a whole, so when one shard
//! fails the parts of other shards may already be durable. Retrying the whole request is safe: a sample at
//! an existing (series, timestamp) replaces the value with the same value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use pharos_storage::{ApplyResult, Point, Precision};

use crate::error::{Group, WriteError};
use crate::metrics::Metrics;
use crate::replicas::Replicas;
use crate::routing::Router;
use crate::rpc::{CallError, Client};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub points: u64,
    pub samples: u64,
    pub rejected_too_old: u64,
    pub rejected_expired: u64,
    /// Samples that would have created series over a series limit, and the first limit met.
    pub rejected_series_limit: u64,
    pub series_limit: Option<String>,
}

/// The write coordinator.
pub struct Writes {
    pub router: Router,
    replicas: Arc<Replicas>,
    client: Arc<Client>,
    metrics: Arc<Metrics>,
    /// How long a shard's part may wait for a leader (`write.timeout`).
    timeout: Duration,
}

impl Writes {
    pub fn new(
        router: Router,
        replicas: Arc<Replicas>,
        client: Arc<Client>,
        metrics: Arc<Metrics>,
        timeout: Duration,
    ) -> Writes {
        Writes { router, replicas, client, metrics, timeout }
    }

    /// Writes points: each shard's part at its leader, all parts at once.
    pub async fn write_points(&self, points: Vec<Point>) -> Result<WriteOutcome, WriteError> {
        let mut out = WriteOutcome { points: points.len() as u64, ..Default::default() };
        if points.is_empty() {
            return Ok(out);
        }
        let mut by_shard: HashMap<u32, Vec<Point>> = HashMap::new();
        for p in points {
            by_shard.entry(self.router.shard_of(&p)).or_default().push(p);
        }
        let results = futures::future::join_all(by_shard.into_iter().map(|(s, pts)| self.write_shard(s, pts))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(a) => {
                    out.samples += a.samples_written;
                    out.rejected_too_old += a.rejected_too_old;
                    out.rejected_expired += a.rejected_expired;
                    out.rejected_series_limit += a.rejected_series_limit;
                    if out.series_limit.is_none() {
                        out.series_limit = a.series_limit;
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.metrics.samples_written.inc_by(out.samples);
        match first_err {
            Some(e) => Err(e.into()),
            None => {
                self.metrics.points_written.inc_by(out.points);
                Ok(out)
            }
        }
    }

    /// Writes one shard's part at its leader, following leader changes until the write timeout.
    pub async fn write_shard(&self, shard: u32, points: Vec<Point>) -> Result<ApplyResult, CallError> {
        // Shared with the shard writer: a retry after a leader change resends it without a copy.
        let points = Arc::new(points);
        let me = self.client.me();
        self.client
            .follow_leader(
                Group::Shard(shard),
                self.timeout,
                || false,
                |node| {
                    let points = points.clone();
                    async move {
                        if node != me {
                            return self.client.forward_write(node, shard, &points).await;
                        }
                        match self.replicas.get(shard) {
                            Some(r) => r.writer.submit(points).await.map_err(|e| e.into_call_error(me)),
                            None => Err(CallError::NoReplica { node: me, group: Group::Shard(shard), leader: None }),
                        }
                    }
                },
            )
            .await
    }
}

impl WriteOutcome {
    /// The client-facing explanation when some samples were refused at apply, if any were. `sent_as` is the
    /// unit a line-protocol sender chose for its timestamps and the request's earliest timestamp (ms): when
    /// that reads as a current time in another unit, the explanation says which (`None` for senders that
    /// cannot choose, such as remote write, whose timestamps are always milliseconds).
    pub fn refusal(&self, config: &crate::config::Config, sent_as: Option<(Precision, i64)>) -> Option<String> {
        let ms = |d: std::time::Duration| d.as_millis().min(i64::MAX as u128) as i64;
        let human = |d: std::time::Duration| pharos_storage::model::human_ms(ms(d));
        let mut why = Vec::new();
        let mut unit = None;
        if self.rejected_too_old > 0 {
            why.push(format!(
                "{} samples were older than their series' newest sample minus the out-of-order window ({})",
                self.rejected_too_old,
                human(config.storage.out_of_order_window)
            ));
        }
        if self.rejected_expired > 0 {
            let now = crate::clock::now_ms();
            let raw = config.retention.default.raw;
            let cutoff = chrono::DateTime::from_timestamp_millis(now.saturating_sub(ms(raw)))
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            let max_future = ms(config.limits.max_future);
            unit = sent_as.and_then(|(p, oldest)| Precision::fitting(p.from_millis(oldest), p, now, max_future));
            why.push(format!(
                "{} samples were older than the raw retention of their measurement ({} by default: before {cutoff})",
                self.rejected_expired,
                human(raw),
            ));
        }
        if self.rejected_series_limit > 0 {
            why.push(format!(
                "{} samples would have created new series over a series limit ({})",
                self.rejected_series_limit,
                self.series_limit.as_deref().unwrap_or("[limits]")
            ));
        }
        let hint = match unit {
            Some(u) => format!(
                "; the timestamps read as current times with precision {u} (they were taken as {}): send \
                 precision={u} on /write or --precision {u} with pharosctl write",
                sent_as.map(|(p, _)| p.name()).unwrap_or("ms"),
                u = u.name()
            ),
            None => String::new(),
        };
        (!why.is_empty()).then(|| {
            format!(
                "partial write: {} and were dropped; {} samples were written{hint}",
                why.join(", and "),
                self.samples
            )
        })
    }
}
