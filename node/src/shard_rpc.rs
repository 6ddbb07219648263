//! Requests a coordinator sends to one shard replica (locally or over `Internal.ForwardQuery`): raw reads
//! and replica status. Linearizable reads run on the leader after a Raft read-index round; stale reads may
//! run on any replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::ServerState;
use pharos_proto::internal::ForwardQueryRequest;
use pharos_query::shard::{ShardAnswer, ShardQuery};
use pharos_query::QueryError;
use pharos_raft::shard_sm::SharedEngine;
use pharos_raft::NodeId;
use serde::{Deserialize, Serialize};

use crate::cluster::Node;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardRequest {
    Status,
    ReadRaw(RawRead),
    /// A query's per-shard part (pharos-query), answered next to the data.
    Query(ShardQuery),
    /// Replicated actor state (alerting) whose keys start with the prefix.
    State {
        prefix: Vec<u8>,
    },
}

/// Raw samples of the series of one measurement whose tags equal the given values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawRead {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub start: i64,
    pub end: i64,
}

/// Raw samples of one series (the query engine's type, so both read paths share it).
pub use pharos_query::shard::RawSeries;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShardStatus {
    pub shard: u32,
    pub reporter: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub applied: u64,
    pub last_log: u64,
    /// The log is purged up to here (behind a snapshot).
    #[serde(default)]
    pub purged: u64,
    pub voters: Vec<NodeId>,
    /// On the leader: entries each replica is behind.
    pub lag: BTreeMap<NodeId, u64>,
    pub series: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ShardResponse {
    Status(ShardStatus),
    Raw(Vec<RawSeries>),
    /// A query's per-shard answer; a query error (a limit, a bad regex) travels back as it is.
    Query(Result<ShardAnswer, QueryError>),
    State(Vec<(Vec<u8>, Vec<u8>)>),
}

#[derive(Debug, thiserror::Error)]
pub enum ShardRpcError {
    #[error("not the leader of shard {shard}")]
    NotLeader { shard: u32, leader: Option<NodeId> },
    #[error("no replica of shard {0} on this node")]
    NoReplica(u32),
    #[error("{0}")]
    Failed(String),
}

/// Runs a request on this node's replica.
pub async fn execute_local(
    node: &Node,
    shard: u32,
    req: &ShardRequest,
    linearizable: bool,
) -> Result<ShardResponse, ShardRpcError> {
    if !linearizable && !matches!(req, ShardRequest::Status) && !node.serves_stale(shard) {
        // A replica without a leader may be arbitrarily behind: send the reader to the leader instead.
        return Err(ShardRpcError::NotLeader { shard, leader: node.leader_of(shard).filter(|l| *l != node.id) });
    }
    let r = node.replica(shard).ok_or(ShardRpcError::NoReplica(shard))?;
    match req {
        ShardRequest::Status => {
            let m = r.raft.metrics().borrow().clone();
            let last_log = m.last_log_index.unwrap_or(0);
            let lag = m
                .replication
                .as_ref()
                .map(|rep| {
                    rep.iter().map(|(id, l)| (*id, last_log.saturating_sub(l.map(|x| x.index).unwrap_or(0)))).collect()
                })
                .unwrap_or_default();
            let series = r.engine.read().map(|e| e.series_count() as u64).unwrap_or(0);
            Ok(ShardResponse::Status(ShardStatus {
                shard,
                reporter: node.id,
                leader: m.current_leader,
                term: m.current_term,
                applied: m.last_applied.map(|l| l.index).unwrap_or(0),
                last_log,
                purged: m.purged.map(|p| p.index).unwrap_or(0),
                voters: m.membership_config.membership().voter_ids().collect(),
                lag,
                series,
            }))
        }
        ShardRequest::Query(q) => {
            read_barrier(&r.raft, shard, linearizable).await?;
            let q = q.clone();
            let cache = r.query_cache.clone();
            let (answer, stats) =
                on_engine(r.engine.clone(), move |e| pharos_query::cache::run_cached(e, &cache, &q)).await?;
            node.metrics.query_cache.with_label_values(&["hit"]).inc_by(stats.hits);
            node.metrics.query_cache.with_label_values(&["miss"]).inc_by(stats.misses);
            Ok(ShardResponse::Query(answer))
        }
        ShardRequest::State { prefix } => {
            read_barrier(&r.raft, shard, linearizable).await?;
            let prefix = prefix.clone();
            let kv = on_engine(r.engine.clone(), move |e| e.state_scan(&prefix)).await?;
            Ok(ShardResponse::State(kv.map_err(|e| ShardRpcError::Failed(e.to_string()))?))
        }
        ShardRequest::ReadRaw(rr) => {
            read_barrier(&r.raft, shard, linearizable).await?;
            // The query engine's raw read, with the export's exact-match selection.
            use pharos_query::shard::{FieldSel, FilterSpec, NameSpec, RawQuery, SeriesSel, ShardLimits};
            let q = ShardQuery::Raw(RawQuery {
                sel: SeriesSel {
                    measurements: vec![NameSpec::Eq(rr.measurement.clone())],
                    filter: FilterSpec::And(
                        rr.tags.iter().map(|(k, v)| FilterSpec::Eq(k.clone(), v.clone())).collect(),
                    ),
                },
                fields: FieldSel::All,
                start: rr.start,
                end: rr.end,
                limits: ShardLimits { max_series: u64::MAX, max_points: u64::MAX },
            });
            match on_engine(r.engine.clone(), move |e| pharos_query::shard::run(e, &q)).await? {
                Ok(ShardAnswer::Raw { series, .. }) => Ok(ShardResponse::Raw(series)),
                Ok(_) => Err(ShardRpcError::Failed("raw read answered with another kind".into())),
                Err(e) => Err(ShardRpcError::Failed(e.to_string())),
            }
        }
    }
}

/// Runs a query's shard part on several local replicas at once: the read barriers concurrently, then the
/// reads in one blocking task per core (not one per shard: most shard parts take microseconds, and a thread
/// hand-off per shard would cost more than the read).
pub async fn query_local_batch(
    node: &Node,
    shards: &[u32],
    q: &ShardQuery,
    linearizable: bool,
) -> Vec<(u32, Result<ShardResponse, ShardRpcError>)> {
    let mut out = Vec::with_capacity(shards.len());
    let mut ready = Vec::new();
    let barriers = shards.iter().map(|&s| async move {
        let r = node.replica(s).ok_or(ShardRpcError::NoReplica(s))?;
        read_barrier(&r.raft, s, linearizable).await?;
        Ok::<_, ShardRpcError>(r)
    });
    for (&s, res) in shards.iter().zip(futures::future::join_all(barriers).await) {
        match res {
            Ok(r) => ready.push(r),
            Err(e) => out.push((s, Err(e))),
        }
    }
    // Small queries (one series for an hour, say) run right here: a thread hand-off would cost more.
    let small = ready.iter().try_fold(0u64, |acc, r| {
        let e = r.engine.try_read().ok()?;
        Some(acc + pharos_query::shard::estimate_points(&e, q)?)
    });
    if small.is_some_and(|n| n <= INLINE_POINTS) {
        for r in ready {
            let res = match r.engine.read() {
                Ok(e) => Ok(pharos_query::cache::run_cached(&e, &r.query_cache, q)),
                Err(_) => Err(ShardRpcError::Failed("engine lock poisoned".into())),
            };
            out.push((r.shard, res.map(|(answer, stats)| count_cache(node, stats, answer))));
        }
        return out;
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1);
    let per = ready.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for group in ready.chunks(per) {
        let group: Vec<Arc<crate::cluster::ShardReplica>> = group.to_vec();
        let q = q.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            group
                .iter()
                .map(|r| {
                    let res = match r.engine.read() {
                        Ok(e) => Ok(pharos_query::cache::run_cached(&e, &r.query_cache, &q)),
                        Err(_) => Err(ShardRpcError::Failed("engine lock poisoned".into())),
                    };
                    (r.shard, res)
                })
                .collect::<Vec<_>>()
        }));
    }
    for t in futures::future::join_all(tasks).await {
        match t {
            Ok(results) => {
                for (s, res) in results {
                    out.push((s, res.map(|(answer, stats)| count_cache(node, stats, answer))));
                }
            }
            Err(e) => return vec![(u32::MAX, Err(ShardRpcError::Failed(e.to_string())))],
        }
    }
    out
}

