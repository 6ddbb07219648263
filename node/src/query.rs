//! The query coordinator: any node parses and plans a query, sends the per-shard part to every shard's
//! leader (or, with `allow_stale`, to any replica, local first) in parallel, and merges the answers.
//!
//! Each statement runs under `query.timeout`; dropping the future (a client that went away) cancels the
//! outstanding shard requests, and the shards' own point limits bound the work already started there.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pharos_query::shard::{ShardAnswer, ShardQuery};
use pharos_query::{exec, parse, plan, PlanOptions, QueryError, Series, StatementResult};
use tokio::task::JoinSet;

use crate::cluster::Node;
use crate::shard_rpc::{execute, ShardRequest, ShardResponse};

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
    // Merging is CPU work proportional to the answer: keep it off the async workers.
    tokio::task::spawn_blocking(move || exec::finish(&p, answers))
        .await
        .map_err(|e| QueryError::Internal(e.to_string()))?
}

/// Sends the shard query to every shard at once and collects the answers (all, or the first error).
async fn fan_out(
    node: &Arc<Node>,
    q: ShardQuery,
    opts: QueryOptions,
    timeout: Duration,
) -> Result<Vec<ShardAnswer>, QueryError> {
    let req = Arc::new(ShardRequest::Query(q));
    let mut set = JoinSet::new();
    for shard in 0..node.router.shards() {
        let (node, req) = (node.clone(), req.clone());
        set.spawn(async move { (shard, execute(&node, shard, &req, !opts.allow_stale, timeout).await) });
    }
    let mut answers = Vec::with_capacity(node.router.shards() as usize);
    while let Some(joined) = set.join_next().await {
        let (shard, res) = joined.map_err(|e| QueryError::Internal(e.to_string()))?;
        match res {
            Ok(ShardResponse::Query(Ok(a))) => answers.push(a),
            Ok(ShardResponse::Query(Err(e))) => return Err(e),
            Ok(_) => return Err(QueryError::Internal(format!("shard {shard} answered another request"))),
            Err(message) => return Err(QueryError::Shard { shard, message }),
        }
    }
    Ok(answers)
}
