//! The write coordinator: any node splits a batch by shard and sends each part to that shard's leader,
//! locally or over the internal gRPC service, following leader hints until the write deadline.
//!
//! What a failed request leaves behind: each shard's part commits or fails as a whole, so when one shard
//! fails the parts of other shards may already be durable. Retrying the whole request is safe: a sample at
//! an existing (series, timestamp) replaces the value with the same value.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_proto::internal::ForwardWriteRequest;
use pharos_storage::{ApplyResult, Point, Precision};

use crate::cluster::Node;
use crate::error::WriteError;
use crate::writer::ShardWriteError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub points: u64,
    pub samples: u64,
    pub rejected_too_old: u64,
    pub rejected_expired: u64,
}

pub async fn write_points(node: &Arc<Node>, points: Vec<Point>) -> Result<WriteOutcome, WriteError> {
    let mut out = WriteOutcome { points: points.len() as u64, ..Default::default() };
    if points.is_empty() {
        return Ok(out);
    }
    let mut by_shard: HashMap<u32, Vec<Point>> = HashMap::new();
    for p in points {
        by_shard.entry(node.router.shard_of(&p)).or_default().push(p);
    }
    let results = futures::future::join_all(by_shard.into_iter().map(|(s, pts)| write_shard(node, s, pts))).await;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(a) => {
                out.samples += a.samples_written;
                out.rejected_too_old += a.rejected_too_old;
                out.rejected_expired += a.rejected_expired;
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    node.metrics.samples_written.inc_by(out.samples);
    match first_err {
        Some(e) => Err(e),
        None => {
            node.metrics.points_written.inc_by(out.points);
            Ok(out)
        }
    }
}

/// Writes one shard's part, retrying on leader changes until the configured write timeout.
pub async fn write_shard(node: &Arc<Node>, shard: u32, points: Vec<Point>) -> Result<ApplyResult, WriteError> {
    // Shared with the shard writer: a retry after a leader change resends it without a copy.
    let points = Arc::new(points);
    let deadline = Instant::now() + node.config.write.timeout;
    let mut backoff = Duration::from_millis(20);
    loop {
        let tried = node.leader_of(shard);
        let res = match tried {
            Some(l) if l == node.id => match node.replica(shard) {
                Some(r) => r.writer.submit(points.clone()).await,
                None => Err(ShardWriteError::NotLeader { shard, leader: None }),
            },
            Some(l) => forward(node, l, shard, &points).await,
            None => Err(ShardWriteError::NotLeader { shard, leader: None }),
        };
        match res {
            Ok(r) => return Ok(r),
            Err(ShardWriteError::NotLeader { leader, .. })
            | Err(ShardWriteError::Closed { leader_hint: leader, .. }) => {
                if let Some(l) = leader {
                    node.note_leader(shard, l);
                }
                if Instant::now() + backoff > deadline {
                    return Err(WriteError::Unavailable(format!("shard {shard} has no reachable leader")));
                }
                wait_for_new_leader(node, shard, tried, backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits up to `backoff` for the shard to get a leader other than `tried`, as this node's replica sees it,
/// so a write retries as soon as an election ends rather than at the next backoff step; at least a short
/// pause, so a stale view does not spin.
async fn wait_for_new_leader(node: &Arc<Node>, shard: u32, tried: Option<u64>, backoff: Duration) {
    const PAUSE: Duration = Duration::from_millis(10);
    let Some(r) = node.replica(shard) else {
        tokio::time::sleep(backoff).await;
        return;
    };
    let mut metrics = r.raft.metrics();
    let started = Instant::now();
    let _ =
        tokio::time::timeout(backoff, metrics.wait_for(|m| m.current_leader.is_some_and(|l| Some(l) != tried))).await;
    tokio::time::sleep(PAUSE.min(backoff).saturating_sub(started.elapsed())).await;
}

async fn forward(node: &Arc<Node>, leader: u64, shard: u32, points: &[Point]) -> Result<ApplyResult, ShardWriteError> {
    let unreachable = |why: String| ShardWriteError::Failed { shard, why };
    let Some(addr) = node.peer_addr(leader) else {
        return Err(ShardWriteError::NotLeader { shard, leader: None });
    };
    let mut client = node.channels.get(&addr).map_err(|e| unreachable(e.to_string()))?;
    node.metrics.forwarded_writes.inc();
    let req = ForwardWriteRequest { shard, packed: pharos_storage::packed::to_vec(points), ..Default::default() };
    let reply = match tokio::time::timeout(node.config.write.timeout, client.forward_write(req)).await {
        Err(_) => return Err(ShardWriteError::Closed { shard, leader_hint: None }),
        // The node is down or restarting: try whoever leads next.
        Ok(Err(_status)) => return Err(ShardWriteError::Closed { shard, leader_hint: None }),
        Ok(Ok(r)) => r.into_inner(),
    };
    if reply.error.is_empty() {
        return Ok(ApplyResult {
            samples_written: reply.samples,
            rejected_too_old: reply.rejected_too_old,
            rejected_expired: reply.rejected_expired,
            series_created: reply.series_created,
        });
    }
    match reply.code.as_str() {
        "not_leader" => {
            Err(ShardWriteError::NotLeader { shard, leader: (reply.leader_hint != 0).then_some(reply.leader_hint) })
        }
        "overloaded" => Err(ShardWriteError::Overloaded { shard }),
        "closed" => Err(ShardWriteError::Closed { shard, leader_hint: None }),
        _ => Err(ShardWriteError::Failed { shard, why: reply.error }),
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
            let now = crate::query::now_ms();
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