/// Estimated samples below which local shard parts run on the calling task instead of a blocking thread.
const INLINE_POINTS: u64 = 5_000;

fn count_cache(
    node: &Node,
    stats: pharos_query::cache::CacheStats,
    answer: Result<ShardAnswer, QueryError>,
) -> ShardResponse {
    node.metrics.query_cache.with_label_values(&["hit"]).inc_by(stats.hits);
    node.metrics.query_cache.with_label_values(&["miss"]).inc_by(stats.misses);
    ShardResponse::Query(answer)
}

/// A read barrier on this node's replica of a shard: it leads, and has applied everything committed.
pub async fn barrier(node: &Node, shard: u32) -> Result<(), ShardRpcError> {
    let r = node.replica(shard).ok_or(ShardRpcError::NoReplica(shard))?;
    read_barrier(&r.raft, shard, true).await
}

/// For a linearizable read: a Raft read-index round confirming this replica leads and has applied
/// everything committed before the read started.
async fn read_barrier(raft: &pharos_raft::Raft, shard: u32, linearizable: bool) -> Result<(), ShardRpcError> {
    if !linearizable {
        return Ok(());
    }
    // The only voter leads for good, and writes are acknowledged after they are applied here: its state
    // already holds every acknowledged write, no round needed.
    {
        let m = raft.metrics();
        let m = m.borrow();
        if m.state == openraft::ServerState::Leader && m.membership_config.membership().voter_ids().count() == 1 {
            return Ok(());
        }
    }
    match raft.ensure_linearizable().await {
        Ok(_) => Ok(()),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(ShardRpcError::NotLeader { shard, leader: f.leader_id })
        }
        Err(e) => Err(ShardRpcError::Failed(e.to_string())),
    }
}

