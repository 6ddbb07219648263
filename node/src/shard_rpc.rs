//! Requests a coordinator sends to one shard replica (through `crate::rpc::Client::shard_request`, locally
//! or over `Internal.ForwardQuery`), and how a replica answers them: raw reads, query parts, replicated
//! actor state and replica status. Linearizable reads run on the leader after a Raft read-index round;
//! stale reads may run on any replica that follows a live leader.

use std::collections::BTreeMap;
use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};
use pharos_query::shard::{ShardAnswer, ShardQuery};
use pharos_query::QueryError;
use pharos_raft::shard_sm::SharedEngine;
use pharos_raft::NodeId;
use serde::{Deserialize, Serialize};

use crate::error::{CallError, Group};
use crate::metrics::Metrics;
use crate::replicas::{Replicas, ShardReplica};

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
    /// Series statistics for the explorer, with the series created since `since_ms` (see
    /// `ShardEngine::cardinality`).
    Cardinality {
        since_ms: i64,
        top: u32,
    },
}

/// Raw samples of the series of one measurement whose tags equal the given values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawRead {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub start: i64,
    pub end: i64,
    /// The most series and samples this shard may read (`[query] max_series`, `max_points`). Last, so a
    /// node of the version before them reads the request and ignores them.
    pub max_series: u64,
    pub max_points: u64,
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
    /// The statistics and the time its "created since" count starts from (i64::MAX: unknown).
    Cardinality(pharos_storage::index::Cardinality, i64),
}

/// Runs a request on this node's replica.
pub async fn execute_local(
    replicas: &Replicas,
    metrics: &Metrics,
    shard: u32,
    req: &ShardRequest,
    linearizable: bool,
) -> Result<ShardResponse, CallError> {
    let me = replicas.me();
    let r = replicas.get(shard).ok_or(CallError::NoReplica { node: me, group: Group::Shard(shard), leader: None })?;
    if !linearizable && !matches!(req, ShardRequest::Status) && !replicas.serves_stale(shard) {
        // A replica without a leader may be arbitrarily behind: send the reader to the leader instead.
        let leader = replicas.leader_seen(shard).filter(|l| *l != me);
        return Err(CallError::NotLeader { node: me, group: Group::Shard(shard), leader });
    }
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
                reporter: me,
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
            read_barrier(&r, me, linearizable).await?;
            let q = q.clone();
            let cache = r.query_cache.clone();
            let (answer, stats) = on_engine(&r, me, move |e| pharos_query::cache::run_cached(e, &cache, &q)).await?;
            Ok(count_cache(metrics, stats, answer))
        }
        ShardRequest::Cardinality { since_ms, top } => {
            read_barrier(&r, me, linearizable).await?;
            let (since_ms, top) = (*since_ms, *top as usize);
            let (c, from) = on_engine(&r, me, move |e| e.cardinality(since_ms, top)).await?;
            Ok(ShardResponse::Cardinality(c, from))
        }
        ShardRequest::State { prefix } => {
            read_barrier(&r, me, linearizable).await?;
            let prefix = prefix.clone();
            let kv = on_engine(&r, me, move |e| e.state_scan(&prefix)).await?;
            Ok(ShardResponse::State(kv.map_err(|e| failed(me, shard, e.to_string()))?))
        }
        ShardRequest::ReadRaw(rr) => {
            read_barrier(&r, me, linearizable).await?;
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
                limits: ShardLimits { max_series: rr.max_series, max_points: rr.max_points },
                values: Vec::new(),
            });
            match on_engine(&r, me, move |e| pharos_query::shard::run(e, &q)).await? {
                Ok(ShardAnswer::Raw { series, .. }) => Ok(ShardResponse::Raw(series)),
                Ok(_) => Err(failed(me, shard, "raw read answered with another kind".into())),
                Err(e) if e.is_client_error() => Err(CallError::Invalid { why: e.to_string() }),
                Err(e) => Err(failed(me, shard, e.to_string())),
            }
        }
    }
}

