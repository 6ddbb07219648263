//! The query coordinator: any node parses and plans a query, sends the per-shard part to every shard's
//! leader (or, with `allow_stale`, to any replica, local first) in parallel, and merges the answers.
//!
//! Each statement runs under `query.timeout`; dropping the future (a client that went away) cancels the
//! outstanding shard requests, and the shards' own point limits bound the work already started there.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pharos_query::shard::{ShardAnswer, ShardQuery};
use pharos_query::stream::RawWindows;
use pharos_query::{exec, parse, plan, PlanOptions, QueryError, Series, StatementResult};
use tokio::task::JoinSet;

use crate::cluster::Node;
use crate::shard_rpc::{execute, query_local_batch, ShardRequest, ShardResponse, ShardRpcError};

#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    /// Read from any replica (bounded staleness: a follower is at most a heartbeat or two behind) instead
    /// of a linearizable read at the leader.
    pub allow_stale: bool,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Runs every statement of a query text; a parse error fails the whole text, other errors only their
/// statement (as InfluxDB does). Errors in results are rendered with line and column.
pub async fn run(node: &Arc<Node>, text: &str, opts: QueryOptions) -> Result<Vec<StatementResult>, QueryError> {
    let statements = parse(text)?;
    let mut out = Vec::with_capacity(statements.len());
    for (i, st) in statements.iter().enumerate() {
        let started = Instant::now();
        let res = run_statement(node, st, opts).await;
        node.metrics.observe_query(started.elapsed(), res.is_ok());
        out.push(match res {
            Ok(series) => StatementResult { statement_id: i, series, error: None },
            Err(e) => StatementResult { statement_id: i, series: vec![], error: Some(e.render(text)) },
        });
    }
    Ok(out)
}

pub async fn run_statement(
    node: &Arc<Node>,
    st: &pharos_query::ast::Statement,
    opts: QueryOptions,
) -> Result<Vec<Series>, QueryError> {
    let popts = PlanOptions { now_ms: now_ms(), limits: node.config.query.limits(), raw_only: false };
    let p = plan(st, &popts)?;
    let answers = match p.shard_query() {
        Some(q) => {
            let timeout = node.config.query.timeout;
            match tokio::time::timeout(timeout, fan_out(node, q, opts, timeout)).await {
                Ok(r) => r?,
                Err(_) => return Err(QueryError::Timeout(timeout.as_millis() as u64)),
            }
        }
        None => vec![],
    };
    // Merging is CPU work proportional to the answer: off the async workers unless the answer is small
    // (a thread hand-off costs more than merging a few thousand points).
    if answer_points(&answers) < 20_000 {
        return exec::finish(&p, answers);
    }
    tokio::task::spawn_blocking(move || exec::finish(&p, answers))
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
}

/// Samples or buckets held in shard answers (a measure of the merge's work).
fn answer_points(answers: &[ShardAnswer]) -> u64 {
    answers
        .iter()
        .map(|a| match a {
            ShardAnswer::Raw { series, .. } => series.iter().map(|s| s.ts.len() as u64).sum(),
            ShardAnswer::Aggregate { groups, .. } => {
                groups.iter().map(|g| g.buckets.iter().map(|b| 1 + b.values.len() as u64).sum::<u64>()).sum()
            }
            ShardAnswer::Meta(_) => 0,
        })
        .sum()
}