/// Runs `f` on the shard's engine under its read lock, off the async workers (reads touch RocksDB).
async fn on_engine<T: Send + 'static>(
    engine: SharedEngine,
    f: impl FnOnce(&pharos_storage::ShardEngine) -> T + Send + 'static,
) -> Result<T, ShardRpcError> {
    tokio::task::spawn_blocking(move || {
        let e = engine.read().map_err(|_| ShardRpcError::Failed("engine lock poisoned".into()))?;
        Ok(f(&e))
    })
    .await
    .map_err(|e| ShardRpcError::Failed(e.to_string()))?
}

/// Runs a request on the right replica of a shard anywhere in the cluster, following leader hints.
pub async fn execute(
    node: &Arc<Node>,
    shard: u32,
    req: &ShardRequest,
    linearizable: bool,
    timeout: Duration,
) -> Result<ShardResponse, String> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(20);
    loop {
        let local_ok = match req {
            ShardRequest::Status => node.replica(shard).is_some(),
            _ if linearizable => node.is_leader(shard),
            _ => node.serves_stale(shard),
        };
        let target = if local_ok { Some(node.id) } else { node.leader_of(shard) };
        let res = match target {
            Some(t) if t == node.id => execute_local(node, shard, req, linearizable).await,
            Some(t) => remote(node, t, shard, req, linearizable).await,
            None => Err(ShardRpcError::NotLeader { shard, leader: None }),
        };
        match res {
            Ok(r) => return Ok(r),
            Err(ShardRpcError::NotLeader { leader, .. }) => {
                if let Some(l) = leader {
                    node.note_leader(shard, l);
                }
            }
            Err(ShardRpcError::NoReplica(_)) => {}
            Err(ShardRpcError::Failed(why)) if Instant::now() + backoff > deadline => return Err(why),
            Err(ShardRpcError::Failed(_)) => {}
        }
        if Instant::now() + backoff > deadline {
            return Err(format!("shard {shard}: no leader reachable within {timeout:?}"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

async fn remote(
    node: &Node,
    target: NodeId,
    shard: u32,
    req: &ShardRequest,
    linearizable: bool,
) -> Result<ShardResponse, ShardRpcError> {
    let addr = node.peer_addr(target).ok_or(ShardRpcError::NotLeader { shard, leader: None })?;
    let mut client = node.channels.get(&addr).map_err(|e| ShardRpcError::Failed(e.to_string()))?;
    let request = ForwardQueryRequest {
        shard,
        request: bincode::serialize(req).expect("requests serialize"),
        allow_stale: !linearizable,
    };
    let reply = client
        .forward_query(request)
        .await
        .map_err(|s| ShardRpcError::Failed(format!("node {target}: {}", s.message())))?
        .into_inner();
    if !reply.error.is_empty() {
        return Err(if reply.error == "not_leader" || reply.error == "no_replica" {
            ShardRpcError::NotLeader { shard, leader: (reply.leader_hint != 0).then_some(reply.leader_hint) }
        } else {
            ShardRpcError::Failed(reply.error)
        });
    }
    bincode::deserialize(&reply.response).map_err(|e| ShardRpcError::Failed(e.to_string()))
}

/// Whether a local replica currently believes it leads (for status displays).
pub fn leads(node: &Node, shard: u32) -> bool {
    node.replica(shard).is_some_and(|r| r.raft.metrics().borrow().state == ServerState::Leader)
}
