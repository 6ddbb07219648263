//! The query coordinator: any node parses and plans a query, sends the per-shard part to every shard's
//! leader (or, with `allow_stale`, to any replica, local first) in parallel, and merges the answers.
//!
//! Each statement runs under `query.timeout`; dropping the future (a client that went away) cancels the
//! outstanding shard requests, and the shards' own point limits bound the work already started there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pharos_query::shard::{ShardAnswer, ShardQuery};
use pharos_query::stream::RawWindows;
use pharos_query::{exec, parse, plan, PlanOptions, QueryError, Series, StatementResult};

use crate::clock::now_ms;
use crate::config::QueryConfig;
use crate::error::CallError;
use crate::metrics::Metrics;
use crate::replicas::Replicas;
use crate::routing::Router;
use crate::rpc::{fan_out, Client};
use crate::shard_rpc::{query_local_batch, ShardRequest, ShardResponse};

#[derive(Debug, Clone, Copy, Default)]
pub struct QueryOptions {
    /// Read from any replica (bounded staleness: a follower is at most a heartbeat or two behind) instead
    /// of a linearizable read at the leader.
    pub allow_stale: bool,
}

/// The query coordinator.
pub struct Queries {
    router: Router,
    replicas: Arc<Replicas>,
    client: Arc<Client>,
    metrics: Arc<Metrics>,
    config: QueryConfig,
}

impl Queries {
    pub fn new(
        router: Router,
        replicas: Arc<Replicas>,
        client: Arc<Client>,
        metrics: Arc<Metrics>,
        config: QueryConfig,
    ) -> Queries {
        Queries { router, replicas, client, metrics, config }
    }

    /// Runs every statement of a query text; a parse error fails the whole text, other errors only their
    /// statement (as InfluxDB does). Errors in results are rendered with line and column.
    pub async fn run(&self, text: &str, opts: QueryOptions) -> Result<Vec<StatementResult>, QueryError> {
        let statements = parse(text)?;
        let mut out = Vec::with_capacity(statements.len());
        for (i, st) in statements.iter().enumerate() {
            let started = Instant::now();
            let res = self.run_statement(st, opts).await;
            self.metrics.observe_query(started.elapsed(), res.is_ok());
            out.push(match res {
                Ok(series) => StatementResult { statement_id: i, series, error: None },
                Err(e) => StatementResult { statement_id: i, series: vec![], error: Some(e.render(text)) },
            });
        }
        Ok(out)
    }

    pub async fn run_statement(
        &self,
        st: &pharos_query::ast::Statement,
        opts: QueryOptions,
    ) -> Result<Vec<Series>, QueryError> {
        let popts = PlanOptions { now_ms: now_ms(), limits: self.config.limits(), raw_only: false };
        let p = plan(st, &popts)?;
        let answers = match p.shard_query() {
            Some(q) => {
                let timeout = self.config.timeout;
                match tokio::time::timeout(timeout, self.shards(q, opts, timeout)).await {
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

    /// Runs one statement and sends its result series to `tx` as they become final: raw queries in time
    /// windows of about `query.window_points` samples (so a large result never sits whole in memory here),
    /// everything else in one piece. Stops early, cancelling the rest, when the receiver is gone (the client
    /// went away).
    pub async fn run_statement_into(
        &self,
        st: &pharos_query::ast::Statement,
        opts: QueryOptions,
        tx: &tokio::sync::mpsc::Sender<Vec<Series>>,
    ) -> Result<(), QueryError> {
        let popts = PlanOptions { now_ms: now_ms(), limits: self.config.limits(), raw_only: false };
        let p = plan(st, &popts)?;
        let raw = match &p {
            pharos_query::Plan::Raw(r) if RawWindows::streamable(r) => r.clone(),
            _ => {
                let series = self.run_statement(st, opts).await?;
                let _ = tx.send(series).await;
                return Ok(());
            }
        };
        let timeout = self.config.timeout;
        let work = async {
            let extents = self.shards(RawWindows::extent_query(&raw), opts, timeout).await?;
            let mut windows = RawWindows::new(&raw, &extents, self.config.window_points)?;
            while let Some((q, a, z)) = windows.next_query() {
                let answers = self.shards(q, opts, timeout).await?;
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

    /// Runs one statement and hands each batch of final series to `deliver` while the statement goes on (a
    /// forwarding task with a two-batch buffer between them). `deliver` returns false when the client is gone:
    /// the statement's next send then fails and it stops. Records the statement in the query metrics.
    pub async fn stream_statement<D, F>(
        &self,
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
        let res = self.run_statement_into(st, opts, &tx).await;
        drop(tx);
        let Ok(Some(sent_any)) = forward.await else { return Streamed::ClientGone };
        self.metrics.observe_query(started.elapsed(), res.is_ok());
        match res {
            Ok(()) => Streamed::Done { sent_any },
            Err(e) => Streamed::Failed(e),
        }
    }

    /// Sends the shard query to every shard at once and collects the answers (all, or the first error).
    async fn shards(
        &self,
        q: ShardQuery,
        opts: QueryOptions,
        timeout: Duration,
    ) -> Result<Vec<ShardAnswer>, QueryError> {
        // Shards this node can answer itself (its replica leads, or any replica will do) go in one batch;
        // the others, and local ones that turn out not to lead, go one by one to their leaders.
        let linearizable = !opts.allow_stale;
        let (local, mut remote): (Vec<u32>, Vec<u32>) = (0..self.router.shards()).partition(|s| {
            if linearizable {
                self.replicas.leads(*s)
            } else {
                self.replicas.serves_stale(*s)
            }
        });
        let mut results = Vec::with_capacity(self.router.shards() as usize);
        for (shard, res) in query_local_batch(&self.replicas, &self.metrics, &local, &q, linearizable).await {
            match res {
                Err(e) if e.retryable() => remote.push(shard),
                res => results.push((shard, res)),
            }
        }
        let req = Arc::new(ShardRequest::Query(q));
        results.extend(
            fan_out(remote, |&shard| {
                let (client, req) = (self.client.clone(), req.clone());
                async move { client.shard_request(shard, &req, linearizable, timeout).await }
            })
            .await,
        );
        let mut answers = Vec::with_capacity(results.len());
        for (shard, res) in results {
            match res {
                Ok(ShardResponse::Query(Ok(a))) => answers.push(a),
                Ok(ShardResponse::Query(Err(e))) => return Err(e),
                Ok(_) => return Err(QueryError::Internal(format!("shard {shard} answered another request"))),
                Err(e) => return Err(shard_error(shard, e)),
            }
        }
        Ok(answers)
    }
}

/// A shard part that failed, for the query's error.
fn shard_error(shard: u32, e: CallError) -> QueryError {
    QueryError::Shard { shard, message: crate::error::chain(&e) }
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