/// Runs a query's shard part on several local replicas at once: the read barriers concurrently, then the
/// reads in one blocking task per core (not one per shard: most shard parts take microseconds, and a thread
/// hand-off per shard would cost more than the read).
pub async fn query_local_batch(
    replicas: &Replicas,
    metrics: &Metrics,
    shards: &[u32],
    q: &ShardQuery,
    linearizable: bool,
) -> Vec<(u32, Result<ShardResponse, CallError>)> {
    let me = replicas.me();
    let mut out = Vec::with_capacity(shards.len());
    let mut ready = Vec::new();
    let barriers = shards.iter().map(|&s| async move {
        let r = replicas.get(s).ok_or(CallError::NoReplica { node: me, group: Group::Shard(s), leader: None })?;
        read_barrier(&r, me, linearizable).await?;
        Ok::<_, CallError>(r)
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
                Err(_) => Err(failed(me, r.shard, "engine lock poisoned".into())),
            };
            out.push((r.shard, res.map(|(answer, stats)| count_cache(metrics, stats, answer))));
        }
        return out;
    }
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(1);
    let per = ready.len().div_ceil(workers).max(1);
    let mut tasks = Vec::new();
    for group in ready.chunks(per) {
        let group: Vec<Arc<ShardReplica>> = group.to_vec();
        let q = q.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            group
                .iter()
                .map(|r| {
                    let res = match r.engine.read() {
                        Ok(e) => Ok(pharos_query::cache::run_cached(&e, &r.query_cache, &q)),
                        Err(_) => Err(failed(me, r.shard, "engine lock poisoned".into())),
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
                    out.push((s, res.map(|(answer, stats)| count_cache(metrics, stats, answer))));
                }
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return vec![(u32::MAX, Err(failed(me, u32::MAX, e.to_string())))],
        }
    }
    out
}

/// Estimated samples below which local shard parts run on the calling task instead of a blocking thread.
const INLINE_POINTS: u64 = 5_000;

fn count_cache(
    metrics: &Metrics,
    stats: pharos_query::cache::CacheStats,
    answer: Result<ShardAnswer, QueryError>,
) -> ShardResponse {
    metrics.query_cache.with_label_values(&["hit"]).inc_by(stats.hits);
    metrics.query_cache.with_label_values(&["miss"]).inc_by(stats.misses);
    ShardResponse::Query(answer)
}

fn failed(node: NodeId, shard: u32, why: String) -> CallError {
    CallError::Failed { node, group: Group::Shard(shard), why }
}

/// A read barrier on a local replica: it leads, and has applied everything committed.
pub async fn barrier(replica: &ShardReplica, me: NodeId) -> Result<(), CallError> {
    read_barrier(replica, me, true).await
}

/// For a linearizable read: a Raft read-index round confirming this replica leads and has applied
/// everything committed before the read started.
async fn read_barrier(replica: &ShardReplica, me: NodeId, linearizable: bool) -> Result<(), CallError> {
    if !linearizable {
        return Ok(());
    }
    let (raft, group) = (&replica.raft, Group::Shard(replica.shard));
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
            Err(CallError::NotLeader { node: me, group, leader: f.leader_id })
        }
        // No quorum answered (a partition, an election): another node may lead by the next try.
        Err(e) => Err(CallError::Unavailable { node: me, group, why: e.to_string() }),
    }
}

/// Runs `f` on the shard's engine under its read lock, off the async workers (reads touch RocksDB).
async fn on_engine<T: Send + 'static>(
    replica: &ShardReplica,
    me: NodeId,
    f: impl FnOnce(&pharos_storage::ShardEngine) -> T + Send + 'static,
) -> Result<T, CallError> {
    let shard = replica.shard;
    let engine: SharedEngine = replica.engine.clone();
    tokio::task::spawn_blocking(move || {
        let e = engine.read().map_err(|_| failed(me, shard, "engine lock poisoned".into()))?;
        Ok(f(&e))
    })
    .await
    .map_err(|e| failed(me, shard, e.to_string()))?
}
