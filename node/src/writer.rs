//! The shard writer: an actor on each local replica that coalesces concurrent writes into one Raft entry
//! (group commit); and [`maintenance`], the actor that runs on a shard's leader only (see
//! `pharos_raft::leadership`) and proposes periodic maintenance.
//!
//! Its queue is bounded: when it is full, [`ShardWriter::submit`] fails at once with `Overloaded`, which the
//! endpoints turn into HTTP 503 / gRPC Unavailable with a retry hint. Memory never grows with load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use pharos_raft::{NodeId, Raft, Request, Response};
use pharos_storage::{ApplyResult, Command, Point};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, warn};

use crate::config::WriteConfig;
use crate::disk::Disk;
use crate::metrics::Metrics;
use crate::series_limits::Limiter;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ShardWriteError {
    #[error("shard {shard} is not led by this node")]
    NotLeader { shard: u32, leader: Option<NodeId> },
    #[error("shard {shard} write queue is full")]
    Overloaded { shard: u32 },
    #[error("shard {shard}: {why}")]
    Failed { shard: u32, why: String },
    /// This node leads the shard and its disk is below its free-space floor.
    #[error("shard {shard}: {why}")]
    DiskFull { shard: u32, why: String },
    /// The replica stopped or could not be reached; another node may lead next.
    #[error("shard {shard} replica is shutting down or unreachable")]
    Closed { shard: u32, leader_hint: Option<NodeId> },
}

impl ShardWriteError {
    /// The refusal as a node-to-node call's, from this node.
    pub fn into_call_error(self, node: NodeId) -> crate::error::CallError {
        use crate::error::{CallError, Group};
        match self {
            ShardWriteError::NotLeader { shard, leader } => {
                CallError::NotLeader { node, group: Group::Shard(shard), leader }
            }
            ShardWriteError::Overloaded { shard } => CallError::Overloaded { node, group: Group::Shard(shard) },
            ShardWriteError::Closed { shard, leader_hint: Some(l) } => {
                CallError::NotLeader { node, group: Group::Shard(shard), leader: Some(l) }
            }
            ShardWriteError::Closed { shard, leader_hint: None } => {
                CallError::Unavailable { node, group: Group::Shard(shard), why: "the replica is stopping".into() }
            }
            ShardWriteError::Failed { shard, why } => CallError::Failed { node, group: Group::Shard(shard), why },
            ShardWriteError::DiskFull { shard, why } => CallError::DiskFull { node, group: Group::Shard(shard), why },
        }
    }
}

struct Job {
    points: Arc<Vec<Point>>,
    reply: oneshot::Sender<Result<ApplyResult, ShardWriteError>>,
}

#[derive(Clone)]
pub struct ShardWriter {
    shard: u32,
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    /// Until when the actor holds its queue (a leadership move: the leader's log must stop growing so
    /// the replica taking over has all of it).
    pause: Arc<tokio::sync::watch::Sender<Option<Instant>>>,
}

impl ShardWriter {
    /// `limiter`: the series limits' check, when limits are set.
    pub fn spawn(
        shard: u32,
        raft: Raft,
        cfg: &WriteConfig,
        metrics: Arc<Metrics>,
        disk: Arc<Disk>,
        limiter: Option<Limiter>,
        shutdown: broadcast::Receiver<()>,
    ) -> ShardWriter {
        let (tx, rx) = mpsc::channel(cfg.queue_depth);
        let queued = Arc::new(AtomicUsize::new(0));
        let pause = Arc::new(tokio::sync::watch::Sender::new(None));
        let actor = Actor {
            shard,
            raft,
            rx,
            max_points: cfg.max_batch_points,
            metrics,
            disk,
            limiter,
            queued: queued.clone(),
            paused: pause.subscribe(),
        };
        tokio::spawn(actor.run(shutdown));
        ShardWriter { shard, tx, queued, pause }
    }

    /// Holds the queue for `for_ms` (at most 10 s) or until [`ShardWriter::resume`]: requests wait, none
    /// is refused.
    pub fn pause(&self, for_ms: u64) {
        self.pause.send_replace(Some(Instant::now() + Duration::from_millis(for_ms.min(10_000))));
    }

    pub fn resume(&self) {
        self.pause.send_replace(None);
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Queues points for this shard and waits for their quorum commit.
    pub async fn submit(&self, points: Arc<Vec<Point>>) -> Result<ApplyResult, ShardWriteError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Job { points, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ShardWriteError::Overloaded { shard: self.shard },
            mpsc::error::TrySendError::Closed(_) => ShardWriteError::Closed { shard: self.shard, leader_hint: None },
        })?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        rx.await.map_err(|_| ShardWriteError::Closed { shard: self.shard, leader_hint: None })?
    }
}

struct Actor {
    shard: u32,
    raft: Raft,
    rx: mpsc::Receiver<Job>,
    max_points: usize,
    metrics: Arc<Metrics>,
    disk: Arc<Disk>,
    limiter: Option<Limiter>,
    queued: Arc<AtomicUsize>,
    paused: tokio::sync::watch::Receiver<Option<Instant>>,
}