/// Runs one statement and sends its result series to `tx` as they become final: raw queries in time
/// windows of about `query.window_points` samples (so a large result never sits whole in memory here),
/// everything else in one piece. Stops early, cancelling the rest, when the receiver is gone (the client
/// went away).
pub async fn run_statement_into(
    node: &Arc<Node>,
    st: &pharos_query::ast::Statement,
    opts: QueryOptions,
    tx: &tokio::sync::mpsc::Sender<Vec<Series>>,
) -> Result<(), QueryError> {
    let popts = PlanOptions { now_ms: now_ms(), limits: node.config.query.limits(), raw_only: false };
    let p = plan(st, &popts)?;
    let raw = match &p {
        pharos_query::Plan::Raw(r) if RawWindows::streamable(r) => r.clone(),
        _ => {
            let series = run_statement(node, st, opts).await?;
            let _ = tx.send(series).await;
            return Ok(());
        }
    };
    let timeout = node.config.query.timeout;
    let work = async {
        let extents = fan_out(node, RawWindows::extent_query(&raw), opts, timeout).await?;
        let mut windows = RawWindows::new(&raw, &extents, node.config.query.window_points)?;
        while let Some((q, a, z)) = windows.next_query() {
            let answers = fan_out(node, q, opts, timeout).await?;
            let series = windows.finish_window(a, z, answers)?;
            if !series.is_empty() && tx.send(series).await.is_err() {
                return Ok(()); // nobody listens any more
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(QueryError::Timeout(timeout.as_millis() as u64)),
    }
}

/// How a streamed statement ended.
pub enum Streamed {
    /// It ran to the end; `sent_any`: some batch held series.
    Done {
        sent_any: bool,
    },
    Failed(QueryError),
    /// The client went away (`deliver` said so); the statement was cancelled.
    ClientGone,
}

/// Runs one statement and hands each batch of final series to `deliver` while the statement goes on (a
/// forwarding task with a two-batch buffer between them). `deliver` returns false when the client is gone:
/// the statement's next send then fails and it stops. Records the statement in the query metrics.
pub async fn stream_statement<D, F>(
    node: &Arc<Node>,
    st: &pharos_query::ast::Statement,
    opts: QueryOptions,
    mut deliver: D,
) -> Streamed
where
    D: FnMut(Vec<Series>) -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Series>>(2);
    let forward = tokio::spawn(async move {
        let mut sent_any = false;
        while let Some(batch) = rx.recv().await {
            sent_any |= !batch.is_empty();
            if !deliver(batch).await {
                return None;
            }
        }
        Some(sent_any)
    });
    let res = run_statement_into(node, st, opts, &tx).await;
    drop(tx);
    let Ok(Some(sent_any)) = forward.await else { return Streamed::ClientGone };
    node.metrics.observe_query(started.elapsed(), res.is_ok());
    match res {
        Ok(()) => Streamed::Done { sent_any },
        Err(e) => Streamed::Failed(e),
    }
}

/// Sends the shard query to every shard at once and collects the answers (all, or the first error).
async fn fan_out(
    node: &Arc<Node>,
    q: ShardQuery,
    opts: QueryOptions,
    timeout: Duration,
) -> Result<Vec<ShardAnswer>, QueryError> {
    // Shards this node can answer itself (its replica leads, or any replica will do) go in one batch;
    // the others, and local ones that turn out not to lead, go one by one to their leaders.
    let (local, mut remote): (Vec<u32>, Vec<u32>) =
        (0..node.router.shards())
            .partition(|s| if opts.allow_stale { node.serves_stale(*s) } else { node.is_leader(*s) });
    let mut results = Vec::with_capacity(node.router.shards() as usize);
    for (shard, res) in query_local_batch(node, &local, &q, !opts.allow_stale).await {
        match res {
            Ok(r) => results.push((shard, Ok(r))),
            Err(ShardRpcError::Failed(why)) => results.push((shard, Err(why))),
            Err(_) => remote.push(shard),
        }
    }
    let req = Arc::new(ShardRequest::Query(q));
    let mut set = JoinSet::new();
    for shard in remote {
        let (node, req) = (node.clone(), req.clone());
        set.spawn(async move { (shard, execute(&node, shard, &req, !opts.allow_stale, timeout).await) });
    }
    while let Some(joined) = set.join_next().await {
        results.push(joined.map_err(|e| QueryError::Internal(e.to_string()))?);
    }
    let mut answers = Vec::with_capacity(results.len());
    for (shard, res) in results {
        match res {
            Ok(ShardResponse::Query(Ok(a))) => answers.push(a),
            Ok(ShardResponse::Query(Err(e))) => return Err(e),
            Ok(_) => return Err(QueryError::Internal(format!("shard {shard} answered another request"))),
            Err(message) => return Err(QueryError::Shard { shard, message }),
        }
    }
    Ok(answers)
}