impl Actor {
    /// Returns once the writer is not paused.
    async fn unpaused(&mut self) {
        loop {
            let until = *self.paused.borrow_and_update();
            match until {
                Some(t) if Instant::now() < t => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t.into()) => {}
                        r = self.paused.changed() => if r.is_err() { return },
                    }
                }
                _ => return,
            }
        }
    }

    async fn run(mut self, mut shutdown: broadcast::Receiver<()>) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.recv() => break,
                job = self.rx.recv() => {
                    let Some(first) = job else { break };
                    self.unpaused().await;
                    let mut jobs = vec![first];
                    let mut points = jobs[0].points.len();
                    while points < self.max_points {
                        match self.rx.try_recv() {
                            Ok(j) => {
                                points += j.points.len();
                                jobs.push(j);
                            }
                            Err(_) => break,
                        }
                    }
                    self.queued.fetch_sub(jobs.len(), Ordering::Relaxed);
                    self.commit(jobs).await;
                }
            }
        }
        // Fail what is still queued so callers learn at once.
        self.rx.close();
        while let Ok(j) = self.rx.try_recv() {
            let _ = j.reply.send(Err(ShardWriteError::Closed { shard: self.shard, leader_hint: None }));
        }
    }

    async fn commit(&mut self, mut jobs: Vec<Job>) {
        // Concurrent writers (a loader's connections, several agents) often hand in a series' samples out of
        // time order; within one entry, applying the batches oldest first turns most of that into in-order
        // appends instead of merges into heads and sealed chunks. The batches are concurrent, so any order is
        // theirs; the stable sort keeps arrival order among equal starts.
        if jobs.len() > 1 {
            jobs.sort_by_cached_key(|j| j.points.iter().map(|p| p.timestamp).min().unwrap_or(i64::MAX));
        }
        let (mut batches, replies): (Vec<Arc<Vec<Point>>>, Vec<_>) =
            jobs.into_iter().map(|j| (j.points, j.reply)).unzip();
        // A leader whose disk is below its floor takes nothing new (a follower's refusal is its leader's
        // to make: the write is forwarded there).
        let leads = {
            let m = self.raft.metrics().borrow().clone();
            m.current_leader == Some(m.id)
        };
        if let Some(why) = self.disk.refusal().filter(|_| leads) {
            for reply in replies {
                let _ = reply.send(Err(ShardWriteError::DiskFull { shard: self.shard, why: why.clone() }));
            }
            return;
        }
        // Points that would create series over a limit are dropped here, before the log (see series_limits.rs).
        let refused = match &self.limiter {
            Some(l) if leads => l.filter(&mut batches),
            _ => Vec::new(),
        };
        let with_refusal = |i: usize, mut r: ApplyResult| {
            if let Some(x) = refused.get(i).filter(|x| x.samples > 0) {
                r.rejected_series_limit = x.samples;
                r.series_limit = x.why.clone();
            }
            r
        };
        let limited: u64 = refused.iter().map(|r| r.samples).sum();
        if limited > 0 {
            self.metrics.samples_rejected.with_label_values(&["series_limit"]).inc_by(limited);
        }
        if !refused.is_empty() && batches.iter().all(|b| b.is_empty()) {
            for (i, reply) in replies.into_iter().enumerate() {
                let _ = reply.send(Ok(with_refusal(i, ApplyResult::default())));
            }
            return;
        }
        let started = Instant::now();
        let res = self.raft.client_write(Request::Shard(Command::Write(batches))).await;
        self.metrics
            .commit_seconds
            .with_label_values(&[&self.shard.to_string()])
            .observe(started.elapsed().as_secs_f64());
        match res {
            Ok(resp) => {
                let results = match resp.data {
                    Response::Shard(r) => r,
                    other => {
                        warn!(shard = self.shard, ?other, "unexpected apply response");
                        Vec::new()
                    }
                };
                for (i, reply) in replies.into_iter().enumerate() {
                    let r = with_refusal(i, results.get(i).cloned().unwrap_or_default());
                    if r.rejected_too_old > 0 {
                        self.metrics
                            .samples_rejected
                            .with_label_values(&["out_of_order_window"])
                            .inc_by(r.rejected_too_old);
                    }
                    if r.rejected_expired > 0 {
                        self.metrics.samples_rejected.with_label_values(&["retention"]).inc_by(r.rejected_expired);
                    }
                    let _ = reply.send(Ok(r));
                }
            }
            Err(e) => {
                let err = match e {
                    RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                        ShardWriteError::NotLeader { shard: self.shard, leader: f.leader_id }
                    }
                    other => ShardWriteError::Failed { shard: self.shard, why: other.to_string() },
                };
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Runs on a shard's leader (started and stopped by `spawn_while_leader`): proposes `Maintain` with this
/// node's clock now and every `interval`, so every replica seals, rolls up and expires at the same log
/// position.
pub async fn maintenance(shard: u32, raft: Raft, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now_ms = crate::clock::now_ms();
        match raft.client_write(Request::Shard(Command::Maintain { now_ms })).await {
            Ok(_) => debug!(shard, "maintenance committed"),
            Err(e) => warn!(shard, cause = %e, "maintenance not committed"),
        }
    }
}
